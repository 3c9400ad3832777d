//! A scripted server for the `Gateway` (OpenClaw protocol 4) profile, modelled on what
//! the real gateway (openclaw 2026.9.6) does on loopback:
//!
//! - **handshake**: `connect.challenge` first; `hello-ok` with `policy.tickIntervalMs`;
//!   a wrong token is `INVALID_REQUEST` (not retryable) then close 1000 "handshake
//!   rejected"; while starting (after a restart), `UNAVAILABLE` with `retryable` and
//!   `retryAfterMs: 500`, then close 1013;
//! - **liveness**: a `tick` event every tick interval; every event carries a
//!   per-connection `seq`;
//! - **chat runs** (`chat.send`): the `{runId, status:"started"}` answer and the run's
//!   first events race (either may come first); `status` events (run seq 1, 2, 4), then
//!   deltas whose run seq skips numbers (the gateway's `agent` events share the counter
//!   and are sent too), whose `message` is the **cumulative** text while the model's
//!   words are **coalesced** into fewer deltas and some `deltaText`s lose the words of
//!   deltas dropped before them; a `final` that often carries the **same seq as the last
//!   delta**; or a failure as **two `error` events**, the second with its seq going
//!   back to 1; or an abort (another operator's `chat.abort`);
//! - a run belongs to the gateway, not to the connection: it goes on while the client is
//!   away, and its later events reach the client's next connection;
//! - `chat.abort` ends matching runs with an `aborted` event (the text so far) before
//!   its answer `{ok, aborted, runIds}`; `chat.history` answers the session's
//!   transcript; `chat.inject` (scope `operator.admin`, else `FORBIDDEN`) sends a `final`
//!   chat event of a run of its own, then `{ok, messageId}`; `agent.wait` answers when
//!   the run ends or after its `timeoutMs` (`status` `ok`, `error` or `timeout`);
//!   `health` answers `{ok:true}`; `fail` an error; any other method `INVALID_REQUEST`;
//! - **restart** ([`Fault::Restart`]): a graceful one sends a `shutdown` event before the
//!   world closes the connection with 1012; runs and waits die with the process, the
//!   transcripts survive.
//!
//! Not modelled: the real gateway *drains* before a SIGTERM shutdown (in-flight requests
//! and runs are finished, new requests answered `UNAVAILABLE`), since a restart here is
//! instantaneous. Requests in flight at the 1012 are never answered, as on the real
//! gateway once its drain is over.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use serde_json::{Value, json};
use tether_core::ConnId;

use super::{HEARTBEAT, between};
use crate::fault::{Fault, Hostile};
use crate::server::{Server, ServerCtx};
use crate::wire::Wire;

/// Timer tokens of run steps: `RUN_TIMER + run number`.
const RUN_TIMER: u64 = 1 << 32;
/// Timer tokens of `agent.wait` deadlines: `WAIT_TIMER + wait number`.
const WAIT_TIMER: u64 = 2 << 32;

#[derive(Clone, Debug, Default)]
struct ConnState {
    acked: bool,
    /// The per-connection event seq.
    seq: u64,
    /// Whether the `connect` asked for `operator.admin`.
    admin: bool,
}

/// One frame of a run's script.
#[derive(Clone, Debug)]
enum Step {
    /// A `chat` event payload.
    Chat(Value),
    /// An `agent` event payload.
    Agent(Value),
}

/// How a run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Final,
    DoubleError,
    Aborted,
}

#[derive(Clone, Debug)]
struct Run {
    id: String,
    /// The `idempotencyKey` that started it (its id too, unless the server names its
    /// own: [`GatewayServer::own_run_ids`]).
    key: String,
    session: String,
    /// What is left to send, each after its gap.
    steps: VecDeque<(Duration, Step)>,
    /// The run seq of the last event sent.
    seq: u64,
    /// The assistant text sent so far.
    text: String,
    outcome: Outcome,
    /// The connection the run's timer is armed on; `None`: parked until a connection is
    /// acknowledged (the world drops the timers of a closed connection).
    armed_on: Option<ConnId>,
}

