//! The session loop: one task owns the `Session` and its connections. Each wake-up it takes
//! every command, transport fact and expired deadline that is ready, feeds them to the
//! session in order, and carries out what the session decided — all without leaving the
//! task, so a frame costs no hop between tasks on its way in or out.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, StreamExt};
use tether_core::{
    CloseCode, ConnId, EndReason, Event, InFrame, Input, Output, Protocol, RequestId, Session,
    SessionError, Status,
};

use crate::record::{OnDemand, Options, Tap};

use crate::alarm::Alarm;
use crate::conn::Conn;
use crate::error::CallError;
use crate::rounds::{Round, poll_rounds};
use crate::runtime::Runtime;
use crate::shared::{Cmd, Control, Shared};
use crate::stream_events::{Sent, StreamSender};
use crate::transport::Transport;
use crate::update::Update;

/// Commands taken from the handles in one round before the loop looks at its sockets: a
/// flood of sends cannot starve reading.
pub(crate) const CMD_BUDGET: usize = 128;

type Reply<P> =
    oneshot::Sender<Result<<P as Protocol>::Response, CallError<<P as Protocol>::RemoteError>>>;

pub(crate) struct Driver<P: Protocol, R: Runtime> {
    /// The session, behind the one place every call on it goes through (and is recorded,
    /// when the session is).
    pub(crate) session: Tap<P>,
    pub(crate) rt: R,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) shared: Arc<Shared<P>>,
    front: Front<P>,
    // Boxed: a B-tree leaf holds room for 11 entries however few are in it, and with
    // `Conn` (208 bytes) inline that node cost every session 2.3 KiB for its one
    // connection (`bench/src/bin/memory.rs`); boxed, it holds 11 pointers.
    conns: BTreeMap<ConnId, Box<Conn>>,
    /// Facts learned from the connections in this round, in order; reused across rounds.
    inputs: Vec<Input>,
    handles_gone: bool,
    /// Events of this drain, handed to the subscribers together at its end; with an
    /// [`Front::Inline`] front, kept here until the application takes them.
    pub(crate) published: VecDeque<Update<P>>,
    /// Bytes of the data frames read since the last publish: what the events published
    /// next are charged with in the subscribers' byte budgets.
    read_bytes: usize,
    /// The time of the current round.
    now: Instant,
    calls: BTreeMap<RequestId, Reply<P>>,
    streams: BTreeMap<RequestId, StreamSender<P::Inbound>>,
    /// Payload bytes of the frame whose outputs are being carried out: what a stream
    /// event routed to its caller is charged with.
    frame_bytes: usize,
    open_waiters: Vec<oneshot::Sender<Result<(), EndReason>>>,
    /// The length of `open_waiters` at which cancelled waiters are next pruned.
    prune_waiters_at: usize,
    close_waiters: Vec<oneshot::Sender<()>>,
    ended: Option<EndReason>,
    alarm: Alarm,
}

/// Who uses the session, and how its calls and events travel.
pub(crate) enum Front<P: Protocol> {
    /// [`Client`](crate::Client) handles in other tasks: their calls come through a
    /// bounded command channel and a control channel, and events go to their subscribers'
    /// mailboxes.
    Handles {
        cmds: crate::cmd_channel::CmdReceiver<Cmd<P>>,
        control: mpsc::UnboundedReceiver<Control>,
    },
    /// The application polls the loop from its own task ([`Inline`](crate::Inline)): its
    /// calls reach the session directly and the events stay in `published` until it takes
    /// them. Reading waits while any are untaken, so they never outgrow one read batch.
    Inline,
}

impl<P: Protocol, R: Runtime> Drop for Driver<P, R> {
    fn drop(&mut self) {
        let now = self.rt.now();
        self.session.end(now);
        if self.ended.is_none() {
            // The loop is gone before the session ended: it panicked (a bug, or protocol
            // code that panicked) or its runtime shut down, or the inline application let
            // go of it. Say so, rather than leave the handles reporting the last status of
            // a session nobody drives.
            match self.front {
                Front::Handles { .. } => {
                    tracing::warn!("session loop stopped before the session ended");
                }
                Front::Inline => tracing::debug!("inline session dropped before it ended"),
            }
            let reason = EndReason::Failed(SessionError::Stopped);
            self.shared.set_status(Status::Failed);
            self.published.push_back(Update::Status(Status::Failed));
            self.published
                .push_back(Update::Event(Event::Ended(reason.clone())));
            self.shared.publish(&mut self.published, 0);
            for w in self.open_waiters.drain(..) {
                let _ = w.send(Err(reason.clone()));
            }
        }
        self.shared.close_events();
    }
}

