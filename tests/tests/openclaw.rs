//! Interop with the real OpenClaw gateway (`openclaw` 2026.9.6, protocol 4) through the
//! `Gateway` profile, on the tokio and smol adapters.
//!
//! Runs only with `TETHER_OPENCLAW=1` (otherwise every test prints a skip note and
//! passes): the gateway is a 650 MB npm package that needs Node 26. Use
//! `./scripts/interop-openclaw.sh`, which installs it (`scripts/openclaw-setup.sh`),
//! starts one shared gateway, runs this file and stops the gateway on every path.
//!
//! Environment:
//! - `TETHER_OPENCLAW_NODE`, `TETHER_OPENCLAW_MJS`: the Node 26 binary and `openclaw.mjs`
//!   (when unset, the tests run `scripts/openclaw-setup.sh` to find them);
//! - `TETHER_OPENCLAW_URL`, `TETHER_OPENCLAW_TOKEN`: a running gateway to share (when
//!   unset, the tests start one of their own).
//!
//! The real frames each test sees are printed (token redacted): run with `--nocapture`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use tether_tests::runtimes::{OnSmol as SmolRt, OnTokio as TokioRt, TestRuntime as Rt, within};
use tether_tokio::tether_core::profiles::{
    Gateway, GatewayError, GatewayEvent, GatewayOptions, GatewayRequest,
};
use tether_tokio::tether_core::{
    AttemptError, CloseCode, Config, ConnId, DataFrame, Decoded, DisconnectReason, EncodeError,
    EncodedRequest, EndReason, Event, Opening, OutFrame, Phase, Protocol, RequestFailure,
    RequestMeta, SessionError, Status, StreamKey,
};
use tether_tokio::{CallError, ConnectError};

// --- gating and paths -----------------------------------------------------------------------

fn enabled(test: &str) -> bool {
    if std::env::var("TETHER_OPENCLAW").is_ok_and(|v| v == "1") {
        true
    } else {
        eprintln!("{test}: skipped (set TETHER_OPENCLAW=1, or run ./scripts/interop-openclaw.sh)");
        false
    }
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
}

struct Install {
    node: PathBuf,
    mjs: PathBuf,
}

/// The Node binary and `openclaw.mjs`, from the environment or the setup script.
fn install() -> &'static Install {
    static INSTALL: OnceLock<Install> = OnceLock::new();
    INSTALL.get_or_init(|| {
        if let (Some(node), Some(mjs)) = (
            std::env::var_os("TETHER_OPENCLAW_NODE"),
            std::env::var_os("TETHER_OPENCLAW_MJS"),
        ) {
            return Install {
                node: node.into(),
                mjs: mjs.into(),
            };
        }
        let script = workspace_root().join("scripts/openclaw-setup.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(out.status.success(), "{} failed", script.display());
        let stdout = String::from_utf8_lossy(&out.stdout);
        let var = |name: &str| -> PathBuf {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("openclaw-setup.sh printed no {name}= line"))
                .into()
        };
        Install {
            node: var("TETHER_OPENCLAW_NODE"),
            mjs: var("TETHER_OPENCLAW_MJS"),
        }
    })
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

// --- a gateway process ----------------------------------------------------------------------

/// A gateway started by this test binary, isolated under `.interop/openclaw/run/<port>`.
///
/// It runs under a small bash watchdog in its own process group: closing the watchdog's
/// stdin (dropping this, or this process dying) sends the gateway SIGTERM, then SIGKILL
/// to the whole group after 5 s.
struct GatewayProc {
    url: String,
    token: String,
    /// The gateway's (Node's) pid, for SIGTERM / SIGSTOP.
    pid: u32,
    log: PathBuf,
    watchdog: Option<Child>,
    stdin: Option<ChildStdin>,
}

const WATCHDOG: &str = r#"
"$@" >"$GATEWAY_LOG" 2>&1 &
pid=$!
echo "PID $pid"
while read -r _; do :; done
kill -TERM "$pid" 2>/dev/null
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -KILL 0
"#;