#[derive(Clone, Debug)]
struct Waiter {
    conn: ConnId,
    id: Value,
    run: String,
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
    /// The reply text a run streams, one model word at a time.
    pub reply: String,
    /// Probability that a run fails with two `error` events. Default 0.1.
    pub double_error: f64,
    /// Probability that a run is aborted (by another operator) part way. Default 0.05.
    pub abort: f64,
    /// Probability that a run's first event is sent before the `chat.send` answer.
    /// Default 0.5.
    pub event_first: f64,
    /// Probability that a `final` carries the seq of the last delta. Default 0.5.
    pub final_shares_seq: f64,
    /// Probability that a delta's `deltaText` holds only its last word although its
    /// cumulative `message` grew by more (the deltas before it were dropped). Default 0.15.
    pub drop_delta: f64,
    /// Most model words coalesced into one delta. Default 3.
    pub coalesce: usize,
    /// Probability that a run gets a `runId` of the server's own (`srv-run-N`) instead of
    /// its `idempotencyKey`, as a gateway may: the client then learns it only from the
    /// answer, which is sent before the run's first event. Default 0 (OpenClaw echoes
    /// the key).
    pub own_run_ids: f64,
    conns: BTreeMap<ConnId, ConnState>,
    /// The newest acknowledged connection still open: where run events go.
    current: Option<ConnId>,
    runs: BTreeMap<u64, Run>,
    next_run: u64,
    /// How runs that ended ended (`ok`, `error`), for `agent.wait`.
    ended: BTreeMap<String, &'static str>,
    /// The run id each idempotency key started, for a `chat.send` repeated after the run
    /// ended.
    ended_keys: BTreeMap<String, String>,
    waiters: BTreeMap<u64, Waiter>,
    next_wait: u64,
    transcripts: BTreeMap<String, Vec<Value>>,
    next_message: u64,
    /// Hostile values armed for the next handshake, connection or run
    /// ([`Fault::Hostile`]).
    armed: BTreeSet<Hostile>,
}

/// How many `connect.challenge` frames a [`Hostile::Challenges`] connection is sent.
const CHALLENGES: usize = 100;

/// The reply of a [`Hostile::LongText`] run: one word, one byte past the default
/// `StreamConfig::max_text`.
const LONG_TEXT: usize = (1 << 20) + 1;

impl Default for GatewayServer {
    fn default() -> Self {
        GatewayServer {
            tick: Duration::from_secs(30),
            token: None,
            response_delay: (Duration::from_millis(5), Duration::from_millis(60)),
            reply: "The quick brown fox jumps over the lazy dog".to_owned(),
            double_error: 0.1,
            abort: 0.05,
            event_first: 0.5,
            final_shares_seq: 0.5,
            drop_delta: 0.15,
            coalesce: 3,
            own_run_ids: 0.0,
            conns: BTreeMap::new(),
            current: None,
            runs: BTreeMap::new(),
            next_run: 0,
            ended: BTreeMap::new(),
            ended_keys: BTreeMap::new(),
            waiters: BTreeMap::new(),
            next_wait: 0,
            transcripts: BTreeMap::new(),
            next_message: 0,
            armed: BTreeSet::new(),
        }
    }
}

/// A cumulative assistant message, shaped as the gateway sends it.
fn assistant(text: &str) -> Value {
    json!({"role": "assistant", "content": [{"type": "text", "text": text}]})
}

fn res_ok(id: &Value, payload: Value) -> Wire {
    Wire::json(&json!({"type": "res", "id": id, "ok": true, "payload": payload}))
}

fn res_err(id: &Value, error: Value) -> Wire {
    Wire::json(&json!({"type": "res", "id": id, "ok": false, "error": error}))
}

impl GatewayServer {
    fn event(&mut self, conn: ConnId, name: &str, payload: Value) -> Wire {
        let st = self.conns.entry(conn).or_default();
        st.seq = st.seq.saturating_add(1);
        Wire::json(&json!({"type": "event", "event": name, "payload": payload, "seq": st.seq}))
    }

