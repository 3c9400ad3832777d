//! A scripted server for the `Gateway` (OpenClaw protocol 4) profile, modelled on what
//! the real gateway does: challenge first, `hello-ok` with a tick interval, ticks,
//! `chat.send` runs whose events can precede the response, skip sequence numbers, carry
//! cumulative text and sometimes end with two `error` events; `UNAVAILABLE` + 1013 while
//! starting.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tether_core::ConnId;

use super::{HEARTBEAT, between};
use crate::fault::Fault;
use crate::server::{Server, ServerCtx};
use crate::wire::Wire;

#[derive(Clone, Debug, Default)]
struct ConnState {
    challenged: bool,
    acked: bool,
    seq: u64,
}

/// The gateway, scripted. See the module documentation.
#[derive(Clone, Debug)]
pub struct GatewayServer {
    /// The tick interval announced in `hello-ok` and kept. Default 30 s.
    pub tick: Duration,
    /// The token a `connect` must carry (`None`: any).
    pub token: Option<String>,
    /// Response delay range. Default 5–60 ms.
    pub response_delay: (Duration, Duration),
    /// The reply text a run streams, word by word.
    pub reply: String,
    /// Probability that a run ends with two `error` events instead of `final`.
    pub double_error: f64,
    conns: BTreeMap<ConnId, ConnState>,
}

impl Default for GatewayServer {
    fn default() -> Self {
        GatewayServer {
            tick: Duration::from_secs(30),
            token: None,
            response_delay: (Duration::from_millis(5), Duration::from_millis(60)),
            reply: "The quick brown fox jumps over the lazy dog".to_owned(),
            double_error: 0.1,
            conns: BTreeMap::new(),
        }
    }
}

impl GatewayServer {
    fn event(&mut self, conn: ConnId, name: &str, payload: Value) -> Wire {
        let st = self.conns.entry(conn).or_default();
        st.seq += 1;
        Wire::json(&json!({"type": "event", "event": name, "payload": payload, "seq": st.seq}))
    }

    fn hello_ok(&self) -> Value {
        json!({
            "type": "hello-ok",
            "protocol": 4,
            "policy": {"tickIntervalMs": self.tick.as_millis() as u64, "maxPayload": 1_048_576},
        })
    }

    fn connect(&mut self, conn: ConnId, id: Value, params: &Value, ctx: &mut ServerCtx<'_>) {
        let flags = ctx.flags();
        if flags.starting {
            let err = json!({"type": "res", "id": id, "ok": false, "error": {
                "code": "UNAVAILABLE", "message": "gateway starting", "retryable": true, "retryAfterMs": 2000}});
            ctx.send(conn, Wire::json(&err));
            ctx.close_after(conn, 1013, "starting", Duration::from_millis(1));
            return;
        }
        let token = params.pointer("/auth/token").and_then(Value::as_str);
        if let Some(want) = &self.token
            && token != Some(want.as_str())
        {
            let err = json!({"type": "res", "id": id, "ok": false, "error": {
                "code": "UNAUTHORIZED", "message": "bad token", "retryable": false}});
            ctx.send(conn, Wire::json(&err));
            ctx.close_after(conn, 1008, "unauthorized", Duration::from_millis(1));
            return;
        }
        if flags.never_ack {
            return;
        }
        let ok =
            Wire::json(&json!({"type": "res", "id": id, "ok": true, "payload": self.hello_ok()}));
        ctx.send(conn, ok.clone());
        if flags.double_ack {
            ctx.send(conn, ok);
        }
        self.conns.entry(conn).or_default().acked = true;
        ctx.timer(conn, HEARTBEAT, self.tick);
    }

