//! What the logs show of every lifecycle step a session goes through when things go wrong,
//! over real loopback sockets on the runtime under test, for the HelloAck and Gateway
//! profiles: an attempt that failed (with the wait before the next one), a stale
//! connection, a missed send deadline, a clock jump, a protocol violation and a message
//! dropped from the queue. Each step is provoked, awaited as an event, and then its line is
//! looked up in what a `fmt` subscriber wrote: in the session's span (each scenario has a
//! label of its own, the span's `url`), at the documented level, with its fields.
//!
//! `tests/logs_tokio.rs` and `tests/logs_smol.rs` run [`every_step_is_logged`], one test
//! per binary, since the subscriber must be the global default to see every task's
//! events. The clock jump is made with [`Jumpy`], a runtime whose clock is the driver's
//! [`SuspendAwareClock`] over a source the test can push ahead, as a host suspend does.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tether_core::profiles::{Gateway, GatewayOptions, HelloAck, HelloAckRequest};
use tether_core::{Config, DisconnectReason, DropReason, Event, Overflow, Violation};
use tether_driver::clock::{ClockSource, SuspendAwareClock};
use tether_driver::{Client, Runtime, SendProtocol, Transport};

use crate::loopback::{self, LIMIT, Server};
use crate::raw_peer::{Incoming, Scripted};
use crate::runtimes::{OnSmol, OnTokio, TestRuntime, within};

// One writer for every log test: transport-tokio's tracing tests include the same file.
#[path = "../../transport-tokio/tests/common/mod.rs"]
mod capture;
pub use capture::Capture;

/// The seed of every session here, which the logs must not show: distinctive, so that its
/// hex or decimal form cannot turn up in a log line by chance.
const SEED: u64 = 0x5eed_c0de_7e7e_0001;

/// A runtime under test, with what a scenario needs to start sessions on its own runtime
/// or on a wrapper of it ([`Jumpy`]).
pub trait LogRuntime: TestRuntime {
    /// The adapter's runtime type (`Tokio`, `Smol`).
    type Rt: Runtime;
    /// The adapter's runtime.
    fn runtime(&self) -> Self::Rt;
    /// The adapter's WebSocket transport to `url`.
    fn transport(&self, url: &str) -> impl Transport;
}

impl LogRuntime for OnTokio {
    type Rt = tether_tokio::Tokio;

    fn runtime(&self) -> Self::Rt {
        tether_tokio::Tokio
    }

    fn transport(&self, url: &str) -> impl Transport {
        tether_tokio::WsTransport::new(tether_tokio::TcpDial, url).expect("a valid URL")
    }
}

impl LogRuntime for OnSmol {
    type Rt = tether_smol::Smol;

    fn runtime(&self) -> Self::Rt {
        tether_smol::Smol
    }

    fn transport(&self, url: &str) -> impl Transport {
        tether_smol::WsTransport::new(tether_smol::TcpDial, url).expect("a valid URL")
    }
}

// ---- a clock that jumps --------------------------------------------------------------------

/// The OS's monotonic clock, and a suspend-counting twin that [`Jumpy::jump`] pushes
/// ahead.
#[derive(Clone)]
struct Ahead {
    epoch: Instant,
    by: Arc<Mutex<Duration>>,
}

impl ClockSource for Ahead {
    fn monotonic(&self) -> Instant {
        Instant::now()
    }

    fn since_boot(&self) -> Option<Duration> {
        let by = *self
            .by
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(Instant::now() - self.epoch + by)
    }
}

/// The adapter's runtime with its clock replaced by a [`SuspendAwareClock`] whose
/// suspend-counting source the test pushes ahead: to the session, [`jump`](Self::jump) is
/// a host that slept.
#[derive(Clone)]
pub struct Jumpy<R> {
    inner: R,
    clock: Arc<SuspendAwareClock<Ahead>>,
}

impl<R: Runtime> Jumpy<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        let source = Ahead {
            epoch: Instant::now(),
            by: Arc::default(),
        };
        Jumpy {
            inner,
            clock: Arc::new(SuspendAwareClock::new(source)),
        }
    }

    /// Moves the clock on by `d` at once, as a suspend of `d` does.
    pub fn jump(&self, d: Duration) {
        *self
            .clock
            .source()
            .by
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += d;
    }
}