    /// Sends an event to the current connection, if any (nobody hears it otherwise).
    fn broadcast(&mut self, name: &str, payload: Value, ctx: &mut ServerCtx<'_>) {
        if let Some(conn) = self.current {
            let frame = self.event(conn, name, payload);
            ctx.send(conn, frame);
        }
    }

    fn hello_ok(&mut self) -> Value {
        let tick = if self.armed.remove(&Hostile::Heartbeat) {
            u64::MAX
        } else {
            self.tick.as_millis() as u64
        };
        json!({
            "type": "hello-ok",
            "protocol": 4,
            "policy": {"tickIntervalMs": tick, "maxPayload": 26_214_400},
        })
    }

    fn connect(&mut self, conn: ConnId, id: Value, params: &Value, ctx: &mut ServerCtx<'_>) {
        let flags = ctx.flags();
        if flags.starting {
            // A fresh process: whatever ran before the restart is gone.
            self.forget_runs();
            let retry_after = if self.armed.remove(&Hostile::RetryAfter) {
                u64::MAX
            } else {
                500
            };
            let err = json!({"code": "UNAVAILABLE", "message": "gateway starting; retry shortly",
                "retryable": true, "retryAfterMs": retry_after,
                "details": {"reason": "startup-sidecars"}});
            ctx.send(conn, res_err(&id, err));
            ctx.close_after(conn, 1013, "gateway starting", Duration::from_millis(1));
            return;
        }
        let token = params.pointer("/auth/token").and_then(Value::as_str);
        if let Some(want) = &self.token
            && token != Some(want.as_str())
        {
            let err = json!({"code": "INVALID_REQUEST",
                "message": "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)",
                "details": {"code": "AUTH_TOKEN_MISMATCH", "authReason": "token_mismatch"}});
            ctx.send(conn, res_err(&id, err));
            ctx.close_after(conn, 1000, "handshake rejected", Duration::from_millis(1));
            return;
        }
        if flags.never_ack {
            return;
        }
        let ok = res_ok(&id, self.hello_ok());
        ctx.send(conn, ok.clone());
        if flags.double_ack {
            ctx.send(conn, ok);
        }
        let admin = params
            .get("scopes")
            .and_then(Value::as_array)
            .is_some_and(|s| s.iter().any(|s| s == "operator.admin"));
        let st = self.conns.entry(conn).or_default();
        st.acked = true;
        st.admin = admin;
        self.current = Some(conn);
        ctx.timer(conn, HEARTBEAT, self.tick);
        // Runs that went on while the client was away resume on this connection.
        for (n, run) in &mut self.runs {
            if run.armed_on.is_none() {
                run.armed_on = Some(conn);
                ctx.timer(conn, RUN_TIMER + n, Duration::from_millis(10));
            }
        }
    }

    fn forget_runs(&mut self) {
        self.runs.clear();
        self.waiters.clear();
    }

