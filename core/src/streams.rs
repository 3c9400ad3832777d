//! Streams: pre-registration by key, `(stream, seq)` de-duplication with a time to live,
//! exactly-once terminal events, late-event cooldown, gap detection and accumulated text
//! turned into increments.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::event::{StreamEnd, StreamEvent, StreamEventKind};
use crate::ids::{RequestId, StreamKey};
use crate::protocol::{StreamFrame, StreamState, TextMode};
use crate::timer::saturating_after;

/// The stream part of [`Config`](crate::Config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    /// At most this many streams open at once. Default 256.
    pub max_streams: usize,
    /// How long a `(stream, seq)` pair is remembered to drop duplicates. Default 30 s.
    pub dedup_ttl: Duration,
    /// At most this many remembered pairs (the oldest are forgotten first). Default 4096.
    pub max_seen: usize,
    /// After a stream's terminal event, late events for it are suppressed this long.
    /// Default 5 s.
    pub completed_cooldown: Duration,
    /// A stream with no event for this long ends with `StreamEnd::IdleTimeout`.
    /// Default 5 min.
    pub idle_timeout: Option<Duration>,
    /// At most this many bytes of text rebuilt per stream (the text a `Final` carries).
    /// The event whose text would take a stream past it ends the stream instead, with
    /// [`StreamEnd::TextTooLong`] as its terminal event, and the text is freed: a peer
    /// cannot make the session hold more than this per stream. Default 1 MiB.
    pub max_text: usize,
}

/// The default `StreamConfig::max_text`: 1 MiB.
const DEFAULT_MAX_STREAM_TEXT: usize = 1 << 20;

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            max_streams: 256,
            dedup_ttl: Duration::from_secs(30),
            max_seen: 4096,
            completed_cooldown: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(300)),
            max_text: DEFAULT_MAX_STREAM_TEXT,
        }
    }
}

#[derive(Clone, Debug)]
struct Active {
    request: Option<RequestId>,
    /// Survives a lost connection ([`EncodedRequest::resumable`](crate::EncodedRequest::resumable)).
    resumable: bool,
    last_seq: Option<u64>,
    text: String,
    last_event: Instant,
}