impl<R: Runtime> Runtime for Jumpy<R> {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        self.inner.spawn(future);
    }

    /// The inner runtime's timer, at the monotonic instant of `deadline`, as the adapters
    /// convert it (the inner runtime's own conversion adds the OS's suspended time, none
    /// while a test runs).
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        self.inner.sleep_until(self.clock.to_monotonic(deadline))
    }

    fn now(&self) -> Instant {
        self.clock.now()
    }
}

// ---- helpers -------------------------------------------------------------------------------

fn hello() -> HelloAck {
    HelloAck::new(|| json!({"type": "hello", "client": "logs"}))
}

fn build(b: tether_core::ConfigBuilder) -> Config {
    b.build().expect("valid test configuration")
}

/// Starts a session labelled `label` (the span's `url`, which names the scenario).
fn start<P: SendProtocol, R: Runtime>(
    a: &impl LogRuntime,
    rt: R,
    url: &str,
    config: Config,
    protocol: P,
    label: &str,
) -> Client<P> {
    Client::start(rt, a.transport(url), config, protocol, SEED, label)
        .unwrap_or_else(|e| panic!("[{}] start {label}: {e}", a.name()))
}

/// The first event `pick` selects, skipping the others, within [`LIMIT`].
async fn find<A: TestRuntime, P: tether_core::Protocol, T>(
    a: &A,
    events: &mut (impl futures::Stream<Item = Event<P>> + Unpin),
    what: &str,
    pick: impl Fn(&Event<P>) -> Option<T>,
) -> T {
    within(a, LIMIT, what, async {
        while let Some(ev) = events.next().await {
            if let Some(t) = pick(&ev) {
                return t;
            }
        }
        panic!("[{}] {what}: the event stream ended", a.name())
    })
    .await
}

async fn opened<A: TestRuntime, P: tether_core::Protocol>(
    a: &A,
    events: &mut (impl futures::Stream<Item = Event<P>> + Unpin),
    what: &str,
) {
    find(a, events, what, |e| {
        matches!(e, Event::Opened { .. }).then_some(())
    })
    .await;
}

async fn shut<A: TestRuntime, P: SendProtocol>(a: &A, client: Client<P>) {
    within(a, LIMIT, "close", client.close()).await;
}

// ---- the scenarios -------------------------------------------------------------------------

/// The server dies: attempts are refused and each waits its backoff; two messages sent
/// while down overflow a queue of one, and the first is dropped. The server comes back.
async fn outage<A: LogRuntime>(a: &A) {
    let server = Server::start();
    let config = build(loopback::config().queue_while_offline(1, Overflow::DropOldest));
    let client = start(
        a,
        a.runtime(),
        &server.url(),
        config,
        hello(),
        "logs-outage",
    );
    let mut events = Box::pin(client.events());
    opened(a, &mut events, "open").await;
    server.kill().await;
    find(a, &mut events, "a refused attempt with a retry", |e| {
        matches!(e, Event::AttemptFailed { retry: Some(_), .. }).then_some(())
    })
    .await;
    let first = within(
        a,
        LIMIT,
        "send",
        client.send(json!({"type": "note", "n": 1})),
    )
    .await
    .expect("queued");
    within(
        a,
        LIMIT,
        "send",
        client.send(json!({"type": "note", "n": 2})),
    )
    .await
    .expect("queued");
    let (id, reason) = find(a, &mut events, "the first message dropped", |e| match e {
        Event::MessageDropped { id, reason } => Some((*id, *reason)),
        _ => None,
    })
    .await;
    assert_eq!(
        (id, reason),
        (first, DropReason::Overflow),
        "[{}]",
        a.name()
    );
    server.restart().await.expect("restart on the same port");
    opened(a, &mut events, "reopen").await;
    shut(a, client).await;
}

