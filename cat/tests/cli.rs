//! `tether-cat` as a subprocess against a server this project did not write (Python
//! `websockets`, `interop/python_server.py`): usage, replies then end of input, a session
//! that ends while stdin is still open, Ctrl-C once (a clean close) and twice (at once,
//! while the peer is stopped and cannot answer the close), and end of input during a
//! reconnect. Every process is killed on every path; every wait is bounded.

#![cfg(unix)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use tether_tests::peers::{Peer, Server, free_port, peers};
use tether_tests::runtimes::OnTokio;
use tether_tests::tls_peers::{Certs, proxy_py, python, python_server};

const BIN: &str = env!("CARGO_BIN_EXE_tether-cat");
const WAIT: Duration = Duration::from_secs(10);

/// A running `tether-cat`; killed when dropped.
struct Cat {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Cat {
    fn start(args: &[&str]) -> Cat {
        Cat::start_with_env(args, &[])
    }

    fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Cat {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tether-cat starts");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Cat {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to tether-cat");
        stdin.flush().expect("flush");
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn signal(&self, signal: Signal) {
        signal_pid(self.child.id(), signal);
    }

    /// Waits for a line containing `needle`; panics with what was seen after `WAIT`.
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    panic!("no line with {needle:?}; saw:\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    /// Waits for the process to exit within `limit`; its status and how long it took.
    fn exit_within(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let took = started.elapsed();
                // What it printed last, for the failure messages.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                    self.seen.push(line);
                }
                return (status, took);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "tether-cat still running after {limit:?}; saw:\n{}",
            self.seen.join("\n")
        );
    }
}

impl Drop for Cat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal_pid(pid: u32, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(pid).expect("a pid fits i32")).expect("a live pid");
    kill_process(pid, signal).expect("signal sent");
}

