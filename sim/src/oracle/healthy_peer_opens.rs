//! A healthy, reachable peer leads to an open session and to requests that succeed, for
//! any protocol; a session that ends has a cause the world can confirm.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tether_core::{
    AttemptError, CloseCode, Config, ConnId, EndReason, Event, Input, Output, Protocol,
    RequestFailure, RequestId, SessionError, Status, TransportFailure,
};

use super::{First, Violation, liveness_after_heal::reopen_bound, secs};
use crate::fault::Fault;
use crate::timeline::{CommandRecord, Entry, Fact, Timeline};

pub(super) const NAME: &str = "healthy_peer_opens";

/// How long an instant fault (a drop, a close, a bad frame) may take to reach the session
/// and be acted on: a round trip, with room for the delays a latency fault scheduled.
const LINGER: Duration = Duration::from_secs(5);

/// How long a fault keeps the peer from being healthy and reachable, from the instant the
/// plan applies it: its duration, what it adds to a connect or a frame, and [`LINGER`]
/// for the news to travel. A restart adds the "starting" period after it is back up
/// (3 s by default; the slack in the bound covers a longer one).
fn span(fault: &Fault, config: &Config) -> Duration {
    let d = match fault {
        Fault::RefuseConnects(d)
        | Fault::BlackholeConnects(d)
        | Fault::NeverAck(d)
        | Fault::DoubleAck(d)
        | Fault::Duplicate(d)
        | Fault::AcceptThenClose(d)
        | Fault::ClockJump(d)
        | Fault::HalfOpen(d) => *d,
        Fault::SlowConnects { extra, lasts } => extra.saturating_add(*lasts),
        Fault::RejectUpgrade { lasts, .. } => *lasts,
        Fault::Latency {
            base,
            jitter,
            lasts,
        } => lasts.saturating_add(*base).saturating_add(*jitter),
        Fault::Reorder { window, lasts } => lasts.saturating_add(*window),
        Fault::StopReading(d) => d.saturating_add(config.send_deadline),
        Fault::Restart { down, .. } => down.saturating_add(Duration::from_secs(3)),
        Fault::Drop
        | Fault::ServerClose(..)
        | Fault::Garbage(_)
        | Fault::UnknownResponse
        | Fault::Hostile(_) => Duration::ZERO,
    };
    d.saturating_add(LINGER)
}

