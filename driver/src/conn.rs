//! One connection, polled by the loop that owns it (a client session's generation, or a
//! guarded server connection): opening it, reading from
//! it and writing to it are three independent steps of one `poll`, so a write the peer
//! never drains leaves reading untouched, and the session's send deadline drops the whole
//! connection.
//!
//! Polling the socket in the session's own task (rather than in a task per connection)
//! saves every frame two task hops and a channel: a frame read is handed to the session
//! at once, and a batch of frames the session wants written goes out with one flush.

use std::collections::VecDeque;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tether_core::{CloseCode, ConnId, FrameId, InFrame, Input, OutFrame, TransportFailure};

use crate::transport::{FrameSink, FrameStream, Incoming, Link, Outgoing, dropped};

/// Frames read from one connection before the loop looks at its other sources again.
const READ_BUDGET: usize = 64;

/// What is waiting to be written, in order.
enum Queued {
    Frame(FrameId, OutFrame),
    Close(CloseCode, String),
}

enum State {
    Connecting(BoxFuture<'static, Result<Link, TransportFailure>>),
    Open {
        stream: FrameStream,
        writer: Writer,
        reset: Option<crate::Reset>,
        /// A protocol error read and not yet reported (see [`Conn::poll`]).
        held: Option<Held>,
    },
    /// The session has been told the connection ended (the peer's close frame, or a
    /// protocol error); the link finishes the close handshake (its answering close frame,
    /// or the 1002/1007/1009 it fails the connection with) as its stream is polled to the
    /// end. Nothing more is written or reported; `linger` bounds the wait.
    Ending {
        stream: FrameStream,
        linger: Option<BoxFuture<'static, ()>>,
        reset: Option<crate::Reset>,
    },
}

impl State {
    fn open(link: Link) -> Self {
        State::Open {
            stream: link.stream,
            writer: Writer {
                sink: link.sink,
                unflushed: Vec::new(),
                dirty: false,
                broken: false,
            },
            reset: link.reset,
            held: None,
        }
    }
}

/// A protocol error held back until the application has answered what came before it:
/// the session is not told yet and the link's stream is not polled (polling it would send
/// the failing close frame), while writing goes on.
struct Held {
    input: Input,
    /// Bounds the hold, once armed by [`Conn::bound_hold`].
    bound: Option<BoxFuture<'static, ()>>,
}

/// The write half and what it has been handed.
struct Writer {
    sink: FrameSink,
    /// Frames handed to the sink but not yet flushed.
    unflushed: Vec<FrameId>,
    /// Whether anything was handed to the sink since the last completed flush.
    dirty: bool,
    /// The write half failed: every later frame fails at once.
    broken: bool,
}

/// A connection the session opened and has not yet seen end.
pub(crate) struct Conn {
    id: ConnId,
    state: State,
    outbox: VecDeque<Queued>,
    /// Something was queued or the connection was created since the last poll, so a poll
    /// is owed to start writing (or connecting) and register interest.
    news: bool,
    /// The subprotocol the upgrade negotiated, once open.
    subprotocol: Option<String>,
}

/// What one poll of a connection did.
pub(crate) struct Step {
    /// Something happened (an input was produced or a write went out): poll again.
    pub(crate) progressed: bool,
    /// The connection has ended (its last input is among those produced): drop it.
    pub(crate) finished: bool,
    /// The session has just been told the connection ended, and the link is finishing
    /// its close handshake: arm [`Conn::linger`].
    pub(crate) ending: bool,
    /// With `finished`: the peer never finished the close handshake within the linger,
    /// so the connection is [aborted](Conn::abort) rather than dropped.
    pub(crate) abandoned: bool,
    /// Payload bytes of the data frames read in this poll.
    pub(crate) read: usize,
    /// A protocol error has just been read and is held back: arm [`Conn::bound_hold`].
    pub(crate) holding: bool,
}

/// Where an ending link's close handshake stands.
enum Ending {
    /// The peer has not finished it yet.
    Waiting,
    /// The stream ended: the handshake is over.
    Done,
    /// The linger ran out first: the peer never finished it.
    Expired,
}

impl Conn {
    /// A connection being opened by `connecting`.
    pub(crate) fn new(
        id: ConnId,
        connecting: BoxFuture<'static, Result<Link, TransportFailure>>,
    ) -> Self {
        Conn {
            id,
            state: State::Connecting(connecting),
            outbox: VecDeque::new(),
            news: true,
            subprotocol: None,
        }
    }

