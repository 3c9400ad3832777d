//! The server side of the WebSocket upgrade (RFC 6455 §4.2): the request head read with a
//! bound, judged, shown to the gate and the admission hook, and answered — `101`, or an
//! HTTP refusal a client can act on (400, 405, 426, 431, 503 with `Retry-After`, or the
//! hook's own status), so no upgrade ends in a silent FIN when the request could be read.

use std::net::SocketAddr;

use async_tungstenite::tungstenite::handshake::machine::TryParse;
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, write_response};
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::{Error as WsError, error::ProtocolError};
use futures::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::admission::{Admit, UpgradeRequest, plain};
use super::gate::{Limit, Outcome, Ticket};
use super::handshake::upgrade_response;
use crate::http_head::{HeadError, read_head};

/// An upgrade that was answered `101`.
pub(crate) struct Accepted {
    /// What the client sent after its request head (frames sent without waiting for the
    /// `101`); the codec reads them first.
    pub(crate) rest: Vec<u8>,
    /// The subprotocol the admission hook selected.
    pub(crate) subprotocol: Option<String>,
}

/// Why an upgrade did not happen.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The request was malformed; answered with `status`.
    BadRequest { status: u16, reason: &'static str },
    /// A limit of the gate; answered 503.
    Limited(Limit),
    /// The admission hook said no; answered with its `status`.
    Rejected { status: u16 },
    /// The socket closed or failed; nothing was answered.
    Failed(String),
}

/// What the upgrade needs from the configuration.
pub(crate) struct Rules<'a> {
    pub(crate) max_head: usize,
    pub(crate) admit: Option<&'a Admit>,
    pub(crate) retry_after_secs: u64,
}

/// Reads and answers the upgrade request on `io`.
pub(crate) async fn upgrade<S>(
    io: &mut S,
    peer: Option<SocketAddr>,
    rules: &Rules<'_>,
    mut ticket: Option<&mut Ticket>,
) -> Result<Accepted, Refused>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (head, rest) = match read_head(io, rules.max_head).await {
        Ok(read) => read,
        Err(HeadError::TooLarge) => {
            let refusal = bad(io, 431, "request head too large", &mut ticket).await;
            return Err(refusal);
        }
        Err(HeadError::Closed) => return Err(Refused::Failed("closed before the request".into())),
        Err(HeadError::Io(e)) => return Err(Refused::Failed(e.to_string())),
    };
    let request = match Request::try_parse(&head) {
        Ok(Some((_, request))) => request,
        Ok(None) => return Err(bad(io, 400, "malformed request", &mut ticket).await),
        Err(e) => {
            let (status, reason) = judge(&e);
            return Err(bad(io, status, reason, &mut ticket).await);
        }
    };
    let response = match upgrade_response(&request) {
        Ok(response) => response,
        Err(refusal) => {
            let (parts, body) = refusal.response().into_parts();
            let answer = ErrorResponse::from_parts(parts, Some(body));
            let (status, reason) = (refusal.status().as_u16(), refusal.reason());
            return Err(refuse(io, &answer, status, reason, &mut ticket).await);
        }
    };
    if let Some(ticket) = ticket.as_deref_mut()
        && let Err(limit) = ticket.check()
    {
        tracing::debug!(peer = ?peer, %limit, "upgrade refused: 503");
        let retry = rules.retry_after_secs.to_string();
        let (answer, _) = plain(
            503,
            "busy, try again later",
            &[("retry-after".to_owned(), retry)],
        );
        send_refusal(io, &answer).await;
        return Err(Refused::Limited(limit));
    }
    let mut subprotocol = None;
    let response = match rules.admit {
        None => response,
        Some(admit) => {
            let decision = admit.decide(&UpgradeRequest::new(&request, peer));
            match decision.apply(&request, response) {
                Ok(response) => {
                    subprotocol = response
                        .headers()
                        .get("sec-websocket-protocol")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    response
                }
                Err(refusal) => {
                    let (answer, status) = *refusal;
                    tracing::debug!(peer = ?peer, status, "upgrade rejected by the admission hook");
                    if let Some(t) = ticket.as_deref_mut() {
                        t.count(Outcome::Rejected);
                    }
                    send_refusal(io, &answer).await;
                    return Err(Refused::Rejected { status });
                }
            }
        }
    };
    let mut bytes = Vec::with_capacity(256);
    // Writing into a Vec cannot fail, and every header value came through `HeaderValue`,
    // which `write_response` reads back as text.
    if let Err(e) = write_response(&mut bytes, &response) {
        return Err(Refused::Failed(e.to_string()));
    }
    if let Some(t) = ticket {
        t.admit();
    }
    io.write_all(&bytes)
        .await
        .map_err(|e| Refused::Failed(e.to_string()))?;
    io.flush()
        .await
        .map_err(|e| Refused::Failed(e.to_string()))?;
    Ok(Accepted { rest, subprotocol })
}

