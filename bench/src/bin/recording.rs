//! What the flight recorder costs: tether's pipelined echo throughput with recording off
//! and on (payloads hashed, trace written to `std::io::sink()`), in the same run, on
//! tokio and on smol.
//!
//! ```sh
//! cargo run --release -p tether-bench --bin recording
//! ```
//!
//! The loop is the adapters bench's throughput loop (`adapters.rs`): 100-byte text frames
//! through `Client<Raw>::feed`, echoed by an in-process server on its own thread, a window
//! of 64 in flight, `Event::Message` counted back. Each round runs recording off and on
//! (alternating which goes first); the figure is the median over `TETHER_BENCH_ROUNDS`
//! rounds (default 5) of `TETHER_BENCH_FRAMES` frames (default 100,000) each. Every frame
//! in and out costs the recorder a call line (the input, the write completion), an output
//! line and a SHA-1 fingerprint of the payload. The recorder renders and writes on a
//! thread of its own, fed through a bounded channel; records it dropped because it fell
//! behind are counted (the last column), since a run that drops them records less.
//!
//! `TETHER_BENCH_ONLY=on` (or `off`) runs one side only, to profile it.
//!
//! On Linux, a second table gives the CPU time each thread spent per frame during the
//! measured frames (from `/proc/self/task/*/schedstat`), median over the rounds, grouped
//! by thread name: the session's (the tokio runtime's thread, `recording`, which also runs
//! the measuring loop; smol's executor threads), the recorder's writer
//! (`tether-recorder`) and the echo server's (`echo-server`). A thread waiting for a core
//! is not charged, so contention inflates these far less than it does the rates; the echo
//! server, whose work is the same either way, shows how much it still does. They say
//! where the recording's cost goes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tether_tokio::Client;
use tether_tokio::record::{Options, Progress, Recorder, Redaction};
use tether_tokio::tether_core::profiles::Raw;
use tether_tokio::tether_core::{Config, DataFrame, Event, Utf8Bytes};

const FRAME: &str = "tether-bench-frame-0123456789abcdefghijklmnopqrstuvwxyz-0123456789abcdefghijklmnopqrstuvwxyz-0123456";
const WARMUP: usize = 2_000;
const WINDOW: usize = 64;

fn var(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Echoes every data frame.
async fn serve(tcp: tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
    let Ok(ws) = async_tungstenite::tokio::accept_async(tcp).await else {
        return;
    };
    let (mut tx, mut rx) = ws.split();
    while let Some(Ok(msg)) = rx.next().await {
        if (msg.is_text() || msg.is_binary()) && tx.send(msg).await.is_err() {
            return;
        }
    }
}

fn start_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("local address");
    let server = std::thread::Builder::new().name("echo-server".to_owned());
    let _ = server.spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                if let Ok((tcp, _)) = listener.accept().await {
                    tokio::spawn(serve(tcp));
                }
            }
        });
    });
    addr
}

/// The session's options, and the recording's progress when it records.
fn options(record: bool) -> (Options<Raw>, Option<Progress>) {
    if record {
        let recorder = Recorder::to_writer(std::io::sink()).redaction(Redaction::Hash);
        let progress = recorder.progress();
        (Options::new().record(recorder), Some(progress))
    } else {
        (Options::new(), None)
    }
}

/// CPU time (ns) each live thread of this process has run, summed by thread name; empty
/// where `/proc` has no `schedstat`.
fn cpu_by_thread() -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
        if let Some(ns) = ns {
            *out.entry(name.trim().to_owned()).or_insert(0) += ns;
        }
    }
    out
}

/// What one run measured: frames per second, records the recorder dropped, and the CPU
/// time per frame of each thread group during the measured frames.
struct Run {
    rate: f64,
    lost: u64,
    cpu: BTreeMap<String, f64>,
}

/// Waits for the recording to finish (its writer thread drains what it holds) and
/// returns the records it lost.
fn settle(progress: Option<Progress>) -> u64 {
    progress.map_or(0, |p| {
        assert!(p.wait(Duration::from_secs(60)), "the trace is finished");
        p.lost()
    })
}