impl GatewayProc {
    fn start(token: &str) -> GatewayProc {
        use std::os::unix::process::CommandExt;
        let install = install();
        let port = free_port();
        let scratch = workspace_root().join(format!(".interop/openclaw/run/{port}"));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(scratch.join("home")).expect("scratch home");
        std::fs::create_dir_all(scratch.join("state")).expect("scratch state");
        let log = scratch.join("gateway.log");
        let node_bin = install.node.parent().expect("node's bin dir");
        let path = format!(
            "{}:{}",
            node_bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("openclaw-gateway")
            .arg(&install.node)
            .arg(&install.mjs)
            .args([
                "gateway",
                "run",
                "--allow-unconfigured",
                "--bind",
                "loopback",
            ])
            .args([
                "--port",
                &port.to_string(),
                "--auth",
                "token",
                "--token",
                token,
            ])
            .current_dir(&scratch)
            .env("PATH", path)
            .env("GATEWAY_LOG", &log)
            .env("HOME", scratch.join("home"))
            .env("OPENCLAW_STATE_DIR", scratch.join("state"))
            .env("OPENCLAW_CONFIG_PATH", scratch.join("openclaw.json"))
            .env("OPENCLAW_SKIP_CHANNELS", "1")
            .env("OPENCLAW_DISABLE_BONJOUR", "1")
            .env("OPENCLAW_NO_AUTO_UPDATE", "1")
            .env("DO_NOT_TRACK", "1")
            .env("OPENCLAW_GATEWAY_TOKEN", token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("spawn the gateway watchdog");
        let stdin = child.stdin.take();
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut first)
            .expect("the watchdog's PID line");
        let pid = first
            .trim()
            .strip_prefix("PID ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected watchdog line {first:?}"));
        eprintln!(
            "started gateway pid {pid} on port {port}, log {}",
            log.display()
        );
        GatewayProc {
            url: format!("ws://127.0.0.1:{port}"),
            token: token.to_owned(),
            pid,
            log,
            watchdog: Some(child),
            stdin,
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.pid);
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- gateway log tail ---\n{}", self.log_tail());
        }
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        if let Some(mut child) = self.watchdog.take() {
            let _ = child.wait();
        }
    }
}

/// The shared gateway: the one named by `TETHER_OPENCLAW_URL`/`_TOKEN`, or one started
/// for this test binary (it stops when the binary exits: its watchdog's stdin closes).
fn shared() -> (&'static str, &'static str) {
    static SHARED: OnceLock<(String, String)> = OnceLock::new();
    static OWN: OnceLock<Mutex<GatewayProc>> = OnceLock::new();
    let (url, token) = SHARED.get_or_init(|| {
        if let (Ok(url), Ok(token)) = (
            std::env::var("TETHER_OPENCLAW_URL"),
            std::env::var("TETHER_OPENCLAW_TOKEN"),
        ) {
            return (url, token);
        }
        let gateway = OWN.get_or_init(|| Mutex::new(GatewayProc::start("shared-token-0123")));
        let g = gateway.lock().unwrap_or_else(|e| e.into_inner());
        (g.url.clone(), g.token.clone())
    });
    (url, token)
}

// --- a Gateway that logs the frames it sees -------------------------------------------------

/// What the wrapped profile saw, for the assertions and the printed log.
#[derive(Default)]
struct Seen {
    /// Every inbound text frame, in order.
    inbound: Vec<String>,
    /// When each inbound text frame arrived.
    arrivals: Vec<Instant>,
    /// Every `connect` request answered to a challenge (token redacted).
    connects: Vec<String>,
    /// How many `tick` events arrived.
    ticks: usize,
    /// How many connections were opened.
    opens: usize,
}

/// The `Gateway` profile, recording every frame it decodes and every connect it sends.
struct Logged {
    inner: Gateway,
    token: String,
    seen: Arc<Mutex<Seen>>,
    label: &'static str,
}

impl Logged {
    fn new(label: &'static str, token: &str) -> (Logged, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let inner = Gateway::new(GatewayOptions {
            token: Some(token.to_owned()),
            ..GatewayOptions::default()
        });
        let logged = Logged {
            inner,
            token: token.to_owned(),
            seen: seen.clone(),
            label,
        };
        (logged, seen)
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// At most `n` characters of `s`, marked when cut.
fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}… ({} bytes)", &s[..i], s.len()),
        None => s.to_owned(),
    }
}