    /// A connection already open (a server's accepted one): no `TransportOpened` is
    /// reported for it.
    pub(crate) fn open(id: ConnId, link: Link) -> Self {
        Conn {
            id,
            subprotocol: link.subprotocol.clone(),
            state: State::open(link),
            outbox: VecDeque::new(),
            news: true,
        }
    }

    /// Drops the data frames queued and not yet handed to the socket: a server that
    /// closes waits for nothing but the peer's close frame. Nothing is reported for them.
    pub(crate) fn discard_queued(&mut self) {
        self.outbox.retain(|q| matches!(q, Queued::Close(..)));
    }

    /// Whether the session has been told the connection ended and the link is finishing
    /// the close handshake.
    pub(crate) fn is_ending(&self) -> bool {
        matches!(self.state, State::Ending { .. })
    }

    /// The subprotocol the upgrade negotiated (none before it opened).
    pub(crate) fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// Queues a frame; it is written on the next poll (a frame for a connection still
    /// opening waits for it to open).
    pub(crate) fn send(&mut self, frame: FrameId, payload: OutFrame, inputs: &mut Vec<Input>) {
        match self.state {
            State::Open {
                writer: Writer { broken: true, .. },
                ..
            } => inputs.push(Input::WriteFailed {
                conn: self.id,
                frame,
            }),
            // The session already knows this connection ended.
            State::Ending { .. } => {}
            _ => {
                self.outbox.push_back(Queued::Frame(frame, payload));
                self.news = true;
            }
        }
    }

    /// Drops the connection at once, resetting its socket (`SO_LINGER` 0) so the kernel
    /// stops delivering what the peer will never read.
    pub(crate) fn abort(self) {
        if let State::Open { reset, .. } | State::Ending { reset, .. } = self.state
            && let Some(reset) = reset
        {
            reset.now();
        }
    }

    /// Bounds the close handshake the link is finishing: when `sleep` completes, the
    /// connection is dropped whatever the peer did.
    pub(crate) fn linger(&mut self, sleep: BoxFuture<'static, ()>) {
        if let State::Ending { linger, .. } = &mut self.state {
            *linger = Some(sleep);
        }
    }

    /// Bounds how long a protocol error is held back (see [`Conn::poll`]): when `sleep`
    /// completes, it is reported whether or not the application has caught up.
    pub(crate) fn bound_hold(&mut self, sleep: BoxFuture<'static, ()>) {
        if let State::Open {
            held: Some(held), ..
        } = &mut self.state
        {
            held.bound = Some(sleep);
        }
    }

    /// Whether a protocol error is held back, waiting for the application to catch up.
    pub(crate) fn is_holding(&self) -> bool {
        matches!(self.state, State::Open { held: Some(_), .. })
    }

    /// Queues a close frame. The peer's answering close arrives through reading.
    pub(crate) fn close(&mut self, code: CloseCode, reason: String) {
        if !matches!(self.state, State::Ending { .. }) {
            self.outbox.push_back(Queued::Close(code, reason));
            self.news = true;
        }
    }

    /// Whether everything handed to the connection has been written and flushed (true of
    /// one not open: it takes no frames).
    pub(crate) fn is_written(&self) -> bool {
        match &self.state {
            State::Open { writer, .. } => self.outbox.is_empty() && !writer.dirty,
            State::Connecting(_) | State::Ending { .. } => true,
        }
    }

    /// Whether the connection must be polled before the loop may sleep: it was created or
    /// given something to write since its last poll.
    pub(crate) fn has_news(&self) -> bool {
        self.news
    }

