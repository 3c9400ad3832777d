//! The flight recorder: a real session on tokio and on smol, over loopback, through a
//! server kill, a reconnect, requests and a stream, recorded and replayed to identical
//! outputs with every oracle passing; redaction modes that never write the hello or a
//! token unless asked; and traces that are corrupted, truncated or of another version,
//! refused with a typed error naming the line, never a panic.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use proptest::prelude::*;
use serde_json::json;
use tether_core::profiles::{HelloAck, HelloAckRequest};
use tether_core::{Config, Status, StreamEventKind};
use tether_driver::record::{Options, Recorder, Redaction, RingBuffer};
use tether_driver::{Client, ConnectError};
use tether_sim::trace::{ReplayReport, TraceError, replay};
use tether_tests::loopback::{self, LIMIT, Server};
use tether_tests::runtimes::{OnSmol, OnTokio, TestRuntime, within};

const TOKEN: &str = "tok-SECRET-4242";
const HELLO_MARK: &str = "hello-mark-recording";
const MESSAGE: &str = "private-note-payload";

/// An adapter's `connect_with`.
trait Recording: TestRuntime {
    fn connect_with(
        &self,
        url: &str,
        config: Config,
        protocol: HelloAck,
        options: Options<HelloAck>,
    ) -> BoxFuture<'static, Result<Client<HelloAck>, ConnectError>>;
}

impl Recording for OnTokio {
    fn connect_with(
        &self,
        url: &str,
        config: Config,
        protocol: HelloAck,
        options: Options<HelloAck>,
    ) -> BoxFuture<'static, Result<Client<HelloAck>, ConnectError>> {
        let url = url.to_owned();
        Box::pin(async move { tether_tokio::connect_with(&url, config, protocol, options).await })
    }
}

impl Recording for OnSmol {
    fn connect_with(
        &self,
        url: &str,
        config: Config,
        protocol: HelloAck,
        options: Options<HelloAck>,
    ) -> BoxFuture<'static, Result<Client<HelloAck>, ConnectError>> {
        let url = url.to_owned();
        Box::pin(async move { tether_smol::connect_with(&url, config, protocol, options).await })
    }
}