impl Protocol for Logged {
    type Inbound = GatewayEvent;
    type Outbound = Value;
    type Request = GatewayRequest;
    type Response = Value;
    type RemoteError = GatewayError;

    fn open(&mut self, conn: ConnId) -> Result<Opening, EncodeError> {
        self.seen().opens += 1;
        self.inner.open(conn)
    }

    fn encode(&mut self, message: Value) -> Result<OutFrame, EncodeError> {
        self.inner.encode(message)
    }

    fn encode_request(
        &mut self,
        meta: RequestMeta,
        request: GatewayRequest,
    ) -> Result<EncodedRequest, EncodeError> {
        let encoded = self.inner.encode_request(meta, request)?;
        if let OutFrame::Text(text) = &encoded.frame {
            eprintln!("[{}] > {}", self.label, clip(text.as_str(), 600));
        }
        Ok(encoded)
    }

    fn decode(&mut self, frame: DataFrame, phase: Phase) -> Decoded<Self> {
        if let DataFrame::Text(text) = &frame {
            let text = text.as_str().to_owned();
            eprintln!("[{}] < {}", self.label, clip(&text, 600));
            let mut seen = self.seen();
            if text.contains(r#""event":"tick""#) {
                seen.ticks += 1;
            }
            seen.inbound.push(text);
            seen.arrivals.push(Instant::now());
        }
        match self.inner.decode(frame, phase) {
            Decoded::Challenge(reply) => {
                if let OutFrame::Text(text) = &reply {
                    let redacted = text.as_str().replace(&self.token, "<token>");
                    eprintln!("[{}] > {redacted}", self.label);
                    self.seen().connects.push(redacted);
                }
                Decoded::Challenge(reply)
            }
            Decoded::Message(m) => Decoded::Message(m),
            Decoded::Response { id, result } => Decoded::Response { id, result },
            Decoded::Stream(s) => Decoded::Stream(s),
            Decoded::Heartbeat => Decoded::Heartbeat,
            Decoded::Ack(a) => Decoded::Ack(a),
            Decoded::Rejected(r) => Decoded::Rejected(r),
            Decoded::Violation(v) => Decoded::Violation(v),
            Decoded::Ignore => Decoded::Ignore,
        }
    }

    fn response_stream(&self, response: &Value) -> Option<StreamKey> {
        self.inner.response_stream(response)
    }
}

/// Generous bounds: the gateway shares two cores with the build and other jobs.
fn config() -> Config {
    Config::builder()
        .connect_timeout(Duration::from_secs(10))
        .handshake_timeout(Duration::from_secs(20))
        // A gateway still starting answers `connect` with a retryable UNAVAILABLE.
        .retry_first_connect(true)
        .backoff_schedule(vec![Duration::from_millis(200), Duration::from_secs(1)])
        .request_timeout(Duration::from_secs(20))
        .build()
        .expect("valid config")
}

/// The first frame of `seen` that parses as JSON with `pred`.
fn find(seen: &Seen, pred: impl Fn(&Value) -> bool) -> Option<Value> {
    seen.inbound
        .iter()
        .filter_map(|t| serde_json::from_str::<Value>(t).ok())
        .find(|v| pred(v))
}

const OPEN: Duration = Duration::from_secs(90);
const STEP: Duration = Duration::from_secs(20);

// --- the scenarios --------------------------------------------------------------------------

