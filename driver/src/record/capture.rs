//! What the session's task hands its recorder: an owned copy of each call and output,
//! cheap to take (payloads are refcounted `Bytes`, results are ids), rendered into a
//! trace line later, on the recorder's writer thread. The session itself never leaves its
//! task, so what a line reads of it (the header's configuration, the end's state) is
//! taken here too.

use std::time::Duration;

use serde_json::Value;
use tether_core::{
    CloseCode, ConnId, Event, FrameId, InFrame, Input, OutFrame, Output, Protocol, Session, Status,
};

use super::OnDemand;

/// A message (`send`, `feed`) or a request as the task took it.
pub(crate) enum Msg<T> {
    /// A copy, rendered on the writer, holding this many payload bytes.
    Copy(T, usize),
    /// Rendered on the task: the protocol does not copy its values
    /// ([`Recordable::copy_outbound`](super::Recordable::copy_outbound)).
    Rendered(Value),
}

impl<T> Msg<T> {
    fn bytes(&self) -> usize {
        match self {
            Msg::Copy(_, bytes) => *bytes,
            Msg::Rendered(_) => 0,
        }
    }
}

/// A call's result: an id (`Value::Number`) or unit (`Value::Null`), or the error's
/// rendering (strings stripped), taken on the task since errors are not `Clone`.
pub(crate) type Ret = Result<Value, String>;

/// [`Ret`] of `r`.
pub(crate) fn ret<T, E: std::fmt::Debug>(r: &Result<T, E>, id: impl Fn(&T) -> Value) -> Ret {
    match r {
        Ok(t) => Ok(id(t)),
        Err(e) => Err(super::format::error_text(e)),
    }
}

/// A call the loop made on its session.
pub(crate) enum Call<P: Protocol> {
    Connect(Ret),
    Input(Input),
    Timeout,
    Send {
        msg: Msg<P::Outbound>,
        ttl: Option<Duration>,
        ret: Ret,
    },
    Feed(Msg<P::Outbound>),
    Request {
        req: Msg<P::Request>,
        timeout: Option<Duration>,
        ret: Ret,
    },
    Close {
        code: CloseCode,
        reason: &'static str,
    },
    OnDemand(OnDemand, Ret),
    Terminate,
}

/// The session's state when the loop ended: the `end` line.
pub(crate) struct Final {
    pub(crate) t: Duration,
    pub(crate) status: Status,
    pub(crate) closed: bool,
    pub(crate) timer: bool,
    pub(crate) pending_requests: usize,
    pub(crate) queued: usize,
    pub(crate) open_streams: usize,
    pub(crate) remembered: usize,
    pub(crate) pending_writes: usize,
}

impl Final {
    pub(crate) fn of<P: Protocol>(t: Duration, session: &Session<P>) -> Self {
        Final {
            t,
            status: session.status(),
            closed: session.is_closed(),
            timer: session.poll_timeout().is_some(),
            pending_requests: session.pending_requests(),
            queued: session.queued(),
            open_streams: session.open_streams(),
            remembered: session.remembered_events(),
            pending_writes: session.pending_writes(),
        }
    }
}

/// One record: a line of the trace. Kept small, since every record is moved twice (into
/// the channel, out of it) and the most frequent ones are small: a frame written has a
/// variant of its own, and the other outputs (`Output` is the largest value here, and
/// rare beside frames) are boxed.
pub(crate) enum Capture<P: Protocol> {
    /// A call at session time `t`.
    Call(Duration, Call<P>),
    /// `Output::SendFrame`.
    Sent {
        conn: ConnId,
        frame: FrameId,
        payload: OutFrame,
    },
    /// Any other output.
    Output(Box<Output<P>>),
    /// An event written as its kind alone (`Message`, `Unsolicited`): its payload is not
    /// copied.
    Event(&'static str),
    /// The loop ended.
    End(Final),
}

impl<P: Protocol> Capture<P> {
    /// The output `out` as recorded.
    pub(crate) fn output(out: &Output<P>) -> Self {
        match out {
            Output::SendFrame {
                conn,
                frame,
                payload,
            } => Capture::Sent {
                conn: *conn,
                frame: *frame,
                payload: payload.clone(),
            },
            Output::Event(Event::Message(_)) => Capture::Event("Message"),
            Output::Event(Event::Unsolicited(_)) => Capture::Event("Unsolicited"),
            other => Capture::Output(Box::new(other.clone())),
        }
    }

    /// What the record is charged in the writer's channel: its slot, and the payload
    /// bytes it keeps alive (a frame's, a message's).
    pub(crate) fn bytes(&self) -> usize {
        let payload = match self {
            Capture::Call(_, Call::Input(Input::FrameReceived { frame, .. })) => match frame {
                InFrame::Text(b) | InFrame::Binary(b) | InFrame::Ping(b) | InFrame::Pong(b) => {
                    b.len()
                }
            },
            Capture::Call(_, Call::Send { msg, .. } | Call::Feed(msg)) => msg.bytes(),
            Capture::Call(_, Call::Request { req, .. }) => req.bytes(),
            Capture::Sent { payload, .. } => payload.len(),
            _ => 0,
        };
        std::mem::size_of::<Self>().saturating_add(payload)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tether_core::profiles::{HelloAck, HelloAckRequest, Raw};
    use tether_core::{DataFrame, Utf8Bytes};

    use super::*;

    /// A record is charged its size and every payload byte it keeps alive, whichever
    /// kind of record holds them.
    #[test]
    fn a_record_is_charged_the_payload_it_holds() {
        const SLOT: usize = std::mem::size_of::<Capture<Raw>>();
        let t = Duration::ZERO;
        let conn = ConnId::from_raw(1);
        let payload = Bytes::from(vec![b'x'; 1000]);
        let input =
            |frame| Capture::<Raw>::Call(t, Call::Input(Input::FrameReceived { conn, frame }));
        assert_eq!(input(InFrame::Text(payload.clone())).bytes(), SLOT + 1000);
        assert_eq!(input(InFrame::Pong(payload.slice(..10))).bytes(), SLOT + 10);
        let sent = Capture::<Raw>::Sent {
            conn,
            frame: FrameId::from_raw(1),
            payload: OutFrame::Binary(payload.slice(..300)),
        };
        assert_eq!(sent.bytes(), SLOT + 300);
        let msg = || Msg::Copy(DataFrame::Text(Utf8Bytes::from_static("hello")), 700);
        assert_eq!(
            Capture::<Raw>::Call(t, Call::Feed(msg())).bytes(),
            SLOT + 700
        );
        let send = Call::Send {
            msg: msg(),
            ttl: None,
            ret: Ok(Value::Null),
        };
        assert_eq!(Capture::<Raw>::Call(t, send).bytes(), SLOT + 700);
        let rendered = Msg::Rendered(Value::Null);
        assert_eq!(Capture::<Raw>::Call(t, Call::Feed(rendered)).bytes(), SLOT);
        let request = Call::<HelloAck>::Request {
            req: Msg::Copy(HelloAckRequest::new("echo", Value::Null), 90),
            timeout: None,
            ret: Ok(1.into()),
        };
        assert_eq!(
            Capture::Call(t, request).bytes(),
            std::mem::size_of::<Capture<HelloAck>>() + 90
        );
        assert_eq!(Capture::<Raw>::Call(t, Call::Timeout).bytes(), SLOT);
    }
}
