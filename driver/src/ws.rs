//! A [`Transport`] over async-tungstenite: any byte stream a [`Dial`] opens (TCP from tokio
//! or smol), optionally tunneled through an HTTP proxy and wrapped in TLS, upgraded to a
//! WebSocket.

use std::io;
use std::sync::Arc;

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::handshake::client::Request;
use async_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Uri};
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use futures::io::{AsyncRead, AsyncWrite};
use tether_core::{ConnId, TransportFailure};

use crate::proxy::{Prefixed, Proxy, tunnel};
use crate::reset::Resettable;
use crate::sniff::Sniffed;
#[cfg(feature = "rustls")]
use crate::tls::Tls;
use crate::transport::{Link, Transport};
use crate::ws_link::{codec_config, into_link};

/// Opens byte streams: the one thing a runtime adapter must supply for WebSockets.
#[async_trait::async_trait]
pub trait Dial: Send + Sync + 'static {
    /// The byte stream.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Opens a TCP connection to `host:port` (with the socket options the adapter sets).
    async fn dial(&self, host: &str, port: u16) -> io::Result<Self::Io>;

    /// Sets `SO_LINGER` 0 on `io`'s TCP socket ([`linger_zero`](crate::linger_zero)), so
    /// that dropping it right after resets the connection: called when the session
    /// aborts a connection it gave up on. The default does nothing (an aborted
    /// connection then closes gracefully).
    fn linger_zero(io: &Self::Io) {
        let _ = io;
    }
}

/// Why a URL was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlError(pub String);

impl std::fmt::Display for UrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid url: {}", self.0)
    }
}

impl std::error::Error for UrlError {}

/// Why a header or a subprotocol given to [`WsTransport`] (or the builder) was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderError(pub String);

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HeaderError {}

/// Computes the upgrade request's headers for one connection attempt (see
/// [`WsTransport::headers_with`]).
pub type HeaderFn = dyn Fn(ConnId) -> Vec<(String, String)> + Send + Sync;

/// The codec's inbound limit until [`Transport::set_inbound_limits`] sets the session's:
/// [`Config`](tether_core::Config)'s default `max_inbound_frame`.
const DEFAULT_MAX_INBOUND: usize = 16 << 20;

/// A WebSocket client transport over `D`'s byte streams.
pub struct WsTransport<D> {
    dial: D,
    /// The URL, parsed. Each attempt builds its upgrade request from it afresh rather
    /// than cloning a template: a whole `http::Request` held its standard headers in a
    /// `HeaderMap` of 624 bytes, plus blocks for their values, for every idle session.
    uri: Uri,
    /// The fixed headers of [`header`](Self::header), in order, one per name.
    headers: Vec<(HeaderName, HeaderValue)>,
    host: String,
    port: u16,
    tls: bool,
    config: WebSocketConfig,
    /// The session's limits, once `Client::start` has set them.
    limits: Option<crate::InboundLimits>,
    /// Offered in every upgrade, in order of preference.
    subprotocols: Vec<String>,
    /// Headers computed afresh for each attempt.
    headers_with: Option<Arc<HeaderFn>>,
    /// The HTTP proxy to tunnel through, if any.
    proxy: Option<Proxy>,
    #[cfg(feature = "rustls")]
    tls_options: Tls,
}

