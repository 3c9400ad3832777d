//! `tether-cat`: a WebSocket session on the command line, one JSON line per thing that
//! happens. It reconnects by itself, pings, and keeps what is typed while offline.
//!
//! ```text
//! cargo run -p tether-cat -- [OPTIONS] URL      (or: cargo install --path cat)
//! ```
//!
//! See `tether-cat --help` for the options. Every session event and status change is
//! printed on stdout as one JSON object per line, in the order the session decided them.
//! Each stdin line is sent: with `raw` as a text frame; with `hello-ack` and `gateway` as
//! the JSON value it holds, or, when it reads `/req METHOD [JSON]`, as a request whose
//! outcome is printed as a `reply` line.
//!
//! How it ends:
//! - end of input closes the session: at once if it is reconnecting (within the close
//!   timeout), after the replies still awaited if it is open, and after the first open if
//!   it never opened yet (lines typed before it go out first);
//! - the session ending by itself (a fatal close, attempts exhausted) exits at once, even
//!   while stdin is still open;
//! - Ctrl-C closes cleanly; a second Ctrl-C exits at once (status 130).
//!
//! Exit status: 0 closed, 1 failed, 2 bad arguments, 130 interrupted twice. Neither the
//! token, the headers' values nor the hello is ever printed, and the URL only without
//! credentials or query.
//!
//! ```text
//! $ printf '%s\n' '/req echo {"n":1}' '{"type":"note"}' \
//!     | tether-cat --profile hello-ack ws://127.0.0.1:9000/
//! ```
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tether_tokio::tether_core::profiles::{
    Gateway, GatewayError, GatewayEvent, GatewayOptions, GatewayRequest, HelloAck, HelloAckRequest,
    JsonPayload, Raw,
};
use tether_tokio::tether_core::{
    AttemptError, Config, DataFrame, DisconnectReason, DropReason, EndReason, Event, Protocol,
    RequestFailure, Retry, Status, StreamEnd, StreamEvent, StreamEventKind, Utf8Bytes,
};
use tether_tokio::{CallError, Client, Proxy, Tls, Update, rustls};

const USAGE: &str = "\
usage: tether-cat [OPTIONS] URL

A WebSocket session on the command line: each stdin line is sent, each thing that
happens is printed as one JSON line. It reconnects by itself and closes on end of input.

options:
  --profile raw|hello-ack|gateway   the wire format (default raw)
  --token T                         hello-ack: \"token\" in the hello; gateway: auth.token;
                                    raw: an `Authorization: Bearer T` upgrade header
  -H, --header 'NAME: VALUE'        an upgrade header (repeatable)
  --subprotocol NAME                offer a subprotocol (repeatable, preferred first)
  --retry-first-connect             retry a failing first connect instead of exiting
  --tls-ca FILE                     wss://: trust the CA certificates in this PEM file
                                    (instead of the webpki roots)
  --native-roots                    wss://: trust the OS certificate store
  --proxy URL                       connect through this HTTP proxy (http://user:pw@host:port)
  --proxy-from-env                  take the proxy from HTTPS_PROXY / HTTP_PROXY /
                                    ALL_PROXY, honouring NO_PROXY
  --connect-timeout D               default 10s
  --handshake-timeout D             default 5s
  --close-timeout D                 default 5s
  --ping D|off                      default 30s
  --stale D                         default 75s
  -h, --help                        this text

Durations are a number and a unit: 200ms, 5s, 1.5s, 2m (a bare number is seconds).
Exit status: 0 closed, 1 failed, 2 bad arguments, 130 interrupted twice.";

// --- arguments -----------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProfileName {
    Raw,
    HelloAck,
    Gateway,
}

struct Args {
    url: String,
    profile: ProfileName,
    token: Option<String>,
    headers: Vec<(String, String)>,
    subprotocols: Vec<String>,
    trust: Trust,
    proxy: ProxyFrom,
    config: Config,
}