    /// The script of a run: status events, coalesced deltas (each mirrored by an `agent`
    /// event of the same seq), then its end.
    fn script(
        &self,
        run: &str,
        session: &str,
        rng: &mut fastrand::Rng,
    ) -> (Outcome, Vec<(Duration, Step)>) {
        let outcome = if rng.f64() < self.double_error {
            Outcome::DoubleError
        } else if rng.f64() < self.abort {
            Outcome::Aborted
        } else {
            Outcome::Final
        };
        let base = |seq: u64, state: &str| json!({"runId": run, "sessionKey": session, "agentId": "main", "seq": seq, "state": state});
        let gap = |rng: &mut fastrand::Rng| {
            between(rng, Duration::from_millis(5), Duration::from_millis(80))
        };
        let mut steps = Vec::new();
        for (seq, phase) in [
            (1, "preparing_workspace"),
            (2, "preparing_context"),
            (4, "starting_model"),
        ] {
            let mut p = base(seq, "status");
            p["phase"] = json!(phase);
            steps.push((gap(rng), Step::Chat(p)));
        }
        let mut seq = 5;
        let words: Vec<&str> = self.reply.split(' ').collect();
        // An abort lands part way; a failure may come before any text.
        let stop_at = match outcome {
            Outcome::Final => words.len(),
            Outcome::DoubleError | Outcome::Aborted => rng.usize(..=words.len()),
        };
        let mut text = String::new();
        let mut i = 0;
        while i < stop_at {
            let take = rng.usize(1..=self.coalesce.max(1)).min(stop_at - i);
            let sent = text.len();
            for w in &words[i..i + take] {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(w);
            }
            i += take;
            seq += rng.u64(1..=2);
            let delta_text = if take > 1 && rng.f64() < self.drop_delta {
                // The earlier words' delta was dropped for a slow consumer; only the
                // cumulative message still has them.
                words[i - 1].to_owned()
            } else {
                text[sent..].to_owned()
            };
            let agent = json!({"runId": run, "sessionKey": session, "agentId": "main", "seq": seq,
                "stream": "assistant", "data": {"text": text, "delta": delta_text}});
            steps.push((gap(rng), Step::Agent(agent)));
            let mut p = base(seq, "delta");
            p["deltaText"] = json!(delta_text);
            p["message"] = assistant(&text);
            steps.push((Duration::ZERO, Step::Chat(p)));
        }
        match outcome {
            Outcome::Final => {
                if rng.f64() >= self.final_shares_seq {
                    seq += rng.u64(1..=4);
                }
                let mut p = base(seq, "final");
                p["stopReason"] = json!("stop");
                p["message"] = assistant(&self.reply);
                steps.push((gap(rng), Step::Chat(p)));
            }
            Outcome::DoubleError => {
                seq += rng.u64(1..=4);
                let mut first = base(seq, "error");
                first["errorMessage"] = json!("LLM request failed: provider rejected the request");
                steps.push((gap(rng), Step::Chat(first)));
                // The second comes from another layer, whose run seq starts again.
                let second = json!({"runId": run, "sessionKey": session, "seq": 1, "state": "error",
                    "errorMessage": "⚠️ Agent failed before reply: LLM request failed: provider rejected the request"});
                steps.push((gap(rng), Step::Chat(second)));
            }
            Outcome::Aborted => {
                let mut p = base(seq + 1, "aborted");
                p["stopReason"] = json!("rpc");
                if !text.is_empty() {
                    p["message"] = assistant(&text);
                }
                steps.push((gap(rng), Step::Chat(p)));
            }
        }
        (outcome, steps)
    }