impl<D: Dial> WsTransport<D> {
    /// A transport to `url` (`ws://` or, with the `rustls` feature, `wss://`).
    ///
    /// # Errors
    ///
    /// A [`UrlError`] for a URL that is not a WebSocket URL with a host.
    pub fn new(dial: D, url: &str) -> Result<Self, UrlError> {
        // The request is made here only to check the URL as each attempt will.
        let uri = url
            .into_client_request()
            .map_err(|e| UrlError(format!("{}: {e}", redact(url))))?
            .into_parts()
            .0
            .uri;
        let tls = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") if cfg!(feature = "rustls") => true,
            Some("wss") => {
                return Err(UrlError(
                    "wss:// needs TLS: enable the `rustls` feature of tether-tokio or tether-smol"
                        .into(),
                ));
            }
            _ => return Err(UrlError(format!("{} is not ws:// or wss://", redact(url)))),
        };
        let host = uri
            .host()
            .ok_or_else(|| UrlError(format!("{} has no host", redact(url))))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        // `http::Uri` reports a port that does not fit a u16 as no port at all: read it from
        // the authority, so it is an error, not the scheme's default (a mistyped port
        // would dial another service).
        let port = match authority_port(uri.authority().map_or("", |a| a.as_str())) {
            None => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(UrlError(format!(
                        "{} has an invalid port (1 to 65535)",
                        redact(url)
                    )));
                }
            },
        };
        // `Client::start` sets the session's `max_inbound_frame` through
        // `Transport::set_inbound_limits`; until then, `Config`'s default.
        let config = codec_config(DEFAULT_MAX_INBOUND);
        Ok(WsTransport {
            dial,
            uri,
            headers: Vec::new(),
            host,
            port,
            tls,
            config,
            limits: None,
            subprotocols: Vec::new(),
            headers_with: None,
            proxy: None,
            #[cfg(feature = "rustls")]
            tls_options: Tls::default(),
        })
    }

    /// The TLS options of `wss://` connections: what they trust, client certificates
    /// ([`Tls::webpki_roots`] by default). Without effect on `ws://`.
    #[cfg(feature = "rustls")]
    #[must_use]
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls_options = tls;
        self
    }

    /// Connects through an HTTP proxy with `CONNECT` (none by default: direct). TLS and the
    /// WebSocket upgrade run through the tunnel, end to end with the server.
    /// [`Proxy::from_env`] reads the usual `HTTPS_PROXY` / `NO_PROXY` variables.
    #[must_use]
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// Adds a header to the upgrade request (an `Authorization`, an `Origin`); a later
    /// header of the same name replaces an earlier one.
    ///
    /// # Errors
    ///
    /// A [`HeaderError`] naming the invalid header.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, HeaderError> {
        let (n, v) = parse_header(name, value)?;
        match self.headers.iter_mut().find(|(name, _)| *name == n) {
            // In its place: the request gets the headers in the order first given.
            Some((_, old)) => *old = v,
            None => self.headers.push((n, v)),
        }
        Ok(self)
    }

    /// Computes headers for each connection attempt, added to the upgrade request after
    /// (and over) those of [`header`](Self::header): a bearer token refreshed on every
    /// reconnect. `f` gets the attempt's connection id and runs on the session's task, so
    /// it should not block. An invalid name or value fails that attempt (an I/O failure,
    /// retried with backoff) and is logged.
    #[must_use]
    pub fn headers_with(
        mut self,
        f: impl Fn(ConnId) -> Vec<(String, String)> + Send + Sync + 'static,
    ) -> Self {
        self.headers_with = Some(Arc::new(f));
        self
    }

    /// Offers `subprotocols` (most preferred first) in every upgrade. The server may select
    /// one of them or none (RFC 6455 §4.1); one it selects that was not offered fails the
    /// attempt. The selected one is reported on every open
    /// ([`Client::subprotocol`](crate::Client::subprotocol)).
    ///
    /// # Errors
    ///
    /// A [`HeaderError`] for a name that is not an HTTP token.
    pub fn subprotocols<I, S>(mut self, subprotocols: I) -> Result<Self, HeaderError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let list: Vec<String> = subprotocols.into_iter().map(Into::into).collect();
        if let Some(bad) = list.iter().find(|p| !crate::upgrade::is_token(p)) {
            return Err(HeaderError(format!(
                "subprotocol {bad:?} is not a valid token"
            )));
        }
        self.subprotocols = list;
        Ok(self)
    }

    /// Where this transport connects: `host:port` (an IPv6 host in brackets).
    pub fn target(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL without credentials or query (safe to log).
    pub fn redacted_url(&self) -> String {
        redact(&self.uri.to_string())
    }
}