/// A Python peer on a free port, and its URL.
fn peer(rt: &tokio::runtime::Runtime) -> Option<(Server, String)> {
    let peers = peers()?;
    let port = free_port();
    let server = rt.block_on(Server::start(OnTokio, peers, Peer::Python, port));
    Some((server, format!("ws://127.0.0.1:{port}/")))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn help_prints_the_usage_and_exits_0() {
    let out = Command::new(BIN).arg("--help").output().expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("usage: tether-cat [OPTIONS] URL"),
        "{text}"
    );
    for flag in [
        "--header",
        "--subprotocol",
        "--retry-first-connect",
        "--close-timeout",
    ] {
        assert!(text.contains(flag), "{flag} in {text}");
    }
    let out = Command::new(BIN).arg("--bogus").output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn replies_come_back_and_end_of_input_closes() {
    let rt = runtime();
    let Some((_server, url)) = peer(&rt) else {
        return;
    };
    let mut cat = Cat::start(&[
        "--profile",
        "hello-ack",
        "-H",
        "x-tenant: blue",
        "--subprotocol",
        "chat.v1",
        &url,
    ]);
    cat.send(r#"/req echo {"n":1}"#);
    cat.send("/req headers");
    cat.close_stdin();
    let reply = cat.expect(r#"{"type":"reply","method":"echo""#);
    assert!(reply.contains(r#""result":{"n":1}"#), "{reply}");
    let headers = cat.expect(r#"{"type":"reply","method":"headers""#);
    assert!(headers.contains(r#""x-tenant":"blue""#), "{headers}");
    assert!(headers.contains(r#""subprotocol":"chat.v1""#), "{headers}");
    cat.expect(r#""to":"closed""#);
    let (status, _) = cat.exit_within(WAIT);
    assert!(status.success(), "{status}");
}

#[test]
fn a_session_that_ends_exits_while_stdin_is_open() {
    let rt = runtime();
    let Some((_server, url)) = peer(&rt) else {
        return;
    };
    let mut cat = Cat::start(&["--profile", "hello-ack", &url]);
    cat.expect(r#""to":"open""#);
    // The server answers, then closes 4001, which the default policy calls fatal.
    cat.send("/req close4001");
    cat.expect(r#""type":"ended""#);
    let (status, _) = cat.exit_within(WAIT);
    assert_eq!(status.code(), Some(1), "failed: exit 1, stdin still open");
}

#[test]
fn ctrl_c_closes_cleanly() {
    let rt = runtime();
    let Some((mut server, url)) = peer(&rt) else {
        return;
    };
    let mut cat = Cat::start(&["--profile", "hello-ack", &url]);
    cat.expect(r#""to":"open""#);
    cat.signal(Signal::INT);
    cat.expect(r#""type":"interrupted""#);
    cat.expect(r#""to":"closed""#);
    let (status, _) = cat.exit_within(WAIT);
    assert!(status.success(), "{status}");
    let closed = rt.block_on(server.closed_with(OnTokio, 1000));
    assert!(
        closed.iter().any(|c| c.ends_with(" 1000")),
        "the server saw a close 1000: {closed:?}"
    );
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let rt = runtime();
    let Some((server, url)) = peer(&rt) else {
        return;
    };
    let mut cat = Cat::start(&["--profile", "hello-ack", "--close-timeout", "60s", &url]);
    cat.expect(r#""to":"open""#);
    // A stopped peer never answers the close: the clean close would wait 60 s.
    let pid = server.pid().expect("the peer runs");
    signal_pid(pid, Signal::STOP);
    cat.signal(Signal::INT);
    cat.expect(r#""again":false"#);
    cat.signal(Signal::INT);
    let (status, took) = cat.exit_within(WAIT);
    signal_pid(pid, Signal::CONT);
    assert_eq!(
        status.code(),
        Some(130),
        "{status}; saw:\n{}",
        cat.seen.join("\n")
    );
    assert!(took < Duration::from_secs(60), "did not wait for the close");
}

#[test]
fn end_of_input_during_a_reconnect_closes_within_the_close_timeout() {
    let rt = runtime();
    let Some((mut server, url)) = peer(&rt) else {
        return;
    };
    let mut cat = Cat::start(&["--profile", "hello-ack", "--close-timeout", "2s", &url]);
    cat.expect(r#""to":"open""#);
    server.kill();
    cat.expect(r#""to":"reconnecting""#);
    // A request typed while reconnecting waits in the queue; end of input does not wait
    // for its reply.
    cat.send("/req echo 1");
    cat.close_stdin();
    cat.expect(r#""to":"closed""#);
    let (status, took) = cat.exit_within(Duration::from_secs(2));
    assert!(status.success(), "{status}");
    assert!(took <= Duration::from_secs(2), "{took:?}");
}

/// `--tls-ca` trusts a private CA for `wss://` (Python `websockets` serving TLS with a
/// certificate the test makes); without it the webpki roots refuse the server, fatally.
#[test]
fn tls_ca_trusts_a_private_ca() {
    let Some(python) = python() else { return };
    let certs = Certs::new();
    let server = python_server(python, &certs.server_args("good"));
    let url = format!("wss://localhost:{}/", server.port);
    let ca = certs.ca_pem().display().to_string();
    let mut cat = Cat::start(&["--profile", "hello-ack", "--tls-ca", &ca, &url]);
    cat.send(r#"/req echo {"n":7}"#);
    let reply = cat.expect(r#"{"type":"reply","method":"echo""#);
    assert!(reply.contains(r#""result":{"n":7}"#), "{reply}");
    cat.close_stdin();
    let (status, _) = cat.exit_within(WAIT);
    assert!(status.success(), "{status}");

    let mut cat = Cat::start(&["--profile", "hello-ack", &url]);
    let ended = cat.expect(r#""type":"ended""#);
    assert!(
        ended.contains("certificate signed by an unknown authority"),
        "{ended}"
    );
    let (status, _) = cat.exit_within(WAIT);
    assert_eq!(status.code(), Some(1));
}

/// `--proxy-from-env` reads `HTTP_PROXY` (credentials included) and tunnels through
/// proxy.py; wrong credentials end the session with the proxy's 407.
#[test]
fn proxy_from_env_tunnels_through_proxy_py() {
    let Some(python) = python() else { return };
    let server = python_server(python, &[]);
    let proxy = proxy_py(python, "user:secret");
    let url = format!("ws://127.0.0.1:{}/", server.port);
    let good = format!("http://user:secret@127.0.0.1:{}", proxy.port);
    let mut cat = Cat::start_with_env(
        &["--profile", "hello-ack", "--proxy-from-env", &url],
        &[("HTTP_PROXY", &good)],
    );
    cat.send(r#"/req echo {"n":8}"#);
    let reply = cat.expect(r#"{"type":"reply","method":"echo""#);
    assert!(reply.contains(r#""result":{"n":8}"#), "{reply}");
    cat.close_stdin();
    let (status, _) = cat.exit_within(WAIT);
    assert!(status.success(), "{status}");
    assert!(
        !cat.seen.iter().any(|l| l.contains("secret")),
        "the proxy's password is never printed"
    );

    let bad = format!("http://user:wrong@127.0.0.1:{}", proxy.port);
    let mut cat = Cat::start_with_env(
        &["--profile", "hello-ack", "--proxy-from-env", &url],
        &[("HTTP_PROXY", &bad)],
    );
    let ended = cat.expect(r#""type":"ended""#);
    assert!(ended.contains("proxy answered 407"), "{ended}");
    let (status, _) = cat.exit_within(WAIT);
    assert_eq!(status.code(), Some(1));
}