/// The server keeps the socket but answers nothing: the connection goes stale.
async fn stale<A: LogRuntime>(a: &A) {
    let server = Server::start();
    let client = start(
        a,
        a.runtime(),
        &server.url(),
        build(loopback::config()),
        hello(),
        "logs-stale",
    );
    let mut events = Box::pin(client.events());
    opened(a, &mut events, "open").await;
    server.stop_answering().await;
    let reason = find(a, &mut events, "stale", |e| match e {
        Event::Disconnected { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, DisconnectReason::Stale, "[{}]", a.name());
    shut(a, client).await;
}

/// The server stops reading: megabytes of messages fill the socket, the send deadline
/// aborts the connection, and the messages whose writes were never confirmed are dropped.
async fn send_deadline<A: LogRuntime>(a: &A) {
    /// 24 × 256 KiB: more than loopback holds with the server's small receive buffer.
    const BLOBS: usize = 24;
    let server = Server::start();
    // No pings and a long stale threshold: only the send deadline can notice. A deadline
    // longer than pushing the blobs takes in a debug build.
    let config = build(
        loopback::config()
            .ping_interval(None)
            .stale_after(Duration::from_secs(5))
            .send_deadline(Duration::from_secs(1))
            .slow_write_warning(Duration::from_millis(500)),
    );
    let client = start(
        a,
        a.runtime(),
        &server.url(),
        config,
        hello(),
        "logs-send-deadline",
    );
    let mut events = Box::pin(client.events());
    opened(a, &mut events, "open").await;
    server.stop_reading().await;
    let blob = json!({"type": "blob", "data": "x".repeat(256 << 10)});
    for _ in 0..BLOBS {
        within(a, LIMIT, "send", client.send(blob.clone()))
            .await
            .expect("accepted");
    }
    let reason = find(a, &mut events, "the send deadline", |e| match e {
        Event::Disconnected { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, DisconnectReason::SendDeadline, "[{}]", a.name());
    shut(a, client).await;
}

/// A response larger than `max_inbound_frame`: the codec refuses it, a violation.
async fn violation<A: LogRuntime>(a: &A) {
    let server = Server::start();
    let config = build(loopback::config().max_inbound_frame(512));
    let client = start(
        a,
        a.runtime(),
        &server.url(),
        config,
        hello(),
        "logs-violation",
    );
    let mut events = Box::pin(client.events());
    opened(a, &mut events, "open").await;
    let big = HelloAckRequest::new("echo", json!({"data": "y".repeat(2048)}));
    let call = client.clone();
    let asked = async move { call.request(big).await };
    let (_, v) = futures::join!(
        within(a, LIMIT, "the oversized echo", asked),
        find(a, &mut events, "a violation", |e| match e {
            Event::Violation { violation, .. } => Some(violation.clone()),
            _ => None,
        })
    );
    assert!(
        matches!(v, Violation::Oversized { .. }),
        "[{}] {v:?}",
        a.name()
    );
    shut(a, client).await;
}

/// The clock jumps 20 s (past the 15 s threshold) on an open connection: the session
/// reports it and probes; the server answers the ping and the connection stays.
async fn clock_jump<A: LogRuntime>(a: &A) {
    let server = Server::start();
    let rt = Jumpy::new(a.runtime());
    let client = start(
        a,
        rt.clone(),
        &server.url(),
        build(loopback::config()),
        hello(),
        "logs-clock-jump",
    );
    let mut events = Box::pin(client.events());
    opened(a, &mut events, "open").await;
    rt.jump(Duration::from_secs(20));
    find(a, &mut events, "the clock jump", |e| {
        matches!(e, Event::ClockJump { .. }).then_some(())
    })
    .await;
    let r = within(
        a,
        LIMIT,
        "echo",
        client.request(HelloAckRequest::new("echo", json!(1))),
    )
    .await;
    assert_eq!(
        r,
        Ok(json!(1).into()),
        "[{}] the connection survived",
        a.name()
    );
    shut(a, client).await;
}

/// The gateway's challenge, as the real one sends it.
const CHALLENGE: &str = r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"n-1","ts":1737264000000,"capabilities":["chat"]}}"#;

/// A Gateway session: the gateway opens it, then repeats its challenge (a violation) and
/// goes silent. The clock jumps; the probe gets no answer and the connection is dropped as
/// stale. The next connection never hears a challenge: the handshake times out, an attempt
/// that failed with a retry. Two messages sent meanwhile overflow a queue of one.
async fn gateway<A: LogRuntime>(a: &A) {
    let server = Scripted::start(4, |c| -> Result<(), String> {
        c.send_text(CHALLENGE).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + LIMIT;
        let connect: Value = match c.next_text(deadline) {
            Incoming::Text(t) => serde_json::from_str(&t).map_err(|e| e.to_string())?,
            other => return Err(format!("no connect: {other:?}")),
        };
        let ok = json!({
            "type": "res", "id": connect["id"], "ok": true,
            "payload": { "type": "hello-ok", "protocol": 4, "policy": { "tickIntervalMs": 30000 } },
        });
        c.send_text(&ok.to_string()).map_err(|e| e.to_string())?;
        c.send_text(CHALLENGE).map_err(|e| e.to_string())?;
        // Silent from here on (pings unanswered), until the client drops the connection.
        for _ in 0..1000 {
            match c.next_text(deadline) {
                Incoming::Text(_) => {}
                _ => return Ok(()),
            }
        }
        Ok(())
    });
    let rt = Jumpy::new(a.runtime());
    let mut config = build(loopback::config().queue_while_offline(1, Overflow::DropOldest));
    config.liveness.probe_timeout = Duration::from_millis(300);
    let gw = Gateway::new(GatewayOptions::default());
    let client = start(a, rt.clone(), &server.url(), config, gw, "logs-gateway");
    let mut events = Box::pin(client.events());
    opened(a, &mut events, "open").await;
    let v = find(a, &mut events, "the repeated challenge", |e| match e {
        Event::Violation { violation, .. } => Some(violation.clone()),
        _ => None,
    })
    .await;
    assert_eq!(v, Violation::UnexpectedHandshake, "[{}]", a.name());
    rt.jump(Duration::from_secs(20));
    find(a, &mut events, "the clock jump", |e| {
        matches!(e, Event::ClockJump { .. }).then_some(())
    })
    .await;
    let reason = find(a, &mut events, "the failed probe", |e| match e {
        Event::Disconnected { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, DisconnectReason::Stale, "[{}]", a.name());
    let first = within(a, LIMIT, "send", client.send(json!({"n": 1})))
        .await
        .expect("queued");
    within(a, LIMIT, "send", client.send(json!({"n": 2})))
        .await
        .expect("queued");
    let (id, reason) = find(a, &mut events, "the first message dropped", |e| match e {
        Event::MessageDropped { id, reason } => Some((*id, *reason)),
        _ => None,
    })
    .await;
    assert_eq!(
        (id, reason),
        (first, DropReason::Overflow),
        "[{}]",
        a.name()
    );
    find(a, &mut events, "a handshake that timed out", |e| {
        matches!(e, Event::AttemptFailed { retry: Some(_), .. }).then_some(())
    })
    .await;
    assert_eq!(
        server.result(LIMIT),
        Some(Ok(())),
        "[{}] the gateway's script",
        a.name()
    );
    client.terminate();
}

// ---- the assertions ------------------------------------------------------------------------

/// The captured lines of the scenario labelled `label` (in its session span).
fn lines_of<'a>(logs: &'a str, label: &str) -> Vec<&'a str> {
    let span = format!(" url={label}}}");
    logs.lines().filter(|l| l.contains(&span)).collect()
}

/// The captured logs and the steps found missing in them.
struct Steps<'a> {
    logs: &'a str,
    missing: Vec<String>,
}

impl Steps<'_> {
    /// Expects that the scenario `label` logged `message` at `level` from `target` (a
    /// module path prefix) with every one of `fields` (`name=value` prefixes as the `fmt`
    /// subscriber writes them).
    fn expect(&mut self, label: &str, level: &str, target: &str, message: &str, fields: &[&str]) {
        let found = lines_of(self.logs, label).into_iter().any(|l| {
            l.contains(&format!(" {level} "))
                && l.contains(&format!(" {target}"))
                && l.contains(&format!(": {message}"))
                && fields.iter().all(|f| l.contains(&format!(" {f}")))
        });
        if !found {
            self.missing.push(format!(
                "{label}: {level} {target} {message:?} with {fields:?}"
            ));
        }
    }
}

