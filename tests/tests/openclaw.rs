//! Interop with the real OpenClaw gateway (`openclaw` 2026.9.6, protocol 4) through the
//! `Gateway` profile, on the tokio and smol adapters, with a fake OpenAI-compatible model
//! behind it (`interop/openclaw/fake-model.mjs`) so that chat runs stream real deltas.
//!
//! Runs only with `TETHER_OPENCLAW=1` (otherwise every test prints a skip note and
//! passes): the gateway is a 650 MB npm package that needs Node 26. Use
//! `./scripts/interop-openclaw.sh`, which installs it (`scripts/openclaw-setup.sh`),
//! starts the fake model and one shared gateway, runs this file and stops both on every
//! path.
//!
//! Environment:
//! - `TETHER_OPENCLAW_NODE`, `TETHER_OPENCLAW_MJS`: the Node 26 binary and `openclaw.mjs`
//!   (when unset, the tests run `scripts/openclaw-setup.sh` to find them);
//! - `TETHER_OPENCLAW_MODEL_URL`: the fake model's base URL (`http://127.0.0.1:<port>/v1`;
//!   when unset, the tests start one of their own);
//! - `TETHER_OPENCLAW_URL`, `TETHER_OPENCLAW_TOKEN`: a running gateway to share, whose
//!   config points at that model (when unset, the tests start one of their own).
//!
//! Every gateway is configured from `interop/openclaw/openclaw.json.in`. The real frames
//! each test sees are printed (token redacted): run with `--nocapture`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tether_tests::runtimes::{OnSmol as SmolRt, OnTokio as TokioRt, TestRuntime as Rt, within};
use tether_tokio::tether_core::profiles::{
    ChatAbortResult, ChatHistory, ChatInjectAck, ChatMessage, ChatSendAck, Gateway, GatewayError,
    GatewayEvent, GatewayOptions, GatewayRequest, JsonPayload,
};
use tether_tokio::tether_core::{
    AttemptError, CloseCode, Config, ConnId, DataFrame, Decoded, DisconnectReason, EncodeError,
    EncodedRequest, EndReason, Event, Opening, OutFrame, Phase, Protocol, RequestFailure,
    RequestMeta, SessionError, Status, StreamEvent, StreamEventKind, StreamKey,
};
use tether_tokio::{CallError, Client, ConnectError};

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

/// A bounded wait on a child's first stdout line (a process that never prints must not
/// hang the test).
fn first_line(child: &mut Child, what: &str) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{what}: no first line within 30 s"))
}

// --- the fake model -------------------------------------------------------------------------

/// The fake OpenAI-compatible model (`interop/openclaw/fake-model.mjs`), started by this
/// test binary. It exits when its stdin closes: when this is dropped, or this process dies.
struct FakeModel {
    port: u16,
    child: Child,
    _stdin: ChildStdin,
}

