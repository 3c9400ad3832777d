//! A scripted server for the `HelloAck` profile.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use tether_core::ConnId;

use super::{HEARTBEAT, between};
use crate::fault::{Fault, Hostile};
use crate::server::{Server, ServerCtx};
use crate::wire::Wire;

/// Answers hellos, echoes requests after a delay, streams for `stream.*` methods, sends
/// heartbeats, and honours the fault switches (never ack, double ack, starting).
///
/// Requests whose method starts with `stream` get a stream keyed by the request id:
/// `deltas` incremental `delta` events (the first one before the response), then `final`.
#[derive(Clone, Debug)]
pub struct HelloAckServer {
    /// Delay before the `hello_ack`. Default 5 ms.
    pub ack_delay: Duration,
    /// Response delay range. Default 5–50 ms.
    pub response_delay: (Duration, Duration),
    /// Heartbeat interval announced in the ack and sent as `tick`. Default `None`.
    pub heartbeat: Option<Duration>,
    /// Delta events per stream. Default 4.
    pub deltas: u64,
    acked: BTreeSet<ConnId>,
    /// Hostile values armed for the next handshake or stream ([`Fault::Hostile`]).
    armed: BTreeSet<Hostile>,
}

/// The text of a [`Hostile::LongText`] delta: one byte past the default
/// `StreamConfig::max_text`.
const LONG_TEXT: usize = (1 << 20) + 1;

impl Default for HelloAckServer {
    fn default() -> Self {
        HelloAckServer {
            ack_delay: Duration::from_millis(5),
            response_delay: (Duration::from_millis(5), Duration::from_millis(50)),
            heartbeat: None,
            deltas: 4,
            acked: BTreeSet::new(),
            armed: BTreeSet::new(),
        }
    }
}

impl HelloAckServer {
    fn ack(&mut self) -> Value {
        if self.armed.remove(&Hostile::Heartbeat) {
            return json!({"type": "hello_ack", "heartbeatMs": u64::MAX});
        }
        match self.heartbeat {
            Some(hb) => json!({"type": "hello_ack", "heartbeatMs": hb.as_millis() as u64}),
            None => json!({"type": "hello_ack"}),
        }
    }

    fn request(&mut self, conn: ConnId, v: &Value, ctx: &mut ServerCtx<'_>) {
        let id = v.get("id").cloned().unwrap_or(Value::Null);
        let method = v.get("method").and_then(Value::as_str).unwrap_or("");
        let params = v.get("params").cloned().unwrap_or(Value::Null);
        let (lo, hi) = self.response_delay;
        let delay = between(ctx.rng(), lo, hi);
        if method.starts_with("stream") {
            let key = id.to_string();
            let step = Duration::from_millis(10);
            // Numbered so that the final event is `u64::MAX`, when armed.
            let base = if self.armed.remove(&Hostile::SeqMax) {
                u64::MAX - self.deltas - 1
            } else {
                0
            };
            // The first event overtakes the response, as real servers' events do.
            let ev = |seq: u64, state: &str, text: Option<String>| {
                let seq = base.saturating_add(seq);
                let mut e = json!({"type": "event", "stream": key, "seq": seq, "state": state});
                if let Some(t) = text {
                    e["text"] = Value::String(t);
                }
                Wire::json(&e)
            };
            let first = if self.armed.remove(&Hostile::LongText) {
                "x".repeat(LONG_TEXT)
            } else {
                "part-1 ".into()
            };
            ctx.send(conn, ev(1, "delta", Some(first)));
            ctx.send_after(
                conn,
                Wire::json(&json!({"type": "response", "id": id, "result": {"streaming": true}})),
                delay,
            );
            for seq in 2..=self.deltas {
                let at = delay + step * seq as u32;
                ctx.send_after(conn, ev(seq, "delta", Some(format!("part-{seq} "))), at);
            }
            let at = delay + step * (self.deltas as u32 + 1);
            ctx.send_after(conn, ev(self.deltas + 1, "final", None), at);
        } else if method == "fail" {
            let r = json!({"type": "response", "id": id, "error": {"message": "as asked"}});
            ctx.send_after(conn, Wire::json(&r), delay);
        } else {
            let r = json!({"type": "response", "id": id, "result": params});
            ctx.send_after(conn, Wire::json(&r), delay);
        }
    }
}

impl Server for HelloAckServer {
    fn on_frame(&mut self, conn: ConnId, frame: Wire, ctx: &mut ServerCtx<'_>) {
        let Some(v) = frame.as_json() else {
            return;
        };
        match v.get("type").and_then(Value::as_str) {
            Some("hello") => {
                let flags = ctx.flags();
                if flags.starting {
                    let retry_after = if self.armed.remove(&Hostile::RetryAfter) {
                        u64::MAX
                    } else {
                        1000
                    };
                    let e = json!({"type": "hello_error", "message": "starting",
                        "retryAfterMs": retry_after});
                    ctx.send(conn, Wire::json(&e));
                    ctx.close_after(conn, 1013, "starting", Duration::from_millis(1));
                    return;
                }
                if flags.never_ack {
                    return;
                }
                let ack = Wire::json(&self.ack());
                ctx.send_after(conn, ack.clone(), self.ack_delay);
                if flags.double_ack {
                    ctx.send_after(conn, ack, self.ack_delay);
                }
                self.acked.insert(conn);
                if let Some(hb) = self.heartbeat {
                    ctx.timer(conn, HEARTBEAT, hb);
                }
            }
            Some("request") if self.acked.contains(&conn) => self.request(conn, &v, ctx),
            Some("request") => {}
            _ => ctx.send(conn, Wire::json(&json!({"type": "echo", "body": v}))),
        }
    }

    fn on_closed(&mut self, conn: ConnId, _ctx: &mut ServerCtx<'_>) {
        self.acked.remove(&conn);
    }

    fn on_timer(&mut self, conn: ConnId, token: u64, ctx: &mut ServerCtx<'_>) {
        if token == HEARTBEAT
            && let Some(hb) = self.heartbeat
        {
            ctx.send(conn, Wire::json(&json!({"type": "tick"})));
            ctx.timer(conn, HEARTBEAT, hb);
        }
    }

    fn on_fault(&mut self, conn: ConnId, fault: &Fault, ctx: &mut ServerCtx<'_>) {
        match fault {
            Fault::UnknownResponse => {
                let r = json!({"type": "response", "id": 987_654_321u64, "result": "for nobody"});
                ctx.send(conn, Wire::json(&r));
            }
            Fault::DoubleAck(_) if self.acked.contains(&conn) => {
                let ack = self.ack();
                ctx.send(conn, Wire::json(&ack));
            }
            // Challenges are the gateway's.
            Fault::Hostile(Hostile::Challenges) => {}
            Fault::Hostile(h) => {
                self.armed.insert(*h);
            }
            _ => {}
        }
    }
}
