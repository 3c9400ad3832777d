//! HTTP `CONNECT` proxies: the connection is dialed to the proxy, which is asked to open a
//! tunnel to the server; TLS (for `wss://`) and the WebSocket upgrade then run through the
//! tunnel, end to end with the server.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_tungstenite::tungstenite::client::IntoClientRequest;
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tether_core::TransportFailure;

use crate::ws::{UrlError, io_failure, redact, retry_after_secs};

/// The most bytes a proxy's answer to `CONNECT` may take up to the end of its head; a
/// longer head fails the attempt rather than growing a buffer without bound.
pub const MAX_CONNECT_HEAD: usize = 16 * 1024;

/// An HTTP proxy that tunnels connections with `CONNECT` (RFC 9110 §9.3.6), with optional
/// basic authentication.
///
/// ```
/// use tether_driver::Proxy;
///
/// # fn run() -> Result<(), tether_driver::UrlError> {
/// // Credentials in the URL (percent-encoded) or from `basic_auth`.
/// let proxy = Proxy::http("http://alice:s3cret@proxy.internal:3128")?;
/// let same = Proxy::http("http://proxy.internal:3128")?.basic_auth("alice", "s3cret");
/// assert_eq!(proxy, same);
/// // Never shows the credentials.
/// assert_eq!(proxy.to_string(), "http://proxy.internal:3128");
///
/// // From HTTPS_PROXY / ALL_PROXY, unless NO_PROXY names the host: `None` means direct.
/// let from_env: Option<Proxy> = Proxy::from_env("wss://api.example.com/ws")?;
/// // WsTransport::new(dial, url)?.proxy(proxy)
/// # let _ = from_env; Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    host: String,
    port: u16,
    /// The `Proxy-Authorization` value (`Basic …`), if any.
    authorization: Option<String>,
}

impl Proxy {
    /// A proxy at `url`: `http://host:port`, `http://user:password@host:port` (the user
    /// info percent-decoded and sent as basic authentication), or `host:port` without a
    /// scheme. The port defaults to 80; a path is ignored.
    ///
    /// # Errors
    ///
    /// A [`UrlError`] (naming the URL without its credentials) for a scheme other than
    /// `http`, a missing host, a port that is not 1 to 65535, or user info that does not
    /// decode to UTF-8.
    pub fn http(url: &str) -> Result<Proxy, UrlError> {
        let bad = |why: &str| UrlError(format!("proxy {}: {why}", redact(url)));
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(bad(&format!(
                    "scheme {scheme}:// is not supported (only http://)"
                )));
            }
            None => url,
        };
        let (user_info, after) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let authority = &after[..after.find(['/', '?', '#']).unwrap_or(after.len())];
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("invalid port"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let mut proxy = Proxy {
            host: host.to_ascii_lowercase(),
            port: port.unwrap_or(80),
            authorization: None,
        };
        if let Some(info) = user_info {
            let (user, password) = info.split_once(':').unwrap_or((info, ""));
            let user = percent_decode(user).ok_or_else(|| bad("user info is not UTF-8"))?;
            let password = percent_decode(password).ok_or_else(|| bad("user info is not UTF-8"))?;
            proxy = proxy.basic_auth(&user, &password);
        }
        Ok(proxy)
    }

    /// Sends `Proxy-Authorization: Basic …` with `user` and `password` (replacing any
    /// credentials from the URL).
    #[must_use]
    pub fn basic_auth(mut self, user: &str, password: &str) -> Proxy {
        let token = data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes());
        self.authorization = Some(format!("Basic {token}"));
        self
    }

    /// The proxy for `target_url` from the environment, as curl reads it: for `wss://`
    /// `https_proxy` then `HTTPS_PROXY`, for `ws://` `http_proxy` then `HTTP_PROXY`, then
    /// `all_proxy` and `ALL_PROXY` for both (an empty variable counts as unset). `None`
    /// (connect directly) when none is set or when `no_proxy` / `NO_PROXY` names the
    /// target.
    ///
    /// `NO_PROXY` is a comma-separated list: `*` (every host), a domain (`example.com` or
    /// `.example.com`: that host and every host under it), an exact host or IP address
    /// (IPv6 with or without brackets), each optionally with `:port` to match that port
    /// only. Matching ignores case; CIDR ranges are not understood.
    ///
    /// # Errors
    ///
    /// A [`UrlError`] when `target_url` is not a WebSocket URL, or the variable that
    /// applies holds an invalid proxy URL ([`Proxy::http`]).
    pub fn from_env(target_url: &str) -> Result<Option<Proxy>, UrlError> {
        Proxy::from_env_with(target_url, |name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with variables looked up by `var` instead of the
    /// process environment (a configuration file, a test).
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_env_with(
        target_url: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Proxy>, UrlError> {
        let request = target_url
            .into_client_request()
            .map_err(|e| UrlError(format!("{}: {e}", redact(target_url))))?;
        let uri = request.uri();
        let (names, default_port) = match uri.scheme_str() {
            Some("wss") => (
                ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"],
                443,
            ),
            Some("ws") => (["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"], 80),
            _ => {
                return Err(UrlError(format!(
                    "{} is not ws:// or wss://",
                    redact(target_url)
                )));
            }
        };
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(default_port);
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let Some(proxy_url) = names.iter().find_map(|name| set(name)) else {
            return Ok(None);
        };
        if let Some(list) = set("no_proxy").or_else(|| set("NO_PROXY"))
            && no_proxy_matches(&list, host, port)
        {
            return Ok(None);
        }
        Proxy::http(proxy_url.trim()).map(Some)
    }

    /// The proxy's host name or address.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the proxy is sent credentials.
    #[must_use]
    pub fn has_credentials(&self) -> bool {
        self.authorization.is_some()
    }

    /// The `CONNECT` request for a tunnel to `host:port`.
    fn connect_request(&self, host: &str, port: u16) -> String {
        let target = authority(host, port);
        let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(auth) = &self.authorization {
            head.push_str("Proxy-Authorization: ");
            head.push_str(auth);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head
    }
}

/// `http://host:port`, without credentials.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", authority(&self.host, self.port))
    }
}

/// Shows host and port, never the credentials.
impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("basic_auth", &self.authorization.is_some())
            .finish()
    }
}

