//! Simulated byte pipes on virtual time: a duplex in-memory byte stream pair whose bytes
//! arrive after a one-way latency (fixed, or with seeded jitter), in order, through
//! bounded buffers.
//!
//! Each direction holds the chunks written and not yet read, each stamped with the
//! instant it reaches the reader (`max(write time + latency + jitter draw, previous
//! chunk)`, so order is kept, as TCP keeps it: jitter delays, never reorders). A direction holds at most `capacity` bytes in flight and unread: a writer finds
//! it full and waits until the reader drains it, which is how a stuck reader pushes back.
//! Ending a direction (close, or dropping every handle of the writing end) delivers an
//! end of stream after the bytes before it; [`PipeEnd::reset`] delivers a
//! `ConnectionReset` error instead, to both ends, after whatever was written before it.
//! [`PipeEnd::sever`] makes the pipe half-open: from then on nothing crosses in either
//! direction and neither end is told, as when a NAT forgets the connection.
//!
//! Nothing here reads a real clock: time comes from a [`Clock`], and a reader whose next
//! chunk is still in flight asks the clock to wake it when it lands.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes};

use crate::link::{Lane, Latency};
use futures::io::{AsyncRead, AsyncWrite};

/// The virtual clock a pipe runs on.
pub trait Clock: Send + Sync {
    /// The current virtual instant (an offset from the run's start). Must not block on
    /// anything a pipe holds.
    fn now(&self) -> Duration;
    /// Wakes `waker` once virtual time reaches `at`.
    fn wake_at(&self, at: Duration, waker: Waker);
}

/// A pipe's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipeConfig {
    /// One-way latency: a byte written at `t` is readable at `t + latency` (plus the
    /// jitter draw).
    pub latency: Duration,
    /// Uniform extra delay per write in `[0, jitter]`, drawn from `seed`; order is kept.
    /// Default zero.
    pub jitter: Duration,
    /// Seeds the jitter draws, so that a run replays. Default 0.
    pub seed: u64,
    /// Bytes one direction holds in flight and unread before writes wait.
    pub capacity: usize,
    /// The most bytes one write accepts (`None`: as many as fit). A smaller value makes
    /// every larger write a partial one, as a busy socket does.
    pub max_write: Option<usize>,
}

impl Default for PipeConfig {
    fn default() -> Self {
        PipeConfig {
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            seed: 0,
            capacity: 256 << 10,
            max_write: None,
        }
    }
}

/// How a direction ends, and when the reader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Eof(Duration),
    Reset(Duration),
}

#[derive(Default)]
struct Direction {
    chunks: VecDeque<(Duration, Bytes)>,
    /// Bytes in `chunks`.
    held: usize,
    /// When the last chunk (or the ending) lands: later ones never overtake it.
    lane: Lane,
    ending: Option<Ending>,
    /// The reader dropped its end: what is written is discarded.
    reader_gone: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl Direction {
    fn wake_reader(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
    }
    fn wake_writer(&mut self) {
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }
    fn end(&mut self, ending: Ending) {
        if self.ending.is_none() {
            self.ending = Some(ending);
        }
        self.wake_reader();
        self.wake_writer();
    }
}

struct Shared {
    /// `dirs[i]`: bytes written by end `i`, read by end `1 - i`.
    dirs: [Direction; 2],
    config: PipeConfig,
    /// Draws the jitter of each arrival.
    rng: fastrand::Rng,
    /// Half-open ([`PipeEnd::sever`]): nothing crosses any more, and nobody is told.
    severed: bool,
    /// Per end, once severed: the end reset (its reads fail) or closed (its writes fail)
    /// itself. What an end does to itself it learns; the other end never does.
    gone_here: [Option<Ending>; 2],
}

impl Shared {
    /// When bytes (or an ending) that end `side` writes at `now` reach the other end: one
    /// trip of the link's [`Latency`] later, never before what it wrote earlier ([`Lane`]:
    /// the same rules as every simulated link).
    fn arrival(&mut self, side: usize, now: Duration) -> Duration {
        let latency = Latency {
            base: self.config.latency,
            jitter: self.config.jitter,
        };
        let trip = latency.trip(&mut self.rng);
        self.dirs[side].lane.arrival(now, trip)
    }
}

struct EndInner {
    shared: Arc<Mutex<Shared>>,
    side: usize,
    clock: Arc<dyn Clock>,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A poisoned lock follows a panic that already fails the run; the buffers are
    // consistent between calls.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Drop for EndInner {
    fn drop(&mut self) {
        // The last handle of this end is gone: the peer reads an end of stream after what
        // was written, and what the peer writes from now on is discarded.
        let now = self.clock.now();
        let mut sh = lock(&self.shared);
        if sh.severed {
            return;
        }
        let at = sh.arrival(self.side, now);
        sh.dirs[self.side].end(Ending::Eof(at));
        let inbound = &mut sh.dirs[1 - self.side];
        inbound.reader_gone = true;
        inbound.chunks.clear();
        inbound.held = 0;
        inbound.wake_writer();
    }
}

/// One end of a simulated byte pipe: `futures::io::AsyncRead + AsyncWrite`. Clones are
/// handles on the same end (a raw writer beside a codec); the end closes when the last
/// handle drops.
#[derive(Clone)]
pub struct PipeEnd(Arc<EndInner>);

impl std::fmt::Debug for PipeEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeEnd")
            .field("side", &self.0.side)
            .finish_non_exhaustive()
    }
}