    fn chat_send(&mut self, conn: ConnId, id: Value, params: &Value, ctx: &mut ServerCtx<'_>) {
        let key = params
            .get("idempotencyKey")
            .and_then(Value::as_str)
            .unwrap_or("run")
            .to_owned();
        let session = params
            .get("sessionKey")
            .and_then(Value::as_str)
            .unwrap_or("agent:main:main")
            .to_owned();
        let (lo, hi) = self.response_delay;
        let answer_after = between(ctx.rng(), lo, hi);
        // The same key again: the run is not started twice.
        if let Some(run) = self.runs.values().find(|r| r.key == key) {
            let run_id = run.id.clone();
            let status = if run.steps.is_empty() {
                "ok"
            } else {
                "in_flight"
            };
            ctx.send_after(
                conn,
                res_ok(&id, json!({"runId": run_id, "status": status})),
                answer_after,
            );
            return;
        }
        if let Some((run_id, status)) = self
            .ended_keys
            .get(&key)
            .and_then(|run| self.ended.get(run).map(|status| (run.clone(), *status)))
        {
            ctx.send_after(
                conn,
                res_ok(&id, json!({"runId": run_id, "status": status})),
                answer_after,
            );
            return;
        }
        let own = self.own_run_ids > 0.0 && ctx.rng().f64() < self.own_run_ids;
        let run_id = if own {
            format!("srv-run-{}", self.next_run)
        } else {
            key.clone()
        };
        let message = params.get("message").cloned().unwrap_or(Value::Null);
        self.transcripts
            .entry(session.clone())
            .or_default()
            .push(json!({"role": "user", "content": message}));
        let (outcome, steps) = if self.armed.remove(&Hostile::LongText) {
            let long = GatewayServer {
                reply: "x".repeat(LONG_TEXT),
                double_error: 0.0,
                abort: 0.0,
                ..GatewayServer::default()
            };
            long.script(&run_id, &session, ctx.rng())
        } else {
            self.script(&run_id, &session, ctx.rng())
        };
        let mut steps: VecDeque<(Duration, Step)> = steps.into();
        // The first event and the answer race. Frames of a connection leave in the order
        // they are handed to the world, so the first event goes now, or after the answer.
        let mut first_event = None;
        // A run the server named itself cannot be routed before its answer names it.
        if !own
            && ctx.rng().f64() < self.event_first
            && let Some((_, Step::Chat(p))) = steps.pop_front()
        {
            first_event = Some(p);
        }
        let answer = res_ok(&id, json!({"runId": run_id, "status": "started"}));
        let mut seq = 0;
        let mut text = String::new();
        if let Some(p) = first_event {
            seq = p.get("seq").and_then(Value::as_u64).unwrap_or(0);
            if let Some(t) = p.pointer("/message/content/0/text").and_then(Value::as_str) {
                t.clone_into(&mut text);
            }
            let frame = self.event(conn, "chat", p);
            ctx.send(conn, frame);
        }
        ctx.send_after(conn, answer, answer_after);
        if let Some(first) = steps.front_mut() {
            first.0 = first.0.max(answer_after);
        }
        let n = self.next_run;
        self.next_run += 1;
        let first_gap = steps.front().map_or(Duration::ZERO, |s| s.0);
        self.runs.insert(
            n,
            Run {
                id: run_id,
                key,
                session,
                steps,
                seq,
                text,
                outcome,
                armed_on: Some(conn),
            },
        );
        ctx.timer(conn, RUN_TIMER + n, first_gap);
    }

    /// A run's timer: sends its next frame (and any that follow without a gap), then
    /// arms the timer for the one after.
    fn run_step(&mut self, conn: ConnId, n: u64, ctx: &mut ServerCtx<'_>) {
        let Some(run) = self.runs.get_mut(&n) else {
            return;
        };
        if run.armed_on != Some(conn) {
            return;
        }
        let mut frames = Vec::new();
        while let Some((_, step)) = run.steps.pop_front() {
            match &step {
                Step::Chat(p) => {
                    if let Some(seq) = p.get("seq").and_then(Value::as_u64) {
                        run.seq = run.seq.max(seq);
                    }
                    if let Some(text) = p.pointer("/message/content/0/text").and_then(Value::as_str)
                    {
                        text.clone_into(&mut run.text);
                    }
                    frames.push(("chat", p.clone()));
                }
                Step::Agent(p) => frames.push(("agent", p.clone())),
            }
            if run.steps.front().is_none_or(|(gap, _)| !gap.is_zero()) {
                break;
            }
        }
        let next = run.steps.front().map(|(gap, _)| *gap);
        for (name, payload) in frames {
            self.broadcast(name, payload, ctx);
        }
        match next {
            Some(gap) => ctx.timer(conn, RUN_TIMER + n, gap),
            None => self.finish(n, ctx),
        }
    }

    /// A run has sent its last frame: its transcript entry, its waiters.
    fn finish(&mut self, n: u64, ctx: &mut ServerCtx<'_>) {
        let Some(run) = self.runs.remove(&n) else {
            return;
        };
        let status = match run.outcome {
            Outcome::Final => {
                self.transcripts
                    .entry(run.session.clone())
                    .or_default()
                    .push(assistant(&run.text));
                "ok"
            }
            Outcome::DoubleError | Outcome::Aborted => "error",
        };
        self.ended.insert(run.id.clone(), status);
        self.ended_keys.insert(run.key.clone(), run.id.clone());
        let woken: Vec<u64> = self
            .waiters
            .iter()
            .filter(|(_, w)| w.run == run.id)
            .map(|(k, _)| *k)
            .collect();
        for k in woken {
            if let Some(w) = self.waiters.remove(&k) {
                ctx.send(
                    w.conn,
                    res_ok(&w.id, json!({"runId": run.id, "status": status})),
                );
            }
        }
    }

