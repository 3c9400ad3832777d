//! The client side of the WebSocket upgrade (RFC 6455 §4.1).
//!
//! tungstenite writes the request (`generate_request`) and frames the connection
//! afterwards; the response is read and judged here, for two things tungstenite decides
//! otherwise: a server that selects none of the offered subprotocols is accepted with
//! none, as the RFC lets it (tungstenite fails the connection), and the negotiated
//! subprotocol is reported to the application. Each attempt gets a fresh
//! `Sec-WebSocket-Key` (the RFC asks for one per connection) and the headers computed for
//! it.

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::handshake::client::{Request, generate_key, generate_request};
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use futures::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tether_core::TransportFailure;

use crate::http_head::{HeadError, read_head};

/// The longest upgrade response head read: a server that sends more is refused rather
/// than buffered.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// The most response headers parsed.
const MAX_HEADERS: usize = 64;

/// An open WebSocket and what the upgrade negotiated.
pub(crate) struct Upgraded<S> {
    pub(crate) ws: WebSocketStream<S>,
    /// The subprotocol the server selected among those offered, if any.
    pub(crate) subprotocol: Option<String>,
}

/// Upgrades `io` with `request` (its `Sec-WebSocket-Key` replaced by a fresh one), offering
/// `subprotocols`.
pub(crate) async fn upgrade<S>(
    mut io: S,
    mut request: Request,
    subprotocols: &[String],
    config: WebSocketConfig,
) -> Result<Upgraded<S>, TransportFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let headers = request.headers_mut();
    let key = generate_key();
    // Invariant: a generated key is base64, always a valid header value.
    let value = HeaderValue::from_str(&key).expect("base64 is a valid header value");
    headers.insert("sec-websocket-key", value);
    if !subprotocols.is_empty() {
        let offer = HeaderValue::from_str(&subprotocols.join(", "))
            .map_err(|_| TransportFailure::Io("invalid subprotocol name".into()))?;
        headers.insert("sec-websocket-protocol", offer);
    }
    let (bytes, key) =
        generate_request(request).map_err(|e| TransportFailure::Io(e.to_string()))?;
    io.write_all(&bytes).await.map_err(|e| io_failure(&e))?;
    io.flush().await.map_err(|e| io_failure(&e))?;

    let (head, rest) = read_head(&mut io, MAX_HEAD).await.map_err(|e| match e {
        HeadError::Closed => {
            TransportFailure::Io("the server closed the connection during the upgrade".into())
        }
        HeadError::TooLarge => TransportFailure::Io(format!(
            "the server's upgrade response head exceeds {MAX_HEAD} bytes"
        )),
        HeadError::Io(e) => io_failure(&e),
    })?;
    let subprotocol = judge(&head, &key, subprotocols)?;
    let ws = WebSocketStream::from_partially_read(io, rest, Role::Client, Some(config)).await;
    Ok(Upgraded { ws, subprotocol })
}

fn io_failure(e: &std::io::Error) -> TransportFailure {
    crate::ws::io_failure(e)
}

/// Judges the response head as RFC 6455 §4.1 asks; the selected subprotocol if it is
/// one of `offered`.
fn judge(head: &[u8], key: &str, offered: &[String]) -> Result<Option<String>, TransportFailure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => {
            return Err(TransportFailure::Io(
                "the server's upgrade response is not HTTP".into(),
            ));
        }
    }
    let status = response.code.unwrap_or(0);
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    if status != 101 {
        let retry_after = header("retry-after")
            .as_deref()
            .and_then(crate::ws::retry_after_secs)
            .map(std::time::Duration::from_secs);
        return Err(TransportFailure::Http {
            status,
            retry_after,
        });
    }
    let refuse = |what: &str| Err(TransportFailure::Io(format!("the server's upgrade {what}")));
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") {
        return refuse("response lacks `Upgrade: websocket`");
    }
    if !has_token("connection", "upgrade") {
        return refuse("response lacks `Connection: Upgrade`");
    }
    if header("sec-websocket-accept").as_deref() != Some(derive_accept_key(key.as_bytes()).as_str())
    {
        return refuse("response has a wrong Sec-WebSocket-Accept");
    }
    // No extension was offered, so none may be in use.
    if header("sec-websocket-extensions").is_some_and(|v| !v.is_empty()) {
        return refuse("response selects an extension that was not offered");
    }
    match header("sec-websocket-protocol") {
        None => Ok(None),
        Some(p) if offered.contains(&p) => Ok(Some(p)),
        Some(p) => Err(TransportFailure::Io(format!(
            "the server selected subprotocol {p:?}, which was not offered"
        ))),
    }
}

/// Whether `name` may be offered as a subprotocol: an HTTP token (RFC 6455 §4.1, RFC 7230
/// §3.2.6), non-empty.
pub(crate) fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn head(extra: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n{extra}\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn the_rfc_example_is_accepted() {
        assert_eq!(judge(&head(""), KEY, &[]), Ok(None));
    }

    #[test]
    fn a_server_may_select_no_subprotocol_but_not_an_unoffered_one() {
        let offered = ["chat".to_owned(), "superchat".to_owned()];
        assert_eq!(judge(&head(""), KEY, &offered), Ok(None));
        assert_eq!(
            judge(
                &head("Sec-WebSocket-Protocol: superchat\r\n"),
                KEY,
                &offered
            ),
            Ok(Some("superchat".into()))
        );
        assert!(judge(&head("Sec-WebSocket-Protocol: other\r\n"), KEY, &offered).is_err());
        assert!(judge(&head("Sec-WebSocket-Protocol: chat\r\n"), KEY, &[]).is_err());
    }

    #[test]
    fn a_wrong_accept_an_extension_or_a_missing_upgrade_is_refused() {
        assert!(judge(&head(""), "another key", &[]).is_err());
        assert!(
            judge(
                &head("Sec-WebSocket-Extensions: permessage-deflate\r\n"),
                KEY,
                &[]
            )
            .is_err()
        );
        let no_upgrade = String::from_utf8(head(""))
            .unwrap()
            .replace("Upgrade: websocket\r\n", "");
        assert!(judge(no_upgrade.as_bytes(), KEY, &[]).is_err());
        let no_connection = String::from_utf8(head(""))
            .unwrap()
            .replace("Connection: Upgrade\r\n", "Connection: keep-alive\r\n");
        assert!(judge(no_connection.as_bytes(), KEY, &[]).is_err());
        assert!(judge(b"SSH-2.0-OpenSSH\r\n\r\n", KEY, &[]).is_err());
    }

    #[test]
    fn a_rejection_is_the_status_with_its_retry_after() {
        let got = judge(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\n\r\n",
            KEY,
            &[],
        );
        assert_eq!(
            got,
            Err(TransportFailure::Http {
                status: 503,
                retry_after: Some(std::time::Duration::from_secs(7))
            })
        );
    }

    #[test]
    fn subprotocol_names_are_tokens() {
        assert!(is_token("graphql-transport-ws"));
        assert!(is_token("v1.chat"));
        for bad in ["", "a b", "a,b", "é", "a\r\n"] {
            assert!(!is_token(bad), "{bad:?}");
        }
    }
}