    /// Advances the connection as far as it can go without waiting, appending every fact
    /// it learns to `inputs` in the order it learned them. Reading stops after the frame
    /// that brings the payload bytes read ([`Step::read`]) to `read`; with `read` zero,
    /// frames stay unread (the subscribers are full); opening and writing go on.
    ///
    /// A protocol error the peer sent after valid messages is held back
    /// ([`Step::holding`]) until `caught_up` (the application has taken every event
    /// published before it and come back for more) or the hold's bound expires: the
    /// application's answers to those messages (an echo, a response) are written before
    /// the close frame that fails the connection, as a peer that processes messages
    /// inline would. Writing goes on meanwhile; reading does not.
    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        read: usize,
        caught_up: bool,
        inputs: &mut Vec<Input>,
    ) -> Step {
        let conn = self.id;
        self.news = false;
        let mut step = Step {
            progressed: false,
            finished: false,
            ending: false,
            abandoned: false,
            read: 0,
            holding: false,
        };
        if let State::Ending { stream, linger, .. } = &mut self.state {
            let ending = finish_ending(cx, stream, linger.as_mut());
            step.finished = !matches!(ending, Ending::Waiting);
            step.progressed = step.finished;
            step.abandoned = matches!(ending, Ending::Expired);
            return step;
        }
        if let State::Connecting(connecting) = &mut self.state {
            match connecting.as_mut().poll(cx) {
                Poll::Pending => return step,
                Poll::Ready(Err(failure)) => {
                    inputs.push(Input::TransportFailed { conn, failure });
                    step.progressed = true;
                    step.finished = true;
                    return step;
                }
                Poll::Ready(Ok(mut link)) => {
                    inputs.push(Input::TransportOpened { conn });
                    step.progressed = true;
                    self.subprotocol = link.subprotocol.take();
                    self.state = State::open(link);
                }
            }
        }
        let State::Open {
            stream,
            writer,
            held,
            ..
        } = &mut self.state
        else {
            return step;
        };
        // Writing first: a frame queued by the last input goes out before more is read.
        if !writer.broken && writer.write(cx, conn, &mut self.outbox, inputs) {
            step.progressed = true;
        }
        if writer.broken {
            // Everything still queued would be written to a dead half: fail it now.
            for queued in self.outbox.drain(..) {
                if let Queued::Frame(frame, _) = queued {
                    inputs.push(Input::WriteFailed { conn, frame });
                    step.progressed = true;
                }
            }
        }
        if let Some(h) = held {
            let expired = h
                .bound
                .as_mut()
                .is_some_and(|bound| bound.as_mut().poll(cx).is_ready());
            if !(caught_up || expired) {
                return step;
            }
            if let Some(h) = held.take() {
                step.progressed = true;
                self.end(cx, h.input, true, &mut step, inputs);
            }
            return step;
        }
        for _ in 0..READ_BUDGET {
            if step.read >= read {
                break;
            }
            let ended = match stream.as_mut().poll_next(cx) {
                Poll::Pending => break,
                Poll::Ready(Some(Ok(Incoming::Frame(frame)))) => {
                    if let InFrame::Text(b) | InFrame::Binary(b) = &frame {
                        step.read = step.read.saturating_add(b.len());
                    }
                    inputs.push(Input::FrameReceived { conn, frame });
                    None
                }
                // A protocol error after messages of this poll: held back until the
                // application has answered them.
                Poll::Ready(Some(Ok(ending))) if ending.is_unanswered_violation() => {
                    *held = Some(Held {
                        input: ending.into_input(conn),
                        bound: None,
                    });
                    step.progressed = true;
                    step.holding = true;
                    return step;
                }
                // The peer's close frame, or its protocol error: the link finishes the
                // close handshake as it is polled on.
                Poll::Ready(Some(Ok(ending))) => Some((ending.into_input(conn), true)),
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!(%conn, error = %e, "read failed");
                    Some((dropped(conn), false))
                }
                Poll::Ready(None) => Some((dropped(conn), false)),
            };
            step.progressed = true;
            if let Some((input, handshake)) = ended {
                self.end(cx, input, handshake, &mut step, inputs);
                break;
            }
        }
        step
    }

    /// Reports the connection's end to the session (`input`) and, when the link finishes a
    /// close handshake (`handshake`), moves to [`State::Ending`] and starts it at once, so
    /// the answer usually leaves in this same poll.
    fn end(
        &mut self,
        cx: &mut Context<'_>,
        input: Input,
        handshake: bool,
        step: &mut Step,
        inputs: &mut Vec<Input>,
    ) {
        inputs.push(input);
        self.outbox.clear();
        if !handshake {
            step.finished = true;
            return;
        }
        let State::Open { stream, reset, .. } =
            std::mem::replace(&mut self.state, State::Connecting(Box::pin(pending())))
        else {
            return;
        };
        let mut stream = stream;
        if let Ending::Waiting = finish_ending(cx, &mut stream, None) {
            step.ending = true;
            self.state = State::Ending {
                stream,
                linger: None,
                reset,
            };
        } else {
            step.finished = true;
        }
    }
}