/// A connected pair of pipe ends on `clock`.
pub fn pipe(clock: Arc<dyn Clock>, config: PipeConfig) -> (PipeEnd, PipeEnd) {
    let shared = Arc::new(Mutex::new(Shared {
        dirs: [Direction::default(), Direction::default()],
        config,
        rng: fastrand::Rng::with_seed(config.seed),
        severed: false,
        gone_here: [None, None],
    }));
    let end = |side| {
        PipeEnd(Arc::new(EndInner {
            shared: shared.clone(),
            side,
            clock: clock.clone(),
        }))
    };
    (end(0), end(1))
}

impl PipeEnd {
    /// Resets the connection: both ends read `ConnectionReset` once what was written
    /// before lands (the peer after one latency), and every later write fails.
    pub fn reset(&self) {
        let now = self.0.clock.now();
        let mut sh = lock(&self.0.shared);
        if sh.severed {
            // The reset never reaches the other end; this end's own reads and writes fail.
            sh.gone_here[self.0.side] = Some(Ending::Reset(now));
            sh.dirs[1 - self.0.side].wake_reader();
            return;
        }
        let at = sh.arrival(self.0.side, now);
        sh.dirs[self.0.side].end(Ending::Reset(at));
        let inbound = &mut sh.dirs[1 - self.0.side];
        inbound.chunks.clear();
        inbound.held = 0;
        inbound.ending = Some(Ending::Reset(now));
        inbound.wake_reader();
        inbound.wake_writer();
    }

    /// Makes the pipe half-open: what is in flight is lost, and from now on every write
    /// from either end is accepted and goes nowhere, no end of stream or reset crosses,
    /// and neither end's reads ever return. Each end still learns of its own reset or
    /// close.
    pub fn sever(&self) {
        let mut sh = lock(&self.0.shared);
        sh.severed = true;
        for dir in &mut sh.dirs {
            dir.chunks.clear();
            dir.held = 0;
            // A writer waiting for room can write again: into the void.
            dir.wake_writer();
        }
    }

    /// Bytes this end has written that the other end has not read yet (in flight or
    /// waiting in its buffer).
    pub fn unread(&self) -> usize {
        lock(&self.0.shared).dirs[self.0.side].held
    }
}

impl AsyncRead for PipeEnd {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let now = self.0.clock.now();
        let wake_at = {
            let mut sh = lock(&self.0.shared);
            if sh.severed {
                if matches!(sh.gone_here[self.0.side], Some(Ending::Reset(_))) {
                    return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
                }
                sh.dirs[1 - self.0.side].read_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let dir = &mut sh.dirs[1 - self.0.side];
            let mut read = 0;
            while read < buf.len() {
                let Some((at, chunk)) = dir.chunks.front_mut() else {
                    break;
                };
                if *at > now {
                    break;
                }
                let n = chunk.len().min(buf.len() - read);
                buf[read..read + n].copy_from_slice(&chunk[..n]);
                chunk.advance(n);
                read += n;
                if chunk.is_empty() {
                    dir.chunks.pop_front();
                }
            }
            if read > 0 || buf.is_empty() {
                dir.held -= read;
                dir.wake_writer();
                return Poll::Ready(Ok(read));
            }
            match (dir.chunks.front(), dir.ending) {
                (None, Some(Ending::Eof(at))) if at <= now => return Poll::Ready(Ok(0)),
                (_, Some(Ending::Reset(at))) if at <= now => {
                    return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
                }
                _ => {}
            }
            dir.read_waker = Some(cx.waker().clone());
            let ending_at = dir.ending.map(|e| match e {
                Ending::Eof(at) | Ending::Reset(at) => at,
            });
            dir.chunks.front().map(|(at, _)| *at).or(ending_at)
        };
        if let Some(at) = wake_at {
            self.0.clock.wake_at(at, cx.waker().clone());
        }
        Poll::Pending
    }
}

