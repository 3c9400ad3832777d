//! Admission: the application's say on an upgrade request before it becomes a
//! connection. A browser-facing server checks `Origin` (cross-site WebSocket hijacking)
//! and credentials here, picks a subprotocol, adds response headers, or answers with an
//! HTTP status and a body.

use std::net::SocketAddr;
use std::sync::Arc;

use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::{HeaderName, HeaderValue, StatusCode};

/// The upgrade request as the admission hook sees it.
#[derive(Debug)]
pub struct UpgradeRequest<'a> {
    request: &'a Request,
    peer: Option<SocketAddr>,
}

impl<'a> UpgradeRequest<'a> {
    pub(crate) fn new(request: &'a Request, peer: Option<SocketAddr>) -> Self {
        UpgradeRequest { request, peer }
    }

    /// The request path, without the query (`/ws`).
    pub fn path(&self) -> &str {
        self.request.uri().path()
    }

    /// The query, without the `?`, if there is one.
    pub fn query(&self) -> Option<&str> {
        self.request.uri().query()
    }

    /// A header's value (the first, if repeated); `None` when absent or not visible
    /// ASCII. Names are matched without regard to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request.headers().get(name)?.to_str().ok()
    }

    /// The `Origin` header: the page that opened the connection, for a browser.
    pub fn origin(&self) -> Option<&str> {
        self.header("origin")
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn subprotocols(&self) -> Vec<&str> {
        self.request
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect()
    }

    /// The peer's address, when the adapter knows it.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }
}

/// The hook's answer: accept (with a subprotocol and response headers) or reject with an
/// HTTP status and a body.
///
/// ```
/// use tether_driver::server::{Admission, UpgradeRequest};
///
/// fn admit(req: &UpgradeRequest<'_>) -> Admission {
///     if req.origin() != Some("https://app.example") {
///         return Admission::reject(403, "unknown origin");
///     }
///     match req.subprotocols().contains(&"chat.v2") {
///         true => Admission::accept().subprotocol("chat.v2"),
///         false => Admission::accept(),
///     }
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    verdict: Verdict,
    headers: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    Accept { subprotocol: Option<String> },
    Reject { status: u16, body: String },
}

impl Admission {
    /// Accept the upgrade.
    pub fn accept() -> Self {
        Admission {
            verdict: Verdict::Accept { subprotocol: None },
            headers: Vec::new(),
        }
    }

    /// Refuse it with an HTTP `status` (400 to 599; anything else is answered 500) and a
    /// `body` (plain text, sent as it is: it should not echo the request).
    pub fn reject(status: u16, body: impl Into<String>) -> Self {
        Admission {
            verdict: Verdict::Reject {
                status,
                body: body.into(),
            },
            headers: Vec::new(),
        }
    }

    /// Selects `subprotocol` for an accepted upgrade. It must be one the client offered:
    /// a server that selects another one breaks RFC 6455, so the upgrade is refused
    /// (500) instead. Without effect on a rejection.
    #[must_use]
    pub fn subprotocol(mut self, subprotocol: impl Into<String>) -> Self {
        if let Verdict::Accept { subprotocol: p } = &mut self.verdict {
            *p = Some(subprotocol.into());
        }
        self
    }

    /// Adds a header to the response (the 101, or the rejection: a `Retry-After`, a
    /// `WWW-Authenticate`). An invalid name or value is refused as a 500.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The status of a rejection, `None` for an acceptance.
    pub fn rejected_status(&self) -> Option<u16> {
        match self.verdict {
            Verdict::Reject { status, .. } => Some(status),
            Verdict::Accept { .. } => None,
        }
    }

    /// Applies the verdict to tungstenite's `response` for `request`: the response to
    /// send, or the error response and its status.
    pub(crate) fn apply(
        self,
        request: &Request,
        mut response: Response,
    ) -> Result<Response, Box<(ErrorResponse, u16)>> {
        let status = match self.verdict {
            Verdict::Accept { subprotocol } => {
                if let Some(p) = subprotocol {
                    let offered = UpgradeRequest::new(request, None);
                    if !offered.subprotocols().contains(&p.as_str()) {
                        tracing::warn!(subprotocol = %p, "admission selected a subprotocol the client did not offer");
                        return Err(Box::new(plain(500, "subprotocol not offered", &[])));
                    }
                    match HeaderValue::from_str(&p) {
                        Ok(v) => {
                            response.headers_mut().insert("sec-websocket-protocol", v);
                        }
                        Err(_) => return Err(Box::new(plain(500, "invalid subprotocol", &[]))),
                    }
                }
                for (name, value) in &self.headers {
                    match parse(name, value) {
                        Some((n, v)) => {
                            response.headers_mut().append(n, v);
                        }
                        None => return Err(Box::new(plain(500, "invalid response header", &[]))),
                    }
                }
                return Ok(response);
            }
            Verdict::Reject { status, body } => (status, body),
        };
        let (status, body) = status;
        Err(Box::new(plain(status, &body, &self.headers)))
    }
}