/// Judged only on a timeline with a heal time (a world's run, which records every fault
/// it applies; a replayed recording from the field has none). Judged from what the world
/// saw — the fault records, the transport inputs it delivered,
/// the transports the session asked for, and the [`Config`] — never from the session's
/// own account of what it expects:
///
/// - **Opens.** The peer is *healthy and reachable* once every fault applied so far has
///   run its course (its duration, what it adds to a connect or a frame, and 5 s of slack
///   for the news to travel; the heal ends them all, but a sleep under way, and the slack
///   runs on from it) and no connection a half-open or stop-reading fault hit is still in
///   use. Every stretch in which the session is not [`Status::Open`] (from
///   the first connect on) must end with `Open` within [`reopen_bound`] of the later of
///   its start and the moment the peer became healthy — for any protocol, and the
///   session's end does not excuse it: an ended session must have a confirmed cause.
/// - **Ends with a confirmed cause.** `ClosedByPeer` and `FatalClose` need the close code
///   the world delivered last; a fatal attempt needs the HTTP status or close code the
///   world delivered, a handshake rejection the frame the world was delivering when the
///   session ended, or a fault in force; `AttemptsExhausted` needs an attempt limit in
///   the config and at least that many attempts; a failed first connect needs a fault in
///   force during the attempt; `Idle` needs an idle timeout; `ClosedByUser` a user close.
///   Judging stops at a user's `close` or `terminate` (the world's final close among
///   them).
/// - **Keeps the connection.** An open connection is not lost while the peer is healthy,
///   unless the configuration sends no pings and the peer was silent for `stale_after`.
/// - **Requests succeed.** A request issued while the session was open and the peer
///   healthy, that stayed so until it resolved, does not time out.
#[must_use]
pub fn healthy_peer_opens<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    // Only a world that knows every fault it applied can call its peer healthy: a
    // recording from the field (a replayed trace) knows none, and its timeline says so by
    // having no heal time.
    tl.heal_at?;
    let config = &tl.config;
    let mut first = First::new(NAME, tl);
    let mut status = Status::Idle;
    // Until when faults (or their effects) keep the peer from being healthy.
    let mut sick_until = Duration::ZERO;
    let mut wake = Duration::ZERO;
    let mut live: BTreeSet<ConnId> = BTreeSet::new();
    let mut tainted: BTreeSet<ConnId> = BTreeSet::new();
    let mut retry_after: Option<Duration> = None;
    let mut bound = reopen_bound(config, None);
    let mut unopen: Option<(Duration, usize)> = None;
    // Requests in flight: their step, and whether they have seen only health so far.
    let mut pending: BTreeMap<RequestId, (usize, bool)> = BTreeMap::new();
    let mut attempts = 0u32;
    let mut attempt_clean = true;
    let mut last_close: Option<CloseCode> = None;
    // Per connection, the first close code the world knows the peer sent on it: its
    // ledger's `ServerClosed`, or (without a ledger) a `ServerClose` fault.
    let mut peer_closed: BTreeMap<ConnId, u16> = BTreeMap::new();
    // The connections the world opened that are not gone yet (the peer's view of "open").
    let mut opened: BTreeSet<ConnId> = BTreeSet::new();
    // Whether the world kept a ledger: then its facts say what the peer sent, exactly.
    let ledger = tl.records.iter().any(|r| matches!(r.entry, Entry::Fact(_)));
    let mut last_status: Option<u16> = None;
    // Whether the call under way is a frame the world delivered from the peer.
    let mut peer_spoke = false;
    // When the world last delivered the session a frame or an open connection.
    let mut last_heard = Duration::ZERO;
    for (i, r) in tl.records.iter().enumerate() {
        if let Some((start, s)) = unopen
            && tainted.is_empty()
        {
            let from = start.max(sick_until);
            if r.at > from.saturating_add(bound) {
                first.offer(i, || {
                    format!(
                        "not open since +{} (step {s}), though the peer has been healthy and \
                         reachable since +{}; the bound {} has passed",
                        secs(start),
                        secs(from),
                        secs(bound)
                    )
                });
                break;
            }
        }
        let healthy = r.at >= sick_until && tainted.is_empty();
        match &r.entry {
            Entry::Input(input) => {
                peer_spoke = matches!(input, Input::FrameReceived { .. });
                if peer_spoke || matches!(input, Input::TransportOpened { .. }) {
                    last_heard = r.at;
                }
            }
            Entry::Command(_) | Entry::Timer(_) => peer_spoke = false,
            _ => {}
        }
        if let Entry::Fact(Fact::ServerClosed {
            conn,
            code: Some(code),
            delivered: true,
        }) = &r.entry
        {
            peer_closed.entry(*conn).or_insert(*code);
        }
        match &r.entry {
            Entry::Input(Input::TransportOpened { conn, .. }) => {
                opened.insert(*conn);
            }
            Entry::Input(
                Input::TransportClosed { conn, .. }
                | Input::TransportFailed { conn, .. }
                | Input::ProtocolError { conn, .. },
            )
            | Entry::Output(Output::AbortTransport { conn }) => {
                opened.remove(conn);
            }
            _ => {}
        }
        match &r.entry {
            // A paused session is not expected to open: judging stops with the pause.
            Entry::Command(
                CommandRecord::Close | CommandRecord::Terminate | CommandRecord::Disconnect(_),
            ) => break,
            Entry::Command(CommandRecord::Request { result: Ok(id), .. }) => {
                pending.insert(*id, (i, healthy && status == Status::Open));
            }
            Entry::Fault(f) => {
                // Without a ledger (a wire run), the close fault is what the world knows the
                // peer sent, on its latest open connection; a peer closes it only once.
                if !ledger
                    && let Fault::ServerClose(code, _) = f
                    && let Some(conn) = opened.last()
                {
                    peer_closed.entry(*conn).or_insert(*code);
                }
                sick_until = sick_until.max(r.at.saturating_add(span(f, config)));
                if let Fault::ClockJump(d) = f {
                    wake = wake.max(r.at.saturating_add(*d));
                }
                if matches!(f, Fault::HalfOpen(_) | Fault::StopReading(_)) {
                    tainted.extend(live.iter().copied());
                }
                pending.values_mut().for_each(|p| p.1 = false);
                attempt_clean = false;
            }
            Entry::Heal => {
                // Every fault ends, but a sleep under way; connections a half-open or
                // stop-reading fault hit stay suspect until they are gone.
                // What a fault already set going (a close in flight, a frame a latency
                // fault delayed) still arrives within the slack.
                sick_until = sick_until.min(r.at.max(wake).saturating_add(LINGER));
            }
            // The peer's own frame failed the attempt: a handshake answer may ask for a
            // wait of any length in the protocol's own words (`retryAfterMs`), which no
            // protocol-agnostic reading can see; the config caps any such floor at
            // `max_floor`, so that is the floor the bound allows.
            Entry::Output(Output::Event(Event::AttemptFailed { .. })) if peer_spoke => {
                let cap = config.backoff.max_floor;
                if retry_after.is_none_or(|b| cap > b) {
                    retry_after = Some(cap);
                    bound = reopen_bound(config, retry_after);
                }
            }
            Entry::Output(Output::OpenTransport { conn, .. }) => {
                live.insert(*conn);
                attempts = attempts.saturating_add(1);
                attempt_clean = healthy;
            }
            Entry::Output(
                Output::CloseTransport { conn, .. } | Output::AbortTransport { conn },
            ) => {
                live.remove(conn);
                if tainted.remove(conn) {
                    // The fault's effect ends with the connection, and the news with it.
                    sick_until = sick_until.max(r.at.saturating_add(LINGER));
                }
            }
            Entry::Input(input) => {
                match input {
                    Input::TransportClosed { conn, code, .. } => {
                        last_close = *code;
                        // The code the session is told must be the one the peer sent:
                        // a transport that reports its codec's own code (1002 for a
                        // 1014 the codec refuses) turns a reconnect into a fatal end.
                        if let (Some(sent), Some(told)) = (peer_closed.get(conn), code)
                            && *sent != told.0
                        {
                            first.offer(i, || {
                                format!(
                                    "the session was told the peer closed {conn:?} with {}, \
                                     but the peer sent {sent}",
                                    told.0
                                )
                            });
                        }
                    }
                    Input::TransportFailed {
                        failure:
                            TransportFailure::Http {
                                status,
                                retry_after: after,
                            }
                            | TransportFailure::Proxy {
                                status,
                                retry_after: after,
                            },
                        ..
                    } => {
                        last_status = Some(*status);
                        if let Some(a) = after
                            && retry_after.is_none_or(|b| *a > b)
                        {
                            retry_after = Some(*a);
                            bound = reopen_bound(config, retry_after);
                        }
                    }
                    _ => {}
                }
                if matches!(
                    input,
                    Input::TransportClosed { .. }
                        | Input::TransportFailed { .. }
                        | Input::ProtocolError { .. }
                ) {
                    live.remove(&input.conn());
                    if tainted.remove(&input.conn()) {
                        sick_until = sick_until.max(r.at.saturating_add(LINGER));
                    }
                }
            }
            Entry::Output(Output::StatusChanged { from, to }) => {
                status = *to;
                if *to == Status::Open {
                    unopen = None;
                } else if !to.is_terminal() {
                    if *from == Status::Open {
                        // Without pings a quiet peer is declared dead after `stale_after`:
                        // the configuration's choice, which the world confirms by the
                        // silence it delivered.
                        let silent = config.liveness.ping_interval.is_none()
                            && r.at.saturating_sub(last_heard) >= config.liveness.stale_after;
                        if healthy && !silent {
                            first.offer(i, || {
                                format!(
                                    "the connection was lost at +{} while the peer was healthy \
                                     and reachable: no fault explains it",
                                    secs(r.at)
                                )
                            });
                        }
                        pending.values_mut().for_each(|p| p.1 = false);
                    }
                    if unopen.is_none() {
                        unopen = Some((r.at, i));
                    }
                }
            }
            Entry::Output(Output::Event(Event::Ended(reason))) => {
                let world = Seen {
                    config,
                    healthy,
                    peer_spoke,
                    attempt_clean,
                    attempts,
                    last_close,
                    last_status,
                };
                if let Err(why) = world.confirms(reason) {
                    first.offer(i, || why);
                }
                break;
            }
            Entry::Output(Output::Event(Event::Response {
                id,
                result: Err(RequestFailure::Timeout),
            })) => {
                if let Some((s, true)) = pending.remove(id) {
                    first.offer(i, || {
                        format!(
                            "request {id:?} (step {s}) timed out though the session was open \
                             and the peer healthy and reachable all along"
                        )
                    });
                }
            }
            Entry::Output(Output::Event(Event::Response { id, .. })) => {
                pending.remove(id);
            }
            _ => {}
        }
        if first.settled() {
            break;
        }
    }
    first.into_inner()
}

