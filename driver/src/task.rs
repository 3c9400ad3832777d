//! The session loop: one task owns the `Session`, feeds it one thing at a time (a command,
//! a transport input or an expired deadline), drains its outputs and carries them out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::channel::{mpsc, oneshot};
use futures::future::{AbortHandle, Abortable, BoxFuture, Fuse, FutureExt};
use futures::{StreamExt, select_biased};
use tether_core::{
    CloseCode, ConnId, EndReason, Event, Input, Output, Protocol, RequestFailure, RequestId,
    Session, Status, StreamEvent,
};

use crate::client::{Cmd, Control, Shared};
use crate::conn::{self, ConnCmd};
use crate::runtime::Runtime;
use crate::transport::Transport;

/// Frames and reports in flight from connection tasks to the loop. A full channel makes
/// the readers wait, which pushes back on the socket instead of buffering without bound.
const INPUT_CAPACITY: usize = 256;

type Reply<P> = oneshot::Sender<
    Result<<P as Protocol>::Response, RequestFailure<<P as Protocol>::RemoteError>>,
>;

struct ConnCtl {
    tx: mpsc::UnboundedSender<ConnCmd>,
    abort: AbortHandle,
}

pub(crate) struct Driver<P: Protocol, R: Runtime> {
    pub(crate) session: Session<P>,
    pub(crate) rt: R,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) shared: Arc<Shared<P>>,
    pub(crate) cmds: mpsc::Receiver<Cmd<P>>,
    pub(crate) control: mpsc::UnboundedReceiver<Control>,
    inputs_tx: mpsc::Sender<Input>,
    inputs_rx: mpsc::Receiver<Input>,
    conns: BTreeMap<ConnId, ConnCtl>,
    calls: BTreeMap<RequestId, Reply<P>>,
    streams: BTreeMap<RequestId, mpsc::Sender<StreamEvent<P::Inbound>>>,
    open_waiters: Vec<oneshot::Sender<Result<(), EndReason>>>,
    close_waiters: Vec<oneshot::Sender<()>>,
    ended: Option<EndReason>,
    sleep: Option<(Instant, Fuse<BoxFuture<'static, ()>>)>,
}

impl<P: crate::connect::SendProtocol, R: Runtime> Driver<P, R> {
    pub(crate) fn new(
        session: Session<P>,
        rt: R,
        transport: Arc<dyn Transport>,
        shared: Arc<Shared<P>>,
        cmds: mpsc::Receiver<Cmd<P>>,
        control: mpsc::UnboundedReceiver<Control>,
    ) -> Self {
        let (inputs_tx, inputs_rx) = mpsc::channel(INPUT_CAPACITY);
        Driver {
            session,
            rt,
            transport,
            shared,
            cmds,
            control,
            inputs_tx,
            inputs_rx,
            conns: BTreeMap::new(),
            calls: BTreeMap::new(),
            streams: BTreeMap::new(),
            open_waiters: Vec::new(),
            close_waiters: Vec::new(),
            ended: None,
            sleep: None,
        }
    }