/// The port text of an authority (`user@host:port`, `[v6]:port`), if it has one; an empty
/// port (`host:`) is none, as RFC 3986 says.
fn authority_port(authority: &str) -> Option<&str> {
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let after_host = match host_port.rfind(']') {
        Some(i) => &host_port[i + 1..],
        None => host_port,
    };
    after_host
        .rsplit_once(':')
        .map(|(_, port)| port)
        .filter(|p| !p.is_empty())
}

/// A URL without user info, query or fragment: what logs may show.
///
/// User info ends at the *last* `@`, because a password may hold `/`, `?`, `#` or `@`
/// unencoded: nothing before that `@` is ever shown. The host then runs to the first `/`,
/// `?` or `#`, and the path to the first `?` or `#`. A URL whose path or query holds an `@`
/// is therefore shown as if the `@` ended user info: less of it is logged, never more.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let after = rest.rfind('@').map_or(rest, |at| &rest[at + 1..]);
    let host_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (host, tail) = after.split_at(host_end);
    let path = &tail[..tail.find(['?', '#']).unwrap_or(tail.len())];
    match scheme {
        Some(scheme) => format!("{scheme}://{host}{path}"),
        None => format!("{host}{path}"),
    }
}

/// A header name and value, checked.
fn parse_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), HeaderError> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| HeaderError(format!("invalid header name {name:?}")))?;
    // The value is not shown: it may be a credential.
    let v = HeaderValue::from_str(value)
        .map_err(|_| HeaderError(format!("invalid value for header {name}")))?;
    Ok((n, v))
}

pub(crate) fn io_failure(e: &io::Error) -> TransportFailure {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => TransportFailure::Refused,
        // std reports resolver failures as `Other`/`NotFound` with this wording.
        _ if e.to_string().contains("lookup") || e.to_string().contains("resolve") => {
            TransportFailure::Dns
        }
        _ => TransportFailure::Io(e.to_string()),
    }
}

/// The seconds of a `Retry-After` header in its delay form. A number too large for `u64`
/// is still a delay (an absurd one): it reads as `u64::MAX` seconds, which the session's
/// `BackoffConfig::max_floor` caps like any other long floor. The HTTP-date form is not
/// read.
pub(crate) fn retry_after_secs(v: &str) -> Option<u64> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u64>().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod retry_after_tests {
    use super::retry_after_secs;

    #[test]
    fn a_huge_retry_after_is_the_longest_delay_not_none() {
        assert_eq!(retry_after_secs(" 120 "), Some(120));
        assert_eq!(retry_after_secs("18446744073709551615"), Some(u64::MAX));
        assert_eq!(retry_after_secs("99999999999999999999999"), Some(u64::MAX));
        assert_eq!(retry_after_secs("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after_secs("-5"), None);
        assert_eq!(retry_after_secs(""), None);
    }
}

/// A plain or TLS byte stream.
pub(crate) enum MaybeTls<S> {
    Plain(S),
    #[cfg(feature = "rustls")]
    Tls(Box<futures_rustls::client::TlsStream<S>>),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            MaybeTls::Plain($s) => $e,
            #[cfg(feature = "rustls")]
            MaybeTls::Tls($s) => $e,
        }
    };
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<io::Result<usize>> {
        delegate!(self, s => std::pin::Pin::new(s).poll_read(cx, buf))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        delegate!(self, s => std::pin::Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        delegate!(self, s => std::pin::Pin::new(s).poll_flush(cx))
    }
    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        delegate!(self, s => std::pin::Pin::new(s).poll_close(cx))
    }
}

impl<D: Dial> WsTransport<D> {
    /// The upgrade request of an attempt, before its computed headers: the URL's (`Host`,
    /// `Upgrade` and the rest), then the fixed headers over them.
    fn request(&self) -> Result<Request, TransportFailure> {
        // The same URL made a request in `new`, so this does not fail; an error is
        // reported rather than assumed away all the same.
        let mut request = (&self.uri)
            .into_client_request()
            .map_err(|e| TransportFailure::Io(e.to_string()))?;
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        Ok(request)
    }

