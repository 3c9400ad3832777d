//! The task of one guarded connection: it owns the [`ServerConn`], feeds it one thing at a
//! time (a transport input, a command from a handle, an expired deadline), drains its
//! outputs and carries them out. Reading and writing run concurrently inside the task, so
//! a write the peer never drains does not stop reading (pongs still count as life) and
//! the connection's send deadline can abort it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::channel::{mpsc, oneshot};
use futures::future::BoxFuture;
use futures::{FutureExt, SinkExt, StreamExt, select_biased};
use tether_core::server::{EndCause, ServerConn, ServerEvent, ServerOutput};
use tether_core::{CloseCode, ConnId, DataFrame, FrameId, Input};

use super::guard::{Cmd, DeliveryError, Reply, State, payload_len};
use crate::alarm::Alarm;
use crate::runtime::Runtime;
use crate::transport::{
    FrameSink, FrameStream, Incoming, Link, Outgoing, dropped, is_unanswered_violation,
};

/// Reports in flight from the reader and writer to the loop. A full channel makes them
/// wait, which pushes back on the socket instead of buffering without bound.
const INPUT_CAPACITY: usize = 256;

/// At most this many frames are handed to the WebSocket before one flush: one system
/// call for a burst of broadcasts, and a bounded amount fed past a stuck socket.
const MAX_BATCH: usize = 64;

/// What the loop hands the writer: a frame (with the id to report) or a close frame.
type WriteItem = (Option<FrameId>, Outgoing);

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

/// Runs the connection until it has ended; the socket closes when this returns.
pub(crate) async fn run<R: Runtime>(parts: Parts<R>) {
    let Parts {
        rt,
        machine,
        link,
        state,
        cmds,
        inbound,
    } = parts;
    let conn = machine.conn();
    let _finish = FinishOnDrop(state.clone());
    let (inputs_tx, inputs_rx) = mpsc::channel(INPUT_CAPACITY);
    let (writes_tx, writes_rx) = mpsc::unbounded();
    let discard = Arc::new(AtomicBool::new(false));
    let link_reset = link.reset;
    let (release_tx, release_rx) = oneshot::channel();
    let reader = read(conn, link.stream, inputs_tx.clone(), release_rx);
    let writer = write(conn, link.sink, writes_rx, inputs_tx, discard.clone());
    let linger_rt = rt.clone();
    let control = Control {
        rt,
        machine,
        state,
        cmds,
        inbound,
        inputs: inputs_rx,
        writes: writes_tx,
        discard,
        waiters: BTreeMap::new(),
        refused: Vec::new(),
        alarm: Alarm::new(),
        abort: false,
        warned_inbound: false,
        held: None,
        release: Some(release_tx),
    };
    let control = std::pin::pin!(control.run());
    let io = std::pin::pin!(futures::future::join(reader, writer));
    let futures::future::Either::Left((end, io)) = futures::future::select(control, io).await
    else {
        return;
    };
    let abandoned = match end.linger {
        // The peer closed (or broke the protocol): reading on sends tungstenite's
        // answering close frame (or the link's 1002/1007/1009), then the stream ends.
        // Bounded: a peer that stopped reading gets no answer.
        Some(linger) if !end.abort => {
            let deadline = linger_rt.now() + linger;
            let finished = futures::future::select(io, linger_rt.sleep_until(deadline)).await;
            matches!(finished, futures::future::Either::Right(_))
        }
        _ => end.abort,
    };
    if abandoned && let Some(reset) = link_reset {
        // The kernel would go on sending what this peer will never read.
        reset.now();
    }
}

/// How the connection's loop ended.
struct End {
    /// How long to let the transport finish a close handshake the peer started.
    linger: Option<std::time::Duration>,
    /// The machine aborted the connection.
    abort: bool,
}