    /// Runs the session until it has ended, its transports are gone and every client
    /// handle is dropped.
    pub(crate) async fn run(mut self) {
        let now = self.rt.now();
        if let Err(e) = self.session.connect(now) {
            tracing::debug!(error = %e, "connect refused");
        }
        let mut handles_gone = false;
        loop {
            self.drain();
            if self.session.is_closed() {
                for w in self.close_waiters.drain(..) {
                    let _ = w.send(());
                }
                if handles_gone {
                    return;
                }
            }
            // Keep an armed sleep while it fires no later than the next deadline: deadlines
            // move later on almost every frame (liveness, send deadline), and a sleep that
            // fires early is only a spurious `handle_timeout`, which the session allows.
            match self.session.poll_timeout() {
                None => self.sleep = None,
                Some(deadline)
                    if self
                        .sleep
                        .as_ref()
                        .is_none_or(|(armed, _)| *armed > deadline) =>
                {
                    self.sleep = Some((deadline, self.rt.sleep_until(deadline).fuse()));
                }
                Some(_) => {}
            }
            let mut never = Fuse::terminated();
            let mut sleep = match &mut self.sleep {
                Some((_, s)) => s,
                None => &mut never,
            };
            select_biased! {
                ctl = self.control.next() => {
                    if let Some(ctl) = ctl {
                        self.control(ctl);
                    }
                }
                input = self.inputs_rx.next() => {
                    // Invariant: the loop holds a sender, so the channel never ends.
                    if let Some(input) = input {
                        self.input(input);
                    }
                }
                cmd = self.cmds.next() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => {
                        // Every handle is gone: nobody can use the session any more.
                        handles_gone = true;
                        let now = self.rt.now();
                        self.session.close(CloseCode::GOING_AWAY, "client dropped", now);
                    }
                },
                () = sleep => {
                    self.sleep = None;
                    let now = self.rt.now();
                    self.session.handle_timeout(now);
                }
            }
        }
    }

    fn input(&mut self, input: Input) {
        if let Input::TransportClosed { conn, .. } | Input::TransportFailed { conn, .. } = &input {
            // The connection task has finished by itself.
            self.conns.remove(conn);
        }
        let now = self.rt.now();
        self.session.handle_input(input, now);
    }

    fn control(&mut self, ctl: Control) {
        let now = self.rt.now();
        match ctl {
            Control::Close(code, reason, done) => {
                self.session.close(code, reason, now);
                self.close_waiters.push(done);
            }
            Control::Terminate => self.session.terminate(now),
            Control::WaitOpen(w) => {
                if let Some(reason) = &self.ended {
                    let _ = w.send(Err(reason.clone()));
                } else if self.session.status() == Status::Open {
                    let _ = w.send(Ok(()));
                } else {
                    self.open_waiters.push(w);
                }
            }
        }
    }

    fn command(&mut self, cmd: Cmd<P>) {
        let now = self.rt.now();
        match cmd {
            Cmd::Send(msg, reply) => {
                let _ = reply.send(self.session.send(msg, now));
            }
            Cmd::Request {
                request,
                timeout,
                accepted,
                reply,
                events,
            } => match self.session.request(request, timeout, now) {
                Ok(id) => {
                    self.calls.insert(id, reply);
                    if let Some(events) = events {
                        self.streams.insert(id, events);
                    }
                    let _ = accepted.send(Ok(id));
                }
                Err(e) => {
                    let _ = accepted.send(Err(e));
                }
            },
        }
    }

    fn drain(&mut self) {
        while let Some(out) = self.session.poll_output() {
            self.act(out);
        }
        self.shared.touch(self.session.last_activity());
    }

    fn act(&mut self, out: Output<P>) {
        match out {
            Output::OpenTransport { conn, attempt } => self.open(conn, attempt),
            Output::SendFrame {
                conn,
                frame,
                payload,
            } => match self.conns.get(&conn) {
                Some(c) => {
                    let _ = c.tx.unbounded_send(ConnCmd::Send(frame, payload));
                }
                None => {
                    let now = self.rt.now();
                    self.session
                        .handle_input(Input::WriteFailed { conn, frame }, now);
                }
            },
            Output::CloseTransport { conn, code, reason } => {
                if let Some(c) = self.conns.get(&conn) {
                    let _ = c.tx.unbounded_send(ConnCmd::Close(code, reason));
                }
            }
            Output::AbortTransport { conn } => {
                if let Some(c) = self.conns.remove(&conn) {
                    tracing::debug!(%conn, "abort");
                    c.abort.abort();
                }
            }
            Output::StatusChanged { from, to } => {
                tracing::info!(%from, %to, "status");
                self.shared.set_status(to);
            }
            Output::Event(event) => self.event(event),
            _ => {}
        }
    }

    fn open(&mut self, conn: ConnId, attempt: u32) {
        tracing::info!(%conn, attempt, "connecting");
        let (tx, rx) = mpsc::unbounded();
        let (abort, registration) = AbortHandle::new_pair();
        let task = conn::run(conn, self.transport.clone(), self.inputs_tx.clone(), rx);
        let span = tracing::debug_span!("conn", %conn, attempt);
        let task = tracing::Instrument::instrument(Abortable::new(task, registration), span);
        self.rt.spawn(task.map(|_| ()).boxed());
        self.conns.insert(conn, ConnCtl { tx, abort });
    }

    fn event(&mut self, event: Event<P>) {
        match &event {
            Event::Opened { conn, attempt, .. } => {
                tracing::info!(%conn, attempt, "open");
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
            Event::Response { id, result } => {
                if let Some(reply) = self.calls.remove(id) {
                    let _ = reply.send(result.clone());
                }
            }
            Event::Stream(ev) => {
                if let Some(id) = ev.request {
                    let terminal = ev.kind.is_terminal();
                    if let Some(tx) = self.streams.get_mut(&id)
                        && tx.try_send(ev.clone()).is_err()
                    {
                        // A consumer that does not keep up loses its stream rather than
                        // making the session buffer without bound.
                        tracing::warn!(request = %id, "stream consumer lagging; subscription dropped");
                        self.streams.remove(&id);
                    }
                    if terminal {
                        self.streams.remove(&id);
                    }
                }
            }
            _ => {}
        }
        self.shared.publish(event);
    }
}