impl AsyncWrite for PipeEnd {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let now = self.0.clock.now();
        let mut sh = lock(&self.0.shared);
        let config = sh.config;
        if sh.severed {
            return Poll::Ready(match sh.gone_here[self.0.side] {
                Some(Ending::Reset(_)) => Err(io::ErrorKind::ConnectionReset.into()),
                Some(Ending::Eof(_)) => Err(io::ErrorKind::BrokenPipe.into()),
                None => Ok(buf.len()),
            });
        }
        // A reset reaches this end's own writes at once.
        if matches!(sh.dirs[1 - self.0.side].ending, Some(Ending::Reset(_))) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        let dir = &mut sh.dirs[self.0.side];
        if dir.ending.is_some() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if dir.reader_gone {
            // The peer is gone: the bytes go nowhere, as a socket's last writes do.
            return Poll::Ready(Ok(buf.len()));
        }
        let room = config.capacity.saturating_sub(dir.held);
        let n = buf
            .len()
            .min(room)
            .min(config.max_write.unwrap_or(usize::MAX));
        if n == 0 && !buf.is_empty() {
            dir.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        if n > 0 {
            let at = sh.arrival(self.0.side, now);
            let dir = &mut sh.dirs[self.0.side];
            dir.chunks
                .push_back((at, Bytes::copy_from_slice(&buf[..n])));
            dir.held += n;
            dir.wake_reader();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let now = self.0.clock.now();
        let mut sh = lock(&self.0.shared);
        if sh.severed {
            let gone = &mut sh.gone_here[self.0.side];
            gone.get_or_insert(Ending::Eof(now));
            return Poll::Ready(Ok(()));
        }
        let at = sh.arrival(self.0.side, now);
        sh.dirs[self.0.side].end(Ending::Eof(at));
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct TestClock {
        nanos: AtomicU64,
        wakes: Mutex<Vec<Duration>>,
    }

    impl Clock for TestClock {
        fn now(&self) -> Duration {
            Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
        }
        fn wake_at(&self, at: Duration, _waker: Waker) {
            self.wakes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(at);
        }
    }

    impl TestClock {
        fn set(&self, ms: u64) {
            self.nanos.store(ms * 1_000_000, Ordering::SeqCst);
        }
    }

    fn read(end: &mut PipeEnd) -> Poll<io::Result<Vec<u8>>> {
        let w = noop_waker();
        let mut cx = Context::from_waker(&w);
        let mut buf = [0u8; 64];
        Pin::new(end)
            .poll_read(&mut cx, &mut buf)
            .map_ok(|n| buf[..n].to_vec())
    }

    fn write(end: &mut PipeEnd, bytes: &[u8]) -> Poll<io::Result<usize>> {
        let w = noop_waker();
        let mut cx = Context::from_waker(&w);
        Pin::new(end).poll_write(&mut cx, bytes)
    }

    fn setup(config: PipeConfig) -> (Arc<TestClock>, PipeEnd, PipeEnd) {
        let clock = Arc::new(TestClock::default());
        let (a, b) = pipe(clock.clone(), config);
        (clock, a, b)
    }

    #[test]
    fn bytes_land_after_the_latency_in_order() {
        let (clock, mut a, mut b) = setup(PipeConfig::default());
        assert!(matches!(write(&mut a, b"hello"), Poll::Ready(Ok(5))));
        assert!(read(&mut b).is_pending());
        assert_eq!(
            clock.wakes.lock().unwrap().last(),
            Some(&Duration::from_millis(10))
        );
        clock.set(10);
        assert!(matches!(read(&mut b), Poll::Ready(Ok(v)) if v == b"hello"));
        assert!(read(&mut b).is_pending());
    }

    #[test]
    fn jitter_delays_within_its_bound_and_never_reorders() {
        let config = PipeConfig {
            jitter: Duration::from_millis(40),
            seed: 7,
            capacity: 1 << 20,
            ..PipeConfig::default()
        };
        let (clock, mut a, mut b) = setup(config);
        let mut spread = std::collections::BTreeSet::new();
        let mut last = Duration::ZERO;
        for i in 0..200u64 {
            clock.set(i);
            assert!(matches!(write(&mut a, &[i as u8]), Poll::Ready(Ok(1))));
            let sh = lock(&a.0.shared);
            let at = sh.dirs[0].chunks.back().map(|(at, _)| *at).unwrap();
            let sent = Duration::from_millis(i);
            // Never before the latency; beyond latency + jitter only to keep order.
            assert!(
                at >= sent + Duration::from_millis(10),
                "write {i} lands at {at:?}"
            );
            assert!(at >= last, "write {i} overtakes the one before it");
            assert!(at <= (sent + Duration::from_millis(50)).max(last));
            spread.insert(at.saturating_sub(sent));
            last = at;
        }
        assert!(spread.len() > 20, "the delays vary: {spread:?}");
        clock.set(1_000);
        let mut got = Vec::new();
        while let Poll::Ready(Ok(v)) = read(&mut b) {
            if v.is_empty() {
                break;
            }
            got.extend(v);
        }
        assert_eq!(got, (0..200u64).map(|i| i as u8).collect::<Vec<_>>());
    }

    #[test]
    fn a_severed_pipe_carries_nothing_and_tells_nobody() {
        let (clock, mut a, mut b) = setup(PipeConfig::default());
        let _ = write(&mut a, b"in flight");
        a.sever();
        assert!(matches!(write(&mut a, b"lost"), Poll::Ready(Ok(4))));
        assert!(matches!(write(&mut b, b"lost too"), Poll::Ready(Ok(8))));
        clock.set(1_000);
        assert!(read(&mut b).is_pending());
        assert!(read(&mut a).is_pending());
        // Closing or resetting one end is news to that end only.
        let mut c = b.clone();
        futures::executor::block_on(futures::io::AsyncWriteExt::close(&mut c)).unwrap();
        assert!(matches!(write(&mut b, b"x"), Poll::Ready(Err(_))));
        a.reset();
        assert!(
            matches!(read(&mut a), Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset)
        );
        assert!(read(&mut b).is_pending());
        drop(a);
        assert!(read(&mut b).is_pending());
    }

    #[test]
    fn a_full_buffer_pushes_back_until_the_reader_drains_it() {
        let config = PipeConfig {
            capacity: 8,
            ..PipeConfig::default()
        };
        let (clock, mut a, mut b) = setup(config);
        assert!(matches!(write(&mut a, b"0123456789"), Poll::Ready(Ok(8))));
        assert!(write(&mut a, b"89").is_pending());
        clock.set(10);
        assert!(matches!(read(&mut b), Poll::Ready(Ok(v)) if v.len() == 8));
        assert!(matches!(write(&mut a, b"89"), Poll::Ready(Ok(2))));
    }

    #[test]
    fn writes_are_cut_to_the_partial_write_size() {
        let config = PipeConfig {
            max_write: Some(3),
            ..PipeConfig::default()
        };
        let (_clock, mut a, _b) = setup(config);
        assert!(matches!(write(&mut a, b"abcdef"), Poll::Ready(Ok(3))));
    }

    #[test]
    fn dropping_an_end_is_an_eof_after_its_bytes_and_a_reset_is_an_error() {
        let (clock, mut a, mut b) = setup(PipeConfig::default());
        let _ = write(&mut a, b"x");
        drop(a);
        clock.set(10);
        assert!(matches!(read(&mut b), Poll::Ready(Ok(v)) if v == b"x"));
        assert!(matches!(read(&mut b), Poll::Ready(Ok(v)) if v.is_empty()));

        let (clock, mut a, mut b) = setup(PipeConfig::default());
        let _ = write(&mut a, b"y");
        a.reset();
        assert!(
            matches!(read(&mut a), Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset)
        );
        assert!(read(&mut b).is_pending());
        clock.set(10);
        assert!(matches!(read(&mut b), Poll::Ready(Ok(v)) if v == b"y"));
        assert!(
            matches!(read(&mut b), Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset)
        );
        assert!(matches!(write(&mut b, b"z"), Poll::Ready(Err(_))));
    }
}
