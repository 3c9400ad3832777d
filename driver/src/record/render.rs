//! Rendering: the trace line of each record, redacted. Runs on the recorder's writer
//! thread for a file recorder, on the session's task for a ring buffer.

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tether_core::{InFrame, Input, OutFrame, Session};

use super::capture::{Call, Capture, Final, Msg, Ret};
use super::format::{self, FORMAT_VERSION, ReadError};
use super::recordable::Recordable;
use super::redact::{Direction, Redactor};

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Writes `parts` in order: literal text and numbers, without `core::fmt` (the hot lines'
/// numbers are most of what formatting cost the recorder's thread).
fn put(w: &mut (impl Write + ?Sized), parts: &[Part<'_>]) -> io::Result<()> {
    let mut digits = itoa::Buffer::new();
    for part in parts {
        match part {
            Part::S(s) => w.write_all(s.as_bytes())?,
            Part::N(n) => w.write_all(digits.format(*n).as_bytes())?,
        }
    }
    Ok(())
}

/// A piece of a trace line for [`put`].
enum Part<'a> {
    /// Literal text.
    S(&'a str),
    /// A number.
    N(u64),
}

/// The header line (with its newline): the session's identity, read from it on its task.
///
/// # Errors
///
/// A configuration this build cannot record.
pub(crate) fn header<P: Recordable>(
    session: &Session<P>,
    seed: u64,
    redactor: &Redactor,
) -> Result<Vec<u8>, ReadError> {
    let config = format::config(session.config())?;
    let wall_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let header = json!({
        "k": "header",
        "version": FORMAT_VERSION,
        "tether": env!("CARGO_PKG_VERSION"),
        "seed": seed,
        "profile": session.protocol().profile(),
        "redaction": redactor.mode().name(),
        "secrets": redactor.secrets(),
        "started_unix_ms": wall_ms,
        "config": config,
    });
    let mut line = header.to_string().into_bytes();
    line.push(b'\n');
    Ok(line)
}

/// A message rendered now, or copied to render later.
pub(crate) fn outbound<P: Recordable>(m: &P::Outbound, r: &Redactor) -> Msg<P::Outbound> {
    match P::copy_outbound(m) {
        Some((copy, bytes)) => Msg::Copy(copy, bytes),
        None => Msg::Rendered(P::record_outbound(m, r)),
    }
}

/// A request rendered now, or copied to render later.
pub(crate) fn request<P: Recordable>(q: &P::Request, r: &Redactor) -> Msg<P::Request> {
    match P::copy_request(q) {
        Some((copy, bytes)) => Msg::Copy(copy, bytes),
        None => Msg::Rendered(P::record_request(q, r)),
    }
}

/// Renders records into lines.
pub(crate) struct Renderer {
    redactor: Redactor,
    /// The session time of the last call rendered: outputs and `lost` lines have none of
    /// their own, and a ring evicts by it.
    last_t: Duration,
}

impl Renderer {
    pub(crate) fn new(redactor: Redactor) -> Self {
        Renderer {
            redactor,
            last_t: Duration::ZERO,
        }
    }

    /// The session time of the last call or end rendered.
    pub(crate) fn last_t(&self) -> Duration {
        self.last_t
    }

    /// Writes the line of `c` (with its newline) to `w`.
    pub(crate) fn render<P: Recordable>(
        &mut self,
        c: &Capture<P>,
        w: &mut impl Write,
    ) -> io::Result<()> {
        match c {
            Capture::Call(t, call) => {
                self.last_t = *t;
                self.call(*t, call, w)
            }
            // The most frequent outputs of a busy session, written without building a tree.
            Capture::Event(kind) => put(
                w,
                &[
                    Part::S("{\"k\":\"out\",\"o\":{\"event\":\""),
                    Part::S(kind),
                    Part::S("\"}}\n"),
                ],
            ),
            Capture::Sent {
                conn,
                frame,
                payload,
            } => {
                let (kind, bytes) = match payload {
                    OutFrame::Text(t) => ("text", t.as_bytes()),
                    OutFrame::Binary(b) => ("binary", &b[..]),
                    OutFrame::Ping(b) => ("ping", &b[..]),
                };
                put(
                    w,
                    &[
                        Part::S("{\"k\":\"out\",\"o\":{\"send\":{\"conn\":"),
                        Part::N(conn.get()),
                        Part::S(",\"frame\":"),
                        Part::N(frame.get()),
                        Part::S(",\"p\":"),
                    ],
                )?;
                self.redactor
                    .write_frame(kind, bytes, Direction::Outbound, w)?;
                w.write_all(b"}}}\n")
            }
            Capture::Output(out) => line(
                w,
                &json!({ "k": "out", "o": format::output(&self.redactor, &**out) }),
            ),
            Capture::End(f) => {
                self.last_t = f.t;
                line(w, &end(f))
            }
        }
    }

    /// Writes a `lost` line: `dropped` records are missing here.
    pub(crate) fn lost(dropped: u64, w: &mut impl Write) -> io::Result<()> {
        writeln!(w, "{{\"dropped\":{dropped},\"k\":\"lost\"}}")
    }

    fn msg<T>(&self, m: &Msg<T>, render: fn(&T, &Redactor) -> Value) -> Value {
        match m {
            Msg::Copy(v, _) => render(v, &self.redactor),
            Msg::Rendered(v) => v.clone(),
        }
    }

    fn write_outbound<P: Recordable>(
        &self,
        m: &Msg<P::Outbound>,
        w: &mut impl Write,
    ) -> io::Result<()> {
        match m {
            Msg::Copy(v, _) => P::write_outbound(v, &self.redactor, w),
            Msg::Rendered(v) => serde_json::to_writer(w, v).map_err(io::Error::from),
        }
    }

    fn call<P: Recordable>(
        &self,
        t: Duration,
        call: &Call<P>,
        w: &mut impl Write,
    ) -> io::Result<()> {
        let mut v = match call {
            // The most frequent line of a busy session, written without building a tree.
            Call::Input(Input::WriteCompleted { conn, frame }) => {
                return put(
                    w,
                    &[
                        Part::S("{\"in\":{\"written\":{\"conn\":"),
                        Part::N(conn.get()),
                        Part::S(",\"frame\":"),
                        Part::N(frame.get()),
                        Part::S("}},\"k\":\"in\",\"t\":"),
                        Part::N(nanos(t)),
                        Part::S("}\n"),
                    ],
                );
            }
            Call::Input(Input::FrameReceived { conn, frame }) => {
                let (kind, bytes) = match frame {
                    InFrame::Text(b) => ("text", b),
                    InFrame::Binary(b) => ("binary", b),
                    InFrame::Ping(b) => ("ping", b),
                    InFrame::Pong(b) => ("pong", b),
                };
                put(
                    w,
                    &[
                        Part::S("{\"in\":{\"frame\":{\"conn\":"),
                        Part::N(conn.get()),
                        Part::S(",\"f\":"),
                    ],
                )?;
                self.redactor
                    .write_frame(kind, bytes, Direction::Inbound, w)?;
                return put(
                    w,
                    &[
                        Part::S("}},\"k\":\"in\",\"t\":"),
                        Part::N(nanos(t)),
                        Part::S("}\n"),
                    ],
                );
            }
            Call::Input(input) => {
                json!({ "k": "in", "in": format::input(&self.redactor, input) })
            }
            Call::Connect(r) => json!({ "k": "connect", "ret": ret(r) }),
            Call::Timeout => json!({ "k": "timeout" }),
            Call::Send { msg, ttl, ret: r } => {
                w.write_all(b"{\"k\":\"send\",\"msg\":")?;
                self.write_outbound::<P>(msg, w)?;
                w.write_all(b",\"ret\":")?;
                match r {
                    Ok(v) => {
                        w.write_all(b"{\"ok\":")?;
                        serde_json::to_writer(&mut *w, v).map_err(io::Error::from)?;
                    }
                    Err(e) => {
                        w.write_all(b"{\"err\":")?;
                        serde_json::to_writer(&mut *w, e).map_err(io::Error::from)?;
                    }
                }
                put(w, &[Part::S("},\"t\":"), Part::N(nanos(t))])?;
                if let Some(ttl) = ttl {
                    w.write_all(b",\"ttl\":")?;
                    serde_json::to_writer(&mut *w, &format::duration(*ttl))
                        .map_err(io::Error::from)?;
                }
                return w.write_all(b"}\n");
            }
            // A busy session's other frequent lines, written without building a tree.
            Call::Feed(msg) => {
                w.write_all(b"{\"k\":\"feed\",\"msg\":")?;
                self.write_outbound::<P>(msg, w)?;
                return put(w, &[Part::S(",\"t\":"), Part::N(nanos(t)), Part::S("}\n")]);
            }
            Call::Request {
                req,
                timeout,
                ret: r,
            } => json!({
                "k": "request",
                "req": self.msg(req, P::record_request),
                "timeout": timeout.map(format::duration),
                "ret": ret(r),
            }),
            Call::Close { code, reason } => {
                json!({ "k": "close", "code": code.0, "reason": reason })
            }
            Call::OnDemand(kind, r) => json!({ "k": kind.name(), "ret": ret(r) }),
            Call::Terminate => json!({ "k": "terminate" }),
        };
        v["t"] = nanos(t).into();
        line(w, &v)
    }
}

/// `{"ok": …}` or `{"err": …}`, as [`format::result`] writes it.
fn ret(r: &Ret) -> Value {
    match r {
        Ok(v) => json!({ "ok": v }),
        Err(e) => json!({ "err": e }),
    }
}

fn end(f: &Final) -> Value {
    json!({
        "k": "end",
        "t": nanos(f.t),
        "status": format::status_name(f.status),
        "closed": f.closed,
        "timer": f.timer,
        "sizes": {
            "pending_requests": f.pending_requests,
            "queued": f.queued,
            "open_streams": f.open_streams,
            "remembered": f.remembered,
            "pending_writes": f.pending_writes,
        },
    })
}

/// `v` and a newline, straight into `w`: no intermediate string.
fn line(w: &mut impl Write, v: &Value) -> io::Result<()> {
    serde_json::to_writer(&mut *w, v).map_err(io::Error::from)?;
    w.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tether_core::profiles::Raw;
    use tether_core::{ConnId, DataFrame, FrameId, Output};

    use super::*;
    use crate::record::redact::{Redaction, Wire};

    /// The lines written by hand are those the generic path renders from trees.
    #[test]
    fn hand_written_lines_are_the_rendered_ones() {
        let conn = ConnId::from_raw(3);
        let frame = FrameId::from_raw(41);
        let payloads = [
            Bytes::from_static(b"hello \"there\""),
            Bytes::from_static(b"\xff\x00"),
        ];
        let t = Duration::from_nanos(1_234_567);
        for mode in [Redaction::Keep, Redaction::Hash, Redaction::Drop] {
            let r = Redactor::new(mode, Wire::Opaque);
            let mut renderer = Renderer::new(r);
            for p in &payloads {
                let inputs = [
                    Input::FrameReceived {
                        conn,
                        frame: InFrame::Text(p.clone()),
                    },
                    Input::FrameReceived {
                        conn,
                        frame: InFrame::Pong(p.clone()),
                    },
                    Input::WriteCompleted { conn, frame },
                ];
                for input in inputs {
                    let mut got = Vec::new();
                    let c = Capture::<Raw>::Call(t, Call::Input(input.clone()));
                    renderer.render(&c, &mut got).expect("into a Vec");
                    let mut want = json!({ "k": "in", "in": format::input(&r, &input) });
                    want["t"] = nanos(t).into();
                    assert_eq!(String::from_utf8(got).expect("UTF-8"), format!("{want}\n"));
                }
                let outs = [
                    OutFrame::text("caf\u{e9} \"quoted\""),
                    OutFrame::Binary(p.clone()),
                    OutFrame::Ping(p.clone()),
                ];
                for payload in outs.clone() {
                    let out = Output::<Raw>::SendFrame {
                        conn,
                        frame,
                        payload,
                    };
                    let mut got = Vec::new();
                    renderer
                        .render(&Capture::output(&out), &mut got)
                        .expect("into a Vec");
                    let want = json!({ "k": "out", "o": format::output(&r, &out) });
                    assert_eq!(String::from_utf8(got).expect("UTF-8"), format!("{want}\n"));
                }
                let m = DataFrame::Binary(p.clone());
                let msg = || Msg::Copy(m.clone(), 0);
                let calls = [
                    (Call::<Raw>::Feed(msg()), json!({ "k": "feed" })),
                    (
                        Call::Send {
                            msg: msg(),
                            ttl: None,
                            ret: Ok(7.into()),
                        },
                        json!({ "k": "send", "ret": { "ok": 7 } }),
                    ),
                    (
                        Call::Send {
                            msg: Msg::Rendered(Raw::record_outbound(&m, &r)),
                            ttl: Some(Duration::from_secs(30)),
                            ret: Err("Offline \"q\"".to_owned()),
                        },
                        json!({
                            "k": "send", "ret": { "err": "Offline \"q\"" },
                            "ttl": format::duration(Duration::from_secs(30)),
                        }),
                    ),
                ];
                for (call, mut want) in calls {
                    let mut got = Vec::new();
                    renderer
                        .render(&Capture::Call(t, call), &mut got)
                        .expect("into a Vec");
                    want["msg"] = Raw::record_outbound(&m, &r);
                    want["t"] = nanos(t).into();
                    assert_eq!(String::from_utf8(got).expect("UTF-8"), format!("{want}\n"));
                }
            }
        }
    }
}
