//! A peer that sends a valid message and then breaks the protocol, in one write, gets the
//! application's answer to the message before the close frame that fails the connection:
//! the driver holds the protocol error back until the application has taken what came
//! before it and come back for more (bounded by the close timeout). This is what the
//! Autobahn cases 3.2–3.4, 4.1.3–4.2.5 and 5.15 check; here it is deterministic, on
//! tokio and smol, for tether's client and tether's server.

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::oneshot;
use tether_core::profiles::Raw;
use tether_core::server::{EndCause, ServerConfig};
use tether_core::{Config, DisconnectReason, Event, FrameViolation, Jitter, Violation};
use tether_driver::server::{GuardConfig, Guarded};
use tether_tests::raw_peer::{Answer, MASK, Scripted, client_case_texts, frame};
use tether_tests::runtimes::{AcceptOne, OnSmol, OnTokio, TestRuntime, within};

const LIMIT: Duration = Duration::from_secs(10);
/// The close timeout of both roles here: the bound of a hold.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(400);
/// The close timeout of a client that echoes: a hold that ran to this bound (rather than
/// ending when the application caught up) would show as a wait this long.
const LONG_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A text frame with RSV1 set, which no extension was negotiated for.
fn reserved_bits(mask: Option<[u8; 4]>) -> Vec<u8> {
    frame(0xC1, b"bad", mask)
}

/// Two messages and a broken frame, in one write.
fn case(mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut bytes = frame(0x81, b"one", mask);
    bytes.extend(frame(0x81, b"two", mask));
    bytes.extend(reserved_bits(mask));
    bytes
}

fn client_config(close_timeout: Duration) -> Config {
    Config::builder()
        .backoff_schedule(vec![Duration::from_secs(60)])
        .jitter(Jitter::None)
        .close_timeout(close_timeout)
        .build()
        .expect("valid test configuration")
}

/// The server writes the case, then reads what the client sends until its close frame.
fn scripted_server() -> Scripted<(Vec<String>, Answer)> {
    let (go, gate) = std::sync::mpsc::channel();
    let _ = go.send(());
    scripted_server_after(gate)
}

/// [`scripted_server`], writing the case only once `go` says so: a `Client`'s test
/// subscribes to its events first, or the loop might read and publish the case before
/// the subscriber exists, to nobody.
fn scripted_server_after(go: std::sync::mpsc::Receiver<()>) -> Scripted<(Vec<String>, Answer)> {
    Scripted::start(2, move |c| {
        if go.recv_timeout(LIMIT).is_err() || c.write_raw(&case(None)).is_err() {
            return (Vec::new(), Answer::Dropped);
        }
        c.texts_and_answer()
    })
}

/// The client echoes every message; the server reads both echoes, then 1002.
async fn the_client_echoes_before_failing<A: TestRuntime>(a: &A) {
    let tag = format!("[{}] client echo", a.name());
    let (go, gate) = std::sync::mpsc::channel();
    let server = scripted_server_after(gate);
    let client = a
        .start(&server.url(), client_config(LONG_CLOSE_TIMEOUT), Raw)
        .expect("start");
    let mut events = Box::pin(client.events());
    go.send(()).expect("the server waits");
    let start = Instant::now();
    let reason = within(a, LIMIT, &tag, async {
        while let Some(ev) = events.next().await {
            match ev {
                Event::Message(frame) => {
                    let _ = client.send(frame).await;
                }
                Event::Disconnected { reason, .. } => return reason,
                _ => {}
            }
        }
        panic!("events ended")
    })
    .await;
    the_echoes_came_first(&tag, &reason, &server, start);
    client.terminate();
}

/// The session saw the broken frame, and the server read both echoes before the 1002;
/// the hold ended when the application caught up, not at its bound.
fn the_echoes_came_first(
    tag: &str,
    reason: &DisconnectReason,
    server: &Scripted<(Vec<String>, Answer)>,
    start: Instant,
) {
    assert!(
        start.elapsed() < LONG_CLOSE_TIMEOUT,
        "{tag}: the hold ran to its bound"
    );
    assert_eq!(
        *reason,
        DisconnectReason::ProtocolError(Violation::Frame(FrameViolation::ReservedBits)),
        "{tag}"
    );
    let (texts, answer) = server.result(LIMIT).expect("the script ends");
    assert_eq!(texts, ["one", "two"], "{tag}: the echoes came first");
    assert_eq!(answer, Answer::Close(Some(1002)), "{tag}");
}