/// What `wss://` trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Trust {
    /// The webpki roots (the default).
    Webpki,
    /// The CA certificates of a PEM file.
    CaFile(String),
    /// The OS store.
    Native,
}

/// Where the proxy comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ProxyFrom {
    Direct,
    Url(String),
    Env,
}

/// Why the arguments produced no [`Args`].
#[derive(Debug, PartialEq, Eq)]
enum ArgsError {
    /// `--help`: print the usage and exit 0.
    Help,
    /// A mistake, explained.
    Bad(String),
}

impl From<String> for ArgsError {
    fn from(e: String) -> Self {
        ArgsError::Bad(e)
    }
}

impl From<&str> for ArgsError {
    fn from(e: &str) -> Self {
        ArgsError::Bad(e.to_owned())
    }
}

/// Parses a duration: a decimal number and a unit (`ns`, `us`, `ms`, `s`, `m`, `h`; none
/// means seconds).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 200ms, 5s, 2m)"))?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "" | "s" | "sec" | "secs" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit {other:?} in {text:?}")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{text:?}: {e}"))
}

fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Args, ArgsError> {
    let mut argv = argv.into_iter();
    let mut url = None;
    let mut profile = ProfileName::Raw;
    let mut token = None;
    let mut headers = Vec::new();
    let mut subprotocols = Vec::new();
    let mut trust = Trust::Webpki;
    let mut proxy = ProxyFrom::Direct;
    let mut builder = Config::builder();
    while let Some(arg) = argv.next() {
        let arg = match arg.as_str() {
            "-h" | "--help" => return Err(ArgsError::Help),
            "-H" => "--header".to_owned(),
            _ => arg,
        };
        if !arg.starts_with("--") {
            if url.replace(arg).is_some() {
                return Err("more than one URL".into());
            }
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| argv.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--profile" => {
                profile = match value()?.as_str() {
                    "raw" => ProfileName::Raw,
                    "hello-ack" | "helloack" => ProfileName::HelloAck,
                    "gateway" => ProfileName::Gateway,
                    other => return Err(format!("unknown profile {other:?}").into()),
                }
            }
            "--token" => token = Some(value()?),
            "--header" => {
                let v = value()?;
                let (name, val) = v
                    .split_once(':')
                    .ok_or_else(|| format!("--header wants 'NAME: VALUE', not {v:?}"))?;
                headers.push((name.trim().to_owned(), val.trim().to_owned()));
            }
            "--subprotocol" => subprotocols.push(value()?),
            "--retry-first-connect" => builder = builder.retry_first_connect(true),
            "--tls-ca" => trust = Trust::CaFile(value()?),
            "--native-roots" => trust = Trust::Native,
            "--proxy" => proxy = ProxyFrom::Url(value()?),
            "--proxy-from-env" => proxy = ProxyFrom::Env,
            "--close-timeout" => builder = builder.close_timeout(parse_duration(&value()?)?),
            "--connect-timeout" => builder = builder.connect_timeout(parse_duration(&value()?)?),
            "--handshake-timeout" => {
                builder = builder.handshake_timeout(parse_duration(&value()?)?);
            }
            "--ping" => {
                let v = value()?;
                let ping = match v.as_str() {
                    "off" | "none" | "0" => None,
                    _ => Some(parse_duration(&v)?),
                };
                builder = builder.ping_interval(ping);
            }
            "--stale" => builder = builder.stale_after(parse_duration(&value()?)?),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    let url = url.ok_or("no URL given")?;
    let config = builder
        .build()
        .map_err(|e| format!("invalid settings: {e}"))?;
    Ok(Args {
        url,
        profile,
        token,
        headers,
        subprotocols,
        trust,
        proxy,
        config,
    })
}

// --- what each profile sends and shows -----------------------------------------------------

/// How a profile turns stdin lines into messages and requests, and its types into JSON.
trait Profile:
    Protocol<Inbound: Send, Outbound: Send, Request: Send, Response: Send, RemoteError: Send>
    + Send
    + 'static
{
    /// Whether `/req` lines are requests (otherwise they are sent like any line).
    const REQUESTS: bool = true;
    /// The message a line stands for.
    fn message(line: &str) -> Result<Self::Outbound, String>;
    /// The request `/req METHOD [JSON]` stands for (`None` when the profile has none).
    fn request(method: &str, params: Option<Value>) -> Option<Self::Request>;
    fn inbound(value: &Self::Inbound) -> Value;
    fn response(value: &Self::Response) -> Value;
    fn remote_error(value: &Self::RemoteError) -> Value;
}

fn parse_json(line: &str) -> Result<Value, String> {
    serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))
}