    /// Opens the byte stream the WebSocket upgrade runs on: dials the server (or the
    /// proxy, and asks it for a tunnel to the server), then TLS for `wss://`. Also returns
    /// the handle that resets the TCP socket.
    async fn open_stream(
        &self,
        conn: ConnId,
    ) -> Result<(MaybeTls<Prefixed<Resettable<D::Io>>>, Option<crate::Reset>), TransportFailure>
    {
        let (io, reset) = match &self.proxy {
            None => {
                tracing::debug!(%conn, url = %self.redacted_url(), "dialing");
                let io = self
                    .dial
                    .dial(&self.host, self.port)
                    .await
                    .map_err(|e| io_failure(&e))?;
                let (io, reset) = Resettable::new(io, D::linger_zero);
                (Prefixed::new(Vec::new(), io), Some(reset))
            }
            Some(proxy) => {
                // `proxy` displays as host and port only: never its credentials.
                tracing::debug!(%conn, url = %self.redacted_url(), %proxy, "dialing through proxy");
                let io = self
                    .dial
                    .dial(proxy.host(), proxy.port())
                    .await
                    .map_err(|e| io_failure(&e))?;
                let (io, reset) = Resettable::new(io, D::linger_zero);
                (tunnel(io, proxy, &self.host, self.port).await?, Some(reset))
            }
        };
        if !self.tls {
            return Ok((MaybeTls::Plain(io), reset));
        }
        #[cfg(feature = "rustls")]
        {
            let name = futures_rustls::rustls::pki_types::ServerName::try_from(self.host.clone())
                .map_err(|e| TransportFailure::Tls(format!("invalid server name: {e}")))?;
            let tls = futures_rustls::TlsConnector::from(self.tls_options.client_config().clone())
                .connect(name, io)
                .await
                .map_err(|e| crate::tls::handshake_failure(&e, &self.host))?;
            Ok((MaybeTls::Tls(Box::new(tls)), reset))
        }
        #[cfg(not(feature = "rustls"))]
        {
            Err(TransportFailure::Tls(
                "built without the rustls feature".into(),
            ))
        }
    }
}

#[async_trait::async_trait]
impl<D: Dial> Transport for WsTransport<D> {
    async fn connect(&self, conn: ConnId) -> Result<Link, TransportFailure> {
        let (io, reset) = self.open_stream(conn).await?;
        let mut request = self.request()?;
        if let Some(f) = &self.headers_with {
            for (name, value) in f(conn) {
                let (n, v) = parse_header(&name, &value).map_err(|e| {
                    tracing::warn!(%conn, error = %e, "computed header refused");
                    TransportFailure::Io(e.0)
                })?;
                request.headers_mut().insert(n, v);
            }
        }
        let up =
            crate::upgrade::upgrade(Sniffed::new(io), request, &self.subprotocols, self.config)
                .await?;
        if let Some(p) = &up.subprotocol {
            tracing::debug!(%conn, subprotocol = %p, "subprotocol selected");
        }
        Ok(into_link(up.ws, reset, self.limits.clone(), up.subprotocol))
    }