impl<P: crate::send_protocol::SendProtocol, R: Runtime> Driver<P, R> {
    pub(crate) fn new(
        session: Session<P>,
        options: Options<P>,
        seed: u64,
        rt: R,
        transport: Arc<dyn Transport>,
        shared: Arc<Shared<P>>,
        front: Front<P>,
    ) -> Self {
        let now = rt.now();
        // An inline application is the session's only handle: once the session is closed
        // and its connections are done, nothing more can happen.
        let handles_gone = matches!(front, Front::Inline);
        Driver {
            session: Tap::new(session, options, seed, now),
            rt,
            transport,
            shared,
            front,
            conns: BTreeMap::new(),
            inputs: Vec::new(),
            handles_gone,
            now,
            published: VecDeque::new(),
            read_bytes: 0,
            calls: BTreeMap::new(),
            streams: BTreeMap::new(),
            frame_bytes: 0,
            open_waiters: Vec::new(),
            prune_waiters_at: 16,
            close_waiters: Vec::new(),
            ended: None,
            alarm: Alarm::new(),
        }
    }

    /// Runs the session until it has ended, its transports are gone and every client
    /// handle is dropped. The session connects when the future is first polled.
    ///
    /// A plain function returning a `poll_fn` future rather than an `async fn`: the state
    /// machine of an `async fn` keeps its by-value argument apart from the locals it is
    /// moved into, so it held the whole `Driver` twice, 1.7 KiB of every idle session's
    /// heap for nothing (`bench/src/bin/memory.rs`). The closure holds it once.
    pub(crate) fn run(mut self) -> impl Future<Output = ()> + Send + 'static {
        let mut started = false;
        futures::future::poll_fn(move |cx| {
            if !started {
                started = true;
                self.connect();
            }
            self.poll(cx)
        })
    }

    /// Starts the session's first connect (a lazy session waits for its first use).
    pub(crate) fn connect(&mut self) {
        let now = self.tick();
        if let Err(e) = self.session.connect(now) {
            tracing::debug!(error = %e, "connect refused");
        }
    }

    /// One wake-up: rounds until nothing is ready (see [`poll_rounds`]); then what was
    /// recorded goes to the recorder's writer in one batch.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let poll = poll_rounds(cx, |cx| self.round(cx));
        self.session.flush_records();
        poll
    }

    /// One round: the handles, the connections, the session's alarm.
    fn round(&mut self, cx: &mut Context<'_>) -> Round {
        // One clock read per round: everything taken in a round happened "now".
        self.now = self.rt.now();
        let mut progressed = self.poll_handles(cx);
        progressed |= self.poll_conns(cx);
        self.drain();
        if self.session.is_closed() {
            for w in self.close_waiters.drain(..) {
                let _ = w.send(());
            }
            // Connections still finishing a close handshake end within their linger.
            if self.handles_gone && self.conns.is_empty() {
                return Round::Done;
            }
        }
        // Acting may have queued writes or opened connections, which only register
        // interest when polled.
        progressed |= self.conns.values().any(|c| c.has_news());
        if self.poll_sleep(cx) {
            progressed = true;
            self.drain();
        }
        Round::progressed(progressed)
    }

    /// Takes lifecycle controls, then up to [`CMD_BUDGET`] data commands. Returns whether
    /// any was taken.
    fn poll_handles(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progressed = false;
        loop {
            let Front::Handles { control, .. } = &mut self.front else {
                // An inline application calls the session itself.
                return false;
            };
            let Poll::Ready(Some(ctl)) = control.poll_next_unpin(cx) else {
                break;
            };
            self.control(ctl);
            progressed = true;
        }
        if self.handles_gone {
            return progressed;
        }
        // Every request in flight owes each subscriber a response: a subscriber that would
        // overflow with them holds new commands back until it reads.
        if !self.shared.have_room(cx, self.calls.len()) {
            return progressed;
        }
        for _ in 0..CMD_BUDGET {
            let Front::Handles { cmds, .. } = &mut self.front else {
                return progressed;
            };
            match cmds.poll_next(cx) {
                Poll::Pending => return progressed,
                Poll::Ready(Some(cmd)) => self.command(cmd),
                Poll::Ready(None) => {
                    // Every handle is gone: nobody can use the session any more.
                    self.handles_gone = true;
                    let now = self.now;
                    self.session
                        .close(CloseCode::GOING_AWAY, "client dropped", now);
                    return true;
                }
            }
            progressed = true;
        }
        progressed
    }

    /// Polls every connection and feeds what they report to the session, in order.
    fn poll_conns(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progressed = false;
        let mut finished = Vec::new();
        // A subscriber with a full mailbox (in count or in bytes) holds reading back; it
        // wakes the loop when it has caught up. Otherwise a batch of reads stops after the
        // frame that reaches the bytes it still has room for.
        let allowance = if self.conns.is_empty() {
            0
        } else {
            match self.front {
                Front::Handles { .. } => self.shared.read_allowance(cx),
                // The application polls for more once it has taken these.
                Front::Inline if !self.published.is_empty() => 0,
                Front::Inline => self.shared.subscriber_bytes,
            }
        };
        let caught_up = self.conns.values().any(|c| c.is_holding()) && self.caught_up(cx);
        for (id, conn) in &mut self.conns {
            let step = conn.poll(cx, allowance, caught_up, &mut self.inputs);
            self.read_bytes = self.read_bytes.saturating_add(step.read);
            progressed |= step.progressed;
            if step.holding {
                // Bounded like a close: an application that never reads does not keep a
                // peer that broke the protocol connected.
                // Validated: close_timeout is at most a year, well within the clock.
                let deadline = self.now + self.session.config().close_timeout;
                conn.bound_hold(self.rt.sleep_until(deadline));
            }
            if step.finished {
                finished.push((*id, step.abandoned));
            } else if step.ending {
                // The peer's close is being answered (or its protocol error failed with
                // a close frame): bounded like a close of our own.
                // Validated: close_timeout is at most a year, well within the clock.
                let deadline = self.now + self.session.config().close_timeout;
                conn.linger(self.rt.sleep_until(deadline));
                progressed = true;
            }
        }
        for (id, abandoned) in finished {
            if let Some(conn) = self.conns.remove(&id)
                && abandoned
            {
                conn.abort();
            }
        }
        self.feed();
        progressed
    }

    /// Whether the application has answered what was published before a held protocol
    /// error: every subscriber has taken every event and come back for more (it wakes the
    /// loop then), and every command it sent before that has been taken and acted on, so
    /// its frames are in the connection's outbox, ahead of the failing close frame.
    fn caught_up(&mut self, cx: &mut Context<'_>) -> bool {
        // The commands taken in this round reach the connections first.
        self.drain();
        let Front::Handles { cmds, .. } = &self.front else {
            // An inline application's calls reached the session as it made them; it has
            // answered once it has taken every event and polls for more.
            return self.published.is_empty();
        };
        if !self.shared.caught_up(cx) {
            return false;
        }
        // A command sent before the subscriber came back (a `feed` is not waited for) and
        // not taken yet: take it in the next round.
        if !cmds.is_empty() {
            cx.waker().wake_by_ref();
            return false;
        }
        true
    }

    /// Aims the alarm at the session's next deadline and reports whether it fired (the
    /// session has then handled the timeout).
    fn poll_sleep(&mut self, cx: &mut Context<'_>) -> bool {
        // Timers produce events too (timeouts, reconnects): a full subscriber holds them
        // back like reading. Not once the session is over: then the only timers are close
        // timeouts, which produce no event and must not wait for a reader.
        // An inline application takes them when it polls again.
        if matches!(self.front, Front::Handles { .. })
            && !self.session.status().is_terminal()
            && !self.shared.have_room(cx, 0)
        {
            return false;
        }
        self.alarm.aim(self.session.poll_timeout(), &self.rt);
        if Pin::new(&mut self.alarm).poll(cx).is_pending() {
            return false;
        }
        self.now = self.rt.now();
        self.session.handle_timeout(self.now);
        true
    }

    /// Whether every open connection has written and flushed everything it was handed.
    pub(crate) fn is_written(&self) -> bool {
        self.conns.values().all(|c| c.is_written())
    }

    /// Reads the clock for a call the application makes between wake-ups.
    pub(crate) fn tick(&mut self) -> Instant {
        self.now = self.rt.now();
        self.now
    }

    /// `wait_open` callers waiting for the outcome (cancelled ones included until pruned).
    #[cfg(test)]
    pub(crate) fn open_waiters(&self) -> usize {
        self.open_waiters.len()
    }

    pub(crate) fn control(&mut self, ctl: Control) {
        let now = self.now;
        match ctl {
            Control::Close(code, reason, done) => {
                self.session.close(code, reason, now);
                self.close_waiters.push(done);
            }
            Control::Terminate => self.session.terminate(now),
            // Refused only once the session has ended, which the application hears of
            // through `Event::Ended`.
            Control::Disconnect => {
                let _ = self.session.on_demand(OnDemand::Disconnect, now);
            }
            Control::Resume => {
                let _ = self.session.on_demand(OnDemand::Resume, now);
            }
            Control::Reconnect => {
                let _ = self.session.on_demand(OnDemand::Reconnect, now);
            }
            Control::WaitOpen(w) => {
                if let Some(reason) = &self.ended {
                    let _ = w.send(Err(reason.clone()));
                } else if self.session.status() == Status::Open {
                    let _ = w.send(Ok(()));
                } else {
                    // A caller that gave up (its future dropped) leaves a cancelled
                    // sender: pruned whenever the list doubles, so callers that time out
                    // in a loop while the session cannot open do not grow it without
                    // bound, at amortised constant cost per call.
                    if self.open_waiters.len() >= self.prune_waiters_at {
                        self.open_waiters.retain(|w| !w.is_canceled());
                        self.prune_waiters_at = (2 * self.open_waiters.len()).max(16);
                    }
                    self.open_waiters.push(w);
                }
            }
        }
    }

    fn command(&mut self, cmd: Cmd<P>) {
        let now = self.now;
        match cmd {
            Cmd::Send(msg, ttl, reply) => {
                let _ = reply.send(self.session.send(msg, ttl, now));
            }
            Cmd::Feed(msg) => self.session.feed(msg, now),
            Cmd::Request {
                request,
                timeout,
                accepted,
                reply,
                events,
            } => match self.session.request(request, timeout, now) {
                Ok(id) => {
                    self.calls.insert(id, reply);
                    // A request that started no stream gets no events: dropping the sender
                    // ends the caller's events at once instead of leaving it waiting.
                    if let Some(events) = events
                        && self.session.request_has_stream(id)
                    {
                        self.streams.insert(id, events);
                    }
                    if let Some(accepted) = accepted {
                        let _ = accepted.send(id);
                    }
                }
                // A refused request is answered at once, through the same channel as a
                // response, so a plain request costs one hop back, not two.
                Err(e) => {
                    let _ = reply.send(Err(CallError::Refused(e)));
                }
            },
        }
    }

    /// Carries out every output, feeding back what acting on them learned (a write to a
    /// connection already gone fails), until the session has nothing more to say.
    pub(crate) fn drain(&mut self) {
        loop {
            while let Some(out) = self.session.poll_output() {
                self.act(out);
            }
            if self.inputs.is_empty() {
                break;
            }
            self.feed();
        }
        let bytes = std::mem::take(&mut self.read_bytes);
        if matches!(self.front, Front::Inline) {
            // Nothing to publish, and no mailbox to charge the bytes read to: the
            // application reads the session directly.
            return;
        }
        self.shared.publish(&mut self.published, bytes);
        self.shared
            .touch(self.session.last_activity(), self.session.queued());
    }

    /// Hands the session every input learned so far, in order. While streams have
    /// callers, the outputs of each data frame are carried out before the next input, so
    /// each stream event is charged with the size of the frame that produced it.
    fn feed(&mut self) {
        let now = self.now;
        let mut inputs = std::mem::take(&mut self.inputs);
        for input in inputs.drain(..) {
            let frame_bytes = match &input {
                Input::FrameReceived {
                    frame: InFrame::Text(b) | InFrame::Binary(b),
                    ..
                } if !self.streams.is_empty() => b.len(),
                _ => 0,
            };
            self.session.handle_input(input, now);
            if frame_bytes > 0 {
                self.frame_bytes = frame_bytes;
                while let Some(out) = self.session.poll_output() {
                    self.act(out);
                }
                self.frame_bytes = 0;
            }
        }
        // What acting learned goes after; the buffer keeps its allocation.
        inputs.append(&mut self.inputs);
        self.inputs = inputs;
    }

    fn act(&mut self, out: Output<P>) {
        match out {
            Output::OpenTransport { conn, attempt } => self.open(conn, attempt),
            Output::SendFrame {
                conn,
                frame,
                payload,
            } => match self.conns.get_mut(&conn) {
                Some(c) => c.send(frame, payload, &mut self.inputs),
                None => self.inputs.push(Input::WriteFailed { conn, frame }),
            },
            Output::CloseTransport { conn, code, reason } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.close(code, reason);
                }
            }
            Output::AbortTransport { conn } => {
                // Dropping the connection drops its socket (or its unfinished connect),
                // reset so the kernel does not keep sending to a peer given up on.
                let live = self.conns.remove(&conn).map(|c| c.abort()).is_some();
                tracing::debug!(%conn, live, "abort");
            }
            Output::StatusChanged { from, to } => {
                tracing::info!(%from, %to, "status");
                self.shared.set_status(to);
                self.published.push_back(Update::Status(to));
            }
            Output::Event(event) => self.event(event),
            _ => {}
        }
    }

    fn open(&mut self, conn: ConnId, attempt: u32) {
        tracing::info!(%conn, attempt, "connecting");
        let transport = self.transport.clone();
        let span = tracing::debug_span!("conn", %conn, attempt);
        let connecting =
            tracing::Instrument::instrument(async move { transport.connect(conn).await }, span);
        self.conns
            .insert(conn, Box::new(Conn::new(conn, connecting.boxed())));
    }

    fn event(&mut self, event: Event<P>) {
        match &event {
            Event::Opened { conn, attempt, .. } => {
                let subprotocol = self.conns.get(conn).and_then(|c| c.subprotocol());
                tracing::info!(%conn, attempt, subprotocol, "open");
                self.shared.set_subprotocol(subprotocol);
                for w in self.open_waiters.drain(..) {
                    let _ = w.send(Ok(()));
                }
            }
            Event::Ended(reason) => {
                tracing::info!(?reason, "ended");
                self.ended = Some(reason.clone());
                for w in self.open_waiters.drain(..) {
                    let _ = w.send(Err(reason.clone()));
                }
            }
            Event::AttemptFailed { error, retry, .. } => {
                tracing::info!(%error, retry_in = ?retry.map(|r| r.wait), "attempt failed");
            }
            Event::Disconnected { reason, retry, .. } => {
                tracing::info!(?reason, retry_in = ?retry.map(|r| r.wait), "disconnected");
            }
            Event::ClockJump { overshoot } => {
                // The host slept (or the process stalled): worth an operator's notice, as
                // the probe that follows may end the connection.
                tracing::info!(?overshoot, "clock jump; probing the peer");
            }
            // One line per message: a dropped message is lost data, and its id is what the
            // application can match; debug, as an overflow may drop many at once.
            Event::MessageDropped { id, reason } => {
                tracing::debug!(%id, ?reason, "message dropped");
            }
            Event::Response { id, result } => {
                if let Some(reply) = self.calls.remove(id) {
                    let _ = reply.send(result.clone().map_err(CallError::Failed));
                }
            }
            Event::Stream(ev) => {
                if let Some(id) = ev.request
                    && let Some(tx) = self.streams.get(&id)
                {
                    match tx.send(ev, self.frame_bytes) {
                        Sent::Queued if !ev.kind.is_terminal() => {}
                        Sent::Queued | Sent::Gone => {
                            self.streams.remove(&id);
                        }
                        // A consumer that does not keep up loses the rest of its stream
                        // rather than making the session buffer without bound; it was told
                        // so by a last event of its own.
                        Sent::Lagged => {
                            tracing::warn!(request = %id, "stream consumer lagging; subscription ended");
                            self.streams.remove(&id);
                        }
                    }
                }
            }
            _ => {}
        }
        self.published.push_back(Update::Event(event));
    }
}

#[cfg(test)]
mod tests {
    use tether_core::profiles::{HelloAck, Raw};

    use super::Driver;
    use crate::manual_rt::Manual;

    /// The size of what `f` returns, known from its type alone.
    fn output_size<A, O, F: FnOnce(A) -> O>(_: &F) -> usize {
        std::mem::size_of::<O>()
    }

    /// The loop's future holds its `Driver` once, plus a flag: every idle session's heap
    /// holds this future, and as an `async fn` taking the `Driver` by value it was twice
    /// that size.
    #[test]
    fn the_loop_future_holds_its_driver_once() {
        let raw = output_size(&|d: Driver<Raw, Manual>| d.run());
        assert!(raw <= size_of::<Driver<Raw, Manual>>() + 16, "{raw} bytes");
        let hello = output_size(&|d: Driver<HelloAck, Manual>| d.run());
        assert!(
            hello <= size_of::<Driver<HelloAck, Manual>>() + 16,
            "{hello} bytes"
        );
    }
}
