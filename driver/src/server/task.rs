//! The task of one guarded connection: it owns the [`ServerConn`] and the connection's
//! [`Conn`], and polls them in one loop, as the client's session task does: commands from
//! the handles, the socket (reading, writing, the close handshake), the machine's next
//! deadline. Reading and writing are independent steps of one poll (the same
//! [`Conn`] as the client's), so a write the peer never drains does not stop reading
//! (pongs still count as life) and the connection's send deadline can abort it; a burst
//! of frames goes out with one flush, and nothing crosses a channel between reading and
//! the machine.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use futures::channel::mpsc;
use futures::{Future, StreamExt};
use tether_core::server::{EndCause, ServerConn, ServerEvent, ServerOutput};
use tether_core::{CloseCode, DataFrame, FrameId, Input};

use super::guard::{Cmd, DeliveryError, Reply, State, payload_len};
use crate::alarm::Alarm;
use crate::conn::Conn;
use crate::rounds::{Round, poll_rounds};
use crate::runtime::Runtime;
use crate::task::CMD_BUDGET;
use crate::transport::Link;

/// Everything the task needs, built by the accept helper.
pub(crate) struct Parts<R> {
    pub(crate) rt: R,
    pub(crate) machine: ServerConn,
    pub(crate) link: Link,
    pub(crate) state: Arc<State>,
    pub(crate) cmds: mpsc::UnboundedReceiver<Cmd>,
    pub(crate) inbound: mpsc::Sender<DataFrame>,
}

/// Ends the connection as terminated if the task is dropped before it finished (its
/// runtime shut down), so nobody waits for an end that would never be reported.
struct FinishOnDrop(Arc<State>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        let now = (self.0.now)();
        self.0.finish(EndCause::Terminated, now);
    }
}

/// Runs the connection until it has ended and its socket is closed (the close handshake
/// finished, bounded by the close timeout) or reset.
///
/// A plain function returning a `poll_fn` future rather than an `async fn`: the state
/// machine of an `async fn` keeps its by-value argument apart from its locals, so it held
/// the `Parts` and the `Task` made of them side by side, in every idle connection's heap.
/// The task is made at once, so its [`FinishOnDrop`] also covers a future dropped before
/// its first poll.
pub(crate) fn run<R: Runtime>(parts: Parts<R>) -> impl Future<Output = ()> + Send + 'static {
    let mut task = Task::new(parts);
    futures::future::poll_fn(move |cx| task.poll(cx))
}

struct Task<R> {
    rt: R,
    machine: ServerConn,
    state: Arc<State>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    /// Every handle is gone (the command channel ended).
    handles_gone: bool,
    inbound: mpsc::Sender<DataFrame>,
    /// The socket, until it is closed or dropped.
    conn: Option<Conn>,
    /// What polling the connection learned, for the machine, in order.
    inputs: Vec<Input>,
    /// Admitted frames handed to the machine and not yet written: their senders' replies.
    waiters: BTreeMap<FrameId, Option<Reply>>,
    /// Replies to frames refused because the connection was already closing.
    refused: Vec<Reply>,
    alarm: Alarm,
    warned_inbound: bool,
    /// The end has been reported to the handles.
    finished: bool,
    _finish: FinishOnDrop,
}

impl<R: Runtime> Task<R> {
    fn new(parts: Parts<R>) -> Self {
        let Parts {
            rt,
            machine,
            link,
            state,
            cmds,
            inbound,
        } = parts;
        let conn = Conn::open(machine.conn(), link);
        Task {
            rt,
            machine,
            _finish: FinishOnDrop(state.clone()),
            state,
            cmds,
            handles_gone: false,
            inbound,
            conn: Some(conn),
            inputs: Vec::new(),
            waiters: BTreeMap::new(),
            refused: Vec::new(),
            alarm: Alarm::new(),
            warned_inbound: false,
            finished: false,
        }
    }