    fn set_inbound_limits(&mut self, limits: crate::InboundLimits) {
        self.config = codec_config(limits.max_message);
        self.limits = Some(limits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_drops_credentials_query_and_fragment() {
        assert_eq!(
            redact("wss://user:secret@example.com:8443/ws?token=abc#x"),
            "wss://example.com:8443/ws"
        );
        assert_eq!(redact("ws://127.0.0.1:9000"), "ws://127.0.0.1:9000");
        assert_eq!(redact("ws://h/p?q"), "ws://h/p");
    }

    /// R1: passwords holding the characters that end an authority, a path or a query.
    #[test]
    fn redaction_drops_user_info_whatever_the_password_holds() {
        let cases = [
            ("wss://user:pa#ss@example.com/ws", "wss://example.com/ws"),
            ("ws://user:p/ss@example.com/ws", "ws://example.com/ws"),
            ("ws://user:p?ss@example.com/ws", "ws://example.com/ws"),
            ("ws://user:p@ss@example.com/ws", "ws://example.com/ws"),
            (
                "ws://user:a/b?c#d@e@example.com:9/x/y?q#f",
                "ws://example.com:9/x/y",
            ),
            ("ws://user:pw@example.com", "ws://example.com"),
            ("ws://token@example.com/ws", "ws://example.com/ws"),
            ("ws://user:pw@[::1]:9000/ws#frag", "ws://[::1]:9000/ws"),
            ("ws://h/p#frag", "ws://h/p"),
            ("ws://h?token=t", "ws://h"),
            ("wss://user:pa#ss@example.com", "wss://example.com"),
            ("user:pw@host/p?q", "host/p"),
            ("", ""),
        ];
        for (url, want) in cases {
            assert_eq!(redact(url), want, "{url}");
            for secret in ["pa#ss", "p/ss", "p?ss", "p@ss", "pw", "token"] {
                if url.contains(&format!("{secret}@")) {
                    assert!(!redact(url).contains(secret), "{url} leaks {secret}");
                }
            }
        }
    }

    struct NoDial;

    #[async_trait::async_trait]
    impl Dial for NoDial {
        type Io = futures::io::Cursor<Vec<u8>>;
        async fn dial(&self, _host: &str, _port: u16) -> io::Result<Self::Io> {
            Err(io::ErrorKind::Unsupported.into())
        }
    }

    /// Without TLS support, `wss://` is refused with the feature to enable named (the
    /// workspace's tests build with `rustls`; `scripts/test.sh` also runs the driver's
    /// tests without it).
    #[cfg(not(feature = "rustls"))]
    #[test]
    fn wss_without_tls_names_the_feature() {
        let err = WsTransport::new(NoDial, "wss://example.com/")
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "invalid url: wss:// needs TLS: enable the `rustls` feature of tether-tokio or \
             tether-smol"
        );
    }

    /// Each attempt's request is the URL's, with the fixed headers over its own in the
    /// order first given, a name given again replaced in its place.
    #[test]
    fn fixed_headers_go_over_the_urls_in_the_order_first_given() {
        let t = WsTransport::new(NoDial, "ws://u:pw@example.com:9000/ws?x=1")
            .and_then(|t| t.header("x-a", "1").map_err(|e| UrlError(e.0)))
            .and_then(|t| t.header("Host", "other").map_err(|e| UrlError(e.0)))
            .and_then(|t| t.header("X-A", "2").map_err(|e| UrlError(e.0)))
            .unwrap();
        let request = t.request().unwrap();
        assert_eq!(request.uri(), "ws://u:pw@example.com:9000/ws?x=1");
        let names: Vec<&str> = request.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "host",
                "connection",
                "upgrade",
                "sec-websocket-version",
                "sec-websocket-key",
                "x-a"
            ]
        );
        assert_eq!(request.headers()["host"], "other");
        assert_eq!(request.headers()["x-a"], "2");
        assert_eq!(request.headers()["upgrade"], "websocket");
        assert_eq!(t.redacted_url(), "ws://example.com:9000/ws");
    }

    /// Friction 1: a port that is not 1..=65535 is an error, never the default port.
    #[test]
    fn an_out_of_range_port_is_refused() {
        for url in [
            "ws://127.0.0.1:99999/",
            "ws://127.0.0.1:65536/",
            "ws://127.0.0.1:0/",
            "ws://example.com:80x/",
            "ws://user:p/ss@example.com/ws",
        ] {
            let err = WsTransport::new(NoDial, url).err();
            assert!(err.is_some(), "{url} accepted");
        }
        let t = WsTransport::new(NoDial, "ws://127.0.0.1:65535/").unwrap();
        assert_eq!(t.port, 65535);
        let t = WsTransport::new(NoDial, "ws://127.0.0.1/").unwrap();
        assert_eq!(t.port, 80);
        let err = WsTransport::new(NoDial, "ws://u:secret@127.0.0.1:99999/").err();
        assert!(
            err.is_some_and(|e| !e.0.contains("secret")),
            "the error names the URL redacted"
        );
    }
}
