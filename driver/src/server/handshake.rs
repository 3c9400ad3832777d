//! The server's answer to a WebSocket upgrade request, for applications whose own HTTP
//! server (axum, hyper, a hand-written one) reads the request: either the `101 Switching
//! Protocols` response to send before handing the upgraded I/O to
//! [`guard_upgraded`](super::guard_upgraded), or a typed refusal with the HTTP status
//! RFC 6455 §4.2.2 calls for.

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::http::header::{
    ALLOW, CONNECTION, CONTENT_TYPE, HeaderMap, HeaderValue, SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use async_tungstenite::tungstenite::http::{Method, Request, Response, StatusCode, Version};

/// The most of an unsupported `Sec-WebSocket-Version` a refusal repeats, in characters.
const MAX_VERSION_SHOWN: usize = 32;

/// Why a request cannot be upgraded, and the HTTP status that says so
/// ([`status`](Self::status)): 426 Upgrade Required when the request is not a WebSocket
/// upgrade of version 13 (the response names the version this server speaks), 405 Method
/// Not Allowed (with `Allow: GET`) for a method other than `GET`, 400 Bad Request when it
/// is one but malformed. The accept helpers answer with the same refusals.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeRefusal {
    /// The request's method is not `GET` (400).
    #[error("a websocket upgrade must be a GET, not {0}")]
    Method(Method),
    /// The request is not HTTP/1.1 (400): HTTP/1.0 has no upgrade, and HTTP/2 and 3
    /// upgrade with extended CONNECT, which this helper does not answer.
    #[error("a websocket upgrade must be HTTP/1.1, not {0:?}")]
    HttpVersion(Version),
    /// No `Upgrade: websocket` header: not a WebSocket request at all (426).
    #[error("not a websocket upgrade: no `upgrade: websocket` header")]
    NotWebSocket,
    /// `Upgrade: websocket` without `Connection: upgrade` (400).
    #[error("a websocket upgrade without `connection: upgrade`")]
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Version` is missing (`None`), repeated or not 13 (what the client
    /// sent, at most 32 characters) (426, with `Sec-WebSocket-Version: 13`).
    #[error("unsupported websocket version {0:?} (13 is supported)")]
    Version(Option<String>),
    /// `Sec-WebSocket-Key` is missing, repeated, or not 16 bytes in base64 (400).
    #[error("missing or malformed sec-websocket-key")]
    Key,
}

impl UpgradeRefusal {
    /// The HTTP status to answer with: 426 for [`NotWebSocket`](Self::NotWebSocket) and
    /// [`Version`](Self::Version), 400 for the rest.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            UpgradeRefusal::NotWebSocket | UpgradeRefusal::Version(_) => {
                StatusCode::UPGRADE_REQUIRED
            }
            UpgradeRefusal::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// Why, in a few fixed words (for logs and [`AcceptError`](super::AcceptError)).
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            UpgradeRefusal::Method(_) => "not a GET",
            UpgradeRefusal::HttpVersion(_) => "not HTTP/1.1",
            UpgradeRefusal::NotWebSocket => "not a websocket upgrade",
            UpgradeRefusal::NoConnectionUpgrade => "no `connection: upgrade`",
            UpgradeRefusal::Version(_) => "websocket version 13 required",
            UpgradeRefusal::Key => "missing or malformed sec-websocket-key",
        }
    }

    /// The whole refusal: [`status`](Self::status), a plain-text body saying why, and for
    /// a 426 the headers RFC 9110 §15.5.22 and RFC 6455 §4.4 ask for (`Upgrade:
    /// websocket`, `Connection: Upgrade`, `Sec-WebSocket-Version: 13`). Map the body into
    /// the server's body type (`response.map(axum::body::Body::from)`). A 405 carries `Allow: GET`.
    #[must_use]
    pub fn response(&self) -> Response<String> {
        let mut response = Response::new(format!("{self}\n"));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.status() == StatusCode::UPGRADE_REQUIRED {
            headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
            headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
        if self.status() == StatusCode::METHOD_NOT_ALLOWED {
            headers.insert(ALLOW, HeaderValue::from_static("GET"));
        }
        response
    }
}

/// Checks that `request` is a WebSocket upgrade this server can accept and returns the
/// `101 Switching Protocols` response to answer it with (`Upgrade: websocket`,
/// `Connection: Upgrade` and `Sec-WebSocket-Accept` derived from the client's key). Send
/// it, then hand the upgraded I/O to [`guard_upgraded`](super::guard_upgraded).
///
/// The response chooses no subprotocol and no extension. To speak a subprotocol the
/// client offered in `Sec-WebSocket-Protocol`, add that header (one of the offered
/// values) to the response.
///
/// # Errors
///
/// An [`UpgradeRefusal`]: answer with its [`response`](UpgradeRefusal::response).
///
/// # Example
///
/// ```
/// use tether_driver::server::{UpgradeRefusal, http, upgrade_response};
///
/// let request = http::Request::get("/ws")
///     .header("host", "example.com")
///     .header("upgrade", "websocket")
///     .header("connection", "keep-alive, Upgrade")
///     .header("sec-websocket-version", "13")
///     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
///     .body(())?;
/// let response = upgrade_response(&request)?;
/// assert_eq!(response.status(), http::StatusCode::SWITCHING_PROTOCOLS);
/// assert_eq!(response.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
///
/// // A plain page request is told to upgrade.
/// let page = http::Request::get("/ws").body(())?;
/// let refusal = upgrade_response(&page).unwrap_err();
/// assert_eq!(refusal, UpgradeRefusal::NotWebSocket);
/// assert_eq!(refusal.response().status(), http::StatusCode::UPGRADE_REQUIRED);
/// assert_eq!(refusal.response().headers()["sec-websocket-version"], "13");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn upgrade_response<B>(request: &Request<B>) -> Result<Response<()>, UpgradeRefusal> {
    if request.version() != Version::HTTP_11 {
        return Err(UpgradeRefusal::HttpVersion(request.version()));
    }
    let headers = upgrade_headers(request.method(), request.headers())?;
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = headers;
    Ok(response)
}