impl Profile for Raw {
    const REQUESTS: bool = false;
    fn message(line: &str) -> Result<DataFrame, String> {
        Ok(DataFrame::Text(Utf8Bytes::from_string(line.to_owned())))
    }
    fn request(_: &str, _: Option<Value>) -> Option<std::convert::Infallible> {
        None
    }
    fn inbound(frame: &DataFrame) -> Value {
        match frame {
            DataFrame::Text(t) => json!({ "text": t.as_str() }),
            DataFrame::Binary(b) => {
                let mut hex = String::new();
                for byte in b.iter().take(64) {
                    let _ = write!(hex, "{byte:02x}");
                }
                json!({ "binary": b.len(), "hex": hex, "truncated": b.len() > 64 })
            }
        }
    }
    fn response(never: &std::convert::Infallible) -> Value {
        match *never {}
    }
    fn remote_error(never: &std::convert::Infallible) -> Value {
        match *never {}
    }
}

impl Profile for HelloAck {
    fn message(line: &str) -> Result<Value, String> {
        parse_json(line)
    }
    fn request(method: &str, params: Option<Value>) -> Option<HelloAckRequest> {
        Some(HelloAckRequest::new(method, params.unwrap_or(Value::Null)))
    }
    fn inbound(value: &JsonPayload) -> Value {
        payload(value)
    }
    fn response(value: &JsonPayload) -> Value {
        payload(value)
    }
    fn remote_error(value: &JsonPayload) -> Value {
        payload(value)
    }
}

/// A payload as a `Value`; one that is no `Value` (nested too deep) as its text.
fn payload(p: &JsonPayload) -> Value {
    p.value().unwrap_or_else(|_| Value::String(p.to_string()))
}

impl Profile for Gateway {
    fn message(line: &str) -> Result<Value, String> {
        parse_json(line)
    }
    fn request(method: &str, params: Option<Value>) -> Option<GatewayRequest> {
        Some(GatewayRequest::new(method, params))
    }
    fn inbound(ev: &GatewayEvent) -> Value {
        json!({
            "event": ev.event,
            "payload": payload(&ev.payload),
            "seq": ev.seq,
            "stateVersion": ev.state_version.as_ref().map(payload),
        })
    }
    fn response(value: &JsonPayload) -> Value {
        payload(value)
    }
    fn remote_error(e: &GatewayError) -> Value {
        json!({
            "code": e.code,
            "message": e.message,
            "details": e.details,
            "retryable": e.retryable,
            "retryAfterMs": e.retry_after_ms,
        })
    }
}

// --- events as JSON ------------------------------------------------------------------------