/// A never-ready stand-in while a state is moved out.
fn pending() -> impl std::future::Future<Output = Result<Link, TransportFailure>> + Send {
    futures::future::pending()
}

/// Polls an ending link's stream towards its end (discarding what it yields), then its
/// linger, if armed. An expired linger is a peer that never finished the handshake: the
/// caller aborts the connection.
fn finish_ending(
    cx: &mut Context<'_>,
    stream: &mut FrameStream,
    linger: Option<&mut BoxFuture<'static, ()>>,
) -> Ending {
    let mut budget = READ_BUDGET;
    loop {
        match stream.as_mut().poll_next(cx) {
            Poll::Pending => break,
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(Some(Err(_)) | None) => return Ending::Done,
        }
        budget -= 1;
        if budget == 0 {
            // More is readable: come back after the loop's other sources.
            cx.waker().wake_by_ref();
            break;
        }
    }
    match linger.map(|sleep| sleep.as_mut().poll(cx)) {
        Some(Poll::Ready(())) => Ending::Expired,
        _ => Ending::Waiting,
    }
}

impl Writer {
    /// Hands queued frames to the sink while it is ready, then flushes; every frame of a
    /// completed flush is reported written. Returns whether anything happened.
    fn write(
        &mut self,
        cx: &mut Context<'_>,
        conn: ConnId,
        outbox: &mut VecDeque<Queued>,
        inputs: &mut Vec<Input>,
    ) -> bool {
        let Writer {
            sink,
            unflushed,
            dirty,
            broken,
        } = self;
        let mut progressed = false;
        let mut failed = false;
        while !outbox.is_empty() {
            match sink.as_mut().poll_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(Err(e)) => {
                    tracing::debug!(%conn, error = %e, "write failed");
                    failed = true;
                    break;
                }
                Poll::Ready(Ok(())) => {}
            }
            // Invariant: the loop runs only while the outbox is not empty.
            let Some(queued) = outbox.pop_front() else {
                break;
            };
            let (frame, out) = match queued {
                Queued::Frame(frame, payload) => (Some(frame), Outgoing::Frame(payload)),
                Queued::Close(code, reason) => (None, Outgoing::Close(code, reason)),
            };
            progressed = true;
            *dirty = true;
            if let Err(e) = sink.as_mut().start_send(out) {
                tracing::debug!(%conn, error = %e, "write failed");
                if let Some(frame) = frame {
                    inputs.push(Input::WriteFailed { conn, frame });
                }
                failed = true;
                break;
            }
            unflushed.extend(frame);
        }
        if !failed && *dirty {
            match sink.as_mut().poll_flush(cx) {
                Poll::Pending => {}
                Poll::Ready(Ok(())) => {
                    *dirty = false;
                    progressed = true;
                    inputs.extend(
                        unflushed
                            .drain(..)
                            .map(|frame| Input::WriteCompleted { conn, frame }),
                    );
                }
                Poll::Ready(Err(e)) => {
                    tracing::debug!(%conn, error = %e, "write failed");
                    failed = true;
                }
            }
        }
        if failed {
            progressed = true;
            *dirty = false;
            inputs.extend(
                unflushed
                    .drain(..)
                    .map(|frame| Input::WriteFailed { conn, frame }),
            );
            // The caller fails whatever is still queued.
            *broken = true;
        }
        progressed
    }
}