/// Handshake with the real frames checked, then a request and a clean close.
async fn handshake<R: Rt>(rt: R, label: &'static str) {
    let (url, token) = shared();
    let (gateway, seen) = Logged::new(label, token);
    let started = Instant::now();
    let client = within(&rt, OPEN, "connect", rt.connect(url, config(), gateway))
        .await
        .unwrap_or_else(|e| panic!("connect to the gateway: {e}"));
    eprintln!("[{label}] open after {:?}", started.elapsed());
    assert_eq!(client.status(), Status::Open);
    {
        let seen = seen.lock().unwrap();
        let challenge =
            find(&seen, |v| v["event"] == "connect.challenge").expect("a connect.challenge event");
        assert_eq!(challenge["type"], "event");
        assert!(challenge["payload"]["nonce"].is_string(), "{challenge}");
        assert!(challenge["payload"]["ts"].is_u64(), "{challenge}");
        let connect: Value =
            serde_json::from_str(seen.connects.last().expect("a connect")).unwrap();
        assert_eq!(connect["method"], "connect");
        assert_eq!(connect["params"]["client"]["id"], "cli");
        assert_eq!(connect["params"]["client"]["mode"], "cli");
        let hello = find(&seen, |v| v["payload"]["type"] == "hello-ok").expect("hello-ok");
        assert_eq!(hello["id"], connect["id"], "hello-ok answers the connect");
        assert_eq!(hello["ok"], true);
        assert_eq!(hello["payload"]["protocol"], 4);
        assert_eq!(hello["payload"]["policy"]["tickIntervalMs"], 30_000);
        assert!(hello["payload"]["policy"]["maxPayload"].is_u64());
        assert_eq!(
            hello["payload"]["auth"]["scopes"],
            serde_json::json!(["operator.read", "operator.write"]),
            "the cli/cli client keeps its requested scopes"
        );
    }

    // A plain request and its string-id response.
    let health = within(
        &rt,
        STEP,
        "health",
        client.request(GatewayRequest::new("health", None)),
    )
    .await
    .unwrap_or_else(|e| panic!("health: {e:?}"));
    assert_eq!(health["ok"], true, "{health}");
    // An unknown method is the gateway's error, surfaced as such.
    let unknown = within(
        &rt,
        STEP,
        "unknown method",
        client.request(GatewayRequest::new("no.such.method", None)),
    )
    .await;
    match unknown {
        Err(CallError::Failed(RequestFailure::Remote(e))) => {
            eprintln!("[{label}] unknown method: {e} ({:?})", e.details);
            assert!(!e.code.is_empty());
        }
        other => panic!("unknown method: {other:?}"),
    }

    within(&rt, STEP, "close", client.close()).await;
    assert_eq!(client.status(), Status::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_tokio() {
    if enabled("handshake_tokio") {
        handshake(TokioRt, "handshake/tokio").await;
    }
}

#[test]
fn handshake_smol() {
    if enabled("handshake_smol") {
        smol::block_on(handshake(SmolRt, "handshake/smol"));
    }
}

/// With client pings off and `stale_after` 5 s, only the hello-ok's 30 s tick interval
/// (stale after 2 × 30 s) keeps the session open across 40 s in which the gateway is
/// silent for longer than 5 s (its own pings come every 25 s, ticks every 30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_keep_the_session_alive() {
    if !enabled("ticks_keep_the_session_alive") {
        return;
    }
    let rt = TokioRt;
    let (url, token) = shared();
    let (gateway, seen) = Logged::new("ticks", token);
    let config = Config::builder()
        .connect_timeout(Duration::from_secs(10))
        .handshake_timeout(Duration::from_secs(20))
        .retry_first_connect(true)
        .ping_interval(None)
        .stale_after(Duration::from_secs(5))
        .build()
        .expect("valid config");
    let client = within(&rt, OPEN, "connect", rt.connect(url, config, gateway))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let mut events = client.events();
    let started = Instant::now();
    rt.sleep(Duration::from_secs(40)).await;
    assert_eq!(client.status(), Status::Open, "open after 40 s");
    let (ticks, longest) = {
        let seen = seen.lock().unwrap();
        let longest = seen
            .arrivals
            .windows(2)
            .map(|w| w[1] - w[0])
            .chain(seen.arrivals.last().map(|&t| Instant::now() - t))
            .max()
            .unwrap_or_default();
        (seen.ticks, longest)
    };
    assert!(ticks >= 1, "at least one tick in 40 s, saw {ticks}");
    eprintln!("[ticks] longest silence between text frames: {longest:?}");
    assert!(
        longest > Duration::from_secs(5),
        "the gateway was never quiet for 5 s ({longest:?}): the test proves nothing"
    );
    let mut lost = Vec::new();
    while let Some(Some(event)) = futures::FutureExt::now_or_never(events.next()) {
        if matches!(
            event,
            Event::Disconnected { .. } | Event::AttemptFailed { .. } | Event::Opened { .. }
        ) {
            lost.push(event);
        }
    }
    assert!(lost.is_empty(), "the connection was lost: {lost:#?}");
    if let Some(tick) = find(&seen.lock().unwrap(), |v| v["event"] == "tick") {
        eprintln!("[ticks] a tick: {tick}");
    }
    eprintln!(
        "[ticks] {ticks} tick(s) in {:?}, still open",
        started.elapsed()
    );
    within(&rt, STEP, "close", client.close()).await;
}

/// A wrong token: the gateway answers `connect` with INVALID_REQUEST (not retryable) and
/// closes 1008; the session fails at once, with the gateway's message, and never redials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_fatal() {
    if !enabled("wrong_token_is_fatal") {
        return;
    }
    let rt = TokioRt;
    let (url, _) = shared();
    let (gateway, seen) = Logged::new("wrong-token", "not-the-token");
    let got = within(&rt, OPEN, "connect", rt.connect(url, config(), gateway)).await;
    let Err(ConnectError::Ended(reason)) = got else {
        panic!("a wrong token must not open: {got:?}");
    };
    eprintln!("[wrong-token] ended: {reason:?}");
    let EndReason::Failed(SessionError::FatalAttempt(AttemptError::HandshakeRejected { message })) =
        &reason
    else {
        panic!("expected a fatal handshake rejection, got {reason:?}");
    };
    assert!(message.contains("token mismatch"), "{message}");
    rt.sleep(Duration::from_secs(2)).await;
    let seen = seen.lock().unwrap();
    // The shared gateway may still be starting: retryable UNAVAILABLE answers come first.
    let rejections = seen
        .inbound
        .iter()
        .filter(|t| t.contains("token mismatch"))
        .count();
    assert_eq!(rejections, 1, "one attempt after the mismatch, no retry");
    let error = find(&seen, |v| {
        v["ok"] == false && v["error"]["code"] == "INVALID_REQUEST"
    })
    .expect("the error response");
    eprintln!("[wrong-token] the error: {error}");
}

