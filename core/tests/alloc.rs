//! Allocation regression test: `Raw`'s steady-state inbound path must not allocate.
//!
//! A counting global allocator counts only allocations made by a thread that switched
//! counting on (a thread-local flag), so the test harness's own threads cannot disturb the
//! count; the file also holds a single `#[test]`. Allocation counts are deterministic, so
//! the assertion is exact. Nothing here measures time.

mod counting;

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tether_core::profiles::Raw;
use tether_core::{Config, ConnId, Event, FrameId, InFrame, Input, Output, Session, Status};

use counting::counted;

const STEP: Duration = Duration::from_micros(2);
const PAYLOADS: &[&[u8]] = &[
    b"The quick brown fox jumps over the lazy dog; sphinx of black quartz, judge my vow! 0123456789 ab",
    b"Pack my box with five dozen liquor jugs. How vexingly quick daft zebras jump! 9876543210 abcdef",
    b"{\"type\":\"msg\",\"n\":1,\"body\":\"a JSON-looking text frame is just text to Raw\"}",
    b"",
];

/// Plays the adapter: feeds one frame, drains every output, reports writes complete.
struct Driver {
    session: Session<Raw>,
    conn: ConnId,
    now: Instant,
    written: Vec<FrameId>,
    messages: u64,
}

impl Driver {
    fn input(&mut self, input: Input) {
        self.now += STEP;
        self.session.handle_input(input, self.now);
        loop {
            while let Some(out) = self.session.poll_output() {
                match &out {
                    Output::Event(Event::Message(_)) => self.messages += 1,
                    Output::SendFrame { frame, .. } => self.written.push(*frame),
                    _ => {}
                }
                black_box(out);
            }
            if self.written.is_empty() {
                return;
            }
            for i in 0..self.written.len() {
                let frame = self.written[i];
                let conn = self.conn;
                self.now += STEP;
                self.session
                    .handle_input(Input::WriteCompleted { conn, frame }, self.now);
            }
            self.written.clear();
        }
    }

    fn feed(&mut self, n: usize) {
        for i in 0..n {
            let payload = Bytes::from_static(PAYLOADS[i % PAYLOADS.len()]);
            let frame = if i % 5 == 4 {
                InFrame::Binary(payload)
            } else {
                InFrame::Text(payload)
            };
            let conn = self.conn;
            self.input(Input::FrameReceived { conn, frame });
        }
    }
}

#[test]
fn raw_steady_state_inbound_does_not_allocate() {
    // The counter works: a deliberate allocation is counted, and only on this thread.
    let (v, n) = counted(|| black_box(Vec::<u8>::with_capacity(100)));
    drop(v);
    assert!(n >= 1, "a Vec::with_capacity(100) was not counted");
    // Another thread's allocations are not counted: it makes 1,000 while this one counts.
    std::thread::spawn(|| ()).join().unwrap_or_default();
    let ((), n) = counted(|| {
        std::thread::spawn(|| {
            for i in 0..1_000u32 {
                black_box(Box::new(i));
            }
        })
        .join()
        .unwrap_or_default();
    });
    assert!(n < 1_000, "another thread's allocations were counted ({n})");
    let ((), n) = counted(|| ());
    assert_eq!(n, 0, "doing nothing allocated");

    // An open Raw session. The driver's one clock read; after it, time is `t0` + offsets.
    #[allow(clippy::disallowed_methods)]
    let t0 = Instant::now();
    let mut session = Session::new(Config::default(), Raw, 7).expect("default config is valid");
    session.connect(t0).expect("a new session connects");
    let mut conn = None;
    while let Some(out) = session.poll_output() {
        if let Output::OpenTransport { conn: c, .. } = out {
            conn = Some(c);
        }
    }
    let conn = conn.expect("connect asks for a transport");
    let mut d = Driver {
        session,
        conn,
        now: t0,
        written: Vec::with_capacity(16),
        messages: 0,
    };
    d.input(Input::TransportOpened { conn });
    assert_eq!(d.session.status(), Status::Open);

    // Warm-up: buffers reach their steady-state capacity.
    d.feed(1_000);
    assert_eq!(d.messages, 1_000);

    // Steady state: not one allocation over 10,000 messages.
    const N: usize = 10_000;
    let ((), n) = counted(|| d.feed(N));
    assert_eq!(d.messages, 1_000 + N as u64, "every frame became a message");
    assert_eq!(d.session.stats().violations, 0);
    assert_eq!(d.session.status(), Status::Open);
    assert_eq!(
        n, 0,
        "Raw's inbound path allocated {n} times over {N} messages"
    );

    // Across a ping (due 30 s after opening) and its write report as well: jump to each
    // armed deadline in turn until the session has written a ping.
    let before = d.session.stats().frames_sent;
    let ((), n) = counted(|| {
        while d.session.stats().frames_sent == before && d.session.status() == Status::Open {
            let at = d.session.poll_timeout().expect("a liveness timer is armed");
            d.now = d.now.max(at - STEP);
            d.feed(1);
        }
        d.feed(N);
    });
    assert!(
        d.session.stats().frames_sent > before,
        "a ping was written during the run"
    );
    assert_eq!(d.session.status(), Status::Open);
    assert_eq!(
        n, 0,
        "Raw's inbound path with a ping allocated {n} times over {N} messages"
    );
}
