//! A connection tether gives up on is reset, not closed gracefully: the peer reads a
//! connection reset (RST), so its kernel stops sending to a socket nobody will read, where a
//! graceful close would leave the data buffered in an orphaned socket. Over real loopback
//! sockets, on tokio and on smol, both ways: a guarded server connection terminated by the
//! application, and a client session terminated by its own. A connection closed normally
//! still ends with FIN.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tether_driver::server::GuardConfig;
use tether_tests::runtimes::{AcceptOne, TestRuntime, within};

const STEP: Duration = Duration::from_secs(10);

/// Runs `f` on a thread of its own; its result as a future.
fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> BoxFuture<'static, T> {
    let (tx, rx) = futures::channel::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    async move { rx.await.expect("the thread reports") }.boxed()
}

/// How a socket's stream ended: `UnexpectedEof` for a FIN, `ConnectionReset` for a RST.
fn ending(s: &mut TcpStream) -> ErrorKind {
    s.set_read_timeout(Some(STEP)).expect("timeout");
    let mut buf = [0u8; 4096];
    for _ in 0..10_000 {
        match s.read(&mut buf) {
            Ok(0) => return ErrorKind::UnexpectedEof,
            Ok(_) => {}
            Err(e) => return e.kind(),
        }
    }
    panic!("the stream never ended")
}

/// A raw client that upgrades (and, with `close`, sends a close frame 1000 right after)
/// and then reads to the end of the stream.
fn raw_client(addr: SocketAddr, close: bool) -> ErrorKind {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .expect("request");
    if close {
        // FIN, close, masked with a zero key, code 1000.
        s.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8])
            .expect("close frame");
    }
    ending(&mut s)
}

async fn the_server_resets_what_it_terminates<R: TestRuntime + AcceptOne>(rt: R) {
    let addr = rt.accept_one(GuardConfig::default(), |conn| async move {
        conn.terminate();
        conn.closed().await;
    });
    let end = within(
        &rt,
        STEP,
        "the client's end",
        blocking(move || raw_client(addr, false)),
    )
    .await;
    assert_eq!(end, ErrorKind::ConnectionReset, "[{}]", rt.name());

    // The peer closes and the server answers: a normal end, with FIN.
    let addr = rt.accept_one(GuardConfig::default(), |conn| async move {
        conn.closed().await;
    });
    let end = within(
        &rt,
        STEP,
        "the client's end",
        blocking(move || raw_client(addr, true)),
    )
    .await;
    assert_eq!(
        end,
        ErrorKind::UnexpectedEof,
        "[{}] a close ends with FIN",
        rt.name()
    );
}

tether_tests::on_both_runtimes!(
    the_server_resets_what_it_terminates:
    tokio_the_server_resets_what_it_terminates,
    smol_the_server_resets_what_it_terminates
);

/// A server that upgrades one client and reads its socket to the end.
fn raw_server(listener: TcpListener) -> ErrorKind {
    let (mut s, _) = listener.accept().expect("accept");
    s.set_read_timeout(Some(STEP)).expect("timeout");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        if s.read(&mut byte).expect("request") == 0 {
            return ErrorKind::UnexpectedEof;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let key = text
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_owned())
        })
        .expect("a key");
    let accept = async_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    write!(
        s,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .expect("101");
    ending(&mut s)
}

async fn the_client_resets_what_it_terminates<R: TestRuntime>(rt: R) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = blocking(move || raw_server(listener));
    let client = within(
        &rt,
        STEP,
        "open",
        rt.builder(&format!("ws://{addr}/")).connect(),
    )
    .await
    .expect("open");
    client.terminate();
    let end = within(&rt, STEP, "the server's end", server).await;
    assert_eq!(end, ErrorKind::ConnectionReset, "[{}]", rt.name());
}

tether_tests::on_both_runtimes!(
    the_client_resets_what_it_terminates:
    tokio_the_client_resets_what_it_terminates,
    smol_the_client_resets_what_it_terminates
);