impl FakeModel {
    fn start() -> FakeModel {
        let script = workspace_root().join("interop/openclaw/fake-model.mjs");
        let mut child = Command::new(&install().node)
            .arg(&script)
            .args(["--port", "0", "--exit-with-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let line = first_line(&mut child, "the fake model");
        let port = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected fake model line {line:?}"));
        eprintln!("started the fake model (pid {}) on port {port}", child.id());
        FakeModel {
            port,
            child,
            _stdin: stdin,
        }
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `host:port` of the fake model the gateways use: the script's, or one of our own.
fn model_addr() -> &'static str {
    static ADDR: OnceLock<String> = OnceLock::new();
    static OWN: OnceLock<FakeModel> = OnceLock::new();
    ADDR.get_or_init(|| {
        if let Ok(url) = std::env::var("TETHER_OPENCLAW_MODEL_URL") {
            let rest = url
                .strip_prefix("http://")
                .unwrap_or_else(|| panic!("TETHER_OPENCLAW_MODEL_URL must be http://…: {url}"));
            return rest.split('/').next().unwrap_or(rest).to_owned();
        }
        format!("127.0.0.1:{}", OWN.get_or_init(FakeModel::start).port)
    })
}

/// Every completion the fake model served so far (`GET /tether/log`).
fn model_log() -> Vec<Value> {
    let addr = model_addr();
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("fake model {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    write!(
        stream,
        "GET /tether/log HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .expect("an HTTP response");
    serde_json::from_str(body).expect("a JSON log")
}

/// The fake model's entry for `reply`.
fn model_entry(reply: &str) -> Option<Value> {
    model_log().into_iter().find(|e| e["reply"] == reply)
}

/// A chat message that makes the fake model answer exactly `reply`, `chunk` code points
/// per streamed delta, one delta every `delay_ms`.
fn directive(reply: &str, chunk: u32, delay_ms: u32) -> String {
    format!(
        "TETHER-STREAM {}",
        json!({ "reply": reply, "chunk": chunk, "delayMs": delay_ms })
    )
}

// --- a gateway process ----------------------------------------------------------------------

/// A gateway started by this test binary, isolated under `.interop/openclaw/run/<port>`
/// (own `HOME`, state, config and log), configured with the fake model.
///
/// It runs under a small bash watchdog in its own process group: closing the watchdog's
/// stdin (dropping this, restarting, or this process dying) sends the gateway SIGTERM,
/// then SIGKILL to the whole group after 5 s.
struct GatewayProc {
    url: String,
    token: String,
    port: u16,
    scratch: PathBuf,
    /// The gateway's (Node's) pid, for signals.
    pid: u32,
    log: PathBuf,
    watchdog: Option<Child>,
    stdin: Option<ChildStdin>,
}

const WATCHDOG: &str = r#"
"$@" >>"$GATEWAY_LOG" 2>&1 &
pid=$!
echo "PID $pid"
while read -r _; do :; done
kill -TERM "$pid" 2>/dev/null
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -KILL 0
"#;

/// Writes the gateway config of `interop/openclaw/openclaw.json.in` into `scratch`.
fn write_config(scratch: &Path) {
    let template_path = workspace_root().join("interop/openclaw/openclaw.json.in");
    let template = std::fs::read_to_string(&template_path)
        .unwrap_or_else(|e| panic!("{}: {e}", template_path.display()));
    let config = template
        .replace("@MODEL_BASE_URL@", &format!("http://{}/v1", model_addr()))
        .replace(
            "@LOG_FILE@",
            &scratch.join("openclaw.log").display().to_string(),
        );
    std::fs::write(scratch.join("openclaw.json"), config).expect("write openclaw.json");
}

impl GatewayProc {
    /// A fresh gateway on a free port.
    fn start(token: &str) -> GatewayProc {
        let port = free_port();
        let scratch = workspace_root().join(format!(".interop/openclaw/run/{port}"));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(scratch.join("home")).expect("scratch home");
        std::fs::create_dir_all(scratch.join("state")).expect("scratch state");
        write_config(&scratch);
        let mut gateway = GatewayProc {
            url: format!("ws://127.0.0.1:{port}"),
            token: token.to_owned(),
            port,
            log: scratch.join("gateway.log"),
            scratch,
            pid: 0,
            watchdog: None,
            stdin: None,
        };
        gateway.spawn();
        gateway
    }

    fn spawn(&mut self) {
        use std::os::unix::process::CommandExt;
        let install = install();
        let node_bin = install.node.parent().expect("node's bin dir");
        let path = format!(
            "{}:{}",
            node_bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let s = &self.scratch;
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
            .args(["--port", &self.port.to_string()])
            .args(["--auth", "token", "--token", &self.token])
            .current_dir(s)
            .env("PATH", path)
            .env("GATEWAY_LOG", &self.log)
            .env("HOME", s.join("home"))
            .env("OPENCLAW_STATE_DIR", s.join("state"))
            .env("OPENCLAW_CONFIG_PATH", s.join("openclaw.json"))
            .env("OPENCLAW_SKIP_CHANNELS", "1")
            .env("OPENCLAW_DISABLE_BONJOUR", "1")
            .env("OPENCLAW_NO_AUTO_UPDATE", "1")
            .env("DO_NOT_TRACK", "1")
            .env("OPENCLAW_GATEWAY_TOKEN", &self.token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("spawn the gateway watchdog");
        self.stdin = child.stdin.take();
        let line = first_line(&mut child, "the gateway watchdog");
        self.pid = line
            .trim()
            .strip_prefix("PID ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected watchdog line {line:?}"));
        self.watchdog = Some(child);
        eprintln!(
            "started gateway pid {} on port {}, log {}",
            self.pid,
            self.port,
            self.log.display()
        );
    }

    /// Ends the watchdog (and whatever is left of its process group).
    fn stop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut child) = self.watchdog.take() {
            let _ = child.wait();
        }
    }

    /// Starts the gateway again on the same port, with the same state, once the previous
    /// process has exited.
    fn restart(&mut self) {
        assert!(
            self.wait_exit(Duration::from_secs(30)),
            "the gateway did not exit"
        );
        self.stop();
        self.spawn();
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.pid);
    }

    fn alive(&self) -> bool {
        Command::new("kill")
            .args(["-0", &self.pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Whether the gateway process exited within `limit`.
    fn wait_exit(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if !self.alive() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        !self.alive()
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
            // A stopped gateway ignores SIGTERM until it is continued.
            let _ = Command::new("kill")
                .args(["-CONT", &self.pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        self.stop();
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
    /// Frames are recorded but not printed while set.
    quiet: bool,
}

/// The `Gateway` profile, recording every frame it decodes and every connect it sends.
struct Logged {
    inner: Gateway,
    token: String,
    seen: Arc<Mutex<Seen>>,
    label: &'static str,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Logged {
    fn new(label: &'static str, token: &str) -> (Logged, Arc<Mutex<Seen>>) {
        Self::with(label, token, GatewayOptions::default())
    }

    fn with(
        label: &'static str,
        token: &str,
        options: GatewayOptions,
    ) -> (Logged, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let inner = Gateway::new(GatewayOptions {
            token: Some(token.to_owned()),
            ..options
        });
        let logged = Logged {
            inner,
            token: token.to_owned(),
            seen: seen.clone(),
            label,
        };
        (logged, seen)
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
    type Response = JsonPayload;
    type RemoteError = GatewayError;

    fn open(&mut self, conn: ConnId) -> Result<Opening, EncodeError> {
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
        if let OutFrame::Text(text) = &encoded.frame
            && !lock(&self.seen).quiet
        {
            eprintln!("[{}] > {}", self.label, clip(text.as_str(), 600));
        }
        Ok(encoded)
    }

    fn decode(&mut self, frame: DataFrame, phase: Phase) -> Decoded<Self> {
        if let DataFrame::Text(text) = &frame {
            let text = text.as_str().to_owned();
            let mut seen = lock(&self.seen);
            if !seen.quiet {
                eprintln!("[{}] < {}", self.label, clip(&text, 600));
            }
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
                    lock(&self.seen).connects.push(redacted);
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

    fn response_stream(&self, response: &JsonPayload) -> Option<StreamKey> {
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

/// The position of the first frame of `seen` that parses as JSON with `pred`.
fn position(seen: &Seen, pred: impl Fn(&Value) -> bool) -> Option<usize> {
    seen.inbound
        .iter()
        .position(|t| serde_json::from_str::<Value>(t).is_ok_and(|v| pred(&v)))
}

/// Every event of a session, with when it arrived, collected on a thread of its own so
/// that no subscriber falls behind however many events a scenario causes.
#[derive(Clone)]
struct Recorder(Arc<Mutex<Vec<Timed>>>);

/// An event and when it arrived.
type Timed = (Instant, Event<Logged>);

impl Recorder {
    fn new(client: &Client<Logged>) -> Recorder {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let mut stream = Box::pin(client.events());
        std::thread::spawn(move || {
            futures::executor::block_on(async move {
                while let Some(event) = stream.next().await {
                    lock(&sink).push((Instant::now(), event));
                }
            });
        });
        Recorder(events)
    }

    /// The first event since `since` that `pick` maps to something.
    fn find<T>(
        &self,
        since: Instant,
        pick: impl Fn(&Event<Logged>) -> Option<T>,
    ) -> Option<(Instant, T)> {
        lock(&self.0)
            .iter()
            .filter(|(at, _)| *at >= since)
            .find_map(|(at, e)| pick(e).map(|t| (*at, t)))
    }

    /// Every event `pick` maps to something.
    fn all<T>(&self, pick: impl Fn(&Event<Logged>) -> Option<T>) -> Vec<T> {
        lock(&self.0).iter().filter_map(|(_, e)| pick(e)).collect()
    }
}

/// Polls `probe` every 20 ms until it yields something, for at most `limit`.
async fn wait_for<R: Rt, T>(
    rt: &R,
    limit: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    within(rt, limit, what, async {
        loop {
            if let Some(v) = probe() {
                return v;
            }
            rt.sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

const OPEN: Duration = Duration::from_secs(90);
const STEP: Duration = Duration::from_secs(20);
/// A run's first events can take several seconds: the gateway prepares a workspace for
/// a new session before it calls the model.
const RUN: Duration = Duration::from_secs(60);

/// A session key of its own per scenario and process, so runs never share a transcript.
fn session_key(label: &str) -> String {
    format!(
        "agent:main:tether-{}-{}",
        label.replace('/', "-"),
        std::process::id()
    )
}

// --- handshake ------------------------------------------------------------------------------

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
        let seen = lock(&seen);
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
            json!(["operator.read", "operator.write"]),
            "the cli/cli client keeps its requested scopes"
        );
        assert_eq!(
            hello["payload"]["snapshot"]["sessionDefaults"]["modelConfigured"], true,
            "the gateway's config names the fake model"
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
    assert_eq!(health.value().expect("JSON")["ok"], true, "{health}");
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

// --- ticks ----------------------------------------------------------------------------------

/// With client pings off and `stale_after` 5 s, only the hello-ok's 30 s tick interval
/// (stale after 2 × 30 s) keeps the session open across 40 s in which the gateway is
/// silent for longer than 5 s (its own pings come every 25 s, ticks every 30 s).
async fn ticks<R: Rt>(rt: R, label: &'static str) {
    let (url, token) = shared();
    let (gateway, seen) = Logged::new(label, token);
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
    let recorder = Recorder::new(&client);
    let started = Instant::now();
    rt.sleep(Duration::from_secs(40)).await;
    assert_eq!(client.status(), Status::Open, "open after 40 s");
    let (ticks, longest) = {
        let seen = lock(&seen);
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
    eprintln!("[{label}] longest silence between text frames: {longest:?}");
    assert!(
        longest > Duration::from_secs(5),
        "the gateway was never quiet for 5 s ({longest:?}): the test proves nothing"
    );
    // The first connect's own `Opened` may reach a subscriber that came just after it.
    let lost = recorder.all(|e| {
        matches!(
            e,
            Event::Disconnected { .. } | Event::Opened { first: false, .. }
        )
        .then(|| format!("{e:?}"))
    });
    assert!(lost.is_empty(), "the connection was lost: {lost:#?}");
    if let Some(tick) = find(&lock(&seen), |v| v["event"] == "tick") {
        eprintln!("[{label}] a tick: {tick}");
    }
    eprintln!(
        "[{label}] {ticks} tick(s) in {:?}, still open",
        started.elapsed()
    );
    within(&rt, STEP, "close", client.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_keep_the_session_alive_on_tokio_and_smol() {
    if enabled("ticks_keep_the_session_alive_on_tokio_and_smol") {
        futures::join!(ticks(TokioRt, "ticks/tokio"), ticks(SmolRt, "ticks/smol"));
    }
}

// --- a wrong token --------------------------------------------------------------------------

/// A wrong token: the gateway answers `connect` with INVALID_REQUEST (not retryable) and
/// closes 1008; the session fails at once, with the gateway's message, and never redials.
async fn wrong_token<R: Rt>(rt: R, label: &'static str) {
    let (url, _) = shared();
    let (gateway, seen) = Logged::new(label, "not-the-token");
    let got = within(&rt, OPEN, "connect", rt.connect(url, config(), gateway)).await;
    let Err(ConnectError::Ended { reason, .. }) = got else {
        panic!("a wrong token must not open: {got:?}");
    };
    eprintln!("[{label}] ended: {reason:?}");
    let EndReason::Failed(SessionError::FatalAttempt(AttemptError::HandshakeRejected { message })) =
        &reason
    else {
        panic!("expected a fatal handshake rejection, got {reason:?}");
    };
    assert!(message.contains("token mismatch"), "{message}");
    rt.sleep(Duration::from_secs(2)).await;
    let seen = lock(&seen);
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
    eprintln!("[{label}] the error: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_fatal_tokio() {
    if enabled("wrong_token_is_fatal_tokio") {
        wrong_token(TokioRt, "wrong-token/tokio").await;
    }
}

#[test]
fn wrong_token_is_fatal_smol() {
    if enabled("wrong_token_is_fatal_smol") {
        smol::block_on(wrong_token(SmolRt, "wrong-token/smol"));
    }
}

// --- chat runs through the fake model -------------------------------------------------------

/// Connects to the shared gateway with `operator.admin` added (for `chat.inject`).
async fn chat_client<R: Rt>(
    rt: &R,
    label: &'static str,
) -> (Client<Logged>, Arc<Mutex<Seen>>, Recorder) {
    let (url, token) = shared();
    let mut options = GatewayOptions::default();
    options.scopes.push("operator.admin".to_owned());
    let (gateway, seen) = Logged::with(label, token, options);
    let client = within(rt, OPEN, "connect", rt.connect(url, config(), gateway))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let recorder = Recorder::new(&client);
    (client, seen, recorder)
}

/// What a stream delivered up to its terminal event.
#[derive(Debug, Default)]
struct Collected {
    statuses: usize,
    deltas: usize,
    gaps: usize,
    rebuilt: String,
    terminal: Option<StreamEventKind<GatewayEvent>>,
    keys: Vec<StreamKey>,
}

/// Reads a stream's events up to its terminal event (or the first `deltas` deltas when
/// given), within `limit`.
async fn collect<R: Rt>(
    rt: &R,
    events: &mut (impl futures::Stream<Item = StreamEvent<GatewayEvent>> + Unpin),
    into: &mut Collected,
    deltas: Option<usize>,
    limit: Duration,
) {
    within(rt, limit, "the run's events", async {
        while let Some(event) = events.next().await {
            if !into.keys.contains(&event.key) {
                into.keys.push(event.key.clone());
            }
            match event.kind {
                StreamEventKind::Status(_) => into.statuses += 1,
                StreamEventKind::Delta { text, .. } => {
                    into.deltas += 1;
                    into.rebuilt.push_str(text.as_deref().unwrap_or_default());
                    if deltas.is_some_and(|n| into.deltas >= n) {
                        return;
                    }
                }
                StreamEventKind::Gap { .. } => into.gaps += 1,
                kind if kind.is_terminal() => {
                    into.terminal = Some(kind);
                    return;
                }
                other => panic!("unexpected stream event {other:?}"),
            }
        }
    })
    .await;
}

/// `chat.send` streams the fake model's reply: a `{runId, status:"started"}` answer whose
/// run id is the stream key, status events, deltas whose text rebuilt from the cumulative
/// `message` equals the reply exactly (multi-byte characters included, though the
/// gateway coalesces the model's chunks), one `final` with the whole text; then
/// `chat.history` holds the reply, and `chat.inject` adds a message whose `final` chat
/// event arrives unsolicited before its answer.
async fn chat_send_streams<R: Rt>(rt: R, label: &'static str) {
    let (client, seen, recorder) = chat_client(&rt, label).await;
    let key = session_key(label);
    let reply = format!(
        "Streamed on {} through the gateway: Ünïcode ✓, an emoji 🦀, and enough words to \
         span many deltas (process {}).",
        rt.name(),
        std::process::id()
    );
    let started = Instant::now();
    let mut call = within(
        &rt,
        STEP,
        "chat.send",
        client.stream(
            GatewayRequest::chat_send(&key, directive(&reply, 3, 15)),
            None,
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("chat.send refused: {e:?}"));
    let ack = within(&rt, STEP, "chat.send answer", call.response())
        .await
        .unwrap_or_else(|e| panic!("chat.send: {e:?}"));
    let ack = ack.decode::<ChatSendAck>().expect("a chat.send answer");
    assert_eq!(ack.status, "started");
    let mut got = Collected::default();
    collect(&rt, &mut call.events, &mut got, None, RUN).await;
    eprintln!(
        "[{label}] run ended after {:?}: {} status, {} deltas, {} gaps",
        started.elapsed(),
        got.statuses,
        got.deltas,
        got.gaps
    );
    assert_eq!(got.keys, [ack.stream_key()], "the run id is the stream key");
    assert_eq!(got.rebuilt, reply, "the deltas rebuild the reply exactly");
    match &got.terminal {
        Some(StreamEventKind::Final { text, .. }) => {
            assert_eq!(text.as_deref(), Some(reply.as_str()), "the final's text")
        }
        other => panic!("expected a final, got {other:?}"),
    }
    assert!(got.statuses >= 1, "status events before the model answers");
    let entry = model_entry(&reply).expect("the fake model served this reply");
    assert_eq!(entry["state"], "done", "{entry}");
    assert_eq!(entry["stream"], true, "{entry}");
    assert_eq!(entry["sent"], reply.as_str());
    let chunks = entry["chunks"].as_u64().expect("a chunk count");
    eprintln!(
        "[{label}] the model streamed {chunks} chunks, the gateway sent {} deltas",
        got.deltas
    );
    assert!(
        (got.deltas as u64) < chunks,
        "the gateway coalesces the model's chunks ({} deltas for {chunks} chunks)",
        got.deltas
    );
    assert!(
        within(&rt, STEP, "the end of the stream", call.events.next())
            .await
            .is_none(),
        "nothing follows the terminal"
    );

    let history = within(
        &rt,
        STEP,
        "chat.history",
        client.request(GatewayRequest::chat_history(&key, Some(10))),
    )
    .await
    .unwrap_or_else(|e| panic!("chat.history: {e:?}"));
    let history = history
        .decode::<ChatHistory>()
        .expect("a chat.history answer");
    assert_eq!(history.session_key, key);
    assert_eq!(history.last_text("assistant"), Some(reply.as_str()));

    let injected = format!("injected on {}", rt.name());
    let since = Instant::now();
    let answer = within(
        &rt,
        STEP,
        "chat.inject",
        client.request(GatewayRequest::chat_inject(
            &key,
            &injected,
            Some("tether".into()),
        )),
    )
    .await
    .unwrap_or_else(|e| panic!("chat.inject: {e:?}"));
    let answer = answer
        .decode::<ChatInjectAck>()
        .expect("a chat.inject answer");
    // The subscriber thread may lag the answer by a moment.
    let (_, event) = wait_for(&rt, STEP, "the injected message's chat event", || {
        recorder.find(since, |e| match e {
            // Chat events go to every operator connection: other sessions' too.
            Event::Unsolicited(ev) => {
                let payload = ev.payload.value().ok()?;
                (payload["state"] == "final" && payload["sessionKey"] == key.as_str())
                    .then_some(payload)
            }
            _ => None,
        })
    })
    .await;
    let text = ChatMessage::text_of(&event["message"]).expect("its text");
    assert!(text.ends_with(&injected), "{text:?}");
    assert!(
        event["runId"]
            .as_str()
            .is_some_and(|r| r.contains(&answer.message_id)),
        "{event:?}"
    );
    let history = within(
        &rt,
        STEP,
        "chat.history",
        client.request(GatewayRequest::chat_history(&key, Some(10))),
    )
    .await
    .unwrap_or_else(|e| panic!("chat.history: {e:?}"));
    let history = history
        .decode::<ChatHistory>()
        .expect("a chat.history answer");
    assert_eq!(history.last_text("assistant"), Some(text.as_str()));

    let violations =
        recorder.all(|e| matches!(e, Event::Violation { .. }).then(|| format!("{e:?}")));
    assert!(violations.is_empty(), "{violations:#?}");
    drop(seen);
    within(&rt, STEP, "close", client.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_send_streams_the_model_reply_tokio() {
    if enabled("chat_send_streams_the_model_reply_tokio") {
        chat_send_streams(TokioRt, "chat/tokio").await;
    }
}

#[test]
fn chat_send_streams_the_model_reply_smol() {
    if enabled("chat_send_streams_the_model_reply_smol") {
        smol::block_on(chat_send_streams(SmolRt, "chat/smol"));
    }
}

/// `chat.abort` while the fake model is still streaming: the run ends `aborted` (its
/// event arrives before the abort's answer), the text so far is a strict prefix of the
/// reply, the answer names the run, and the gateway cut the model's stream.
async fn chat_abort<R: Rt>(rt: R, label: &'static str) {
    let (client, seen, recorder) = chat_client(&rt, label).await;
    let key = session_key(label);
    let reply = format!(
        "{}the end ({}).",
        "slowly streamed words ".repeat(20),
        rt.name()
    );
    let mut call = within(
        &rt,
        STEP,
        "chat.send",
        client.stream(
            GatewayRequest::chat_send(&key, directive(&reply, 2, 40)),
            None,
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("chat.send refused: {e:?}"));
    let ack = within(&rt, STEP, "chat.send answer", call.response())
        .await
        .unwrap_or_else(|e| panic!("chat.send: {e:?}"));
    let ack = ack.decode::<ChatSendAck>().expect("a chat.send answer");
    let mut got = Collected::default();
    collect(&rt, &mut call.events, &mut got, Some(2), RUN).await;
    assert!(got.terminal.is_none(), "the run ended early: {got:?}");

    let aborted = within(
        &rt,
        STEP,
        "chat.abort",
        client.request(GatewayRequest::chat_abort(&key, Some(ack.run_id.clone()))),
    )
    .await
    .unwrap_or_else(|e| panic!("chat.abort: {e:?}"));
    let aborted = aborted
        .decode::<ChatAbortResult>()
        .expect("a chat.abort answer");
    assert_eq!(
        aborted,
        ChatAbortResult {
            aborted: true,
            run_ids: vec![ack.run_id.clone()]
        }
    );
    collect(&rt, &mut call.events, &mut got, None, STEP).await;
    assert!(
        matches!(got.terminal, Some(StreamEventKind::Aborted(_))),
        "{:?}",
        got.terminal
    );
    eprintln!(
        "[{label}] aborted after {} deltas, {} of {} characters",
        got.deltas,
        got.rebuilt.chars().count(),
        reply.chars().count()
    );
    assert!(!got.rebuilt.is_empty());
    assert!(
        reply.starts_with(&got.rebuilt) && got.rebuilt.len() < reply.len(),
        "the text so far is a strict prefix: {:?}",
        got.rebuilt
    );
    {
        let seen = lock(&seen);
        let event = position(&seen, |v| {
            v["event"] == "chat"
                && v["payload"]["runId"] == ack.run_id.as_str()
                && v["payload"]["state"] == "aborted"
        })
        .expect("the aborted event");
        let answer = position(&seen, |v| {
            v["type"] == "res" && v["payload"]["runIds"] == json!([ack.run_id])
        })
        .expect("the abort's answer");
        assert!(event < answer, "the aborted event comes before the answer");
    }
    let entry = wait_for(&rt, STEP, "the model's stream to be cut", || {
        model_entry(&reply).filter(|e| e["state"] != "streaming")
    })
    .await;
    assert_eq!(entry["state"], "aborted", "{entry}");
    assert!(
        entry["sent"]
            .as_str()
            .is_some_and(|s| s.len() < reply.len()),
        "{entry}"
    );
    let violations =
        recorder.all(|e| matches!(e, Event::Violation { .. }).then(|| format!("{e:?}")));
    assert!(violations.is_empty(), "{violations:#?}");
    within(&rt, STEP, "close", client.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_abort_ends_the_run_aborted_tokio() {
    if enabled("chat_abort_ends_the_run_aborted_tokio") {
        chat_abort(TokioRt, "abort/tokio").await;
    }
}

#[test]
fn chat_abort_ends_the_run_aborted_smol() {
    if enabled("chat_abort_ends_the_run_aborted_smol") {
        smol::block_on(chat_abort(SmolRt, "abort/smol"));
    }
}

/// The model refuses the request (HTTP 400): the run fails with **two** `error` events,
/// the second with its run `seq` going back to 1. The stream ends on the first; the
/// second is suppressed, not a violation.
async fn model_refusal<R: Rt>(rt: R, label: &'static str) {
    let (client, seen, recorder) = chat_client(&rt, label).await;
    let key = session_key(label);
    let refusal = json!({ "status": 400, "reply": "tether refuses" });
    let mut call = within(
        &rt,
        STEP,
        "chat.send",
        client.stream(
            GatewayRequest::chat_send(&key, format!("TETHER-STREAM {refusal}")),
            None,
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("chat.send refused: {e:?}"));
    let ack = within(&rt, STEP, "chat.send answer", call.response())
        .await
        .unwrap_or_else(|e| panic!("chat.send: {e:?}"));
    let ack = ack.decode::<ChatSendAck>().expect("a chat.send answer");
    let mut got = Collected::default();
    collect(&rt, &mut call.events, &mut got, None, RUN).await;
    let Some(StreamEventKind::Error { message, .. }) = &got.terminal else {
        panic!("expected the run to fail: {got:?}");
    };
    eprintln!("[{label}] error: {message}");
    assert!(!message.is_empty());
    let errors = |seen: &Seen| {
        seen.inbound
            .iter()
            .filter_map(|t| serde_json::from_str::<Value>(t).ok())
            .filter(|v| {
                v["event"] == "chat"
                    && v["payload"]["runId"] == ack.run_id.as_str()
                    && v["payload"]["state"] == "error"
            })
            .map(|v| v["payload"]["seq"].as_u64())
            .collect::<Vec<_>>()
    };
    let seqs = wait_for(&rt, STEP, "the second error event", || {
        let seqs = errors(&lock(&seen));
        (seqs.len() >= 2).then_some(seqs)
    })
    .await;
    eprintln!("[{label}] the run's error events had seqs {seqs:?}");
    assert!(seqs[1] < seqs[0], "the second error's seq goes backwards");
    assert!(
        within(&rt, STEP, "the end of the stream", call.events.next())
            .await
            .is_none(),
        "one terminal, nothing after it"
    );
    let violations =
        recorder.all(|e| matches!(e, Event::Violation { .. }).then(|| format!("{e:?}")));
    assert!(
        violations.is_empty(),
        "no violation for the second error: {violations:#?}"
    );
    within(&rt, STEP, "close", client.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_model_request_ends_the_run_in_one_error_tokio() {
    if enabled("a_refused_model_request_ends_the_run_in_one_error_tokio") {
        model_refusal(TokioRt, "refusal/tokio").await;
    }
}

#[test]
fn a_refused_model_request_ends_the_run_in_one_error_smol() {
    if enabled("a_refused_model_request_ends_the_run_in_one_error_smol") {
        smol::block_on(model_refusal(SmolRt, "refusal/smol"));
    }
}

// --- a gateway's life: startup, SIGSTOP, SIGTERM, restart ----------------------------------

/// Dead-peer detection shortened on the client side: a ping every second, dead after
/// 3 s without a frame; ticks do not widen that (`ticks_as_heartbeat: false`).
const PING: Duration = Duration::from_secs(1);
const STALE: Duration = Duration::from_secs(3);

fn lifecycle_config() -> Config {
    Config::builder()
        .connect_timeout(Duration::from_secs(5))
        .handshake_timeout(Duration::from_secs(20))
        .retry_first_connect(true)
        .backoff_schedule(vec![
            Duration::from_millis(100),
            Duration::from_millis(300),
            Duration::from_secs(1),
        ])
        .ping_interval(Some(PING))
        .stale_after(STALE)
        .request_timeout(Duration::from_secs(20))
        .reject_while_offline()
        .build()
        .expect("valid config")
}

/// One client of the lifecycle scenario.
struct Member {
    label: &'static str,
    client: Client<Logged>,
    seen: Arc<Mutex<Seen>>,
    recorder: Recorder,
}

impl Member {
    fn start<R: Rt>(rt: R, label: &'static str, gateway: &GatewayProc) -> Member {
        let (protocol, seen) = Logged::with(
            label,
            &gateway.token,
            GatewayOptions {
                ticks_as_heartbeat: false,
                ..GatewayOptions::default()
            },
        );
        let client = rt
            .start(&gateway.url, lifecycle_config(), protocol)
            .expect("valid config");
        let recorder = Recorder::new(&client);
        Member {
            label,
            client,
            seen,
            recorder,
        }
    }

    fn opens(&self) -> usize {
        self.recorder
            .all(|e| matches!(e, Event::Opened { .. }).then_some(()))
            .len()
    }

    /// The first disconnect since `since`, with when it was reported.
    fn disconnect_since(&self, since: Instant) -> Option<(Instant, DisconnectReason)> {
        self.recorder.find(since, |e| match e {
            Event::Disconnected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
    }
}

/// Sends `health` back to back until one gets neither an answer nor the draining
/// gateway's UNAVAILABLE: returns the UNAVAILABLE errors seen and that last outcome.
async fn hammer<R: Rt>(
    rt: &R,
    member: &Member,
) -> (
    Vec<GatewayError>,
    Result<JsonPayload, CallError<GatewayError>>,
) {
    within(
        rt,
        Duration::from_secs(60),
        "health until the close",
        async {
            let mut unavailable = Vec::new();
            for _ in 0..100_000 {
                match member
                    .client
                    .request(GatewayRequest::new("health", None))
                    .await
                {
                    Ok(_) => {}
                    Err(CallError::Failed(RequestFailure::Remote(e)))
                        if e.code == "UNAVAILABLE" =>
                    {
                        unavailable.push(e)
                    }
                    other => return (unavailable, other),
                }
            }
            panic!("[{}] the gateway never closed", member.label);
        },
    )
    .await
}

/// Against a gateway of its own, with a tokio and a smol client side by side:
///
/// 1. started with the gateway, the sessions retry through refused dials and the
///    startup's `UNAVAILABLE` (`retryAfterMs` as the backoff floor, close 1013) and open;
/// 2. SIGSTOP: each session declares the silent gateway dead within ping interval +
///    stale threshold; SIGCONT: each reconnects;
/// 3. SIGTERM with an `agent.wait` in flight: the gateway drains it (answered
///    `timeout`), answers requests sent meanwhile with a retryable `UNAVAILABLE`, sends
///    `shutdown` and closes 1012; the request in flight at the close fails as
///    `Disconnected`;
/// 4. the gateway restarted on the same port: both sessions reconnect by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_starting_stopped_and_restarted_on_tokio_and_smol() {
    if !enabled("a_gateway_starting_stopped_and_restarted_on_tokio_and_smol") {
        return;
    }
    let rt = TokioRt;
    let started = Instant::now();
    let mut gateway = GatewayProc::start("lifecycle-token-0123");
    let members = [
        Member::start(TokioRt, "life/tokio", &gateway),
        Member::start(SmolRt, "life/smol", &gateway),
    ];

    // 1. Startup.
    for m in &members {
        within(&rt, OPEN, "open", m.client.wait_open())
            .await
            .unwrap_or_else(|e| panic!("[{}] ended before opening: {e:?}", m.label));
    }
    eprintln!("[life] both open after {:?}", started.elapsed());
    for m in &members {
        // Everything up to the opening, recorded.
        wait_for(&rt, STEP, "the Opened event recorded", || {
            (m.opens() >= 1).then_some(())
        })
        .await;
    }
    let mut unavailable = 0;
    for m in &members {
        let failures = m.recorder.all(|e| match e {
            Event::AttemptFailed { error, retry, .. } => Some((error.clone(), *retry)),
            _ => None,
        });
        eprintln!(
            "[{}] {} failed attempts before opening",
            m.label,
            failures.len()
        );
        assert!(
            failures.iter().all(|(_, retry)| retry.is_some()),
            "[{}] every startup failure is retried: {failures:#?}",
            m.label
        );
        for (error, retry) in &failures {
            if let AttemptError::HandshakeRejected { message } = error {
                assert!(message.contains("starting"), "{message}");
                let floor = retry.as_ref().and_then(|r| r.floor);
                assert_eq!(
                    floor,
                    Some(Duration::from_millis(500)),
                    "retryAfterMs is the backoff's floor"
                );
                assert!(
                    retry
                        .as_ref()
                        .is_some_and(|r| r.wait >= Duration::from_millis(500))
                );
                unavailable += 1;
            }
        }
        if let Some(frame) = find(&lock(&m.seen), |v| v["error"]["code"] == "UNAVAILABLE") {
            eprintln!("[{}] the UNAVAILABLE answer: {frame}", m.label);
            assert_eq!(frame["error"]["retryable"], true);
            assert!(frame["error"]["retryAfterMs"].is_u64());
        }
    }
    assert!(
        unavailable >= 1,
        "expected an UNAVAILABLE attempt while the gateway started"
    );
    for m in &members {
        within(
            &rt,
            STEP,
            "health",
            m.client.request(GatewayRequest::new("health", None)),
        )
        .await
        .unwrap_or_else(|e| panic!("[{}] health: {e:?}", m.label));
        assert_eq!(m.client.status(), Status::Open);
    }

    // 2. SIGSTOP: nothing arrives any more, not even pongs.
    let stopped = Instant::now();
    gateway.signal("STOP");
    let detected: Vec<(Instant, DisconnectReason)> = {
        let mut detected = Vec::new();
        for m in &members {
            let found = wait_for(&rt, STEP, "the dead gateway detected", || {
                m.disconnect_since(stopped)
            })
            .await;
            detected.push(found);
        }
        detected
    };
    gateway.signal("CONT");
    for (m, (at, reason)) in members.iter().zip(&detected) {
        let after = *at - stopped;
        eprintln!("[{}] SIGSTOP detected after {after:?}: {reason:?}", m.label);
        assert_eq!(*reason, DisconnectReason::Stale);
        assert!(
            after <= PING + STALE + Duration::from_millis(500),
            "[{}] detected after {after:?}, bound {:?}",
            m.label,
            PING + STALE
        );
        assert!(after >= STALE - PING, "[{}] too early: {after:?}", m.label);
    }
    for m in &members {
        wait_for(&rt, OPEN, "reopened after SIGCONT", || {
            (m.opens() >= 2 && m.client.status() == Status::Open).then_some(())
        })
        .await;
        within(
            &rt,
            STEP,
            "health",
            m.client.request(GatewayRequest::new("health", None)),
        )
        .await
        .unwrap_or_else(|e| panic!("[{}] health after SIGCONT: {e:?}", m.label));
    }
    eprintln!(
        "[life] both reopened after SIGCONT, {:?} in",
        started.elapsed()
    );

    // 3. SIGTERM with a request in flight.
    let waits: Vec<Client<Logged>> = members.iter().map(|m| m.client.clone()).collect();
    let wait_for_nothing = |client: Client<Logged>| async move {
        client
            .request(GatewayRequest::agent_wait(
                "tether-no-such-run",
                Duration::from_millis(1500),
            ))
            .await
    };
    let in_flight = futures::future::join_all(waits.into_iter().map(wait_for_nothing));
    let terminate = async {
        rt.sleep(Duration::from_millis(300)).await;
        for m in &members {
            lock(&m.seen).quiet = true;
        }
        let signalled = Instant::now();
        gateway.signal("TERM");
        let outcomes = futures::future::join_all(members.iter().map(|m| hammer(&rt, m))).await;
        (signalled, outcomes)
    };
    let (waited, (signalled, outcomes)) = futures::join!(in_flight, terminate);
    for m in &members {
        lock(&m.seen).quiet = false;
    }
    for (m, waited) in members.iter().zip(waited) {
        let waited = waited.unwrap_or_else(|e| {
            panic!(
                "[{}] the agent.wait in flight at SIGTERM is drained, not failed: {e:?}",
                m.label
            )
        });
        assert_eq!(
            waited.value().expect("JSON")["status"],
            "timeout",
            "{waited}"
        );
    }
    for (m, (unavailable, last)) in members.iter().zip(outcomes) {
        eprintln!(
            "[{}] during the drain: {} UNAVAILABLE answers (e.g. {:?}); at the close: {last:?}",
            m.label,
            unavailable.len(),
            unavailable.first()
        );
        assert!(
            !unavailable.is_empty(),
            "requests during the drain are refused"
        );
        // The refusals of the drain itself say when to come back. Under load the gateway
        // may also refuse a request whose handler it is tearing down ("request entry is
        // closed"), without that reason: shown, not judged.
        let (draining, other): (Vec<_>, Vec<_>) = unavailable.iter().partition(|e| {
            e.details
                .as_ref()
                .and_then(|d| d.get("reason"))
                .and_then(Value::as_str)
                == Some("gateway-restarting")
        });
        if !other.is_empty() {
            eprintln!("[{}] other UNAVAILABLE answers: {other:?}", m.label);
        }
        assert!(
            !draining.is_empty(),
            "[{}] the drain's own refusals: {unavailable:?}",
            m.label
        );
        assert!(
            draining
                .iter()
                .all(|e| e.retryable == Some(true) && e.retry_after_ms.is_some()),
            "[{}] every refusal of the drain carries its retry hints: {draining:?}",
            m.label
        );
        assert_eq!(
            last,
            Err(CallError::Failed(RequestFailure::Disconnected)),
            "[{}] the request in flight at the close",
            m.label
        );
        // The subscriber thread may lag the request's failure by a moment.
        let (at, reason) = wait_for(&rt, STEP, "the disconnect after SIGTERM", || {
            m.disconnect_since(signalled)
        })
        .await;
        assert!(
            matches!(
                &reason,
                DisconnectReason::Closed {
                    code: Some(CloseCode::SERVICE_RESTART),
                    ..
                }
            ),
            "{reason:?}"
        );
        let (shutdown_at, _) = m
            .recorder
            .find(signalled, |e| match e {
                Event::Message(ev) if ev.event == "shutdown" => Some(()),
                _ => None,
            })
            .expect("a shutdown event, recorded before the disconnect");
        assert!(shutdown_at <= at, "shutdown comes before the close");
    }
    eprintln!(
        "[life] both lost their connection to 1012, {:?} in",
        started.elapsed()
    );

    // 4. Restarted: both sessions come back by themselves.
    gateway.restart();
    for m in &members {
        wait_for(&rt, OPEN, "reopened after the restart", || {
            (m.opens() >= 3 && m.client.status() == Status::Open).then_some(())
        })
        .await;
        within(
            &rt,
            STEP,
            "health",
            m.client.request(GatewayRequest::new("health", None)),
        )
        .await
        .unwrap_or_else(|e| panic!("[{}] health after the restart: {e:?}", m.label));
        let violations = m
            .recorder
            .all(|e| matches!(e, Event::Violation { .. }).then(|| format!("{e:?}")));
        assert!(violations.is_empty(), "[{}] {violations:#?}", m.label);
    }
    eprintln!(
        "[life] both reopened after the restart, {:?} in",
        started.elapsed()
    );
    for m in &members {
        within(&rt, STEP, "close", m.client.close()).await;
    }
}
