//! A host suspend, seen through the adapters' clock: the driver's loop runs on a
//! [`SuspendAwareClock`] over a fake pair of clocks (a monotonic one that stops while
//! "suspended", and one that counts the suspend), on a manual executor where time moves
//! only when the test says so. After a suspend the session reports `Event::ClockJump` and
//! probes the peer as soon as the loop wakes: at once on socket activity, at its next
//! monotonic timer otherwise. On the plain monotonic clock (what `Instant::now()` gives on
//! Linux and macOS) the same suspend goes unnoticed.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::task::noop_waker_ref;
use futures::{SinkExt, Stream, StreamExt};
use tether_core::profiles::Raw;
use tether_core::{
    Config, ConnId, DisconnectReason, Event, InFrame, OutFrame, Status, TransportFailure,
};
use tether_driver::clock::{ClockSource, SuspendAwareClock};
use tether_driver::{Client, Incoming, Link, Outgoing, Runtime, Transport};

const SEC: Duration = Duration::from_secs(1);
const PING: Duration = Duration::from_secs(30);
const PROBE: Duration = Duration::from_secs(10);
const HOUR: Duration = Duration::from_secs(3600);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap()
}

// ---- the fake pair of clocks ---------------------------------------------------------------

/// Elapsed time of the two clocks: `(monotonic, since_boot)`.
#[derive(Default)]
struct Readings(Mutex<(Duration, Duration)>);

/// The fake pair; `counts_suspend: false` is a platform without a suspend-counting clock.
#[derive(Clone)]
struct Fake {
    epoch: Instant,
    readings: Arc<Readings>,
    counts_suspend: bool,
}

impl ClockSource for Fake {
    fn monotonic(&self) -> Instant {
        self.epoch + lock(&self.readings.0).0
    }

    fn since_boot(&self) -> Option<Duration> {
        self.counts_suspend.then(|| lock(&self.readings.0).1)
    }
}

// ---- a manual runtime on that clock --------------------------------------------------------

#[derive(Clone)]
struct Rt {
    clock: Arc<SuspendAwareClock<Fake>>,
    tasks: Arc<Mutex<Vec<BoxFuture<'static, ()>>>>,
}

impl Runtime for Rt {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        lock(&self.tasks).push(future);
    }

    /// As tokio's and smol's timers do: waits on the monotonic clock, for the instant the
    /// adapters convert the deadline to.
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        let at = self.clock.to_monotonic(deadline);
        let clock = self.clock.clone();
        Box::pin(futures::future::poll_fn(move |_| {
            if clock.source().monotonic() >= at {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }))
    }

    fn now(&self) -> Instant {
        self.clock.now()
    }
}

impl Rt {
    fn new(counts_suspend: bool) -> Self {
        let fake = Fake {
            // The one real clock read: an arbitrary epoch, only offsets matter.
            epoch: Instant::now(),
            readings: Arc::default(),
            counts_suspend,
        };
        Rt {
            clock: Arc::new(SuspendAwareClock::new(fake)),
            tasks: Arc::default(),
        }
    }

    /// The host runs for `d`: both clocks advance.
    fn run_for(&self, d: Duration) {
        let mut r = lock(&self.clock.source().readings.0);
        r.0 += d;
        r.1 += d;
    }

    /// The host is suspended for `d`: only the suspend-counting clock advances.
    fn suspend(&self, d: Duration) {
        lock(&self.clock.source().readings.0).1 += d;
    }

    /// Polls every task a bounded number of times (no wakers: polled after every change).
    fn poll(&self) {
        let mut cx = Context::from_waker(noop_waker_ref());
        for _ in 0..32 {
            let mut tasks = std::mem::take(&mut *lock(&self.tasks));
            tasks.retain_mut(|t| t.as_mut().poll(&mut cx).is_pending());
            lock(&self.tasks).extend(tasks);
        }
    }
}

// ---- a peer that is a pair of channels -----------------------------------------------------

type PeerTx = futures::channel::mpsc::UnboundedSender<Result<Incoming, std::io::Error>>;

/// Every connection's inbound side, and every frame written on any of them.
#[derive(Clone, Default)]
struct Peer {
    links: Arc<Mutex<Vec<PeerTx>>>,
    written: Arc<Mutex<Vec<Outgoing>>>,
}

#[async_trait::async_trait]
impl Transport for Peer {
    async fn connect(&self, _conn: ConnId) -> Result<Link, TransportFailure> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        lock(&self.links).push(tx);
        let written = self.written.clone();
        let sink = futures::sink::drain()
            .sink_map_err(|never: Infallible| -> std::io::Error { match never {} })
            .with(move |o: Outgoing| {
                lock(&written).push(o);
                futures::future::ready(Ok::<_, std::io::Error>(()))
            });
        Ok(Link {
            sink: Box::pin(sink),
            stream: Box::pin(rx),
            reset: None,
            subprotocol: None,
        })
    }
}

impl Peer {
    fn send(&self, frame: InFrame) {
        let links = lock(&self.links);
        let tx = links.last().expect("a connection");
        tx.unbounded_send(Ok(Incoming::Frame(frame)))
            .expect("the connection is read");
    }

    fn pings(&self) -> usize {
        lock(&self.written)
            .iter()
            .filter(|o| matches!(o, Outgoing::Frame(OutFrame::Ping(_))))
            .count()
    }
}

// ---- the scenario --------------------------------------------------------------------------