fn millis(d: Duration) -> Value {
    json!(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn retry(retry: Option<Retry>) -> Value {
    match retry {
        None => Value::Null,
        Some(r) => json!({
            "wait_ms": millis(r.wait),
            "failures": r.failures,
            "floor_ms": r.floor.map(millis),
        }),
    }
}

fn disconnect_reason(reason: &DisconnectReason) -> Value {
    match reason {
        DisconnectReason::Closed { code, reason } => {
            json!({ "kind": "closed", "code": code.map(|c| c.0), "reason": reason })
        }
        DisconnectReason::Stale => json!({ "kind": "stale" }),
        DisconnectReason::SendDeadline => json!({ "kind": "send_deadline" }),
        DisconnectReason::WriteFailed => json!({ "kind": "write_failed" }),
        other => json!({ "kind": format!("{other:?}") }),
    }
}

fn attempt_error(error: &AttemptError) -> Value {
    json!(error.to_string())
}

fn end_reason(reason: &EndReason) -> Value {
    match reason {
        EndReason::ClosedByUser => json!({ "kind": "closed_by_user" }),
        EndReason::ClosedByPeer { code, reason } => {
            json!({ "kind": "closed_by_peer", "code": code.0, "reason": reason })
        }
        EndReason::Idle => json!({ "kind": "idle" }),
        EndReason::Failed(e) => json!({ "kind": "failed", "error": e.to_string() }),
        other => json!({ "kind": format!("{other:?}") }),
    }
}

fn failure<P: Profile>(f: &RequestFailure<P::RemoteError>) -> Value {
    match f {
        RequestFailure::Remote(e) => json!({ "kind": "remote", "error": P::remote_error(e) }),
        other => json!({ "kind": "failure", "error": other.to_string() }),
    }
}

fn stream_event<P: Profile>(ev: &StreamEvent<P::Inbound>) -> Value {
    let kind = match &ev.kind {
        StreamEventKind::Status(p) => json!({ "kind": "status", "payload": P::inbound(p) }),
        StreamEventKind::Delta { text, payload } => {
            json!({ "kind": "delta", "text": text, "payload": P::inbound(payload) })
        }
        StreamEventKind::Final { text, payload } => {
            json!({ "kind": "final", "text": text, "payload": P::inbound(payload) })
        }
        StreamEventKind::Error { message, payload } => {
            json!({ "kind": "error", "message": message, "payload": P::inbound(payload) })
        }
        StreamEventKind::Aborted(p) => json!({ "kind": "aborted", "payload": P::inbound(p) }),
        StreamEventKind::Gap { expected, received } => {
            json!({ "kind": "gap", "expected": expected, "received": received })
        }
        StreamEventKind::Ended(end) => {
            let why = match end {
                StreamEnd::RequestFailed => "request_failed",
                StreamEnd::Disconnected => "disconnected",
                StreamEnd::IdleTimeout => "idle_timeout",
                StreamEnd::SessionEnded => "session_ended",
                _ => "other",
            };
            json!({ "kind": "ended", "why": why })
        }
        _ => json!({ "kind": "other" }),
    };
    json!({
        "type": "stream",
        "stream": ev.key.as_str(),
        "request": ev.request.map(|id| id.get()),
        "seq": ev.seq,
        "event": kind,
    })
}

/// One session event as a JSON object; `None` for responses, which the `reply` lines of
/// `/req` already show.
fn event<P: Profile>(event: &Event<P>) -> Option<Value> {
    Some(match event {
        Event::Opened {
            conn,
            attempt,
            first,
        } => json!({ "type": "opened", "conn": conn.get(), "attempt": attempt, "first": first }),
        Event::AttemptFailed {
            conn,
            attempt,
            error,
            retry: r,
        } => json!({
            "type": "attempt_failed",
            "conn": conn.get(),
            "attempt": attempt,
            "error": attempt_error(error),
            "retry": retry(*r),
        }),
        Event::Disconnected {
            conn,
            reason,
            retry: r,
        } => json!({
            "type": "disconnected",
            "conn": conn.get(),
            "reason": disconnect_reason(reason),
            "retry": retry(*r),
        }),
        Event::Ended(reason) => json!({ "type": "ended", "reason": end_reason(reason) }),
        Event::Message(m) => json!({ "type": "message", "data": P::inbound(m) }),
        Event::Response { .. } => return None,
        Event::Stream(ev) => stream_event::<P>(ev),
        Event::Unsolicited(m) => json!({ "type": "unsolicited", "data": P::inbound(m) }),
        Event::MessageDropped { id, reason } => {
            let why = match reason {
                DropReason::Overflow => "overflow",
                DropReason::Expired => "expired",
                DropReason::Ended => "ended",
                DropReason::Disconnected => "disconnected",
                _ => "other",
            };
            json!({ "type": "message_dropped", "id": id.get(), "reason": why })
        }
        Event::Violation { conn, violation } => {
            json!({ "type": "violation", "conn": conn.get(), "violation": violation.to_string() })
        }
        Event::SlowWrite {
            conn,
            frame,
            elapsed,
        } => json!({
            "type": "slow_write",
            "conn": conn.get(),
            "frame": frame.get(),
            "elapsed_ms": millis(*elapsed),
        }),
        Event::ClockJump { overshoot } => {
            json!({ "type": "clock_jump", "overshoot_ms": millis(*overshoot) })
        }
        _ => json!({ "type": "other" }),
    })
}

/// Prints one JSON line, its `type` first; a closed stdout is not worth a panic.
fn emit(value: &Value) {
    let mut line = String::new();
    match value {
        Value::Object(map) if map.contains_key("type") => {
            line.push_str("{\"type\":");
            line.push_str(&map["type"].to_string());
            for (k, v) in map.iter().filter(|(k, _)| *k != "type") {
                let _ = write!(line, ",{}:{v}", Value::String(k.clone()));
            }
            line.push('}');
        }
        other => line = other.to_string(),
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

// --- the session ---------------------------------------------------------------------------

/// What one stdin line does.
async fn line<P: Profile>(
    client: &Client<P>,
    replies: &mut tokio::task::JoinSet<()>,
    next_req: &mut u64,
    line: String,
) {
    if line.trim().is_empty() {
        return;
    }
    if P::REQUESTS
        && let Some(rest) = line.strip_prefix("/req ")
    {
        let rest = rest.trim();
        let (method, params) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let params = match params.trim() {
            "" => None,
            p => match parse_json(p) {
                Ok(v) => Some(v),
                Err(e) => return emit(&json!({ "type": "input_error", "error": e })),
            },
        };
        let Some(request) = P::request(method, params) else {
            return send(client, &line).await;
        };
        *next_req += 1;
        let n = *next_req;
        let method = method.to_owned();
        let client = client.clone();
        emit(&json!({ "type": "request", "req": n, "method": method }));
        replies.spawn(async move {
            let reply = match client.request(request).await {
                Ok(r) => json!({ "type": "reply", "req": n, "method": method, "result": P::response(&r) }),
                Err(CallError::Failed(f)) => {
                    json!({ "type": "reply", "req": n, "method": method, "failed": failure::<P>(&f) })
                }
                Err(e) => json!({ "type": "reply", "req": n, "method": method, "refused": e.to_string() }),
            };
            emit(&reply);
        });
        return;
    }
    send(client, &line).await;
}

async fn send<P: Profile>(client: &Client<P>, line: &str) {
    match P::message(line) {
        Ok(message) => match client.send(message).await {
            Ok(id) => emit(&json!({ "type": "sent", "id": id.get() })),
            Err(e) => emit(&json!({ "type": "send_error", "error": e.to_string() })),
        },
        Err(e) => emit(&json!({ "type": "input_error", "error": e })),
    }
}

/// Trusts the CA certificates of a PEM file, and nothing else.
fn tls_from_pem(path: &str) -> Result<Tls, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| format!("{path}: {e}"))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{path}: {e}"))?;
        roots.add(cert).map_err(|e| format!("{path}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{path}: no certificate in it"));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Tls::config(std::sync::Arc::new(config)))
}

/// Reads stdin on a thread of its own, line by line, into a channel that closes at end
/// of input. A thread, not the runtime's blocking pool: a read still waiting at exit must
/// not hold the process (tokio's runtime waits for its blocking tasks).
fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Ctrl-C presses, from one listener that lives as long as the program, so that a second
/// press is never lost between two waits.
fn interrupts() -> tokio::sync::mpsc::UnboundedReceiver<()> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut sigint) = signal(SignalKind::interrupt()) else {
                return;
            };
            while sigint.recv().await.is_some() {
                if tx.send(()).is_err() {
                    return;
                }
            }
        }
        #[cfg(not(unix))]
        while tokio::signal::ctrl_c().await.is_ok() {
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    rx
}