/// A writer into shared memory, so the test can read what the recorder wrote.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Shared {
    fn bytes(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn hello() -> HelloAck {
    HelloAck::new(|| json!({ "type": "hello", "token": TOKEN, "client": HELLO_MARK }))
}

fn echo(n: u64) -> HelloAckRequest {
    HelloAckRequest::new("echo", json!({ "n": n, "note": MESSAGE }))
}

/// Waits (bounded) until the recorder has written its `end` line: the session loop is
/// gone.
async fn finished<A: TestRuntime>(a: &A, read: impl Fn() -> Vec<u8>) -> Vec<u8> {
    within(a, LIMIT, "the trace's end line", async {
        loop {
            let bytes = read();
            if String::from_utf8_lossy(&bytes).contains("\"k\":\"end\"") {
                return bytes;
            }
            a.sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// The whole scenario: requests, a stream, a server kill, refused attempts, a restart,
/// a reconnect, more requests, a close. Returns the trace.
async fn record_full<A: Recording>(a: &A, recorder: impl FnOnce(Shared) -> Recorder) -> Vec<u8> {
    let server = Server::start();
    let sink = Shared::default();
    let options = Options::new().record(recorder(sink.clone()));
    let config = loopback::config().build().expect("valid configuration");
    let client = within(
        a,
        LIMIT,
        "connect",
        a.connect_with(&server.url(), config, hello(), options),
    )
    .await
    .unwrap_or_else(|e| panic!("[{}] connect: {e}", a.name()));
    let mut statuses = Box::pin(client.status_changes());

    let r = within(a, LIMIT, "echo", client.request(echo(1))).await;
    assert_eq!(
        r.map(|v| v.value().expect("JSON")["n"].clone()),
        Ok(json!(1)),
        "[{}]",
        a.name()
    );
    client
        .send(json!({ "type": "note", "text": MESSAGE }))
        .await
        .expect("send while open");

    let mut call = within(
        a,
        LIMIT,
        "stream",
        client.stream(
            HelloAckRequest::new("stream", json!({ "n": 2 })).streaming(),
            None,
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("[{}] stream: {e}", a.name()));
    let kinds: Vec<String> = within(a, LIMIT, "stream events", async {
        let mut kinds = Vec::new();
        while let Some(ev) = call.events.next().await {
            let terminal = ev.kind.is_terminal();
            kinds.push(match ev.kind {
                StreamEventKind::Delta { .. } => "delta".to_owned(),
                StreamEventKind::Final { .. } => "final".to_owned(),
                other => format!("{other:?}"),
            });
            if terminal {
                break;
            }
        }
        kinds
    })
    .await;
    assert_eq!(kinds, ["delta", "delta", "final"], "[{}]", a.name());
    assert!(
        within(a, LIMIT, "stream response", call.response())
            .await
            .is_ok()
    );

    server.kill().await;
    let down = within(a, LIMIT, "reconnecting", statuses.next()).await;
    assert_eq!(down, Some(Status::Reconnecting), "[{}]", a.name());
    // Let an attempt or two be refused before the server comes back.
    a.sleep(Duration::from_millis(120)).await;
    server.restart().await.expect("restart on the same port");
    let up = within(a, LIMIT, "reopen", statuses.next()).await;
    assert_eq!(up, Some(Status::Open), "[{}]", a.name());
    let r = within(a, LIMIT, "echo after reconnect", client.request(echo(3))).await;
    assert_eq!(
        r.map(|v| v.value().expect("JSON")["n"].clone()),
        Ok(json!(3)),
        "[{}]",
        a.name()
    );

    within(a, LIMIT, "close", client.close()).await;
    drop(statuses);
    drop(client);
    finished(a, || sink.bytes()).await
}

fn text(trace: &[u8]) -> String {
    String::from_utf8(trace.to_vec()).expect("traces are UTF-8")
}

fn assert_replays_identically(name: &str, trace: &[u8]) -> ReplayReport {
    let report = replay(trace).unwrap_or_else(|e| panic!("[{name}] {e}\n{}", text(trace)));
    assert!(
        report.is_clean(),
        "[{name}] replay not clean:\n{report}\n{}",
        text(trace)
    );
    assert!(report.complete, "[{name}] the trace has its end line");
    report
}

fn assert_full_session(name: &str, trace: &[u8], report: &ReplayReport) {
    let t = text(trace);
    // What the scenario went through is in the trace, and was compared on replay.
    for needle in [
        r#""to":"Reconnecting""#,
        r#""failure":"refused""#,
        "Stream { key: ",
        "kind: Final",
        r#""k":"request""#,
        r#""k":"close""#,
    ] {
        assert!(t.contains(needle), "[{name}] the trace lacks {needle}");
    }
    let opens = t.matches(r#""open":{"#).count();
    assert!(
        opens >= 3,
        "[{name}] first connect, refused attempt(s), reconnect: {opens}"
    );
    assert!(report.outputs > 20, "[{name}] {report}");
    assert!(report.calls > 10, "[{name}] {report}");
}

#[tokio::test]
async fn a_tokio_session_replays_identically() {
    let trace = record_full(&OnTokio, |s| {
        Recorder::to_writer(s).redaction(Redaction::Hash)
    })
    .await;
    let report = assert_replays_identically("tokio", &trace);
    assert_full_session("tokio", &trace, &report);
    assert!(!text(&trace).contains(TOKEN));
}

#[test]
fn a_smol_session_replays_identically() {
    smol::block_on(async {
        let trace = record_full(&OnSmol, |s| {
            Recorder::to_writer(s).redaction(Redaction::Keep)
        })
        .await;
        let report = assert_replays_identically("smol", &trace);
        assert_full_session("smol", &trace, &report);
        // Keep mode keeps payloads, but not the hello.
        let t = text(&trace);
        assert!(t.contains(MESSAGE));
        assert!(!t.contains(TOKEN) && !t.contains(HELLO_MARK));
    });
}

/// A short session: connect, one request, one message, close. Returns the trace.
async fn record_short(recorder: impl FnOnce(Shared) -> Recorder) -> Vec<u8> {
    let sink = Shared::default();
    let recorder = recorder(sink.clone());
    short_session(recorder, move || sink.bytes()).await
}

/// [`record_short`] into a ring buffer; returns its dump.
async fn record_short_ring(ring: &RingBuffer) -> Vec<u8> {
    let read = ring.clone();
    short_session(Recorder::to_ring(ring), move || read.dump()).await
}

async fn short_session(recorder: Recorder, read: impl Fn() -> Vec<u8>) -> Vec<u8> {
    let a = &OnTokio;
    let server = Server::start();
    let options = Options::new().record(recorder);
    let config = loopback::config().build().expect("valid configuration");
    let client = within(
        a,
        LIMIT,
        "connect",
        a.connect_with(&server.url(), config, hello(), options),
    )
    .await
    .expect("connect");
    let r = within(a, LIMIT, "echo", client.request(echo(1))).await;
    assert!(r.is_ok());
    client
        .send(json!({ "type": "note", "text": MESSAGE }))
        .await
        .expect("send");
    within(a, LIMIT, "close", client.close()).await;
    drop(client);
    finished(a, read).await
}

#[tokio::test]
async fn each_redaction_mode_writes_what_it_promises_and_replays() {
    for (mode, secrets, payloads, hello_written) in [
        (Redaction::Hash, false, false, false),
        (Redaction::Drop, false, false, false),
        (Redaction::Keep, false, true, false),
        (Redaction::Keep, true, true, true),
        // Secrets are written in keep mode only.
        (Redaction::Hash, true, false, false),
    ] {
        let trace =
            record_short(|s| Recorder::to_writer(s).redaction(mode).with_secrets(secrets)).await;
        let t = text(&trace);
        let case = format!("{mode:?}, secrets {secrets}");
        assert_eq!(t.contains(MESSAGE), payloads, "[{case}] payloads");
        assert_eq!(t.contains(TOKEN), hello_written, "[{case}] token");
        assert_eq!(t.contains(HELLO_MARK), hello_written, "[{case}] hello");
        assert!(
            t.contains(&format!(r#""redaction":"{}""#, mode.name())),
            "[{case}]"
        );
        if mode == Redaction::Hash {
            assert!(t.contains(r#""h":""#), "[{case}] fingerprints");
        }
        // Structure and envelope survive every mode: the request's method and type.
        assert!(t.contains(r#""method":"echo""#), "[{case}]");
        let report = replay(trace.as_slice()).unwrap_or_else(|e| panic!("[{case}] {e}"));
        assert!(report.is_clean(), "[{case}]\n{report}\n{t}");
    }
}

#[tokio::test]
async fn a_ring_buffer_dump_replays_and_an_evicted_one_is_refused() {
    let ring = RingBuffer::new(Duration::from_secs(600), 1 << 20);
    let dump = record_short_ring(&ring).await;
    assert_eq!(ring.dropped(), 0);
    assert_replays_identically("ring", &dump);

    // A ring too small for the session evicts its start: readable, not replayable.
    let small = RingBuffer::new(Duration::from_secs(600), 600);
    let _ = record_short_ring(&small).await;
    assert!(small.dropped() > 0);
    assert!(small.bytes() <= 600);
    let err = replay(small.dump().as_slice()).unwrap_err();
    assert!(matches!(err, TraceError::Gap { line: 2, .. }), "{err}");
}

/// A trace writer whose writes wait until the test opens it: a stalled disk.
#[derive(Clone, Default)]
struct Stalled {
    open: Arc<(Mutex<bool>, std::sync::Condvar)>,
    sink: Shared,
}

impl Stalled {
    fn open(&self) {
        *self.open.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.open.1.notify_all();
    }
}

impl Write for Stalled {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (open, changed) = &*self.open;
        // Bounded by the tests' limit: a writer never opened fails instead of hanging.
        let (open, _) = changed
            .wait_timeout_while(
                open.lock().unwrap_or_else(PoisonError::into_inner),
                LIMIT,
                |open| !*open,
            )
            .unwrap_or_else(PoisonError::into_inner);
        if !*open {
            return Err(std::io::Error::other("never opened"));
        }
        self.sink.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Issue 16, item 5: a real session whose trace writer stalls while it sends 300
/// messages: the session is not held back, the channel's overflow is dropped and
/// counted, and the trace, finished once the writer catches up, is refused by the
/// replayer at its `lost` line as incomplete, not reported as a divergence.
#[tokio::test]
async fn a_trace_that_lost_records_is_refused_as_incomplete() {
    let a = &OnTokio;
    let server = Server::start();
    let writer = Stalled::default();
    let recorder = Recorder::to_writer(writer.clone()).channel_bytes(8 << 10);
    let progress = recorder.progress();
    let config = loopback::config().build().expect("valid configuration");
    let client = within(
        a,
        LIMIT,
        "connect",
        a.connect_with(
            &server.url(),
            config,
            hello(),
            Options::new().record(recorder),
        ),
    )
    .await
    .expect("connect");
    for n in 0..300 {
        client
            .send(json!({ "type": "note", "n": n }))
            .await
            .expect("send while open");
    }
    let r = within(a, LIMIT, "echo", client.request(echo(1))).await;
    assert!(r.is_ok(), "{r:?}");
    assert!(progress.lost() > 0, "8 KiB holds far fewer than 300 sends");
    writer.open();
    within(a, LIMIT, "close", client.close()).await;
    drop(client);
    let trace = finished(a, || writer.sink.bytes()).await;
    assert!(progress.wait(LIMIT) && !progress.failed());
    let t = text(&trace);
    let said: u64 = t
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["k"] == "lost")
        .filter_map(|v| v["dropped"].as_u64())
        .sum();
    assert_eq!(
        said,
        progress.lost(),
        "the trace counts every record dropped"
    );
    let first = t
        .lines()
        .position(|l| l.contains(r#""k":"lost""#))
        .expect("a lost line")
        + 1;
    match replay(trace.as_slice()) {
        Err(TraceError::Lost { line, dropped }) => {
            assert_eq!(line, first);
            assert!(dropped > 0);
        }
        other => panic!("expected a refusal at line {first}: {other:?}"),
    }
}

// ---- bad traces -------------------------------------------------------------------------

/// A recorded trace, shared by the corruption tests.
fn sample() -> &'static [u8] {
    static SAMPLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SAMPLE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        rt.block_on(record_short(|s| {
            Recorder::to_writer(s).redaction(Redaction::Keep)
        }))
    })
}

fn lines(trace: &[u8]) -> Vec<String> {
    text(trace).lines().map(str::to_owned).collect()
}

fn join(lines: &[String]) -> Vec<u8> {
    let mut s = lines.join("\n");
    s.push('\n');
    s.into_bytes()
}

/// The line number of the first line matching `pred` (1-based).
fn find(lines: &[String], pred: impl Fn(&str) -> bool) -> usize {
    lines.iter().position(|l| pred(l)).expect("such a line") + 1
}

#[test]
fn corrupted_traces_are_refused_with_their_line_number() {
    let good = lines(sample());
    assert!(replay(join(&good).as_slice()).unwrap().is_clean());
    let input_line = find(&good, |l| l.contains(r#""k":"in""#));
    let out_line = find(&good, |l| l.contains(r#""to":"Open""#));

    let with = |n: usize, replacement: &str| {
        let mut l = good.clone();
        l[n - 1] = replacement.to_owned();
        join(&l)
    };
    type Check = fn(&TraceError, usize) -> bool;
    let cases: Vec<(&str, Vec<u8>, usize, Check)> = vec![
        (
            "garbage line",
            with(input_line, "{nope"),
            input_line,
            |e, n| matches!(e, TraceError::NotJson { line, .. } if *line == n),
        ),
        (
            "not an object",
            with(input_line, "[1,2]"),
            input_line,
            |e, n| matches!(e, TraceError::NotJson { line, .. } if *line == n),
        ),
        (
            "missing field",
            with(input_line, r#"{"k":"in","t":5}"#),
            input_line,
            |e, n| matches!(e, TraceError::Malformed { line, .. } if *line == n),
        ),
        (
            "unknown input",
            with(
                input_line,
                r#"{"k":"in","t":5,"in":{"teleport":{"conn":1}}}"#,
            ),
            input_line,
            |e, n| matches!(e, TraceError::Malformed { line, .. } if *line == n),
        ),
        (
            "unknown line kind",
            with(input_line, r#"{"k":"warp","t":1}"#),
            input_line,
            |e, n| matches!(e, TraceError::Malformed { line, .. } if *line == n),
        ),
        (
            "time out of range",
            with(input_line, r#"{"k":"timeout","t":-4}"#),
            input_line,
            |e, n| matches!(e, TraceError::Malformed { line, .. } if *line == n),
        ),
        (
            "bad config",
            with(
                1,
                &good[0].replace(
                    r#""max_pending_writes":"#,
                    r#""max_pending_writes":"x","was":"#,
                ),
            ),
            1,
            |e, n| matches!(e, TraceError::Malformed { line, .. } if *line == n),
        ),
        (
            "no header",
            join(&good[1..]),
            1,
            |e, n| matches!(e, TraceError::NoHeader { line } if *line == n),
        ),
        (
            "second header",
            with(input_line, &good[0]),
            input_line,
            |e, n| matches!(e, TraceError::Malformed { line, .. } if *line == n),
        ),
        (
            "unknown profile",
            with(
                1,
                &good[0].replace(r#""name":"hello-ack""#, r#""name":"smoke-signals""#),
            ),
            1,
            |e, n| matches!(e, TraceError::UnknownProfile { line, .. } if *line == n),
        ),
    ];
    for (name, trace, line, check) in cases {
        match replay(trace.as_slice()) {
            Err(e) => {
                assert!(check(&e, line), "[{name}] wrong error: {e:?}");
                assert!(
                    e.to_string().contains(&format!("line {line}")),
                    "[{name}] {e}"
                );
            }
            Ok(r) => panic!("[{name}] accepted:\n{r}"),
        }
    }

    // Truncated in the middle of a line: the cut line is named.
    let bytes = join(&good);
    let cut_line = out_line;
    let offset: usize = good[..cut_line - 1]
        .iter()
        .map(|l| l.len() + 1)
        .sum::<usize>()
        + 7;
    let err = replay(&bytes[..offset]).unwrap_err();
    assert!(
        matches!(err, TraceError::NotJson { line, .. } if line == cut_line),
        "{err:?}"
    );
    assert!(err.to_string().contains("truncated"), "{err}");

    // Truncated at a line boundary (a dump taken while the session ran): replayed as far
    // as it goes, and reported incomplete.
    let report = replay(join(&good[..out_line]).as_slice()).expect("a clean prefix");
    assert!(!report.complete);
    assert!(report.divergence.is_none(), "{report}");

    // A recorded output that the session would not produce: the first differing step.
    let tampered = with(
        out_line,
        &good[out_line - 1].replace(r#""to":"Open""#, r#""to":"Closed""#),
    );
    let report = replay(tampered.as_slice()).expect("readable");
    let d = report.divergence.expect("a divergence");
    assert_eq!(d.line, out_line);
    assert!(
        d.expected.contains("Closed") && d.got.contains("Open"),
        "{d}"
    );
}

#[test]
fn an_unknown_version_is_refused_clearly() {
    let mut good = lines(sample());
    good[0] = good[0].replace(r#""version":2"#, r#""version":7"#);
    let err = replay(join(&good).as_slice()).unwrap_err();
    match &err {
        TraceError::Version {
            line: 1,
            found,
            supported: 2,
        } => assert_eq!(found, &json!(7)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "line 1: trace format version 7 is not supported (this build reads versions 1 to 2)"
    );
    let mut header: serde_json::Value = serde_json::from_str(&good[0]).expect("JSON");
    header.as_object_mut().expect("an object").remove("version");
    good[0] = header.to_string();
    assert!(matches!(
        replay(join(&good).as_slice()),
        Err(TraceError::Version {
            found: serde_json::Value::Null,
            ..
        })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: tether_tests::cases(64), ..ProptestConfig::default() })]

    /// Any byte flipped, any cut: an error naming a line of the trace, or a report.
    #[test]
    fn damaged_traces_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4), cut in any::<usize>()) {
        let mut bytes = sample().to_vec();
        for (at, b) in flips {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        let lines = bytes.split(|b| *b == b'\n').count();
        match replay(bytes.as_slice()) {
            Ok(_) | Err(TraceError::Empty) => {}
            Err(e) => {
                let line = match &e {
                    TraceError::Io { line, .. }
                    | TraceError::NotJson { line, .. }
                    | TraceError::NoHeader { line }
                    | TraceError::Version { line, .. }
                    | TraceError::UnknownProfile { line, .. }
                    | TraceError::Malformed { line, .. }
                    | TraceError::Gap { line, .. }
                    | TraceError::Lost { line, .. } => *line,
                    other => panic!("unexpected error {other:?}"),
                };
                prop_assert!(line >= 1 && line <= lines, "{e} (of {lines} lines)");
            }
        }
    }
}

/// Waits for the status `want` on `changes` (bounded).
async fn reaches<A: TestRuntime>(
    a: &A,
    changes: &mut (impl futures::Stream<Item = Status> + Unpin),
    want: Status,
) {
    within(a, LIMIT, &format!("status {want}"), async {
        while let Some(s) = changes.next().await {
            if s == want {
                return;
            }
        }
        panic!("the session loop stopped before {want}");
    })
    .await;
}

/// Issue 13, item 5 and row 27: `reconnect`, `disconnect`, `resume` and a message's own
/// TTL, on a real session over loopback, are recorded and replay identically.
#[tokio::test]
async fn the_applications_connection_commands_replay_identically() {
    let a = &OnTokio;
    let server = Server::start();
    let sink = Shared::default();
    let options =
        Options::new().record(Recorder::to_writer(sink.clone()).redaction(Redaction::Keep));
    let config = loopback::config().build().expect("valid configuration");
    let client = within(
        a,
        LIMIT,
        "connect",
        a.connect_with(&server.url(), config, hello(), options),
    )
    .await
    .expect("connect");
    let mut changes = client.status_changes();
    client.reconnect();
    reaches(a, &mut changes, Status::Reconnecting).await;
    reaches(a, &mut changes, Status::Open).await;
    client.disconnect();
    reaches(a, &mut changes, Status::Idle).await;
    client
        .send_with_ttl(
            json!({ "type": "note", "text": "queued" }),
            Duration::from_secs(30),
        )
        .await
        .expect("queued while paused");
    client.resume();
    reaches(a, &mut changes, Status::Open).await;
    let r = within(a, LIMIT, "echo", client.request(echo(2))).await;
    assert!(r.is_ok(), "{r:?}");
    within(a, LIMIT, "close", client.close()).await;
    drop(client);
    let trace = finished(a, move || sink.bytes()).await;
    let t = text(&trace);
    for kind in ["reconnect", "disconnect", "resume", "\"ttl\""] {
        assert!(t.contains(kind), "{kind} is recorded:\n{t}");
    }
    assert_replays_identically("commands", &trace);
}