struct Control<R> {
    rt: R,
    machine: ServerConn,
    state: Arc<State>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    inbound: mpsc::Sender<DataFrame>,
    inputs: mpsc::Receiver<Input>,
    writes: mpsc::UnboundedSender<WriteItem>,
    discard: Arc<AtomicBool>,
    /// Admitted frames handed to the machine and not yet written: their senders' replies.
    waiters: BTreeMap<FrameId, Option<Reply>>,
    /// Replies to frames refused because the connection was already closing.
    refused: Vec<Reply>,
    alarm: Alarm,
    abort: bool,
    warned_inbound: bool,
    /// A protocol error held back until the application has caught up (see
    /// [`CatchUp`](super::catch_up::CatchUp)), and the bound of the hold.
    held: Option<(Input, BoxFuture<'static, ()>)>,
    /// Lets the reader go on to fail the connection once the held error is reported.
    release: Option<oneshot::Sender<()>>,
}

impl<R: Runtime> Control<R> {
    /// Runs until the connection has ended.
    async fn run(mut self) -> End {
        loop {
            self.drain();
            if self.machine.is_closed() || self.abort {
                self.finish();
                // The peer's close frame is answered, and a peer that broke the protocol
                // is sent its 1002/1007/1009, by reading on.
                let peer_closed = matches!(
                    self.machine.end_cause(),
                    Some(EndCause::Lost(
                        tether_core::DisconnectReason::Closed { code: Some(_), .. }
                            | tether_core::DisconnectReason::ProtocolError(_)
                    ))
                );
                let linger = self.machine.config().close_timeout;
                return End {
                    linger: peer_closed.then_some(linger),
                    abort: self.abort,
                };
            }
            self.alarm.aim(self.machine.poll_timeout(), &self.rt);
            let (held, state) = (&mut self.held, &self.state);
            let caught_up = futures::future::poll_fn(|cx| match held {
                Some((_, bound)) => {
                    if state.catch_up.poll_caught_up(cx).is_ready() {
                        return std::task::Poll::Ready(());
                    }
                    bound.as_mut().poll(cx)
                }
                None => std::task::Poll::Pending,
            });
            select_biased! {
                () = caught_up.fuse() => self.release_held(),
                input = self.inputs.next() => {
                    // The reader and writer hold senders until the task ends.
                    if let Some(input) = input {
                        self.input(input);
                    }
                }
                cmd = self.cmds.next() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => {
                        // Every handle is gone: nobody can use the connection any more.
                        let now = self.rt.now();
                        let _ = self.machine.close(CloseCode::GOING_AWAY, "", now);
                    }
                },
                () = &mut self.alarm => {
                    let now = self.rt.now();
                    self.machine.handle_timeout(now);
                }
            }
        }
    }

    /// Reports the held protocol error, and lets the reader send the close frame it
    /// calls for.
    fn release_held(&mut self) {
        if let Some((input, _)) = self.held.take() {
            if let Some(release) = self.release.take() {
                let _ = release.send(());
            }
            let now = self.rt.now();
            self.machine.handle_input(input, now);
        }
    }

