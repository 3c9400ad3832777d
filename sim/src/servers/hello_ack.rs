//! A scripted server for the `HelloAck` profile.

use std::collections::{BTreeMap, BTreeSet};
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
    /// Speaks the recovery dialect (`docs/protocols.md`): issues a session token in
    /// `hello_ack`, keeps every resumable stream's events, and on a hello that resumes
    /// with its token replays what follows each position (`"recovered": true`); after a
    /// restart it has forgotten them (`"recovered": false`). Default `false`.
    pub recovery: bool,
    /// With [`recovery`](Self::recovery): forget every session when a connection
    /// closes, as a server that keeps them only in the connection's memory does; the next
    /// resume is then not recovered. Default `false`.
    pub forget_on_close: bool,
    /// The session token of the current server life (a restart issues a new one).
    epoch: u64,
    /// Resumable streams' events, by stream key: (seq, frame).
    resumable: BTreeMap<String, Vec<(u64, Value)>>,
    /// A resumable stream's next event, sent when its timer (the key of this map) fires
    /// on the connection it was armed on: a dropped connection interrupts the stream.
    emitting: BTreeMap<u64, (String, usize)>,
    next_timer: u64,
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
            recovery: false,
            forget_on_close: false,
            epoch: 0,
            resumable: BTreeMap::new(),
            emitting: BTreeMap::new(),
            next_timer: STREAM_TIMERS,
            acked: BTreeSet::new(),
            armed: BTreeSet::new(),
        }
    }
}

impl HelloAckServer {
    /// The default server, speaking the recovery dialect ([`recovery`](Self::recovery)).
    #[must_use]
    pub fn recovering() -> Self {
        HelloAckServer {
            recovery: true,
            ..HelloAckServer::default()
        }
    }

    /// Loses every session: a new token, no stream to replay.
    fn forget(&mut self) {
        self.resumable.clear();
        self.emitting.clear();
        self.epoch += 1;
    }

    fn token(&self) -> String {
        format!("sim-session-{}", self.epoch)
    }

    fn ack(&mut self) -> Value {
        let mut ack = if self.armed.remove(&Hostile::Heartbeat) {
            json!({"type": "hello_ack", "heartbeatMs": u64::MAX})
        } else {
            match self.heartbeat {
                Some(hb) => json!({"type": "hello_ack", "heartbeatMs": hb.as_millis() as u64}),
                None => json!({"type": "hello_ack"}),
            }
        };
        if self.recovery {
            ack["session"] = Value::String(self.token());
        }
        ack
    }

    /// What a hello that resumes gets: whether it is recovered, and the events to send
    /// again (those after each stream's position), in order.
    fn resume(&self, resume: &Value) -> (bool, Vec<Value>) {
        let token_ok = resume.get("session").and_then(Value::as_str) == Some(&self.token());
        let Some(streams) = resume.get("streams").and_then(Value::as_object) else {
            return (token_ok, Vec::new());
        };
        let mut replay = Vec::new();
        for (key, pos) in streams {
            let Some(events) = self.resumable.get(key).filter(|_| token_ok) else {
                return (false, Vec::new());
            };
            let after = pos.as_u64();
            replay.extend(
                events
                    .iter()
                    .filter(|(seq, _)| after.is_none_or(|p| *seq > p))
                    .map(|(_, e)| e.clone()),
            );
        }
        (token_ok, replay)
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
            if self.recovery && v.get("resumable") == Some(&Value::Bool(true)) {
                let last = self.deltas + 1;
                let events: Vec<(u64, Value)> = (1..=last)
                    .map(|seq| {
                        let (state, text) = if seq == last {
                            ("final", None)
                        } else {
                            ("delta", Some(format!("part-{seq} ")))
                        };
                        (
                            base.saturating_add(seq),
                            ev_value(&key, base, seq, state, text),
                        )
                    })
                    .collect();
                // The first event overtakes the response; the rest follow one timer each.
                ctx.send(conn, Wire::json(&events[0].1));
                ctx.send_after(
                    conn,
                    Wire::json(
                        &json!({"type": "response", "id": id, "result": {"streaming": true}}),
                    ),
                    delay,
                );
                let timer = self.next_timer;
                self.next_timer += 1;
                self.emitting.insert(timer, (key.clone(), 1));
                ctx.timer(conn, timer, delay + step);
                self.resumable.insert(key, events);
                return;
            }
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
                let mut ack = self.ack();
                let mut replay = Vec::new();
                if self.recovery
                    && let Some(resume) = v.get("resume")
                {
                    let (recovered, events) = self.resume(resume);
                    // Whatever was still being emitted is in the replay.
                    self.emitting.clear();
                    ack["recovered"] = Value::Bool(recovered);
                    replay = events;
                }
                let ack = Wire::json(&ack);
                ctx.send_after(conn, ack.clone(), self.ack_delay);
                // What the client missed follows the ack, in order.
                for (k, e) in replay.iter().enumerate() {
                    let at = self.ack_delay + Duration::from_millis(1 + k as u64);
                    ctx.send_after(conn, Wire::json(e), at);
                }
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
        if self.recovery && self.forget_on_close {
            self.forget();
        }
    }

    fn on_timer(&mut self, conn: ConnId, token: u64, ctx: &mut ServerCtx<'_>) {
        if let Some((key, next)) = self.emitting.remove(&token) {
            if let Some(events) = self.resumable.get(&key)
                && let Some((_, e)) = events.get(next)
            {
                ctx.send(conn, Wire::json(e));
                if next + 1 < events.len() {
                    self.emitting.insert(token, (key, next + 1));
                    ctx.timer(conn, token, Duration::from_millis(10));
                }
            }
            return;
        }
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
            // A restart forgets every session: the next resume is not recovered.
            Fault::Restart { .. } if self.recovery => self.forget(),
            // Challenges are the gateway's.
            Fault::Hostile(Hostile::Challenges) => {}
            Fault::Hostile(h) => {
                self.armed.insert(*h);
            }
            _ => {}
        }
    }
}

/// The first timer token of resumable streams' emission (below it: the heartbeat).
const STREAM_TIMERS: u64 = 1 << 32;

/// A stream event frame of stream `key`: `seq` counted from `base`.
fn ev_value(key: &str, base: u64, seq: u64, state: &str, text: Option<String>) -> Value {
    let mut e =
        json!({"type": "event", "stream": key, "seq": base.saturating_add(seq), "state": state});
    if let Some(t) = text {
        e["text"] = Value::String(t);
    }
    e
}