    fn chat_abort(&mut self, conn: ConnId, id: Value, params: &Value, ctx: &mut ServerCtx<'_>) {
        let session = params
            .get("sessionKey")
            .and_then(Value::as_str)
            .unwrap_or("");
        let only = params.get("runId").and_then(Value::as_str);
        let hit: Vec<u64> = self
            .runs
            .iter()
            .filter(|(_, r)| r.session == session && only.is_none_or(|o| o == r.id))
            .map(|(n, _)| *n)
            .collect();
        let mut run_ids = Vec::new();
        for n in hit {
            let Some(run) = self.runs.get_mut(&n) else {
                continue;
            };
            run.steps.clear();
            run.outcome = Outcome::Aborted;
            let mut p = json!({"runId": run.id, "sessionKey": run.session, "agentId": "main",
                "seq": run.seq + 1, "state": "aborted", "stopReason": "rpc"});
            if !run.text.is_empty() {
                p["message"] = assistant(&run.text);
            }
            run_ids.push(run.id.clone());
            self.broadcast("chat", p, ctx);
            self.finish(n, ctx);
        }
        let aborted = !run_ids.is_empty();
        ctx.send(
            conn,
            res_ok(
                &id,
                json!({"ok": true, "aborted": aborted, "runIds": run_ids}),
            ),
        );
    }

    fn chat_inject(&mut self, conn: ConnId, id: Value, params: &Value, ctx: &mut ServerCtx<'_>) {
        if !self.conns.get(&conn).is_some_and(|c| c.admin) {
            let err = json!({"code": "FORBIDDEN", "message": "missing scope: operator.admin",
                "details": {"code": "MISSING_SCOPE", "missingScope": "operator.admin"}});
            ctx.send(conn, res_err(&id, err));
            return;
        }
        let session = params
            .get("sessionKey")
            .and_then(Value::as_str)
            .unwrap_or("agent:main:main")
            .to_owned();
        let message = params.get("message").and_then(Value::as_str).unwrap_or("");
        let text = match params.get("label").and_then(Value::as_str) {
            Some(label) => format!("[{label}]\n\n{message}"),
            None => message.to_owned(),
        };
        self.next_message += 1;
        let message_id = format!("msg-{}", self.next_message);
        self.transcripts
            .entry(session.clone())
            .or_default()
            .push(assistant(&text));
        let p = json!({"runId": format!("inject-{message_id}"), "sessionKey": session,
            "agentId": "main", "seq": 0, "state": "final", "message": assistant(&text)});
        self.broadcast("chat", p, ctx);
        ctx.send(
            conn,
            res_ok(&id, json!({"ok": true, "messageId": message_id})),
        );
    }

    fn agent_wait(&mut self, conn: ConnId, id: Value, params: &Value, ctx: &mut ServerCtx<'_>) {
        let run = params
            .get("runId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if let Some(status) = self.ended.get(&run) {
            ctx.send(conn, res_ok(&id, json!({"runId": run, "status": status})));
            return;
        }
        let timeout = params
            .get("timeoutMs")
            .and_then(Value::as_u64)
            .unwrap_or(30_000);
        let n = self.next_wait;
        self.next_wait += 1;
        self.waiters.insert(n, Waiter { conn, id, run });
        ctx.timer(conn, WAIT_TIMER + n, Duration::from_millis(timeout));
    }

    fn wait_timeout(&mut self, n: u64, ctx: &mut ServerCtx<'_>) {
        if let Some(w) = self.waiters.remove(&n) {
            ctx.send(
                w.conn,
                res_ok(&w.id, json!({"runId": w.run, "status": "timeout"})),
            );
        }
    }

    fn chat_history(&self, params: &Value) -> Value {
        let session = params
            .get("sessionKey")
            .and_then(Value::as_str)
            .unwrap_or("agent:main:main");
        let all = self.transcripts.get(session).map_or(&[][..], Vec::as_slice);
        let limit = params
            .get("limit")
            .and_then(Value::as_u64)
            .map_or(all.len(), |l| usize::try_from(l).unwrap_or(usize::MAX));
        let from = all.len().saturating_sub(limit);
        json!({"sessionKey": session, "messages": &all[from..], "hasMore": from > 0})
    }
}

