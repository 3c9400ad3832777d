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
//! line and a SHA-1 fingerprint of the payload.

use std::net::SocketAddr;
use std::time::Instant;

use futures::StreamExt;
use tether_tokio::Client;
use tether_tokio::record::{Options, Recorder, Redaction};
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
    std::thread::spawn(move || {
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

fn options(record: bool) -> Options<Raw> {
    if record {
        Options::new().record(Recorder::to_writer(std::io::sink()).redaction(Redaction::Hash))
    } else {
        Options::new()
    }
}

/// Pipelined echo of `frames` frames after a warm-up; returns frames per second.
async fn pump(client: Client<Raw>, frames: usize) -> f64 {
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
    let start = Instant::now();
    run(frames).await;
    let rate = frames as f64 / start.elapsed().as_secs_f64();
    client.close().await;
    rate
}

fn on_tokio(addr: SocketAddr, frames: usize, record: bool) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async move {
        let url = format!("ws://{addr}/");
        tokio::spawn(async move {
            let client = tether_tokio::connect_with(&url, Config::default(), Raw, options(record))
                .await
                .expect("connect");
            pump(client, frames).await
        })
        .await
        .expect("the measured task")
    })
}

fn on_smol(addr: SocketAddr, frames: usize, record: bool) -> f64 {
    smol::block_on(smol::spawn(async move {
        let url = format!("ws://{addr}/");
        let client = tether_smol::connect_with(&url, Config::default(), Raw, options(record))
            .await
            .expect("connect");
        pump(client, frames).await
    }))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let frames = var("TETHER_BENCH_FRAMES", 100_000).max(1);
    let rounds = var("TETHER_BENCH_ROUNDS", 5).max(1);
    let addr = start_server();
    println!(
        "tether throughput, recording off vs on (hash, to a sink): {frames} frames of 100 B, window {WINDOW}, median of {rounds} rounds"
    );
    println!("| runtime | off (frames/s) | on (frames/s) | on / off |");
    println!("|---|---:|---:|---:|");
    type Run = fn(SocketAddr, usize, bool) -> f64;
    for (name, run) in [("tokio", on_tokio as Run), ("smol", on_smol as Run)] {
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            for record in [round % 2 == 1, round % 2 == 0] {
                let rate = run(addr, frames, record);
                if record {
                    on.push(rate)
                } else {
                    off.push(rate)
                }
            }
        }
        let (off, on) = (median(off), median(on));
        println!("| {name} | {:.0} | {:.0} | {:.2} |", off, on, on / off);
    }
}
