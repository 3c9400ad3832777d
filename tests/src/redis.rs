//! A real Redis for the backplane tests: Debian's `redis-server`, unpacked by
//! `scripts/redis-setup.sh`, started on a free loopback port by the test that needs it and
//! killed when its guard drops. Also the hub processes those tests run
//! (`src/bin/hub_node.rs`), with their stdin commands and stdout lines.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::peers::{collect, free_port, setup_script};

/// Names the `redis-server` to run (what `scripts/redis-setup.sh` prints).
pub const SERVER_VAR: &str = "TETHER_REDIS_SERVER";
/// `=1` skips the tests that need Redis.
pub const SKIP_VAR: &str = "TETHER_SKIP_REDIS";

/// The `redis-server` to run, or `None` when `TETHER_SKIP_REDIS=1`. Runs
/// `scripts/redis-setup.sh` (once per test binary) when the environment does not name it.
pub fn server_binary() -> Option<&'static PathBuf> {
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        eprintln!("{SKIP_VAR}=1: redis test skipped");
        return None;
    }
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    Some(BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os(SERVER_VAR) {
            return path.into();
        }
        let [path] = setup_script("redis-setup.sh", SKIP_VAR, [SERVER_VAR]);
        path
    }))
}

/// A running `redis-server` on 127.0.0.1, killed on drop.
pub struct Redis {
    bin: PathBuf,
    /// Its port.
    pub port: u16,
    child: Option<Child>,
    stderr: Option<Arc<Mutex<String>>>,
}

impl Redis {
    /// Starts one on a free port and waits (bounded) until it answers `PING`.
    /// `None` when the redis tests are skipped.
    pub fn start() -> Option<Redis> {
        let bin = server_binary()?.clone();
        let mut redis = Redis {
            bin,
            port: free_port(),
            child: None,
            stderr: None,
        };
        redis.restart();
        Some(redis)
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (an outage: every connection to it drops at once).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (killing it first if it runs) and waits until it
    /// answers. Nothing persists: no RDB, no AOF.
    pub fn restart(&mut self) {
        self.kill();
        let mut child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let out = collect(child.stdout.take().expect("piped"));
        self.stderr = Some(collect(child.stderr.take().expect("piped")));
        self.child = Some(child);
        // Bounded readiness polling: up to 10 s in 20 ms steps.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if self
                .command(&[b"PING"])
                .is_ok_and(|r| r.starts_with(b"+PONG"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = out.lock().map(|s| s.clone()).unwrap_or_default();
        let err = self.stderr().unwrap_or_default();
        panic!(
            "redis-server on port {} never answered PING:\n{out}\n{err}",
            self.port
        );
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> Option<String> {
        let text = self.stderr.as_ref()?;
        Some(text.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Sends one command on a fresh connection and returns the start of the reply.
    ///
    /// # Errors
    ///
    /// Any I/O error.
    pub fn command(&self, args: &[&[u8]]) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut cmd = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            cmd.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            cmd.extend_from_slice(a);
            cmd.extend_from_slice(b"\r\n");
        }
        s.write_all(&cmd)?;
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf)?;
        Ok(buf[..n].to_vec())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A hub process (`src/bin/hub_node.rs`) on `runtime` ("tokio" or "smol"), killed on
/// drop. Its stdout lines are collected as they come.
pub struct HubNode {
    /// A name for failure messages.
    pub name: String,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    /// The WebSocket port it serves.
    pub port: u16,
}

/// How long a node has to say what a test waits for.
pub const WAIT: Duration = Duration::from_secs(20);

impl HubNode {
    /// Starts `bin` (the test's `env!("CARGO_BIN_EXE_hub_node")`: only integration
    /// tests know it) as `hub_node <runtime>` against `redis_url`, with `env` set, and
    /// waits for it to listen.
    pub fn start(
        bin: &str,
        name: &str,
        runtime: &str,
        redis_url: &str,
        env: &[(&str, &str)],
    ) -> HubNode {
        let mut cmd = Command::new(bin);
        cmd.arg(runtime)
            .env("TETHER_REDIS_URL", redis_url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start hub_node");
        let stdout = child.stdout.take().expect("piped");
        let stderr = collect(child.stderr.take().expect("piped"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let mut node = HubNode {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child: Some(child),
            lines,
            stderr,
            port: 0,
        };
        let at = node.wait_for(0, |l| l.starts_with("LISTEN "));
        node.port = node.line(at)["LISTEN ".len()..]
            .parse()
            .expect("LISTEN <port>");
        node
    }

    /// The `i`-th line it printed.
    pub fn line(&self, i: usize) -> String {
        self.lines.lock().unwrap_or_else(|e| e.into_inner())[i].clone()
    }

    /// How many lines it has printed.
    pub fn printed(&self) -> usize {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Waits (polling, at most [`WAIT`]) for a line from index `from` on that matches;
    /// its index.
    ///
    /// # Panics
    ///
    /// If none comes in time, with what the node printed.
    pub fn wait_for(&self, from: usize, matches: impl Fn(&str) -> bool) -> usize {
        let start = Instant::now();
        while start.elapsed() < WAIT {
            {
                let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(i) = (from..lines.len()).find(|&i| matches(&lines[i])) {
                    return i;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "{}: the awaited line never came. stdout:\n{}\nstderr:\n{}",
            self.name,
            self.lines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .join("\n"),
            self.stderr.lock().unwrap_or_else(|e| e.into_inner())
        );
    }

    /// Waits until both backplane connections reported up after line `from`.
    pub fn wait_up(&self, from: usize) {
        self.wait_for(from, |l| l == "EVENT up publisher");
        self.wait_for(from, |l| l == "EVENT up subscriber");
    }

    /// Sends a command line.
    pub fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("running");
        writeln!(stdin, "{command}").expect("write to hub_node");
        stdin.flush().expect("flush to hub_node");
    }

    /// Its hub's and backplane's counters (`stats` command, `STATS {json}` answer).
    pub fn stats(&mut self) -> serde_json::Value {
        let from = self.printed();
        self.send("stats");
        let at = self.wait_for(from, |l| l.starts_with("STATS "));
        serde_json::from_str(&self.line(at)["STATS ".len()..]).expect("STATS json")
    }

    /// Polls its stats (at most [`WAIT`]) until `ok` holds of them.
    pub fn wait_stats(&mut self, what: &str, ok: impl Fn(&serde_json::Value) -> bool) {
        let start = Instant::now();
        loop {
            let stats = self.stats();
            if ok(&stats) {
                return;
            }
            assert!(
                start.elapsed() < WAIT,
                "{}: {what} never held; stats {stats}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it at once (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().is_ok_and(|s| s.is_none()))
    }
}

impl Drop for HubNode {
    fn drop(&mut self) {
        self.stdin.take();
        self.kill();
    }
}