/// What became of an inbound stream frame.
#[derive(Debug)]
pub(crate) enum Routed<I> {
    /// Deliver these events, in order: the gap before the frame if one was found, then
    /// the frame's event (no `Vec`: this is every stream frame's path).
    Deliver {
        /// Seqs were skipped before this frame.
        gap: Option<StreamEvent<I>>,
        /// The frame's own event.
        event: StreamEvent<I>,
    },
    /// A `(stream, seq)` pair seen before.
    Duplicate,
    /// Older than the stream's last delivered event.
    Stale,
    /// For a stream that completed within the cooldown.
    Late,
    /// For no known stream.
    Unsolicited(I),
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Streams {
    active: BTreeMap<StreamKey, Active>,
    /// Keys a response named for a registered stream (a run id for an idempotency key).
    aliases: BTreeMap<StreamKey, StreamKey>,
    completed: BTreeMap<StreamKey, Instant>,
    /// The `(stream, seq)` pairs of [`seen_order`](Self::seen_order), to look up. Hashed
    /// with a seed of the session's, so that a peer cannot choose keys that collide; never
    /// iterated, so the hash's order decides nothing.
    seen: HashSet<(StreamKey, u64), foldhash::fast::FixedState>,
    /// Seen pairs in insertion order; time only moves forward, so this is expiry order.
    seen_order: VecDeque<(Instant, StreamKey, u64)>,
}

impl Streams {
    /// No streams; the de-duplication memory hashed with `hash_seed`.
    pub(crate) fn new(hash_seed: u64) -> Self {
        Streams {
            seen: HashSet::with_hasher(foldhash::fast::FixedState::with_seed(hash_seed)),
            ..Streams::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.active.len()
    }

    pub(crate) fn seen_len(&self) -> usize {
        self.seen.len()
    }

    /// Bytes of rebuilt text held across every open stream.
    pub(crate) fn text_len(&self) -> usize {
        self.active.values().map(|a| a.text.len()).sum()
    }

    /// Whether events for `key` would reach an open stream (its own, or the one a
    /// response aliased it to).
    pub(crate) fn in_use(&self, key: &StreamKey) -> bool {
        self.active.contains_key(self.resolve(key))
    }

    /// Pre-registers a stream; `false` if the table is full.
    #[cfg(test)]
    pub(crate) fn register(
        &mut self,
        cfg: &StreamConfig,
        key: StreamKey,
        request: Option<RequestId>,
        now: Instant,
    ) -> bool {
        self.register_with(cfg, key, request, false, now)
    }

    /// [`register`](Self::register), as resumable or not.
    pub(crate) fn register_with(
        &mut self,
        cfg: &StreamConfig,
        key: StreamKey,
        request: Option<RequestId>,
        resumable: bool,
        now: Instant,
    ) -> bool {
        if self.active.len() >= cfg.max_streams && !self.active.contains_key(&key) {
            return false;
        }
        self.completed.remove(&key);
        self.active.insert(
            key,
            Active {
                request,
                resumable,
                last_seq: None,
                text: String::new(),
                last_event: now,
            },
        );
        true
    }

    /// A response named `alias` for the stream registered as `key`.
    pub(crate) fn alias(&mut self, key: &StreamKey, alias: StreamKey) {
        if alias != *key && self.active.contains_key(key) {
            self.aliases.insert(alias, key.clone());
        }
    }

    fn resolve<'a>(&'a self, key: &'a StreamKey) -> &'a StreamKey {
        self.aliases.get(key).unwrap_or(key)
    }

    /// Routes one inbound stream frame.
    pub(crate) fn route<I: Clone>(
        &mut self,
        cfg: &StreamConfig,
        frame: StreamFrame<I>,
        now: Instant,
    ) -> Routed<I> {
        // The key every map holds and every event carries: the active stream's own (a
        // shared clone, no copy), or for a stream not active a copy of its own, so that
        // nothing stored pins the frame the key was read from.
        let resolved = self.resolve(&frame.key);
        let key = match self.active.get_key_value(resolved) {
            Some((own, _)) => own.clone(),
            None => resolved.detached(),
        };
        if let Some(seq) = frame.seq {
            let pair = (key.clone(), seq);
            if self.seen.contains(&pair) {
                return Routed::Duplicate;
            }
            self.remember(cfg, pair, now);
        }
        let Some(active) = self.active.get_mut(&key) else {
            if self.completed.get(&key).is_some_and(|until| *until > now) {
                return Routed::Late;
            }
            return Routed::Unsolicited(frame.payload);
        };
        let terminal = frame.state.is_terminal();
        let mut gap = None;
        if let Some(seq) = frame.seq {
            match active.last_seq {
                Some(last) if seq <= last && !terminal => return Routed::Stale,
                // After `u64::MAX` no seq can follow, so nothing is missing.
                Some(last) if last.checked_add(1).is_some_and(|next| seq > next) => {
                    gap = Some(StreamEvent {
                        key: key.clone(),
                        request: active.request,
                        seq: Some(seq),
                        kind: StreamEventKind::Gap {
                            expected: last.saturating_add(1),
                            received: seq,
                        },
                    });
                }
                _ => {}
            }
            active.last_seq = Some(active.last_seq.map_or(seq, |l| l.max(seq)));
        }
        active.last_event = now;
        if let Some(t) = &frame.text {
            let grown = match frame.text_mode {
                TextMode::Incremental => active.text.len().saturating_add(t.len()),
                TextMode::Accumulated => t.len(),
            };
            if grown > cfg.max_text {
                // Past the budget: the stream ends here, typed, and its text is freed,
                // rather than the session holding whatever the peer keeps sending.
                let event = StreamEvent {
                    key: key.clone(),
                    request: active.request,
                    seq: frame.seq,
                    kind: StreamEventKind::Ended(StreamEnd::TextTooLong),
                };
                self.finish(cfg, &key, now);
                return Routed::Deliver { gap, event };
            }
        }
        let text = frame
            .text
            .map(|t| absorb(&mut active.text, t, frame.text_mode));
        let kind = match frame.state {
            StreamState::Status => StreamEventKind::Status(frame.payload),
            StreamState::Delta => StreamEventKind::Delta {
                text: text.filter(|t| !t.is_empty()),
                payload: frame.payload,
            },
            StreamState::Final => StreamEventKind::Final {
                text: (!active.text.is_empty()).then(|| active.text.clone()),
                payload: frame.payload,
            },
            StreamState::Error { message } => StreamEventKind::Error {
                message,
                payload: frame.payload,
            },
            StreamState::Aborted => StreamEventKind::Aborted(frame.payload),
        };
        let request = active.request;
        if terminal {
            self.finish(cfg, &key, now);
        }
        let event = StreamEvent {
            key,
            request,
            seq: frame.seq,
            kind,
        };
        Routed::Deliver { gap, event }
    }

    fn remember(&mut self, cfg: &StreamConfig, pair: (StreamKey, u64), now: Instant) {
        while self.seen.len() >= cfg.max_seen {
            match self.seen_order.pop_front() {
                Some((_, k, s)) => {
                    self.seen.remove(&(k, s));
                }
                None => break,
            }
        }
        self.seen_order.push_back((now, pair.0.clone(), pair.1));
        self.seen.insert(pair);
    }

    fn finish(&mut self, cfg: &StreamConfig, key: &StreamKey, now: Instant) {
        self.active.remove(key);
        self.completed
            .insert(key.clone(), saturating_after(now, cfg.completed_cooldown));
        let aliases: Vec<StreamKey> = self
            .aliases
            .iter()
            .filter(|(_, k)| *k == key)
            .map(|(a, _)| a.clone())
            .collect();
        for a in aliases {
            self.aliases.remove(&a);
            self.completed
                .insert(a, saturating_after(now, cfg.completed_cooldown));
        }
    }

    /// Ends one stream without a peer terminal event; `None` if it is not active.
    pub(crate) fn end<I>(
        &mut self,
        cfg: &StreamConfig,
        key: &StreamKey,
        why: StreamEnd,
        now: Instant,
    ) -> Option<StreamEvent<I>> {
        let active = self.active.get(key)?;
        let ev = StreamEvent {
            key: key.clone(),
            request: active.request,
            seq: None,
            kind: StreamEventKind::Ended(why),
        };
        self.finish(cfg, key, now);
        Some(ev)
    }

    /// Ends every active stream, in key order.
    pub(crate) fn end_all<I>(
        &mut self,
        cfg: &StreamConfig,
        why: StreamEnd,
        now: Instant,
    ) -> Vec<StreamEvent<I>> {
        let keys: Vec<StreamKey> = self.active.keys().cloned().collect();
        keys.iter()
            .filter_map(|k| self.end(cfg, k, why, now))
            .collect()
    }

    /// Ends every active stream that is not resumable (a lost connection), in key order.
    pub(crate) fn end_unresumable<I>(
        &mut self,
        cfg: &StreamConfig,
        why: StreamEnd,
        now: Instant,
    ) -> Vec<StreamEvent<I>> {
        let keys: Vec<StreamKey> = self
            .active
            .iter()
            .filter(|(_, a)| !a.resumable)
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter()
            .filter_map(|k| self.end(cfg, k, why, now))
            .collect()
    }

    /// Ends every resumable stream (the server could not recover them), in key order.
    pub(crate) fn end_resumable<I>(
        &mut self,
        cfg: &StreamConfig,
        why: StreamEnd,
        now: Instant,
    ) -> Vec<StreamEvent<I>> {
        let keys: Vec<StreamKey> = self.positions().into_iter().map(|(k, _)| k).collect();
        keys.iter()
            .filter_map(|k| self.end(cfg, k, why, now))
            .collect()
    }

    /// Whether `key` names a live resumable stream.
    pub(crate) fn is_resumable(&self, key: &StreamKey) -> bool {
        self.active.get(key).is_some_and(|a| a.resumable)
    }

    /// Every live resumable stream with its last delivered `seq`, in key order.
    pub(crate) fn positions(&self) -> Vec<(StreamKey, Option<u64>)> {
        self.active
            .iter()
            .filter(|(_, a)| a.resumable)
            .map(|(k, a)| (k.clone(), a.last_seq))
            .collect()
    }

    /// Forgets everything (the session ended).
    pub(crate) fn clear(&mut self) {
        // The hash seed stays: it is the session's, not the connection's.
        let hasher = self.seen.hasher().clone();
        *self = Streams {
            seen: HashSet::with_hasher(hasher),
            ..Streams::default()
        };
    }

    /// The next time bookkeeping expires.
    pub(crate) fn next_expiry(&self, cfg: &StreamConfig) -> Option<Instant> {
        if self.seen_order.is_empty() && self.completed.is_empty() && self.active.is_empty() {
            return None;
        }
        let seen = self
            .seen_order
            .front()
            .map(|(t, _, _)| saturating_after(*t, cfg.dedup_ttl));
        let cooldown = self.completed.values().min().copied();
        let idle = cfg.idle_timeout.and_then(|d| {
            self.active
                .values()
                .map(|a| saturating_after(a.last_event, d))
                .min()
        });
        [seen, cooldown, idle].into_iter().flatten().min()
    }

    /// Expires bookkeeping due at `now`; returns the streams that ended idle.
    pub(crate) fn expire<I>(&mut self, cfg: &StreamConfig, now: Instant) -> Vec<StreamEvent<I>> {
        while let Some((t, _, _)) = self.seen_order.front() {
            if saturating_after(*t, cfg.dedup_ttl) > now {
                break;
            }
            if let Some((_, k, s)) = self.seen_order.pop_front() {
                self.seen.remove(&(k, s));
            }
        }
        self.completed.retain(|_, until| *until > now);
        let Some(idle) = cfg.idle_timeout else {
            return Vec::new();
        };
        let idle_keys: Vec<StreamKey> = self
            .active
            .iter()
            .filter(|(_, a)| saturating_after(a.last_event, idle) <= now)
            .map(|(k, _)| k.clone())
            .collect();
        idle_keys
            .iter()
            .filter_map(|k| self.end(cfg, k, StreamEnd::IdleTimeout, now))
            .collect()
    }
}

/// Folds new text into the stream's text and returns the increment.
fn absorb(acc: &mut String, text: String, mode: TextMode) -> String {
    match mode {
        TextMode::Incremental => {
            acc.push_str(&text);
            text
        }
        TextMode::Accumulated => {
            if let Some(inc) = text.strip_prefix(acc.as_str()) {
                let inc = inc.to_owned();
                *acc = text;
                inc
            } else {
                // The peer rewrote earlier text (or a delta was coalesced oddly): the new
                // accumulated text wins, and the application gets all of it.
                acc.clone_from(&text);
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(key: &str, seq: u64, state: StreamState, text: Option<&str>) -> StreamFrame<u64> {
        StreamFrame {
            key: key.into(),
            seq: Some(seq),
            state,
            text: text.map(str::to_owned),
            text_mode: TextMode::Accumulated,
            payload: seq,
        }
    }

    fn delivered(r: Routed<u64>) -> Vec<StreamEventKind<u64>> {
        match r {
            Routed::Deliver { gap, event } => {
                gap.into_iter().chain([event]).map(|e| e.kind).collect()
            }
            other => panic!("expected delivery, got {other:?}"),
        }
    }

    #[test]
    fn accumulated_text_becomes_increments_and_final_carries_the_whole() {
        let cfg = StreamConfig::default();
        let t = crate::test_epoch();
        let mut s = Streams::default();
        assert!(s.register(&cfg, "k".into(), Some(RequestId(1)), t));
        let d1 = delivered(s.route(&cfg, frame("k", 1, StreamState::Delta, Some("Hel")), t));
        assert_eq!(
            d1,
            vec![StreamEventKind::Delta {
                text: Some("Hel".into()),
                payload: 1
            }]
        );
        // seq 3 after 1: a gap, and the coalesced text still yields the right increment.
        let d3 = delivered(s.route(&cfg, frame("k", 3, StreamState::Delta, Some("Hello wo")), t));
        assert_eq!(
            d3,
            vec![
                StreamEventKind::Gap {
                    expected: 2,
                    received: 3
                },
                StreamEventKind::Delta {
                    text: Some("lo wo".into()),
                    payload: 3
                }
            ]
        );
        let f = delivered(s.route(&cfg, frame("k", 4, StreamState::Final, None), t));
        assert_eq!(
            f,
            vec![StreamEventKind::Final {
                text: Some("Hello wo".into()),
                payload: 4
            }]
        );
        assert_eq!(s.len(), 0);
    }

    /// The cooldown ends at its instant even before the expiry timer has run: an event
    /// routed exactly then is unsolicited, not late. Inside `Session` the expiry runs
    /// first (`handle_input` advances time before routing), so the two orders agree
    /// there; this pins the table's own contract for any caller of `route`.
    #[test]
    fn the_cooldown_ends_at_its_instant_without_waiting_for_the_timer() {
        let cfg = StreamConfig::default();
        let t = crate::test_epoch();
        let mut s = Streams::default();
        s.register(&cfg, "k".into(), None, t);
        let _ = s.route(&cfg, frame("k", 1, StreamState::Final, None), t);
        let just_before = t + cfg.completed_cooldown - Duration::from_nanos(1);
        assert!(matches!(
            s.route(&cfg, frame("k", 2, StreamState::Delta, None), just_before),
            Routed::Late
        ));
        let at_the_end = t + cfg.completed_cooldown;
        assert!(matches!(
            s.route(&cfg, frame("k", 3, StreamState::Delta, None), at_the_end),
            Routed::Unsolicited(3)
        ));
    }

    #[test]
    fn duplicates_stale_late_and_unsolicited() {
        let cfg = StreamConfig::default();
        let t = crate::test_epoch();
        let mut s = Streams::default();
        s.register(&cfg, "k".into(), None, t);
        let _ = s.route(&cfg, frame("k", 5, StreamState::Delta, Some("a")), t);
        assert!(matches!(
            s.route(&cfg, frame("k", 5, StreamState::Delta, Some("a")), t),
            Routed::Duplicate
        ));
        assert!(matches!(
            s.route(&cfg, frame("k", 4, StreamState::Delta, None), t),
            Routed::Stale
        ));
        // A terminal with an old seq is still delivered: the stream must end.
        let e = delivered(s.route(
            &cfg,
            frame(
                "k",
                3,
                StreamState::Error {
                    message: "x".into(),
                },
                None,
            ),
            t,
        ));
        assert!(e[0].is_terminal());
        // A second terminal within the cooldown is suppressed.
        assert!(matches!(
            s.route(
                &cfg,
                frame(
                    "k",
                    9,
                    StreamState::Error {
                        message: "y".into()
                    },
                    None
                ),
                t
            ),
            Routed::Late
        ));
        // After the cooldown, the key is unknown: unsolicited.
        let later = t + cfg.completed_cooldown;
        let _ = s.expire::<u64>(&cfg, later);
        assert!(matches!(
            s.route(&cfg, frame("k", 10, StreamState::Delta, None), later),
            Routed::Unsolicited(10)
        ));
        assert!(matches!(
            s.route(&cfg, frame("other", 1, StreamState::Delta, None), later),
            Routed::Unsolicited(1)
        ));
    }

    #[test]
    fn aliases_route_and_expire_with_the_stream() {
        let cfg = StreamConfig::default();
        let t = crate::test_epoch();
        let mut s = Streams::default();
        s.register(&cfg, "idem".into(), Some(RequestId(7)), t);
        s.alias(&"idem".into(), "run".into());
        let d = delivered(s.route(&cfg, frame("run", 1, StreamState::Final, Some("x")), t));
        assert!(matches!(d[0], StreamEventKind::Final { .. }));
        assert!(matches!(
            s.route(&cfg, frame("run", 2, StreamState::Final, None), t),
            Routed::Late
        ));
    }

    /// A stream's end retires its own aliases and no other's: with two runs open under
    /// aliases, the first one finishing must leave the second reachable by its run id.
    #[test]
    fn a_stream_ending_leaves_other_streams_aliases_in_place() {
        let cfg = StreamConfig::default();
        let t = crate::test_epoch();
        let mut s = Streams::default();
        s.register(&cfg, "a".into(), Some(RequestId(1)), t);
        s.register(&cfg, "b".into(), Some(RequestId(2)), t);
        s.alias(&"a".into(), "run-a".into());
        s.alias(&"b".into(), "run-b".into());
        let _ = delivered(s.route(&cfg, frame("run-a", 1, StreamState::Final, None), t));
        assert!(matches!(
            s.route(&cfg, frame("run-a", 2, StreamState::Delta, None), t),
            Routed::Late
        ));
        let d = delivered(s.route(&cfg, frame("run-b", 1, StreamState::Delta, Some("x")), t));
        assert_eq!(
            d,
            vec![StreamEventKind::Delta {
                text: Some("x".into()),
                payload: 1
            }]
        );
    }

    /// A response can name its run id after the run's terminal event already ended the
    /// stream. That alias must not be registered: it would outlive its stream, and once a
    /// later request registers the same key, the old run's stragglers would be delivered
    /// as the new stream's events.
    #[test]
    fn an_alias_named_after_its_stream_ended_reaches_no_later_stream() {
        let cfg = StreamConfig::default();
        let t = crate::test_epoch();
        let mut s = Streams::default();
        s.register(&cfg, "idem".into(), Some(RequestId(1)), t);
        let d = delivered(s.route(&cfg, frame("idem", 1, StreamState::Final, None), t));
        assert!(matches!(d[0], StreamEventKind::Final { .. }));
        s.alias(&"idem".into(), "run-1".into());
        s.register(&cfg, "idem".into(), Some(RequestId(2)), t);
        assert!(matches!(
            s.route(&cfg, frame("run-1", 2, StreamState::Delta, Some("old")), t),
            Routed::Unsolicited(2)
        ));
    }

    #[test]
    fn dedup_memory_is_bounded_and_expires() {
        let cfg = StreamConfig {
            max_seen: 3,
            ..StreamConfig::default()
        };
        let t = crate::test_epoch();
        let mut s = Streams::default();
        for seq in 0..10 {
            let _ = s.route(&cfg, frame("u", seq, StreamState::Delta, None), t);
        }
        assert_eq!(s.seen_len(), 3);
        let _ = s.expire::<u64>(&cfg, t + cfg.dedup_ttl);
        assert_eq!(s.seen_len(), 0);
    }

    #[test]
    fn idle_streams_end_and_the_table_is_bounded() {
        let cfg = StreamConfig {
            max_streams: 1,
            ..StreamConfig::default()
        };
        let t = crate::test_epoch();
        let mut s = Streams::default();
        assert!(s.register(&cfg, "a".into(), None, t));
        assert!(!s.register(&cfg, "b".into(), None, t));
        let idle = t + cfg.idle_timeout.unwrap();
        assert_eq!(s.next_expiry(&cfg), Some(idle));
        let ended = s.expire::<u64>(&cfg, idle);
        assert_eq!(ended.len(), 1);
        assert_eq!(
            ended[0].kind,
            StreamEventKind::Ended(StreamEnd::IdleTimeout)
        );
    }
}