struct H {
    rt: Rt,
    peer: Peer,
    client: Client<Raw>,
    events: std::pin::Pin<Box<dyn Stream<Item = Event<Raw>> + Send>>,
    seen: Vec<Event<Raw>>,
}

impl H {
    /// An open Raw session (pings every 30 s, stale after 75 s, clock-jump threshold 15 s,
    /// probe timeout 10 s) on a runtime whose clock does or does not count suspend.
    fn open(counts_suspend: bool) -> H {
        let rt = Rt::new(counts_suspend);
        let peer = Peer::default();
        let config = Config::builder()
            .ping_interval(Some(PING))
            .stale_after(Duration::from_secs(75))
            .build()
            .unwrap();
        assert_eq!(config.liveness.clock_jump_threshold, 15 * SEC);
        assert_eq!(config.liveness.probe_timeout, PROBE);
        let client = Client::start(rt.clone(), peer.clone(), config, Raw, 1, "suspend").unwrap();
        let events = Box::pin(client.events());
        let mut h = H {
            rt,
            peer,
            client,
            events,
            seen: Vec::new(),
        };
        h.poll();
        assert_eq!(h.client.status(), Status::Open);
        h
    }

    fn poll(&mut self) {
        self.rt.poll();
        let mut cx = Context::from_waker(noop_waker_ref());
        while let Poll::Ready(Some(ev)) = self.events.poll_next_unpin(&mut cx) {
            self.seen.push(ev);
        }
    }

    fn clock_jumps(&self) -> Vec<Duration> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                Event::ClockJump { overshoot } => Some(*overshoot),
                _ => None,
            })
            .collect()
    }

    fn disconnected(&self) -> Option<DisconnectReason> {
        self.seen.iter().find_map(|e| match e {
            Event::Disconnected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
    }
}

/// Socket activity right after the resume wakes the loop: it reads the clock, sees the
/// hour the host slept, reports the jump and probes with a ping at once (no monotonic
/// time has passed). The peer answers, so the connection survives the probe.
#[test]
fn a_suspend_is_a_clock_jump_probed_at_once_on_socket_activity() {
    let mut h = H::open(true);
    h.rt.run_for(10 * SEC);
    h.poll();
    assert_eq!(h.peer.pings(), 0, "no ping due before 30 s");

    h.rt.suspend(HOUR);
    let before = h.rt.clock.now();
    assert_eq!(
        before - h.rt.clock.source().monotonic(),
        HOUR,
        "now() moved on by the hour asleep"
    );
    h.peer
        .send(InFrame::Text(bytes::Bytes::from_static(b"after resume")));
    h.poll();
    let jumps = h.clock_jumps();
    assert_eq!(jumps.len(), 1, "{:?}", h.seen);
    // 10 s awake + 1 h asleep, against the ping deadline at 30 s.
    assert_eq!(jumps[0], HOUR + 10 * SEC - PING);
    assert_eq!(h.peer.pings(), 1, "the probe, written at once");

    h.peer.send(InFrame::Pong(bytes::Bytes::new()));
    h.rt.run_for(PROBE + SEC);
    h.poll();
    assert_eq!(h.client.status(), Status::Open, "{:?}", h.seen);
    assert_eq!(h.disconnected(), None);
}

/// No socket activity: the loop sleeps on its monotonic ping timer, which did not count
/// the suspend, wakes when it expires, sees the jump and probes. The peer is dead: the
/// probe's timeout (10 s of monotonic time, so deadlines after the jump are converted
/// back correctly) ends the connection, long before the 75 s stale threshold would have.
#[test]
fn a_suspend_is_noticed_at_the_next_monotonic_timer_and_a_dead_peer_dropped_after_the_probe() {
    let mut h = H::open(true);
    h.rt.run_for(10 * SEC);
    h.poll();
    h.rt.suspend(HOUR);
    h.poll();
    assert!(h.clock_jumps().is_empty(), "asleep until a timer or socket");
    h.rt.run_for(PING - 10 * SEC);
    h.poll();
    assert_eq!(h.clock_jumps(), vec![HOUR], "{:?}", h.seen);
    assert_eq!(h.peer.pings(), 1, "the probe");
    assert_eq!(h.client.status(), Status::Open);

    h.rt.run_for(PROBE - SEC);
    h.poll();
    assert_eq!(h.client.status(), Status::Open, "the probe has 10 s");
    h.rt.run_for(SEC);
    h.poll();
    assert_eq!(
        h.disconnected(),
        Some(DisconnectReason::Stale),
        "{:?}",
        h.seen
    );
}

/// The same suspend on a clock that does not count it (`Instant::now()` on Linux and
/// macOS): no jump, only the ordinary ping, and a dead peer still looks alive after the
/// 10 s a probe would have given it.
#[test]
fn on_the_plain_monotonic_clock_a_suspend_goes_unnoticed() {
    let mut h = H::open(false);
    h.rt.run_for(10 * SEC);
    h.poll();
    h.rt.suspend(HOUR);
    h.rt.run_for(PING - 10 * SEC);
    h.poll();
    assert!(h.clock_jumps().is_empty(), "{:?}", h.seen);
    assert_eq!(h.peer.pings(), 1, "an ordinary ping");
    h.rt.run_for(PROBE);
    h.poll();
    assert_eq!(h.client.status(), Status::Open);
    assert_eq!(h.disconnected(), None);
}
