//! The interop peers: servers this project did not write (Python `websockets` 17, Node
//! `ws` 8), set up by `scripts/interop-setup.sh` and run as processes on free loopback
//! ports by the tests that use them.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::{FutureExt, Stream, StreamExt};

use crate::runtimes::TestRuntime as Rt;

/// Where the interop peers live, from the environment or from running the setup script.
pub struct Peers {
    /// The venv's Python.
    pub python: PathBuf,
    /// `interop/node`, with its `node_modules`.
    pub node_dir: PathBuf,
}

/// Names the venv's Python.
pub const PYTHON_VAR: &str = "TETHER_INTEROP_PYTHON";
/// Names `interop/node`.
pub const NODE_DIR_VAR: &str = "TETHER_INTEROP_NODE_DIR";
/// `=1` skips the interop tests.
pub const SKIP_VAR: &str = "TETHER_SKIP_INTEROP";

/// The workspace's root directory.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
}

/// The peers, or `None` when `TETHER_SKIP_INTEROP=1`. Runs `scripts/interop-setup.sh`
/// (once per test binary) when the environment does not name them.
pub fn peers() -> Option<&'static Peers> {
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        eprintln!("{SKIP_VAR}=1: interop test skipped");
        return None;
    }
    static PEERS: OnceLock<Peers> = OnceLock::new();
    Some(PEERS.get_or_init(|| {
        match (std::env::var_os(PYTHON_VAR), std::env::var_os(NODE_DIR_VAR)) {
            (Some(python), Some(node_dir)) => Peers {
                python: python.into(),
                node_dir: node_dir.into(),
            },
            _ => run_setup(),
        }
    }))
}

/// Runs `scripts/interop-setup.sh` and reads the peers it names.
pub fn run_setup() -> Peers {
    let [python, node_dir] = setup_script("interop-setup.sh", SKIP_VAR, [PYTHON_VAR, NODE_DIR_VAR]);
    Peers { python, node_dir }
}

/// Runs `scripts/<script>` (a setup script that prints `NAME=value` lines on stdout) and
/// returns the value of each of `names`; panics, naming `skip_var`, when it fails or
/// leaves one out.
pub fn setup_script<const N: usize>(
    script: &str,
    skip_var: &str,
    names: [&str; N],
) -> [PathBuf; N] {
    let path = workspace_root().join("scripts").join(script);
    eprintln!("{} unset: running {}", names.join("/"), path.display());
    let out = Command::new("bash")
        .arg(&path)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    assert!(
        out.status.success(),
        "{} failed ({}); set {skip_var}=1 to skip the tests that need it",
        path.display(),
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    names.map(|name| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{script} printed no {name}= line:\n{stdout}"))
            .into()
    })
}

/// A server this project did not write.
#[derive(Clone, Copy, Debug)]
pub enum Peer {
    /// `interop/python_server.py` on Python `websockets` 17.
    Python,
    /// `interop/node/server.js` on Node `ws` 8.
    Node,
}

impl Peer {
    /// The command that starts this peer on `port`.
    pub fn command(self, peers: &Peers, port: u16) -> Command {
        let mut cmd = match self {
            Peer::Python => {
                let mut c = Command::new(&peers.python);
                c.arg(workspace_root().join("interop/python_server.py"));
                c
            }
            Peer::Node => {
                let mut c = Command::new("node");
                c.arg(peers.node_dir.join("server.js"));
                c
            }
        };
        cmd.arg(port.to_string())
            .arg("--exit-with-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

/// Collects what `pipe` carries, on a thread of its own, into a string the caller can
/// read at any time (a process's stderr, shown when a test fails).
pub fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buf = String::new();
        let _ = pipe.read_to_string(&mut buf);
        sink.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_str(&buf);
    });
    text
}