/// Closes `client` in the background: after the first open if it never opened (the lines
/// typed meanwhile go out first, bounded by `open_wait`), otherwise at once.
fn close_soon<P: Profile>(
    client: &Client<P>,
    ever_opened: bool,
    open_wait: Duration,
) -> tokio::task::JoinHandle<()> {
    let client = client.clone();
    tokio::spawn(async move {
        if !ever_opened {
            let _ = tokio::time::timeout(open_wait, client.wait_open()).await;
        }
        client.close().await;
    })
}

async fn run<P: Profile>(args: Args, protocol: P) -> Result<ExitCode, String> {
    let mut builder = tether_tokio::builder(&args.url)
        .protocol(protocol)
        .config(args.config.clone())
        .subprotocols(args.subprotocols.clone());
    for (name, value) in &args.headers {
        builder = builder.header(name, value);
    }
    if args.profile == ProfileName::Raw
        && let Some(token) = &args.token
    {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    match &args.trust {
        Trust::Webpki => {}
        Trust::CaFile(path) => builder = builder.tls(tls_from_pem(path)?),
        Trust::Native => builder = builder.tls(Tls::native_roots().map_err(|e| e.to_string())?),
    }
    match &args.proxy {
        ProxyFrom::Direct => {}
        ProxyFrom::Url(url) => {
            builder = builder.proxy(Proxy::http(url).map_err(|e| e.to_string())?)
        }
        ProxyFrom::Env => builder = builder.proxy_from_env(),
    }
    let open_wait = args.config.connect_timeout + args.config.handshake_timeout;
    let url = tether_tokio::redact(&args.url);
    emit(&json!({ "type": "start", "url": url, "profile": format!("{:?}", args.profile) }));
    let client = builder.start().map_err(|e| e.to_string())?;
    let mut updates = client.updates();
    let mut status = Status::Idle;
    let mut ever_opened = false;

    let mut lines = stdin_lines();
    let mut ctrl_c = interrupts();
    let mut stdin_open = true;
    let mut closer: Option<tokio::task::JoinHandle<()>> = None;
    let mut interrupted = false;
    let mut replies = tokio::task::JoinSet::new();
    let mut next_req = 0;
    loop {
        // Input over and every reply in: close (once). While reconnecting there is no
        // reply worth waiting for: each fails with the connection or waits in the queue,
        // and the close ends it.
        if !stdin_open && closer.is_none() && (replies.is_empty() || status == Status::Reconnecting)
        {
            closer = Some(close_soon(&client, ever_opened, open_wait));
        }
        tokio::select! {
            biased;
            Some(()) = ctrl_c.recv() => {
                if interrupted {
                    emit(&json!({ "type": "interrupted", "again": true }));
                    std::process::exit(130);
                }
                interrupted = true;
                emit(&json!({ "type": "interrupted", "again": false }));
                stdin_open = false;
                if closer.is_none() {
                    closer = Some(close_soon(&client, true, open_wait));
                }
            }
            update = updates.next() => match update {
                None => break,
                Some(Update::Status(s)) => {
                    if s != status {
                        emit(&json!({ "type": "status", "from": status.to_string(), "to": s.to_string() }));
                    }
                    ever_opened |= s == Status::Open;
                    status = s;
                }
                Some(Update::Event(ev)) => {
                    if let Some(v) = event::<P>(&ev) {
                        emit(&v);
                    }
                    if matches!(ev, Event::Ended(_)) {
                        break;
                    }
                }
                Some(_) => {}
            },
            Some(_) = replies.join_next(), if !replies.is_empty() => {}
            read = lines.recv(), if stdin_open => match read {
                None => stdin_open = false,
                Some(text) => {
                    let text = text.trim_end_matches('\r').to_owned();
                    line(&client, &mut replies, &mut next_req, text).await;
                }
            },
        }
    }
    // Replies still awaited fail with the session; let them print.
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while replies.join_next().await.is_some() {}
    })
    .await;
    // The session has ended; its close handshake may still be under way (bounded by
    // the close timeout): finish it, unless Ctrl-C comes (again).
    if let Some(closer) = closer {
        tokio::select! {
            _ = closer => {}
            Some(()) = ctrl_c.recv() => {
                emit(&json!({ "type": "interrupted", "again": interrupted }));
                std::process::exit(130);
            }
        }
    }
    Ok(if status == Status::Failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(ArgsError::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(ArgsError::Bad(e)) => {
            eprintln!("tether-cat: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let token = args.token.clone();
    let result = match args.profile {
        ProfileName::Raw => run(args, Raw).await,
        ProfileName::HelloAck => {
            let hello = HelloAck::new(move || match &token {
                Some(t) => json!({ "type": "hello", "client": "tether-cat", "token": t }),
                None => json!({ "type": "hello", "client": "tether-cat" }),
            });
            run(args, hello).await
        }
        ProfileName::Gateway => {
            let options = GatewayOptions {
                token,
                ..GatewayOptions::default()
            };
            run(args, Gateway::new(options)).await
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("tether-cat: {e}");
        ExitCode::from(2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn arguments() {
        let args = |v: &[&str]| parse_args(v.iter().map(|s| (*s).to_owned()));
        let a = args(&[
            "--profile",
            "hello-ack",
            "--ping=1s",
            "--stale",
            "3s",
            "ws://h/",
        ])
        .unwrap();
        assert_eq!(a.profile, ProfileName::HelloAck);
        assert_eq!(
            a.config.liveness.ping_interval,
            Some(Duration::from_secs(1))
        );
        assert_eq!(a.url, "ws://h/");
        assert!(
            args(&["--ping", "off", "ws://h/"])
                .unwrap()
                .config
                .liveness
                .ping_interval
                .is_none()
        );
        assert!(
            args(&["--stale", "1s", "ws://h/"]).is_err(),
            "stale must exceed ping"
        );
        assert!(args(&["--bogus", "ws://h/"]).is_err());
        assert!(args(&[]).is_err());
        assert_eq!(args(&["--help"]).err(), Some(ArgsError::Help));
        assert_eq!(args(&["ws://h/", "-h"]).err(), Some(ArgsError::Help));
        let a = args(&[
            "-H",
            "x-a: 1",
            "--header=authorization: Bearer t:u",
            "--subprotocol",
            "chat.v2",
            "--retry-first-connect",
            "--close-timeout",
            "1s",
            "ws://h/",
        ])
        .unwrap();
        assert_eq!(
            a.headers,
            [
                ("x-a".to_owned(), "1".to_owned()),
                ("authorization".to_owned(), "Bearer t:u".to_owned())
            ]
        );
        assert_eq!(a.subprotocols, ["chat.v2"]);
        assert!(a.config.retry_first_connect);
        assert_eq!(a.config.close_timeout, Duration::from_secs(1));
        assert!(args(&["-H", "no colon", "ws://h/"]).is_err());
        let a = args(&["--tls-ca", "ca.pem", "--proxy-from-env", "wss://h/"]).unwrap();
        assert_eq!(a.trust, Trust::CaFile("ca.pem".into()));
        assert_eq!(a.proxy, ProxyFrom::Env);
        let a = args(&["--native-roots", "--proxy", "http://p:3128", "wss://h/"]).unwrap();
        assert_eq!(a.trust, Trust::Native);
        assert_eq!(a.proxy, ProxyFrom::Url("http://p:3128".into()));
    }
}