    fn input(&mut self, input: Input) {
        if is_unanswered_violation(&input) {
            // The application may still be answering what came before it: held back,
            // bounded like a close.
            let close_timeout = self.machine.config().close_timeout;
            // Validated: close_timeout is at most a year, well within the clock.
            let bound = self.rt.sleep_until(self.rt.now() + close_timeout);
            self.held = Some((input, bound));
            return;
        }
        if let Input::WriteCompleted { frame, .. } = &input
            && let Some(reply) = self.waiters.remove(frame)
        {
            self.state.outstanding.fetch_sub(1, Ordering::AcqRel);
            if let Some(reply) = reply {
                let _ = reply.send(Ok(()));
            }
        }
        let now = self.rt.now();
        self.machine.handle_input(input, now);
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

    fn drain(&mut self) {
        while let Some(out) = self.machine.poll_output() {
            match out {
                ServerOutput::SendFrame { frame, payload, .. } => {
                    let _ = self
                        .writes
                        .unbounded_send((Some(frame), Outgoing::Frame(payload)));
                }
                ServerOutput::CloseTransport { code, reason, .. } => {
                    // Frames not yet handed to the socket are dropped: a closing
                    // connection waits for nothing but the peer's close frame.
                    self.discard.store(true, Ordering::Release);
                    let _ = self
                        .writes
                        .unbounded_send((None, Outgoing::Close(code, reason)));
                }
                ServerOutput::AbortTransport { .. } => self.abort = true,
                ServerOutput::Event(event) => self.event(event),
                _ => {}
            }
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

/// Reads frames until the connection ends, then reports how. Completes only after that
/// report, so the task never ends before the loop has heard of the end.
///
/// After a protocol error, the link's failing close frame waits for `release`: the loop
/// sends it (or drops it) once the application has answered what came before.
async fn read(
    conn: ConnId,
    mut stream: FrameStream,
    mut inputs: mpsc::Sender<Input>,
    release: oneshot::Receiver<()>,
) {
    let last = loop {
        match stream.next().await {
            Some(Ok(Incoming::Frame(frame))) => {
                if inputs
                    .send(Input::FrameReceived { conn, frame })
                    .await
                    .is_err()
                {
                    break dropped(conn);
                }
            }
            // The peer's close frame, or its protocol error: the last input.
            Some(Ok(ending)) => break ending.into_input(conn),
            Some(Err(e)) => {
                tracing::debug!(%conn, error = %e, "read failed");
                break dropped(conn);
            }
            None => break dropped(conn),
        }
    };
    let held = is_unanswered_violation(&last);
    if inputs.send(last).await.is_ok() {
        if held {
            // Dropped unsent when the loop ends first: reading on is then all that is left.
            let _ = release.await;
        }
        // Reading on finishes the close handshake: the link flushes tungstenite's answer to
        // a close frame, or the close frame it fails the connection with; the stream then
        // ends.
        while let Some(Ok(_)) = stream.next().await {}
    }
}

/// Writes what the loop hands over in batches (feed up to [`MAX_BATCH`], flush once) and
/// reports each frame written when the flush returns.
async fn write(
    conn: ConnId,
    mut sink: FrameSink,
    mut items: mpsc::UnboundedReceiver<WriteItem>,
    mut inputs: mpsc::Sender<Input>,
    discard: Arc<AtomicBool>,
) {
    let mut batch: Vec<FrameId> = Vec::with_capacity(MAX_BATCH);
    'outer: while let Some(first) = items.next().await {
        let mut next = Some(first);
        let mut fed = 0;
        let mut failed = None;
        while let Some((id, out)) = next.take() {
            let data = matches!(out, Outgoing::Frame(_));
            if !(data && discard.load(Ordering::Acquire)) {
                if let Err(e) = sink.feed(out).await {
                    tracing::debug!(%conn, error = %e, "write failed");
                    failed = Some(id.or(batch.first().copied()));
                    break;
                }
                fed += 1;
                batch.extend(id);
            }
            if fed >= MAX_BATCH {
                break;
            }
            next = items.try_recv().ok();
        }
        if failed.is_none()
            && let Err(e) = sink.flush().await
        {
            tracing::debug!(%conn, error = %e, "flush failed");
            failed = Some(batch.first().copied());
        }
        if let Some(id) = failed {
            // The machine ends the connection on any failed write; the id is for logs.
            let frame = id.unwrap_or(FrameId::from_raw(u64::MAX));
            let _ = inputs.send(Input::WriteFailed { conn, frame }).await;
            break 'outer;
        }
        for frame in batch.drain(..) {
            if inputs
                .send(Input::WriteCompleted { conn, frame })
                .await
                .is_err()
            {
                break 'outer;
            }
        }
    }
    // The loop has ended (or a write failed, which ends it): nothing more to write. The
    // socket lives on in the reader's half until the task ends.
}

#[cfg(test)]
mod tests {
    //! The inbound byte budget through [`guard`](super::super::guard) with a channel for a
    //! peer, on a clock that never moves (no ping, no deadline fires) and a tiny executor
    //! that polls the connection's task a bounded number of times.

    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};
    use std::time::Instant;

    use bytes::Bytes;
    use futures::SinkExt;
    use futures::channel::mpsc;
    use futures::future::BoxFuture;
    use futures::task::noop_waker_ref;
    use tether_core::{DataFrame, InFrame};

    use super::super::{GuardConfig, Guarded, guard};
    use crate::runtime::Runtime;
    use crate::transport::{Incoming, Link};

    type PeerTx = mpsc::UnboundedSender<Result<Incoming, std::io::Error>>;

    /// A runtime whose clock stands still and whose tasks run only in [`Still::run`].
    #[derive(Clone)]
    struct Still {
        epoch: Instant,
        tasks: Arc<Mutex<Vec<BoxFuture<'static, ()>>>>,
    }

    impl Runtime for Still {
        fn spawn(&self, future: BoxFuture<'static, ()>) {
            self.tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(future);
        }

        fn sleep_until(&self, _deadline: Instant) -> BoxFuture<'static, ()> {
            // The clock never moves: no deadline is ever reached.
            Box::pin(futures::future::pending())
        }

        fn now(&self) -> Instant {
            self.epoch
        }
    }

    impl Still {
        /// Polls every task a bounded number of times: enough for the task to take in
        /// everything the peer has sent (the reader hands frames to the loop one by one
        /// through a channel of `INPUT_CAPACITY`).
        fn run(&self) {
            let mut cx = Context::from_waker(noop_waker_ref());
            let mut tasks = std::mem::take(
                &mut *self
                    .tasks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            for _ in 0..64 {
                tasks.retain_mut(|t| t.as_mut().poll(&mut cx) == Poll::Pending);
            }
            self.tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(tasks);
        }
    }

    /// A guarded connection whose peer is `PeerTx` and whose writes go nowhere.
    fn connection(config: GuardConfig) -> (Still, PeerTx, Guarded) {
        let rt = Still {
            // The one clock read: an arbitrary epoch.
            epoch: Instant::now(),
            tasks: Arc::default(),
        };
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
}