/// `host:port`, with an IPv6 address in brackets.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Host (brackets removed) and port of `host`, `host:port`, `[v6]`, `[v6]:port`; `None`
/// for a port that is not 1 to 65535.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok().filter(|n| *n != 0)?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// `%XX` decoded; `None` when the result is not UTF-8. A `%` not followed by two hex
/// digits is kept as it is.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            // Two hex digits make at most 0xFF: the cast cannot truncate.
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether the `NO_PROXY` list `list` names `host` (as the target URL has it) on `port`.
fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    list.split([',', ' ', '\t'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            // A bare IPv6 address holds several colons and no port.
            let (name, entry_port) = if !entry.starts_with('[') && entry.matches(':').count() > 1 {
                (entry, None)
            } else {
                match split_host_port(entry) {
                    Some(hp) => hp,
                    None => return false,
                }
            };
            if entry_port.is_some_and(|p| p != port) {
                return false;
            }
            let name = name
                .trim_start_matches('*')
                .trim_start_matches('.')
                .trim_end_matches('.')
                .to_ascii_lowercase();
            !name.is_empty()
                && (host == name
                    || host
                        .strip_suffix(name.as_str())
                        .is_some_and(|head| head.ends_with('.')))
        })
}

/// What a proxy's answer to `CONNECT` came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ConnectReply {
    /// The status code.
    pub(crate) status: u16,
    /// `Retry-After` in its delay form.
    pub(crate) retry_after: Option<Duration>,
    /// The length of the head, up to and including its blank line.
    pub(crate) head_len: usize,
}

/// Parses the head of a proxy's answer from the start of `buf`: `Ok(None)` while it is
/// incomplete (and shorter than [`MAX_CONNECT_HEAD`]), an I/O failure when it is malformed
/// or too long.
pub(crate) fn parse_connect_head(buf: &[u8]) -> Result<Option<ConnectReply>, TransportFailure> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) if head_len <= MAX_CONNECT_HEAD => {
            let status = response.code.unwrap_or_default();
            let retry_after = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("retry-after"))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .and_then(retry_after_secs)
                .map(Duration::from_secs);
            Ok(Some(ConnectReply {
                status,
                retry_after,
                head_len,
            }))
        }
        Ok(httparse::Status::Partial) if buf.len() < MAX_CONNECT_HEAD => Ok(None),
        Ok(_) => Err(TransportFailure::Io(format!(
            "the proxy's answer to CONNECT exceeds {MAX_CONNECT_HEAD} bytes"
        ))),
        Err(e) => Err(TransportFailure::Io(format!(
            "the proxy's answer to CONNECT is malformed: {e}"
        ))),
    }
}