/// A gateway still starting answers `connect` with a retryable UNAVAILABLE
/// (`retryAfterMs`) and closes 1013; the session retries and opens once it is ready.
/// Then SIGTERM: a `shutdown` event and close 1012, a reconnecting session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_during_startup_retries() {
    if !enabled("connecting_during_startup_retries") {
        return;
    }
    let rt = TokioRt;
    let gateway_proc = GatewayProc::start("startup-token-0123");
    let (gateway, seen) = Logged::new("startup", &gateway_proc.token);
    // The port is not listening yet either: refused dials are retried too.
    let config = Config::builder()
        .connect_timeout(Duration::from_secs(10))
        .handshake_timeout(Duration::from_secs(20))
        .retry_first_connect(true)
        .backoff_schedule(vec![Duration::from_millis(100), Duration::from_millis(300)])
        .build()
        .expect("valid config");
    let started = Instant::now();
    let client = tether_tokio::Client::start(
        tether_tokio::Tokio,
        tether_tokio::WsTransport::new(tether_tokio::TcpDial, &gateway_proc.url)
            .expect("a valid URL"),
        config,
        gateway,
        7,
        "startup",
    )
    .expect("valid config");
    let mut events = client.events();
    within(&rt, OPEN, "open", client.wait_open())
        .await
        .unwrap_or_else(|e| panic!("the session ended before opening: {e:?}"));
    eprintln!("[startup] open after {:?}", started.elapsed());
    let mut failures = Vec::new();
    while let Some(Some(event)) = futures::FutureExt::now_or_never(events.next()) {
        if let Event::AttemptFailed { error, retry, .. } = event {
            failures.push((error, retry));
        }
    }
    let unavailable = failures
        .iter()
        .filter(|(e, _)| {
            matches!(e, AttemptError::HandshakeRejected { message } if message.contains("starting"))
        })
        .count();
    eprintln!(
        "[startup] {} failed attempts, {unavailable} answered UNAVAILABLE",
        failures.len()
    );
    {
        let seen = seen.lock().unwrap();
        if let Some(frame) = find(&seen, |v| v["error"]["code"] == "UNAVAILABLE") {
            eprintln!("[startup] the UNAVAILABLE answer: {frame}");
            assert_eq!(frame["error"]["retryable"], true);
            assert!(frame["error"]["retryAfterMs"].is_u64());
        }
    }
    assert!(
        unavailable >= 1,
        "expected at least one UNAVAILABLE attempt while starting (the gateway was started \
         just before the session): {failures:#?}"
    );
    assert!(
        failures.iter().all(|(_, retry)| retry.is_some()),
        "every startup failure is retried: {failures:#?}"
    );

    // SIGTERM: `shutdown`, then close 1012 (service restart), then reconnecting.
    let mut statuses = client.status_changes();
    gateway_proc.signal("TERM");
    let disconnected = within(&rt, STEP, "Disconnected after SIGTERM", async {
        while let Some(event) = events.next().await {
            if let Event::Disconnected { reason, .. } = event {
                return reason;
            }
        }
        panic!("events ended");
    })
    .await;
    eprintln!("[startup] after SIGTERM: {disconnected:?}");
    assert!(
        matches!(
            &disconnected,
            DisconnectReason::Closed {
                code: Some(CloseCode::SERVICE_RESTART),
                ..
            }
        ),
        "{disconnected:?}"
    );
    assert!(
        find(&seen.lock().unwrap(), |v| v["event"] == "shutdown").is_some(),
        "a shutdown event before the close"
    );
    let s = within(&rt, STEP, "Reconnecting", statuses.next()).await;
    assert_eq!(s, Some(Status::Reconnecting));
    drop(gateway_proc);
    client.terminate();
}