/// Pipelined echo of `frames` frames after a warm-up; returns frames per second and the
/// CPU time per frame (ns) of each thread group.
async fn pump(client: Client<Raw>, frames: usize) -> (f64, BTreeMap<String, f64>) {
    let mut events = client.events();
    let frame = DataFrame::Text(Utf8Bytes::from_static(FRAME));
    let mut run = async |n: usize| {
        let (mut sent, mut got) = (0, 0);
        while sent < n.min(WINDOW) {
            client.feed(frame.clone()).await.expect("feed");
            sent += 1;
        }
        while got < n {
            match events.next().await {
                Some(Event::Message(_)) => {
                    got += 1;
                    if sent < n {
                        client.feed(frame.clone()).await.expect("feed");
                        sent += 1;
                    }
                }
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
    };
    run(WARMUP).await;
    let before = cpu_by_thread();
    let start = Instant::now();
    run(frames).await;
    let rate = frames as f64 / start.elapsed().as_secs_f64();
    let cpu = cpu_by_thread()
        .into_iter()
        .map(|(name, ns)| {
            let spent = ns.saturating_sub(before.get(&name).copied().unwrap_or(0));
            (name, spent as f64 / frames as f64)
        })
        .filter(|(_, ns)| *ns > 0.0)
        .collect();
    client.close().await;
    (rate, cpu)
}

fn on_tokio(addr: SocketAddr, frames: usize, record: bool) -> Run {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let (options, progress) = options(record);
    let (rate, cpu) = rt.block_on(async move {
        let url = format!("ws://{addr}/");
        tokio::spawn(async move {
            let client = tether_tokio::connect_with(&url, Config::default(), Raw, options)
                .await
                .expect("connect");
            pump(client, frames).await
        })
        .await
        .expect("the measured task")
    });
    // The session's task ends with the runtime.
    drop(rt);
    Run {
        rate,
        lost: settle(progress),
        cpu,
    }
}

fn on_smol(addr: SocketAddr, frames: usize, record: bool) -> Run {
    let (options, progress) = options(record);
    let (rate, cpu) = smol::block_on(smol::spawn(async move {
        let url = format!("ws://{addr}/");
        let client = tether_smol::connect_with(&url, Config::default(), Raw, options)
            .await
            .expect("connect");
        pump(client, frames).await
    }));
    Run {
        rate,
        lost: settle(progress),
        cpu,
    }
}

/// Per thread group, the CPU time per frame (ns) of each round, recording off and on.
type Groups = BTreeMap<String, [Vec<f64>; 2]>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let frames = var("TETHER_BENCH_FRAMES", 100_000).max(1);
    let rounds = var("TETHER_BENCH_ROUNDS", 5).max(1);
    // Only one side, to profile it: `on` or `off`.
    let only = match std::env::var("TETHER_BENCH_ONLY").as_deref() {
        Ok("on") => Some(true),
        Ok("off") => Some(false),
        _ => None,
    };
    let addr = start_server();
    println!(
        "tether throughput, recording off vs on (hash, to a sink): {frames} frames of 100 B, window {WINDOW}, median of {rounds} rounds"
    );
    println!("| runtime | off (frames/s) | on (frames/s) | on / off | records lost (all rounds) |");
    println!("|---|---:|---:|---:|---:|");
    type Runner = fn(SocketAddr, usize, bool) -> Run;
    let mut cpu: Vec<(&str, Groups)> = Vec::new();
    for (name, run) in [("tokio", on_tokio as Runner), ("smol", on_smol as Runner)] {
        let (mut off, mut on, mut lost) = (Vec::new(), Vec::new(), 0);
        let mut groups = Groups::new();
        for round in 0..rounds {
            for record in [round % 2 == 1, round % 2 == 0] {
                if only.is_some_and(|on| on != record) {
                    continue;
                }
                let r = run(addr, frames, record);
                lost += r.lost;
                for (thread, ns) in r.cpu {
                    groups.entry(thread).or_default()[usize::from(record)].push(ns);
                }
                if record {
                    on.push(r.rate)
                } else {
                    off.push(r.rate)
                }
            }
        }
        if off.is_empty() || on.is_empty() {
            println!(
                "| {name} | (one side only: {} rounds) | | | {lost} |",
                off.len() + on.len()
            );
            cpu.push((name, groups));
            continue;
        }
        let (off, on) = (median(off), median(on));
        println!(
            "| {name} | {:.0} | {:.0} | {:.2} | {lost} |",
            off,
            on,
            on / off
        );
        cpu.push((name, groups));
    }
    if cpu.iter().all(|(_, g)| g.is_empty()) {
        return;
    }
    println!();
    println!("CPU time per frame during the measured frames (median over rounds):");
    println!("| runtime | thread | off (ns/frame) | on (ns/frame) |");
    println!("|---|---|---:|---:|");
    let cell = |v: &[f64]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.0}", median(v.to_vec()))
        }
    };
    for (name, groups) in &cpu {
        for (thread, [off, on]) in groups {
            println!("| {name} | {thread} | {} | {} |", cell(off), cell(on));
        }
    }
}