/// Asks the proxy on `io` for a tunnel to `host:port` and reads its answer, never more
/// than [`MAX_CONNECT_HEAD`] bytes. On a 2xx the tunnel is open: the stream is returned
/// with whatever the proxy sent after its head, which belongs to the server.
pub(crate) async fn tunnel<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<Prefixed<S>, TransportFailure> {
    io.write_all(proxy.connect_request(host, port).as_bytes())
        .await
        .map_err(|e| io_failure(&e))?;
    io.flush().await.map_err(|e| io_failure(&e))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let reply = loop {
        if let Some(reply) = parse_connect_head(&buf)? {
            break reply;
        }
        // Never read past the bound: the head must end within it.
        let room = (MAX_CONNECT_HEAD - buf.len()).min(chunk.len());
        let n = io
            .read(&mut chunk[..room])
            .await
            .map_err(|e| io_failure(&e))?;
        if n == 0 {
            return Err(TransportFailure::Io(
                "the proxy closed the connection before answering CONNECT".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if !(200..300).contains(&reply.status) {
        return Err(TransportFailure::Proxy {
            status: reply.status,
            retry_after: reply.retry_after,
        });
    }
    buf.drain(..reply.head_len);
    Ok(Prefixed::new(buf, io))
}

/// A byte stream that first yields bytes already read from it.
pub(crate) struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let rest = &this.prefix[this.at..];
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn proxy_urls_parse_with_and_without_credentials() {
        let p = Proxy::http("http://127.0.0.1:3128").unwrap();
        assert_eq!(
            (p.host(), p.port(), p.has_credentials()),
            ("127.0.0.1", 3128, false)
        );
        let p = Proxy::http("proxy.internal").unwrap();
        assert_eq!((p.host(), p.port()), ("proxy.internal", 80));
        let p = Proxy::http("HTTP://[::1]:8080/").unwrap();
        assert_eq!((p.host(), p.port()), ("::1", 8080));
        assert_eq!(p.to_string(), "http://[::1]:8080");
        // Percent-decoded credentials, the password holding ':' and '@'.
        let p = Proxy::http("http://al%69ce:p%3Aw%40d@h:1").unwrap();
        assert_eq!(
            p,
            Proxy::http("http://h:1")
                .unwrap()
                .basic_auth("alice", "p:w@d")
        );
        assert_eq!(
            p.authorization.as_deref(),
            Some("Basic YWxpY2U6cDp3QGQ="),
            "base64 of alice:p:w@d"
        );
        let p = Proxy::http("http://user@h:1").unwrap();
        assert_eq!(p, Proxy::http("h:1").unwrap().basic_auth("user", ""));
    }

    #[test]
    fn bad_proxy_urls_are_refused_without_showing_credentials() {
        for url in [
            "https://u:secret@h:1",
            "socks5://u:secret@h:1080",
            "http://u:secret@h:0",
            "http://u:secret@h:65536",
            "http://u:secret@h:80x",
            "http://u:secret@:80",
            "http://u:%FF@h:1",
        ] {
            let err = Proxy::http(url).expect_err(url);
            assert!(!err.0.contains("secret"), "{url}: {err}");
            assert!(!err.0.contains("%FF"), "{url}: {err}");
        }
    }

    #[test]
    fn debug_and_display_never_show_credentials() {
        let p = Proxy::http("http://user:hunter2@h:1").unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
        assert!(!format!("{p:?}").contains("Basic"));
        assert_eq!(p.to_string(), "http://h:1");
    }

    #[test]
    fn from_env_picks_the_variable_for_the_scheme() {
        let vars = env(&[
            ("HTTPS_PROXY", "http://secure:1"),
            ("http_proxy", "http://plain:2"),
            ("HTTP_PROXY", "http://shadowed:3"),
        ]);
        let got = |url| {
            Proxy::from_env_with(url, &vars)
                .unwrap()
                .map(|p| p.to_string())
        };
        assert_eq!(
            got("wss://a.example/ws").as_deref(),
            Some("http://secure:1")
        );
        assert_eq!(got("ws://a.example/ws").as_deref(), Some("http://plain:2"));
        // ALL_PROXY when the scheme's own is unset or empty.
        let vars = env(&[("https_proxy", " "), ("ALL_PROXY", "all:4")]);
        let p = Proxy::from_env_with("wss://a.example", &vars).unwrap();
        assert_eq!(p.map(|p| p.to_string()).as_deref(), Some("http://all:4"));
        let p = Proxy::from_env_with("ws://a.example", &vars).unwrap();
        assert_eq!(p.map(|p| p.to_string()).as_deref(), Some("http://all:4"));
        // Nothing set: direct.
        assert_eq!(Proxy::from_env_with("ws://a.example", env(&[])), Ok(None));
        // A bad target or a bad proxy URL is an error.
        assert!(Proxy::from_env_with("http://a.example", env(&[])).is_err());
        let vars = env(&[("HTTPS_PROXY", "socks5://u:pw@h:1")]);
        assert!(Proxy::from_env_with("wss://a.example", &vars).is_err());
    }

    #[test]
    fn no_proxy_excludes_hosts_domains_and_ports() {
        let direct = |no_proxy: &str, url: &str| {
            let vars = env(&[("ALL_PROXY", "http://p:1"), ("NO_PROXY", no_proxy)]);
            Proxy::from_env_with(url, vars).unwrap().is_none()
        };
        assert!(direct("*", "wss://anything.example"));
        assert!(direct("example.com", "wss://example.com/ws"));
        assert!(direct("example.com", "wss://api.EXAMPLE.com/ws"));
        assert!(direct(".example.com", "wss://api.example.com/ws"));
        assert!(direct(".example.com", "wss://example.com/ws"));
        assert!(direct("*.example.com", "wss://a.b.example.com/ws"));
        assert!(!direct("example.com", "wss://notexample.com/ws"));
        assert!(!direct("example.com", "wss://example.com.evil/ws"));
        assert!(direct("foo, 127.0.0.1 ,bar", "ws://127.0.0.1:9000/"));
        assert!(!direct("127.0.0.1", "ws://127.0.0.10:9000/"));
        assert!(direct("::1", "ws://[::1]:9000/"));
        assert!(direct("[::1]:9000", "ws://[::1]:9000/"));
        assert!(!direct("[::1]:9001", "ws://[::1]:9000/"));
        assert!(direct("example.com:443", "wss://example.com/ws"));
        assert!(!direct("example.com:443", "ws://example.com/ws"));
        assert!(direct("example.com:8443", "wss://example.com:8443/ws"));
        assert!(!direct("", "wss://example.com/ws"));
        assert!(!direct(",,", "wss://example.com/ws"));
        // The lower-case name wins, as curl reads it.
        let vars = env(&[
            ("ALL_PROXY", "http://p:1"),
            ("no_proxy", "a.example"),
            ("NO_PROXY", "b.example"),
        ]);
        assert_eq!(Proxy::from_env_with("ws://a.example", &vars), Ok(None));
        assert!(
            Proxy::from_env_with("ws://b.example", &vars)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn the_connect_request_names_the_target_and_the_credentials() {
        let p = Proxy::http("http://u:pw@p:1").unwrap();
        assert_eq!(
            p.connect_request("example.com", 443),
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\
             Proxy-Authorization: Basic dTpwdw==\r\n\r\n"
        );
        let p = Proxy::http("http://p:1").unwrap();
        assert_eq!(
            p.connect_request("::1", 9000),
            "CONNECT [::1]:9000 HTTP/1.1\r\nHost: [::1]:9000\r\n\r\n"
        );
    }

    #[test]
    fn connect_heads_parse_statuses_and_retry_after() {
        let head = b"HTTP/1.1 200 Connection established\r\n\r\n";
        assert_eq!(
            parse_connect_head(head),
            Ok(Some(ConnectReply {
                status: 200,
                retry_after: None,
                head_len: head.len()
            }))
        );
        let head = b"HTTP/1.0 503 Unavailable\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n";
        let reply = parse_connect_head(head).unwrap().unwrap();
        assert_eq!(
            (reply.status, reply.retry_after),
            (503, Some(Duration::from_secs(7)))
        );
        // Incomplete: wait for more.
        assert_eq!(parse_connect_head(b""), Ok(None));
        assert_eq!(parse_connect_head(b"HTTP/1.1 20"), Ok(None));
        assert_eq!(
            parse_connect_head(b"HTTP/1.1 200 OK\r\nVia: x\r\n"),
            Ok(None)
        );
    }

    #[test]
    fn a_malformed_status_line_is_an_io_failure() {
        for head in [
            &b"HTTX/1.1 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 2x0 OK\r\n\r\n",
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"\x16\x03\x01\x02\x00",
        ] {
            match parse_connect_head(head) {
                Err(TransportFailure::Io(e)) => assert!(e.contains("malformed"), "{e}"),
                other => panic!("{head:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_head_over_the_bound_is_refused() {
        let mut head = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
        head.resize(MAX_CONNECT_HEAD, b'a');
        match parse_connect_head(&head) {
            Err(TransportFailure::Io(e)) => assert!(e.contains("exceeds 16384"), "{e}"),
            other => panic!("{other:?}"),
        }
        // A complete head that ends past the bound is refused too.
        head.extend_from_slice(b"\r\n\r\n");
        assert!(parse_connect_head(&head).is_err());
    }

    /// A stream that yields `input` in chunks of `chunk` bytes, counts what it yielded,
    /// and keeps what is written to it.
    struct Scripted {
        input: Vec<u8>,
        at: usize,
        chunk: usize,
        written: Vec<u8>,
    }

    impl Scripted {
        fn new(input: &[u8], chunk: usize) -> Self {
            Scripted {
                input: input.to_vec(),
                at: 0,
                chunk,
                written: Vec::new(),
            }
        }
    }

    impl AsyncRead for Scripted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.chunk).min(self.input.len() - self.at);
            let at = self.at;
            buf[..n].copy_from_slice(&self.input[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for Scripted {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn run_tunnel(input: &[u8], chunk: usize) -> Result<Prefixed<Scripted>, TransportFailure> {
        let proxy = Proxy::http("http://u:pw@p:1").unwrap();
        futures::executor::block_on(tunnel(Scripted::new(input, chunk), &proxy, "h", 9))
    }

    #[test]
    fn bytes_after_a_200_head_are_kept_for_the_next_layer() {
        for chunk in [1, 7, 1024] {
            let mut input = b"HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\n".to_vec();
            input.extend_from_slice(b"\x16\x03\x03server bytes");
            let mut stream = run_tunnel(&input, chunk).expect("tunnel opens");
            assert!(
                stream
                    .inner
                    .written
                    .starts_with(b"CONNECT h:9 HTTP/1.1\r\n"),
                "{:?}",
                String::from_utf8_lossy(&stream.inner.written)
            );
            let mut rest = Vec::new();
            futures::executor::block_on(stream.read_to_end(&mut rest)).unwrap();
            assert_eq!(rest, b"\x16\x03\x03server bytes", "chunk {chunk}");
        }
    }

    #[test]
    fn a_refusal_is_a_proxy_failure_with_its_status() {
        let got = run_tunnel(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
            5,
        );
        assert_eq!(
            got.err(),
            Some(TransportFailure::Proxy {
                status: 407,
                retry_after: None
            })
        );
        let got = run_tunnel(b"HTTP/1.1 503 Busy\r\nRetry-After: 2\r\n\r\nbody", 1024);
        let err = got.err().unwrap();
        assert_eq!(err.to_string(), "proxy answered 503");
    }

    #[test]
    fn a_proxy_that_talks_forever_is_cut_at_the_bound() {
        let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
        endless.resize(4 * MAX_CONNECT_HEAD, b'a');
        let mut stream = Scripted::new(&endless, 1000);
        let proxy = Proxy::http("http://p:1").unwrap();
        let got = futures::executor::block_on(tunnel(&mut stream, &proxy, "h", 9));
        assert!(matches!(got.err(), Some(TransportFailure::Io(_))));
        assert!(
            stream.at <= MAX_CONNECT_HEAD,
            "read {} bytes past the bound",
            stream.at
        );
        // A proxy that hangs up before answering.
        let got = run_tunnel(b"HTTP/1.1 200", 1024);
        assert!(matches!(got.err(), Some(TransportFailure::Io(e)) if e.contains("closed")));
    }
}