/// `chat.send` on a gateway with no model configured: `{runId, status:"started"}`, status
/// events, then the run fails with **two** `error` events (the second with a lower run
/// `seq`). The stream ends on the first; the second is suppressed, not a violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_send_without_a_model_ends_in_one_error() {
    if !enabled("chat_send_without_a_model_ends_in_one_error") {
        return;
    }
    let rt = TokioRt;
    let (url, token) = shared();
    let (gateway, seen) = Logged::new("chat-error", token);
    let client = within(&rt, OPEN, "connect", rt.connect(url, config(), gateway))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let mut all = client.events();
    let session_key = format!("agent:main:tether-{}", std::process::id());
    let mut call = within(
        &rt,
        STEP,
        "chat.send",
        client.stream(GatewayRequest::chat_send(&session_key, "hello"), None),
    )
    .await
    .unwrap_or_else(|e| panic!("chat.send refused: {e:?}"));
    let response = within(&rt, STEP, "chat.send response", call.response())
        .await
        .unwrap_or_else(|e| panic!("chat.send: {e:?}"));
    assert_eq!(response["status"], "started", "{response}");
    let mut kinds = Vec::new();
    let terminal = within(&rt, Duration::from_secs(60), "the run's end", async {
        while let Some(event) = call.events.next().await {
            let terminal = event.kind.is_terminal();
            kinds.push(event.kind);
            if terminal {
                return kinds.pop();
            }
        }
        None
    })
    .await;
    eprintln!("[chat-error] before the end: {kinds:?}");
    let Some(tether_tokio::tether_core::StreamEventKind::Error { message, .. }) = terminal else {
        panic!("expected the run to fail (no model is configured): {terminal:?}");
    };
    eprintln!("[chat-error] error: {message}");
    assert!(!message.is_empty());
    // The second `error` event of the run arrives right after the first.
    within(&rt, STEP, "the second error event", async {
        loop {
            let errors = seen
                .lock()
                .unwrap()
                .inbound
                .iter()
                .filter(|t| t.contains(r#""event":"chat""#) && t.contains(r#""state":"error""#))
                .count();
            if errors >= 2 {
                return;
            }
            rt.sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    rt.sleep(Duration::from_millis(200)).await;
    while let Some(Some(event)) = futures::FutureExt::now_or_never(all.next()) {
        assert!(
            !matches!(event, Event::Violation { .. }),
            "no violation for the second error: {event:?}"
        );
    }
    within(&rt, STEP, "close", client.close()).await;
}