/// [`upgrade_response`] for servers that hand over the method and headers rather than the
/// request (the HTTP version is then the caller's to check): the `101` response's
/// headers.
///
/// # Errors
///
/// As for [`upgrade_response`], but never [`UpgradeRefusal::HttpVersion`].
pub fn upgrade_headers(method: &Method, headers: &HeaderMap) -> Result<HeaderMap, UpgradeRefusal> {
    if !has_token(headers, &UPGRADE, "websocket") {
        return Err(UpgradeRefusal::NotWebSocket);
    }
    if method != Method::GET {
        return Err(UpgradeRefusal::Method(method.clone()));
    }
    if !has_token(headers, &CONNECTION, "upgrade") {
        return Err(UpgradeRefusal::NoConnectionUpgrade);
    }
    let versions = headers.get_all(SEC_WEBSOCKET_VERSION);
    let mut iter = versions.iter();
    match (iter.next(), iter.next()) {
        (Some(v), None) if v.as_bytes() == b"13" => {}
        (None, _) => return Err(UpgradeRefusal::Version(None)),
        _ => {
            // What the client asked for, as it said it (all of it if repeated), cut short:
            // the refusal's body repeats it.
            let asked: Vec<_> = versions
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            let asked = asked.join(", ").chars().take(MAX_VERSION_SHOWN).collect();
            return Err(UpgradeRefusal::Version(Some(asked)));
        }
    }
    let mut keys = headers.get_all(SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) if is_valid_key(key) => key,
        _ => return Err(UpgradeRefusal::Key),
    };
    let mut out = HeaderMap::with_capacity(3);
    out.insert(UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .expect("base64 is always a valid header value");
    out.insert(SEC_WEBSOCKET_ACCEPT, accept);
    Ok(out)
}