/// An application that never reads its events does not keep the peer connected: the
/// error is reported when the close timeout runs out.
async fn a_client_that_never_reads_fails_after_the_bound<A: TestRuntime>(a: &A) {
    let tag = format!("[{}] client not reading", a.name());
    let (go, gate) = std::sync::mpsc::channel();
    let server = scripted_server_after(gate);
    let client = a
        .start(&server.url(), client_config(CLOSE_TIMEOUT), Raw)
        .expect("start");
    // Subscribed and never read: the subscriber never catches up.
    let _events = client.events();
    go.send(()).expect("the server waits");
    let start = Instant::now();
    let (texts, answer) = within(a, LIMIT, &tag, async {
        loop {
            if let Some(result) = server.result(Duration::ZERO) {
                return result;
            }
            a.sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(texts.is_empty(), "{tag}: {texts:?}");
    assert_eq!(answer, Answer::Close(Some(1002)), "{tag}");
    assert!(
        start.elapsed() >= CLOSE_TIMEOUT,
        "{tag}: held for the bound"
    );
    client.terminate();
}

/// The same with the session polled by the application's own task (`Builder::inline`):
/// the echoes are written on the poll that comes back for more, before the close frame.
async fn the_inline_client_echoes_before_failing<A: TestRuntime>(a: &A) {
    let tag = format!("[{}] inline echo", a.name());
    let server = scripted_server();
    let mut session = a
        .builder(&server.url())
        .config(client_config(LONG_CLOSE_TIMEOUT))
        .inline()
        .expect("start");
    let start = Instant::now();
    let reason = within(a, LIMIT, &tag, async {
        while let Some(ev) = session.next().await {
            match ev {
                Event::Message(frame) => {
                    session.send(frame).expect("accepted");
                }
                Event::Disconnected { reason, .. } => return reason,
                _ => {}
            }
        }
        panic!("events ended")
    })
    .await;
    the_echoes_came_first(&tag, &reason, &server, start);
    session.terminate();
}

async fn client_cases<A: TestRuntime>(a: &A) {
    the_client_echoes_before_failing(a).await;
    the_inline_client_echoes_before_failing(a).await;
    a_client_that_never_reads_fails_after_the_bound(a).await;
}

#[tokio::test]
async fn a_client_answers_before_failing_on_tokio() {
    client_cases(&OnTokio).await;
}

#[test]
fn a_client_answers_before_failing_on_smol() {
    smol::block_on(client_cases(&OnSmol));
}

// ---- tether's server -------------------------------------------------------------------

fn guard_config() -> GuardConfig {
    GuardConfig {
        server: ServerConfig {
            close_timeout: CLOSE_TIMEOUT,
            ..ServerConfig::default()
        },
        ..GuardConfig::default()
    }
}

/// What the served connection's application does.
#[derive(Clone, Copy)]
enum App {
    /// Echoes every message.
    Echo,
    /// Never calls `recv`.
    Deaf,
}

async fn serve(conn: Guarded, app: App, done: oneshot::Sender<EndCause>) {
    if let App::Echo = app {
        while let Some(frame) = conn.recv().await {
            if conn.send(frame).await.is_err() {
                break;
            }
        }
    }
    let _ = done.send(conn.closed().await);
}

async fn server_case<A: AcceptOne>(a: &A, app: App, echoes: &[&str]) {
    let tag = format!("[{}] server", a.name());
    let (done, ended) = oneshot::channel();
    let addr = a.accept_one(guard_config(), move |conn| serve(conn, app, done));
    let start = Instant::now();
    let peer = std::thread::spawn(move || client_case_texts(addr, &case(Some(MASK))));
    let end = within(a, LIMIT, &tag, ended).await.expect("reported");
    assert_eq!(
        end,
        EndCause::Lost(DisconnectReason::ProtocolError(Violation::Frame(
            FrameViolation::ReservedBits
        ))),
        "{tag}"
    );
    let (texts, answer) = peer.join().expect("peer thread").expect("upgrade");
    assert_eq!(texts, echoes, "{tag}");
    assert_eq!(answer, Answer::Close(Some(1002)), "{tag}");
    if echoes.is_empty() {
        assert!(
            start.elapsed() >= CLOSE_TIMEOUT,
            "{tag}: held for the bound"
        );
    }
}

async fn server_cases<A: AcceptOne>(a: &A) {
    server_case(a, App::Echo, &["one", "two"]).await;
    server_case(a, App::Deaf, &[]).await;
}

#[tokio::test]
async fn a_server_answers_before_failing_on_tokio() {
    server_cases(&OnTokio).await;
}

#[test]
fn a_server_answers_before_failing_on_smol() {
    smol::block_on(server_cases(&OnSmol));
}
