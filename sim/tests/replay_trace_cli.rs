//! `tether-sim replay-trace FILE`: a trace written by hand from a session driven here
//! replays identically (exit 0), a tampered output is reported as the first differing
//! step with its line (exit 1), and an unknown format version is refused clearly.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_core::profiles::Raw;
use tether_core::{CloseCode, Config, Input, Session};
use tether_driver::record::format;
use tether_driver::record::{FORMAT_VERSION, Recordable, Redaction, Redactor};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tether-sim"))
        .args(args)
        .output()
        .expect("run tether-sim")
}

/// A trace of a `Raw` session: connect, open, close, closed — written with the
/// recorder's own format functions, as the driver would.
fn trace() -> Vec<String> {
    let config = Config::default();
    let redactor = Redactor::new(Redaction::Hash, Raw.wire());
    let mut lines = vec![
        json!({
            "k": "header", "version": FORMAT_VERSION, "seed": 7, "profile": Raw.profile(),
            "redaction": "hash", "secrets": false,
            "config": format::config(&config).expect("recordable"),
        })
        .to_string(),
    ];
    #[allow(clippy::disallowed_methods)] // An arbitrary epoch: only offsets are written.
    let t0 = Instant::now();
    let mut s = Session::new(config, Raw, 7).expect("valid");
    let ms = |n: u64| Duration::from_millis(n);
    let drain = |s: &mut Session<Raw>, lines: &mut Vec<String>| {
        while let Some(o) = s.poll_output() {
            lines.push(json!({ "k": "out", "o": format::output(&redactor, &o) }).to_string());
        }
    };
    s.connect(t0).expect("connect");
    lines.push(json!({ "k": "connect", "t": 0, "ret": { "ok": null } }).to_string());
    drain(&mut s, &mut lines);
    let conn = s.current_conn().expect("an attempt");
    let opened = Input::TransportOpened { conn };
    lines.push(
        json!({ "k": "in", "t": ms(10).as_nanos() as u64, "in": format::input(&redactor, &opened) })
            .to_string(),
    );
    s.handle_input(opened, t0 + ms(10));
    drain(&mut s, &mut lines);
    s.close(CloseCode::NORMAL, "bye", t0 + ms(20));
    lines.push(
        json!({ "k": "close", "t": ms(20).as_nanos() as u64, "code": 1000, "reason": "bye" })
            .to_string(),
    );
    drain(&mut s, &mut lines);
    let closed = Input::TransportClosed {
        conn,
        code: Some(CloseCode::NORMAL),
        reason: String::new(),
    };
    lines.push(
        json!({ "k": "in", "t": ms(30).as_nanos() as u64, "in": format::input(&redactor, &closed) })
            .to_string(),
    );
    s.handle_input(closed, t0 + ms(30));
    drain(&mut s, &mut lines);
    lines.push(
        json!({
            "k": "end", "t": ms(30).as_nanos() as u64, "status": format::status_name(s.status()),
            "closed": s.is_closed(), "timer": s.poll_timeout().is_some(),
        })
        .to_string(),
    );
    lines
}

fn write(name: &str, lines: &[String]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("tether-{}-{name}.jsonl", std::process::id()));
    std::fs::write(&path, lines.join("\n") + "\n").expect("write the trace");
    path
}

#[test]
fn a_trace_replays_identically() {
    let path = write("good", &trace());
    let o = sim(&["replay-trace", path.to_str().expect("UTF-8 path")]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("replay: identical"), "{out}");
    let passed = format!("oracles: {} passed", tether_sim::oracle::ORACLES.len());
    assert!(out.contains(&passed), "{out}");
}

#[test]
fn a_tampered_output_is_the_first_differing_step() {
    let mut lines = trace();
    let n = lines
        .iter()
        .position(|l| l.contains(r#""to":"Closed""#))
        .expect("the status change to Closed");
    lines[n] = lines[n].replace(r#""to":"Closed""#, r#""to":"Failed""#);
    let path = write("tampered", &lines);
    let o = sim(&["replay-trace", path.to_str().expect("UTF-8 path")]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!("DIVERGED at line {}", n + 1)),
        "{out}"
    );
    assert!(
        out.contains(r#"expected {"status":{"from":"#) && out.contains("Failed"),
        "{out}"
    );
}

#[test]
fn an_unknown_version_is_refused() {
    let mut lines = trace();
    let mut header: Value = serde_json::from_str(&lines[0]).expect("JSON");
    header["version"] = json!(FORMAT_VERSION + 1);
    lines[0] = header.to_string();
    let path = write("version", &lines);
    let o = sim(&["replay-trace", path.to_str().expect("UTF-8 path")]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    let expected = format!(
        "line 1: trace format version {} is not supported (this build reads versions 1 to {FORMAT_VERSION})",
        FORMAT_VERSION + 1
    );
    assert!(err.contains(&expected), "{err}");
    let o = sim(&["replay-trace"]);
    assert_eq!(o.status.code(), Some(2));
}