/// What the world saw when the session ended.
struct Seen<'a> {
    config: &'a Config,
    healthy: bool,
    peer_spoke: bool,
    attempt_clean: bool,
    attempts: u32,
    last_close: Option<CloseCode>,
    last_status: Option<u16>,
}

impl Seen<'_> {
    /// `Ok` when the world confirms the session's reason for ending, else why not.
    fn confirms(&self, reason: &EndReason) -> Result<(), String> {
        let closed_with = |code: CloseCode, what: &str| {
            if self.last_close == Some(code) {
                Ok(())
            } else {
                Err(format!(
                    "the session ended on {what} {code:?}, but the last close the peer sent \
                     was {:?}",
                    self.last_close
                ))
            }
        };
        match reason {
            EndReason::ClosedByPeer { code, .. } => closed_with(*code, "the peer's close"),
            EndReason::Failed(SessionError::FatalClose { code, .. }) => {
                closed_with(*code, "a fatal close")
            }
            EndReason::Idle if self.config.idle_timeout.is_some() => Ok(()),
            EndReason::Failed(SessionError::FatalAttempt(e)) => {
                let seen = match e {
                    AttemptError::Transport(TransportFailure::Http { status, .. }) => {
                        self.last_status == Some(*status)
                    }
                    AttemptError::ClosedDuringHandshake {
                        code: Some(code), ..
                    } => self.last_close == Some(*code),
                    // The peer's own answer to the handshake: a frame the world delivered.
                    AttemptError::HandshakeRejected { .. } => self.peer_spoke,
                    _ => false,
                };
                if seen || !self.healthy {
                    Ok(())
                } else {
                    Err(format!(
                        "the session failed an attempt as fatal ({e}) while the peer was \
                         healthy and reachable"
                    ))
                }
            }
            EndReason::Failed(SessionError::AttemptsExhausted { .. })
                if self
                    .config
                    .backoff
                    .max_attempts
                    .is_some_and(|n| self.attempts >= n) =>
            {
                Ok(())
            }
            EndReason::Failed(SessionError::FirstConnect(e)) => {
                if self.attempt_clean && self.healthy {
                    Err(format!(
                        "the first connect failed ({e}) while the peer was healthy and \
                         reachable"
                    ))
                } else {
                    Ok(())
                }
            }
            other => Err(format!(
                "the session ended ({other:?}) with no cause the world can confirm"
            )),
        }
    }
}