/// The status and reason for a request head that does not parse: 405 for a method other
/// than `GET` (tungstenite's parser refuses it before anything else), 431 for too many
/// headers, 400 for anything else. A request that parses is judged by
/// [`upgrade_response`], the check an application's own HTTP server uses too.
fn judge(error: &WsError) -> (u16, &'static str) {
    match error {
        WsError::Protocol(ProtocolError::WrongHttpMethod) => (405, "only GET may upgrade"),
        WsError::Protocol(ProtocolError::HttparseError(httparse::Error::TooManyHeaders)) => {
            (431, "too many headers")
        }
        _ => (400, "malformed request"),
    }
}

/// Answers a request head that does not parse (or is too long) with `status`: a plain
/// refusal, with `Allow: GET` for a 405 (the 426s come from [`upgrade_response`]).
async fn bad<S: AsyncWrite + Unpin>(
    io: &mut S,
    status: u16,
    reason: &'static str,
    ticket: &mut Option<&mut Ticket>,
) -> Refused {
    let allow = [("allow".to_owned(), "GET".to_owned())];
    let headers: &[(String, String)] = if status == 405 { &allow } else { &[] };
    let (answer, _) = plain(status, reason, headers);
    refuse(io, &answer, status, reason, ticket).await
}

/// Sends `answer` to a malformed request and counts it.
async fn refuse<S: AsyncWrite + Unpin>(
    io: &mut S,
    answer: &ErrorResponse,
    status: u16,
    reason: &'static str,
    ticket: &mut Option<&mut Ticket>,
) -> Refused {
    tracing::debug!(status, reason, "upgrade request refused");
    if let Some(t) = ticket.as_deref_mut() {
        t.count(Outcome::BadRequest);
    }
    send_refusal(io, answer).await;
    Refused::BadRequest { status, reason }
}

/// The bytes of a refusal: its head with the body's length and `Connection: close`, then
/// the body.
pub(crate) fn refusal_bytes(answer: &ErrorResponse) -> Vec<u8> {
    let mut answer = answer.clone();
    let body = answer.body().clone().unwrap_or_default();
    let h = answer.headers_mut();
    h.insert("content-length", HeaderValue::from(body.len()));
    h.insert("connection", HeaderValue::from_static("close"));
    let mut bytes = Vec::with_capacity(128 + body.len());
    // Into a Vec, from headers that are all `HeaderValue`s: it cannot fail, and if it
    // did, the refusal would go out as a bare close, which is what it replaces.
    let _ = write_response(&mut bytes, &answer);
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// Writes a refusal and half-closes, so the client reads it before the connection ends;
/// a failure to write is not an error of its own (the peer is gone).
pub(crate) async fn send_refusal<S: AsyncWrite + Unpin>(io: &mut S, answer: &ErrorResponse) {
    let bytes = refusal_bytes(answer);
    if io.write_all(&bytes).await.is_ok() {
        let _ = io.flush().await;
        let _ = io.close().await;
    }
}

/// The answer to an upgrade not complete within the upgrade timeout.
pub(crate) fn timeout_answer() -> ErrorResponse {
    plain(408, "upgrade not completed in time", &[]).0
}