    /// One wake-up: rounds until nothing is ready (see [`poll_rounds`]).
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        poll_rounds(cx, |cx| self.round(cx))
    }

    /// One round: the handles' commands, the socket, the machine's alarm.
    fn round(&mut self, cx: &mut Context<'_>) -> Round {
        let mut progressed = false;
        if !self.finished {
            progressed |= self.poll_cmds(cx);
            self.drain();
        }
        progressed |= self.poll_conn(cx);
        self.drain();
        if !self.finished && self.machine.is_closed() {
            self.finish();
        }
        if self.finished {
            // The socket closes once its close handshake is over (or abandoned); a
            // connection that ended any other way has nothing left to say.
            if !self.conn.as_ref().is_some_and(Conn::is_ending) {
                self.conn = None;
            }
            if self.conn.is_none() {
                return Round::Done;
            }
        }
        progressed |= self.conn.as_ref().is_some_and(Conn::has_news);
        if !self.finished && self.poll_alarm(cx) {
            progressed = true;
            self.drain();
        }
        Round::progressed(progressed)
    }

    /// Takes up to [`CMD_BUDGET`] commands from the handles; whether any was taken.
    fn poll_cmds(&mut self, cx: &mut Context<'_>) -> bool {
        if self.handles_gone {
            return false;
        }
        for _ in 0..CMD_BUDGET {
            match self.cmds.poll_next_unpin(cx) {
                Poll::Pending => return false,
                Poll::Ready(Some(cmd)) => self.command(cmd),
                Poll::Ready(None) => {
                    // Every handle is gone: nobody can use the connection any more.
                    self.handles_gone = true;
                    let now = self.rt.now();
                    let _ = self.machine.close(CloseCode::GOING_AWAY, "", now);
                    return true;
                }
            }
        }
        // More may be waiting: come back after the other sources.
        cx.waker().wake_by_ref();
        true
    }

    /// Polls the socket and hands the machine what it learned, in order.
    fn poll_conn(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(holding) = self.conn.as_ref().map(Conn::is_holding) else {
            return false;
        };
        // A protocol error is held back until the application has taken every message
        // delivered before it and waits for the next; commands it sent before that are
        // taken first, so its answers are queued ahead of the failing close frame.
        let caught_up =
            holding && self.state.catch_up.poll_caught_up(cx).is_ready() && !self.cmds_pending(cx);
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let step = conn.poll(cx, usize::MAX, caught_up, &mut self.inputs);
        let close_timeout = self.machine.config().close_timeout;
        if step.holding || step.ending {
            // Validated: close_timeout is at most a year, well within the clock.
            let deadline = self.rt.now() + close_timeout;
            if step.holding {
                // Bounded like a close: an application that never reads does not keep a
                // peer that broke the protocol connected.
                conn.bound_hold(self.rt.sleep_until(deadline));
            } else if !step.finished {
                // The peer's close is being answered (or its protocol error failed with a
                // close frame): bounded like a close of our own.
                conn.linger(self.rt.sleep_until(deadline));
            }
        }
        if step.finished
            && let Some(conn) = self.conn.take()
            && step.abandoned
        {
            // The kernel would go on sending what this peer will never read.
            conn.abort();
        }
        self.feed();
        step.progressed
    }

    /// Whether commands are waiting (taking them first); wakes the loop to act on them.
    fn cmds_pending(&mut self, cx: &mut Context<'_>) -> bool {
        if self.finished || self.handles_gone {
            return false;
        }
        let took = self.poll_cmds(cx);
        if took {
            self.drain();
            cx.waker().wake_by_ref();
        }
        took
    }

    /// Aims the alarm at the machine's next deadline; whether it fired (the machine has
    /// then handled the timeout).
    fn poll_alarm(&mut self, cx: &mut Context<'_>) -> bool {
        self.alarm.aim(self.machine.poll_timeout(), &self.rt);
        if Pin::new(&mut self.alarm).poll(cx).is_pending() {
            return false;
        }
        let now = self.rt.now();
        self.machine.handle_timeout(now);
        true
    }

    /// Hands the machine every input learned so far.
    fn feed(&mut self) {
        if self.inputs.is_empty() {
            return;
        }
        let now = self.rt.now();
        let mut inputs = std::mem::take(&mut self.inputs);
        for input in inputs.drain(..) {
            if let Input::WriteCompleted { frame, .. } = &input
                && let Some(reply) = self.waiters.remove(frame)
            {
                self.state.outstanding.fetch_sub(1, Ordering::AcqRel);
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(()));
                }
            }
            self.machine.handle_input(input, now);
        }
        // The buffer keeps its allocation.
        self.inputs = inputs;
    }

    fn command(&mut self, cmd: Cmd) {
        let now = self.rt.now();
        match cmd {
            Cmd::Send { frame, reply } => match self.machine.send(frame, now) {
                Ok(id) => {
                    self.waiters.insert(id, reply);
                }
                Err(e) => {
                    self.state.outstanding.fetch_sub(1, Ordering::AcqRel);
                    match (e, reply) {
                        // Cannot happen with the room `machine_config` leaves for pings;
                        // refused rather than lost if it ever does.
                        (tether_core::SendError::Backpressure, Some(r)) => {
                            let _ = r.send(Err(DeliveryError::Full));
                        }
                        // Closing: the cause is known at the end.
                        (_, Some(r)) => self.refused.push(r),
                        (_, None) => {}
                    }
                }
            },
            Cmd::Close(code, reason) => {
                // Validated by the handle; a refusal here changes nothing.
                let _ = self.machine.close(code, &reason, now);
            }
            Cmd::Terminate => self.machine.terminate(now),
        }
    }

    /// Carries out every output of the machine, feeding back what acting learned (a
    /// write to a broken socket fails at once), until it has nothing more to say.
    fn drain(&mut self) {
        loop {
            while let Some(out) = self.machine.poll_output() {
                self.act(out);
            }
            if self.inputs.is_empty() {
                return;
            }
            self.feed();
        }
    }

    fn act(&mut self, out: ServerOutput) {
        match out {
            ServerOutput::SendFrame { frame, payload, .. } => match self.conn.as_mut() {
                Some(conn) => conn.send(frame, payload, &mut self.inputs),
                None => self.inputs.push(Input::WriteFailed {
                    conn: self.machine.conn(),
                    frame,
                }),
            },
            ServerOutput::CloseTransport { code, reason, .. } => {
                if let Some(conn) = self.conn.as_mut() {
                    // Frames not yet handed to the socket are dropped: a closing
                    // connection waits for nothing but the peer's close frame.
                    conn.discard_queued();
                    conn.close(code, reason);
                }
            }
            ServerOutput::AbortTransport { .. } => {
                // Reset, so the kernel does not keep sending to a peer given up on.
                if let Some(conn) = self.conn.take() {
                    conn.abort();
                }
            }
            ServerOutput::Event(event) => self.event(event),
            _ => {}
        }
    }

    fn event(&mut self, event: ServerEvent) {
        let conn = self.machine.conn();
        match event {
            ServerEvent::Message(frame) => self.deliver(frame),
            ServerEvent::Violation(violation) => {
                tracing::debug!(%conn, %violation, "peer broke the rules");
            }
            ServerEvent::Ended(cause) => {
                tracing::info!(%conn, %cause, "connection ended");
            }
            _ => {}
        }
    }

    /// Hands an inbound message to the application, or drops and counts it: when the
    /// buffer holds `inbound_capacity` messages or the message does not fit the
    /// `inbound_bytes` budget. Its bytes are charged before it is buffered (so `recv`,
    /// which releases them, never sees a message not yet charged) and given back if the
    /// count refuses it.
    fn deliver(&mut self, frame: DataFrame) {
        let size = payload_len(&frame);
        let buffered = self.state.charge_inbound(size) && {
            self.state.catch_up.buffering();
            match self.inbound.try_send(frame) {
                Ok(()) => true,
                Err(_) => {
                    self.state.catch_up.taken();
                    self.state.release_inbound(size);
                    false
                }
            }
        };
        if !buffered {
            self.state.inbound_dropped.fetch_add(1, Ordering::Relaxed);
            if !self.warned_inbound {
                self.warned_inbound = true;
                let conn = self.machine.conn();
                tracing::warn!(
                    %conn,
                    bytes = size,
                    buffered_bytes = self.state.inbound_buffered(),
                    "application not reading; inbound messages dropped"
                );
            }
        }
    }

    /// Reports the end to everyone waiting: senders, `closed()`, the hub.
    fn finish(&mut self) {
        self.finished = true;
        let cause = self
            .machine
            .end_cause()
            .cloned()
            .unwrap_or(EndCause::Terminated);
        // The end is recorded first: whoever a reply wakes sees the connection closed.
        let now = self.rt.now();
        self.state.finish(cause.clone(), now);
        let dead = || Err(DeliveryError::Dead(cause.clone()));
        for (_, reply) in std::mem::take(&mut self.waiters) {
            if let Some(reply) = reply {
                let _ = reply.send(dead());
            }
        }
        for reply in self.refused.drain(..) {
            let _ = reply.send(dead());
        }
        // Commands that raced the end are answered, not lost.
        self.cmds.close();
        while let Ok(cmd) = self.cmds.try_recv() {
            if let Cmd::Send { reply, .. } = cmd {
                self.state.outstanding.fetch_sub(1, Ordering::AcqRel);
                if let Some(reply) = reply {
                    let _ = reply.send(dead());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The inbound byte budget through [`guard`](super::super::guard) with a channel for a
    //! peer, on a manual clock that never moves (no ping, no deadline fires), the
    //! connection's task polled a bounded number of times.

    use std::convert::Infallible;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use futures::SinkExt;
    use futures::channel::mpsc;
    use futures::task::noop_waker_ref;
    use tether_core::{DataFrame, InFrame};

    use super::super::{GuardConfig, Guarded, guard};
    use crate::manual_rt::Manual;
    use crate::transport::{Incoming, Link};

    type PeerTx = mpsc::UnboundedSender<Result<Incoming, std::io::Error>>;

    /// A guarded connection whose peer is `PeerTx` and whose writes go nowhere.
    fn connection(config: GuardConfig) -> (Manual, PeerTx, Guarded) {
        // The clock is never moved: no ping, no deadline fires.
        let rt = Manual::new();
        let (tx, rx) = mpsc::unbounded();
        let sink = futures::sink::drain()
            .sink_map_err(|never: Infallible| -> std::io::Error { match never {} });
        let link = Link {
            sink: Box::pin(sink),
            stream: Box::pin(rx),
            reset: None,
            subprotocol: None,
        };
        let conn = guard(rt.clone(), link, None, config).unwrap();
        rt.run();
        (rt, tx, conn)
    }

    fn message(tag: u8, size: usize) -> Result<Incoming, std::io::Error> {
        Ok(Incoming::Frame(InFrame::Binary(Bytes::from(vec![
            tag;
            size
        ]))))
    }

    /// Takes a message the connection has buffered (`recv` on a non-empty buffer is ready
    /// at once; `None` if nothing is buffered).
    fn take(conn: &Guarded) -> Option<DataFrame> {
        let mut cx = Context::from_waker(noop_waker_ref());
        match std::pin::pin!(conn.recv()).poll(&mut cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => None,
        }
    }

    const KIB: usize = 1 << 10;

    /// Brief E / reliability review U3: 64 messages of 512 KiB to an application that does
    /// not read. The count (256) would buffer all 32 MiB; the 4 MiB budget keeps 8, drops
    /// and counts 56, and a read makes room for the next message.
    #[test]
    fn inbound_bytes_are_bounded_and_released_by_recv() {
        let config = GuardConfig::default();
        assert_eq!(config.inbound_bytes, 4 << 20);
        assert!(
            config.inbound_capacity >= 64,
            "the count alone would buffer all"
        );
        let (rt, peer, conn) = connection(config.clone());
        for i in 0..64u8 {
            peer.unbounded_send(message(i, 512 * KIB)).unwrap();
            rt.run();
            assert!(
                conn.inbound_bytes() <= config.inbound_bytes,
                "{} bytes buffered after message {i}",
                conn.inbound_bytes()
            );
        }
        assert_eq!(conn.inbound_bytes(), 4 << 20);
        assert_eq!(conn.dropped_inbound(), 56);
        assert!(!conn.is_closed(), "dropping is not a reason to end");

        // Reading frees the bytes of what it took; the next message is buffered again.
        let first = take(&conn).expect("a buffered message");
        assert_eq!(first, DataFrame::Binary(Bytes::from(vec![0; 512 * KIB])));
        assert_eq!(conn.inbound_bytes(), (4 << 20) - 512 * KIB);
        peer.unbounded_send(message(100, 512 * KIB)).unwrap();
        rt.run();
        assert_eq!(conn.dropped_inbound(), 56, "the new message fits again");
        assert_eq!(conn.inbound_bytes(), 4 << 20);
        let mut tags = Vec::new();
        while let Some(DataFrame::Binary(b)) = take(&conn) {
            tags.push(b[0]);
        }
        assert_eq!(tags, [1, 2, 3, 4, 5, 6, 7, 100]);
        assert_eq!(conn.inbound_bytes(), 0);
    }

    /// A message larger than the whole budget (the codec admits up to
    /// `max_inbound_frame`) is still delivered when nothing else is buffered, and only
    /// then: otherwise such a message could never reach the application.
    #[test]
    fn a_message_larger_than_the_budget_fits_an_empty_buffer() {
        let config = GuardConfig {
            inbound_bytes: 64 * KIB,
            ..GuardConfig::default()
        };
        let (rt, peer, conn) = connection(config);
        peer.unbounded_send(message(1, 100 * KIB)).unwrap();
        peer.unbounded_send(message(2, 1)).unwrap();
        rt.run();
        assert_eq!(conn.inbound_bytes(), 100 * KIB);
        assert_eq!(conn.dropped_inbound(), 1, "nothing fits beside it");
        assert!(matches!(take(&conn), Some(DataFrame::Binary(b)) if b[0] == 1));
        assert_eq!(conn.inbound_bytes(), 0);
        peer.unbounded_send(message(3, 1)).unwrap();
        rt.run();
        assert!(matches!(take(&conn), Some(DataFrame::Binary(b)) if b[0] == 3));
    }

    /// The count still bounds small messages, and a message the count refuses gives its
    /// bytes back.
    #[test]
    fn the_count_still_applies_and_a_refused_message_is_not_charged() {
        let config = GuardConfig {
            inbound_capacity: 4,
            ..GuardConfig::default()
        };
        let (rt, peer, conn) = connection(config);
        for i in 0..20u8 {
            peer.unbounded_send(message(i, 10)).unwrap();
        }
        rt.run();
        let dropped = conn.dropped_inbound();
        assert!(dropped > 0, "the count refused some");
        let buffered = 20 - usize::try_from(dropped).unwrap();
        assert_eq!(conn.inbound_bytes(), buffered * 10);
        let mut taken = 0;
        while take(&conn).is_some() {
            taken += 1;
        }
        assert_eq!(taken, buffered);
        assert_eq!(conn.inbound_bytes(), 0);
    }

    /// The connection's future holds its `Task` once: every idle connection's heap holds
    /// this future, and as an `async fn` it held the `Parts` the task is made of beside it.
    #[test]
    fn the_connection_future_holds_its_task_once() {
        fn output_size<A, O, F: FnOnce(A) -> O>(_: &F) -> usize {
            std::mem::size_of::<O>()
        }
        let size = output_size(&|parts: super::Parts<Manual>| super::run(parts));
        assert!(
            size <= size_of::<super::Task<Manual>>() + 16,
            "{size} bytes"
        );
    }
}