fn parse(name: &str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    Some((
        HeaderName::from_bytes(name.as_bytes()).ok()?,
        HeaderValue::from_str(value).ok()?,
    ))
}

/// A plain-text error response with `status` (500 when it is not a 4xx or 5xx), and its
/// status as sent.
pub(crate) fn plain(status: u16, body: &str, headers: &[(String, String)]) -> (ErrorResponse, u16) {
    let status = match StatusCode::from_u16(status) {
        Ok(s) if s.is_client_error() || s.is_server_error() => s,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = ErrorResponse::new(Some(body.to_owned()));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    for (name, value) in headers {
        if let Some((n, v)) = parse(name, value) {
            h.append(n, v);
        }
    }
    (response, status.as_u16())
}

/// The admission hook of [`GuardConfig::admit`](super::GuardConfig::admit): called once
/// per upgrade request, on the connection's accepting task, so it must not block.
#[derive(Clone)]
pub struct Admit(Arc<dyn Fn(&UpgradeRequest<'_>) -> Admission + Send + Sync>);

impl Admit {
    /// A hook from a function.
    pub fn new(f: impl Fn(&UpgradeRequest<'_>) -> Admission + Send + Sync + 'static) -> Self {
        Admit(Arc::new(f))
    }

    pub(crate) fn decide(&self, request: &UpgradeRequest<'_>) -> Admission {
        (self.0)(request)
    }
}

impl std::fmt::Debug for Admit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admit(..)")
    }
}

/// Two hooks are equal when they are the same hook (clones of one `Admit`).
impl PartialEq for Admit {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Admit {}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(protocols: Option<&str>) -> Request {
        let mut b = Request::builder()
            .uri("/ws?room=1")
            .header("origin", "https://a.example");
        if let Some(p) = protocols {
            b = b.header("sec-websocket-protocol", p);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn the_request_shows_path_query_origin_and_subprotocols() {
        let r = request(Some("chat.v1, chat.v2"));
        let u = UpgradeRequest::new(&r, None);
        assert_eq!(u.path(), "/ws");
        assert_eq!(u.query(), Some("room=1"));
        assert_eq!(u.origin(), Some("https://a.example"));
        assert_eq!(u.subprotocols(), ["chat.v1", "chat.v2"]);
        assert_eq!(u.header("ORIGIN"), Some("https://a.example"));
    }

    #[test]
    fn an_acceptance_sets_the_subprotocol_and_headers() {
        let r = request(Some("chat.v1, chat.v2"));
        let ok = Admission::accept()
            .subprotocol("chat.v2")
            .header("x-server", "tether")
            .apply(&r, Response::new(()))
            .unwrap();
        assert_eq!(ok.headers()["sec-websocket-protocol"], "chat.v2");
        assert_eq!(ok.headers()["x-server"], "tether");
    }

    #[test]
    fn a_subprotocol_not_offered_is_refused_as_500() {
        let r = request(Some("chat.v1"));
        let (_, status) = *Admission::accept()
            .subprotocol("chat.v9")
            .apply(&r, Response::new(()))
            .map(drop)
            .unwrap_err();
        assert_eq!(status, 500);
        let r = request(None);
        let (_, status) = *Admission::accept()
            .subprotocol("chat.v1")
            .apply(&r, Response::new(()))
            .map(drop)
            .unwrap_err();
        assert_eq!(status, 500);
    }

    #[test]
    fn a_rejection_has_its_status_body_and_headers_and_odd_statuses_become_500() {
        let r = request(None);
        let (resp, status) = *Admission::reject(403, "unknown origin")
            .header("x-why", "origin")
            .apply(&r, Response::new(()))
            .map(drop)
            .unwrap_err();
        assert_eq!(status, 403);
        assert_eq!(resp.body().as_deref(), Some("unknown origin"));
        assert_eq!(resp.headers()["x-why"], "origin");
        for odd in [0, 101, 200, 302, 600] {
            let (_, status) = *Admission::reject(odd, "")
                .apply(&r, Response::new(()))
                .unwrap_err();
            assert_eq!(status, 500, "{odd}");
        }
        let (_, status) = *Admission::accept()
            .header("bad name", "x")
            .apply(&r, Response::new(()))
            .map(drop)
            .unwrap_err();
        assert_eq!(status, 500);
    }
}