/// Installs a DEBUG `fmt` subscriber (no ANSI colours) writing into the returned capture
/// as the global default, so that it sees every task's events on every thread.
///
/// # Panics
///
/// If a global default is already set: one such test per binary.
pub fn capture_globally() -> Capture {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
    capture
}

/// Runs every scenario on `a`, then checks each step's line in `capture`, which the
/// global subscriber (DEBUG, no ANSI) writes into.
pub async fn every_step_is_logged<A: LogRuntime>(a: &A, capture: &Capture) {
    // One after the other: the send-deadline scenario's megabytes would otherwise delay
    // the others' timers.
    outage(a).await;
    stale(a).await;
    send_deadline(a).await;
    violation(a).await;
    clock_jump(a).await;
    gateway(a).await;
    // Every line checked below was written before the event the scenario awaited was
    // published: the session logs as it decides, the driver before it publishes.

    let logs = capture.text();
    if std::env::var_os("TETHER_SHOW_LOGS").is_some() {
        eprintln!("{logs}");
    }
    let rt = a.name();
    let driver = "tether_driver::task";
    let core = "tether_core::session";
    let mut steps = Steps {
        logs: &logs,
        missing: Vec::new(),
    };

    // An attempt that failed, with its cause and the wait before the next one.
    for label in ["logs-outage", "logs-gateway"] {
        let retry = ["error=", "retry_in=Some("];
        steps.expect(label, "INFO", driver, "attempt failed", &retry);
        let fields = ["conn=", "attempt=", "error="];
        steps.expect(label, "DEBUG", core, "attempt failed", &fields);
    }
    // A message dropped from the offline queue, and those a lost connection took along.
    for label in ["logs-outage", "logs-gateway"] {
        let fields = ["id=msg#", "reason=Overflow"];
        steps.expect(label, "DEBUG", driver, "message dropped", &fields);
    }
    let fields = ["id=msg#", "reason=Disconnected"];
    steps.expect(
        "logs-send-deadline",
        "DEBUG",
        driver,
        "message dropped",
        &fields,
    );
    // Stale: the abort (warn) and the disconnect with its reason and wait.
    for label in ["logs-stale", "logs-gateway"] {
        let abort = "peer silent past the stale threshold; aborting";
        steps.expect(label, "WARN", core, abort, &["conn="]);
        let fields = ["reason=Stale", "retry_in=Some("];
        steps.expect(label, "INFO", driver, "disconnected", &fields);
    }
    // The send deadline.
    let label = "logs-send-deadline";
    steps.expect(
        label,
        "WARN",
        core,
        "send deadline missed; aborting",
        &["conn="],
    );
    steps.expect(
        label,
        "INFO",
        driver,
        "disconnected",
        &["reason=SendDeadline"],
    );
    // A clock jump: the session's probe and the driver's notice, with the overshoot.
    for label in ["logs-clock-jump", "logs-gateway"] {
        let jump = "clock jump; probing the peer";
        steps.expect(label, "DEBUG", core, jump, &["conn=", "overshoot="]);
        steps.expect(label, "INFO", driver, jump, &["overshoot="]);
    }
    // Violations, with what was wrong.
    for label in ["logs-violation", "logs-gateway"] {
        let fields = ["conn=", "violation="];
        steps.expect(label, "DEBUG", core, "protocol violation", &fields);
    }
    assert!(
        steps.missing.is_empty(),
        "[{rt}] steps not logged:\n{}\n\ncaptured logs:\n{logs}",
        steps.missing.join("\n")
    );

    // The span names the session by an id that is not its seed.
    for shown in [format!("{SEED:016x}"), format!("{SEED}")] {
        assert!(
            !logs.contains(&shown),
            "[{rt}] the seed {shown} is in the logs"
        );
    }
}