    fn chat_send(&mut self, conn: ConnId, id: Value, params: &Value, ctx: &mut ServerCtx<'_>) {
        let run = params
            .get("idempotencyKey")
            .and_then(Value::as_str)
            .unwrap_or("run")
            .to_owned();
        let session = params.get("sessionKey").cloned().unwrap_or(Value::Null);
        let (lo, hi) = self.response_delay;
        let delay = between(ctx.rng(), lo, hi);
        let reply = self.reply.clone();
        let words: Vec<&str> = reply.split(' ').collect();
        let mut text = String::new();
        let mut seq = 0u64;
        let mut at = Duration::ZERO;
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(w);
            // The run's seq skips numbers now and then, as the real gateway's does.
            seq += if ctx.rng().f64() < 0.2 { 2 } else { 1 };
            // Slow consumers get coalesced deltas: some are never sent at all.
            if i + 1 < words.len() && ctx.rng().f64() < 0.15 {
                continue;
            }
            let payload = json!({"runId": run, "sessionKey": session, "seq": seq, "state": "delta",
                "deltaText": w, "message": {"role": "assistant", "content": [{"type": "text", "text": text}]}});
            let frame = self.event(conn, "chat", payload);
            // The first event overtakes the response.
            ctx.send_after(conn, frame, at);
            at = delay + Duration::from_millis(15) * (i as u32 + 1);
        }
        let res = json!({"type": "res", "id": id, "ok": true, "payload": {"runId": run, "status": "started"}});
        ctx.send_after(conn, Wire::json(&res), delay);
        if ctx.rng().f64() < self.double_error {
            for _ in 0..2 {
                seq += 1;
                let payload = json!({"runId": run, "sessionKey": session, "seq": seq, "state": "error",
                    "errorMessage": "model overloaded"});
                let frame = self.event(conn, "chat", payload);
                ctx.send_after(conn, frame, at);
            }
        } else {
            seq += 1;
            let payload = json!({"runId": run, "sessionKey": session, "seq": seq, "state": "final",
                "message": {"role": "assistant", "content": [{"type": "text", "text": reply}]}});
            let frame = self.event(conn, "chat", payload);
            ctx.send_after(conn, frame, at);
        }
    }
}

impl Server for GatewayServer {
    fn on_open(&mut self, conn: ConnId, ctx: &mut ServerCtx<'_>) {
        self.conns.insert(conn, ConnState::default());
        let ts = ctx.now().as_millis() as u64;
        let frame = self.event(
            conn,
            "connect.challenge",
            json!({"nonce": format!("n{}", conn.get()), "ts": ts}),
        );
        self.conns.entry(conn).or_default().challenged = true;
        ctx.send(conn, frame);
    }

    fn on_frame(&mut self, conn: ConnId, frame: Wire, ctx: &mut ServerCtx<'_>) {
        let Some(v) = frame.as_json() else {
            ctx.close(conn, 1008, "malformed");
            return;
        };
        if v.get("type").and_then(Value::as_str) != Some("req") {
            return;
        }
        let id = v.get("id").cloned().unwrap_or(Value::Null);
        let method = v.get("method").and_then(Value::as_str).unwrap_or("");
        let params = v.get("params").cloned().unwrap_or(Value::Null);
        let acked = self.conns.get(&conn).is_some_and(|c| c.acked);
        if method == "connect" {
            self.connect(conn, id, &params, ctx);
            return;
        }
        if !acked {
            ctx.close(conn, 1008, "connect first");
            return;
        }
        let (lo, hi) = self.response_delay;
        let delay = between(ctx.rng(), lo, hi);
        let payload = match method {
            "chat.send" => return self.chat_send(conn, id, &params, ctx),
            "chat.history" => json!({"messages": []}),
            "chat.abort" => json!({"aborted": true}),
            "fail" => {
                let err = json!({"type": "res", "id": id, "ok": false,
                    "error": {"code": "INVALID_REQUEST", "message": "as asked"}});
                ctx.send_after(conn, Wire::json(&err), delay);
                return;
            }
            _ => json!({"echo": params}),
        };
        let res = json!({"type": "res", "id": id, "ok": true, "payload": payload});
        ctx.send_after(conn, Wire::json(&res), delay);
    }

    fn on_closed(&mut self, conn: ConnId, _ctx: &mut ServerCtx<'_>) {
        self.conns.remove(&conn);
    }

    fn on_timer(&mut self, conn: ConnId, token: u64, ctx: &mut ServerCtx<'_>) {
        if token == HEARTBEAT && self.conns.contains_key(&conn) {
            let ts = ctx.now().as_millis() as u64;
            let frame = self.event(conn, "tick", json!({"ts": ts}));
            ctx.send(conn, frame);
            ctx.timer(conn, HEARTBEAT, self.tick);
        }
    }

    fn on_fault(&mut self, conn: ConnId, fault: &Fault, ctx: &mut ServerCtx<'_>) {
        match fault {
            Fault::UnknownResponse => {
                let r = json!({"type": "res", "id": "nobody-asked", "ok": true, "payload": {}});
                ctx.send(conn, Wire::json(&r));
            }
            Fault::DoubleAck(_) if self.conns.get(&conn).is_some_and(|c| c.acked) => {
                let ok = json!({"type": "res", "id": format!("connect-{}", conn.get()), "ok": true, "payload": self.hello_ok()});
                ctx.send(conn, Wire::json(&ok));
            }
            _ => {}
        }
    }
}