impl Server for GatewayServer {
    fn on_open(&mut self, conn: ConnId, ctx: &mut ServerCtx<'_>) {
        self.conns.insert(conn, ConnState::default());
        let ts = ctx.now().as_millis() as u64;
        let n = if self.armed.remove(&Hostile::Challenges) {
            CHALLENGES
        } else {
            1
        };
        for _ in 0..n {
            let frame = self.event(
                conn,
                "connect.challenge",
                json!({"nonce": format!("n{}", conn.get()), "ts": ts, "capabilities": ["model-catalog-snapshot"]}),
            );
            ctx.send(conn, frame);
        }
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
        let answer = match method {
            "chat.send" => return self.chat_send(conn, id, &params, ctx),
            "chat.abort" => return self.chat_abort(conn, id, &params, ctx),
            "chat.inject" => return self.chat_inject(conn, id, &params, ctx),
            "agent.wait" => return self.agent_wait(conn, id, &params, ctx),
            "chat.history" => res_ok(&id, self.chat_history(&params)),
            "health" => res_ok(&id, json!({"ok": true, "ts": ctx.now().as_millis() as u64})),
            "fail" => res_err(
                &id,
                json!({"code": "INVALID_REQUEST", "message": "as asked"}),
            ),
            other => res_err(
                &id,
                json!({"code": "INVALID_REQUEST", "message": format!("unknown method: {other}")}),
            ),
        };
        ctx.send_after(conn, answer, delay);
    }

    fn on_closed(&mut self, conn: ConnId, _ctx: &mut ServerCtx<'_>) {
        self.conns.remove(&conn);
        if self.current == Some(conn) {
            self.current = None;
        }
        // The world drops a closed connection's timers: park its runs, drop its waits.
        for run in self.runs.values_mut() {
            if run.armed_on == Some(conn) {
                run.armed_on = None;
            }
        }
        self.waiters.retain(|_, w| w.conn != conn);
    }

    fn on_timer(&mut self, conn: ConnId, token: u64, ctx: &mut ServerCtx<'_>) {
        match token {
            HEARTBEAT if self.conns.contains_key(&conn) => {
                let ts = ctx.now().as_millis() as u64;
                let frame = self.event(conn, "tick", json!({"ts": ts}));
                ctx.send(conn, frame);
                ctx.timer(conn, HEARTBEAT, self.tick);
            }
            t if (RUN_TIMER..WAIT_TIMER).contains(&t) => self.run_step(conn, t - RUN_TIMER, ctx),
            t if t >= WAIT_TIMER => self.wait_timeout(t - WAIT_TIMER, ctx),
            _ => {}
        }
    }

    fn on_fault(&mut self, conn: ConnId, fault: &Fault, ctx: &mut ServerCtx<'_>) {
        match fault {
            Fault::UnknownResponse => {
                let r = json!({"type": "res", "id": "nobody-asked", "ok": true, "payload": {}});
                ctx.send(conn, Wire::json(&r));
            }
            Fault::DoubleAck(_) if self.conns.get(&conn).is_some_and(|c| c.acked) => {
                let id = format!("connect-{}", conn.get());
                let ok = self.hello_ok();
                ctx.send(conn, res_ok(&json!(id), ok));
            }
            Fault::Hostile(Hostile::SeqMax) => {
                if let Some(st) = self.conns.get_mut(&conn) {
                    st.seq = u64::MAX - 1;
                }
            }
            Fault::Hostile(h) => {
                self.armed.insert(*h);
            }
            Fault::Restart { graceful, .. } => {
                if *graceful && self.conns.get(&conn).is_some_and(|c| c.acked) {
                    let frame = self.event(conn, "shutdown", json!({"reason": "gateway stopping"}));
                    ctx.send(conn, frame);
                }
                self.forget_runs();
            }
            _ => {}
        }
    }
}