/// A free port on 127.0.0.1: bound, then released for the server to take.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A running server process. Dropping it kills the process (SIGKILL) and reaps it, on every
/// path including a failed assertion; the server also exits when its stdin (held here)
/// closes, should this process die without unwinding.
pub struct Server {
    peer: Peer,
    /// The port it listens on.
    pub port: u16,
    child: Option<Child>,
    /// `CONNECTION <n>` lines and the end of stdout, in order.
    lines: Receiver<Option<String>>,
    /// Connections the server reported accepting, over every process on this port.
    pub connections: usize,
    /// `<n> <code>` of every `CLOSED` line so far.
    pub closed: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `peer` on `port` and waits until it prints `READY <port>`. Retries a few times
    /// if the process exits first (the port taken for a moment, say by a client's dial).
    pub async fn start<R: Rt>(rt: R, peers: &Peers, peer: Peer, port: u16) -> Server {
        let mut last = String::new();
        for _ in 0..20 {
            match Server::try_start(rt, peers, peer, port).await {
                Ok(server) => return server,
                Err(e) => last = e,
            }
            rt.sleep(Duration::from_millis(50)).await;
        }
        panic!("{peer:?} server did not start on port {port}: {last}");
    }

    /// One attempt of [`Server::start`].
    pub async fn try_start<R: Rt>(
        rt: R,
        peers: &Peers,
        peer: Peer,
        port: u16,
    ) -> Result<Server, String> {
        let mut child = peer
            .command(peers, port)
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(Some(line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(None);
        });
        let stderr = collect(stderr_pipe);
        let mut server = Server {
            peer,
            port,
            child: Some(child),
            lines,
            connections: 0,
            closed: Vec::new(),
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match server.lines.try_recv() {
                Ok(Some(line)) if line == format!("READY {port}") => return Ok(server),
                Ok(Some(line)) => return Err(format!("unexpected first line {line:?}")),
                Ok(None) | Err(TryRecvError::Disconnected) => {
                    server.reap();
                    return Err(format!("exited before READY: {}", server.stderr()));
                }
                Err(TryRecvError::Empty) if Instant::now() > deadline => {
                    return Err("no READY within 10 s".into());
                }
                Err(TryRecvError::Empty) => rt.sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit.
    pub fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        // Give the reader thread a moment to collect what the process wrote last.
        std::thread::sleep(Duration::from_millis(50));
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits (up to a second) until the server has reported `n` connections, then returns
    /// how many it reported: its output crosses a pipe and a thread, a little behind.
    pub async fn connections<R: Rt>(&mut self, rt: R, n: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.count_connections() < n && Instant::now() < deadline {
            rt.sleep(Duration::from_millis(10)).await;
        }
        self.count_connections()
    }

    /// Counts the `CONNECTION` lines printed so far (keeping the `CLOSED` ones).
    pub fn count_connections(&mut self) -> usize {
        while let Ok(Some(line)) = self.lines.try_recv() {
            if line.starts_with("CONNECTION ") {
                self.connections += 1;
            } else if let Some(rest) = line.strip_prefix("CLOSED ") {
                self.closed.push(rest.to_owned());
            }
        }
        self.connections
    }

    /// Waits (up to a second) for a connection the server reports closed with `code`
    /// from the client: the client answered the server's close frame.
    pub async fn closed_with<R: Rt>(&mut self, rt: R, code: u16) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(1);
        let wanted = |c: &String| c.split(' ').nth(1) == Some(code.to_string().as_str());
        loop {
            self.count_connections();
            if self.closed.iter().any(wanted) || Instant::now() >= deadline {
                return self.closed.clone();
            }
            rt.sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let stderr = self.stderr();
            if !stderr.is_empty() {
                eprintln!(
                    "--- {:?} server on port {} stderr ---\n{stderr}",
                    self.peer, self.port
                );
            }
        }
    }
}

/// Every item `stream` has ready now, without waiting.
pub fn ready_items<T>(stream: &mut (impl Stream<Item = T> + Unpin)) -> Vec<T> {
    let mut items = Vec::new();
    while let Some(Some(item)) = stream.next().now_or_never() {
        items.push(item);
    }
    items
}