/// Whether any of the `name` headers lists `token` (case-insensitive), in a
/// comma-separated list such as `Connection: keep-alive, Upgrade`.
fn has_token(
    headers: &HeaderMap,
    name: &async_tungstenite::tungstenite::http::HeaderName,
    token: &str,
) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// RFC 6455 §4.1: the key is a base64-encoded 16-byte nonce.
fn is_valid_key(key: &HeaderValue) -> bool {
    key.len() == 24
        && data_encoding::BASE64
            .decode(key.as_bytes())
            .is_ok_and(|nonce| nonce.len() == 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn upgrade() -> async_tungstenite::tungstenite::http::request::Builder {
        Request::get("/ws")
            .header("host", "127.0.0.1")
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", KEY)
    }

    fn refusal(request: Request<()>) -> UpgradeRefusal {
        upgrade_response(&request).expect_err("refused")
    }

    #[test]
    fn answers_the_rfc_example_with_its_accept_key() {
        let response = upgrade_response(&upgrade().body(()).unwrap()).unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        let h = response.headers();
        // RFC 6455 §1.3's worked example.
        assert_eq!(h[SEC_WEBSOCKET_ACCEPT], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(h[UPGRADE], "websocket");
        assert_eq!(h[CONNECTION], "Upgrade");
        assert_eq!(h.len(), 3, "no subprotocol, no extension: {h:?}");
    }

    #[test]
    fn tokens_are_matched_in_lists_and_across_lines_whatever_their_case() {
        let request = Request::get("/")
            .header("Upgrade", "WebSocket")
            .header("Connection", "keep-alive")
            .header("Connection", "  UPGRADE ")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", KEY)
            .body(())
            .unwrap();
        assert!(upgrade_response(&request).is_ok());
        let list = Request::get("/")
            .header("upgrade", "h2c, websocket")
            .header("connection", "keep-alive, Upgrade")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", KEY)
            .body(())
            .unwrap();
        assert!(upgrade_response(&list).is_ok());
    }

    #[test]
    fn a_request_that_is_not_an_upgrade_is_told_to_upgrade() {
        let page = Request::get("/ws").body(()).unwrap();
        let r = refusal(page);
        assert_eq!(r, UpgradeRefusal::NotWebSocket);
        let response = r.response();
        assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(response.headers()[UPGRADE], "websocket");
        assert_eq!(response.headers()[SEC_WEBSOCKET_VERSION], "13");
        assert!(response.body().contains("not a websocket upgrade"));
        let h2c = Request::get("/ws")
            .header("upgrade", "h2c")
            .header("connection", "Upgrade")
            .body(())
            .unwrap();
        assert_eq!(refusal(h2c), UpgradeRefusal::NotWebSocket);
    }

    #[test]
    fn another_version_is_told_which_one_is_spoken() {
        let old = upgrade()
            .header("sec-websocket-version", "8")
            .body(())
            .unwrap();
        // `header` appends: 13 and 8 together are not one version either.
        assert_eq!(refusal(old), UpgradeRefusal::Version(Some("13, 8".into())));
        let mut long = upgrade().body(()).unwrap();
        long.headers_mut().insert(
            SEC_WEBSOCKET_VERSION,
            HeaderValue::from_str(&"9".repeat(1000)).unwrap(),
        );
        assert_eq!(refusal(long), UpgradeRefusal::Version(Some("9".repeat(32))));
        let mut eight = upgrade().body(()).unwrap();
        eight
            .headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        let r = refusal(eight);
        assert_eq!(r, UpgradeRefusal::Version(Some("8".into())));
        assert_eq!(r.response().status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(r.response().headers()[SEC_WEBSOCKET_VERSION], "13");
        let mut none = upgrade().body(()).unwrap();
        none.headers_mut().remove(SEC_WEBSOCKET_VERSION);
        assert_eq!(refusal(none), UpgradeRefusal::Version(None));
    }

    #[test]
    fn a_malformed_upgrade_is_a_bad_request() {
        let post = upgrade().method(Method::POST).body(()).unwrap();
        assert_eq!(refusal(post), UpgradeRefusal::Method(Method::POST));
        let mut http10 = upgrade().body(()).unwrap();
        *http10.version_mut() = Version::HTTP_10;
        assert_eq!(
            refusal(http10),
            UpgradeRefusal::HttpVersion(Version::HTTP_10)
        );
        let mut no_connection = upgrade().body(()).unwrap();
        no_connection
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("keep-alive"));
        assert_eq!(refusal(no_connection), UpgradeRefusal::NoConnectionUpgrade);
        for key in [
            None,
            Some("short"),
            Some("dGhlIHNhbXBsZSBub25jZQ"),
            Some("!!!!!!!!!!!!!!!!!!!!!!=="),
        ] {
            let mut bad = upgrade().body(()).unwrap();
            bad.headers_mut().remove(SEC_WEBSOCKET_KEY);
            if let Some(k) = key {
                bad.headers_mut()
                    .insert(SEC_WEBSOCKET_KEY, HeaderValue::from_static(k));
            }
            assert_eq!(refusal(bad), UpgradeRefusal::Key, "{key:?}");
        }
        let two_keys = upgrade().header("sec-websocket-key", KEY).body(()).unwrap();
        assert_eq!(refusal(two_keys), UpgradeRefusal::Key);
        let post = UpgradeRefusal::Method(Method::POST).response();
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[ALLOW], "GET");
        for r in [
            UpgradeRefusal::HttpVersion(Version::HTTP_10),
            UpgradeRefusal::NoConnectionUpgrade,
            UpgradeRefusal::Key,
        ] {
            let response = r.response();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{r}");
            assert!(response.headers().get(SEC_WEBSOCKET_VERSION).is_none());
        }
    }

    #[test]
    fn the_headers_alone_can_be_checked() {
        let request = upgrade().body(()).unwrap();
        let headers = upgrade_headers(request.method(), request.headers()).unwrap();
        assert_eq!(
            headers[SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
