//! One connection generation: open it, then read and write independently, reporting every
//! fact to the session loop as an [`Input`].

use std::sync::Arc;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use tether_core::{CloseCode, ConnId, FrameId, Input, OutFrame};

use crate::transport::{Incoming, Outgoing, Transport};

/// What the session loop asks a connection task to write.
#[derive(Debug)]
pub(crate) enum ConnCmd {
    Send(FrameId, OutFrame),
    Close(CloseCode, String),
}

/// Opens `conn` and pumps frames until the connection ends or the task is aborted.
///
/// Reads and writes run concurrently in one task: a write the peer never drains leaves
/// reading untouched, and the session's send deadline aborts the whole task.
pub(crate) async fn run(
    conn: ConnId,
    transport: Arc<dyn Transport>,
    mut inputs: mpsc::Sender<Input>,
    mut cmds: mpsc::UnboundedReceiver<ConnCmd>,
) {
    let link = match transport.connect(conn).await {
        Ok(link) => link,
        Err(failure) => {
            let _ = inputs.send(Input::TransportFailed { conn, failure }).await;
            return;
        }
    };
    if inputs.send(Input::TransportOpened { conn }).await.is_err() {
        return;
    }
    let mut sink = link.sink;
    let mut stream = link.stream;
    let mut write_inputs = inputs.clone();
    let writer = async move {
        while let Some(cmd) = cmds.next().await {
            match cmd {
                ConnCmd::Send(frame, payload) => {
                    let input = match sink.send(Outgoing::Frame(payload)).await {
                        Ok(()) => Input::WriteCompleted { conn, frame },
                        Err(e) => {
                            tracing::debug!(%conn, %frame, error = %e, "write failed");
                            Input::WriteFailed { conn, frame }
                        }
                    };
                    let failed = matches!(input, Input::WriteFailed { .. });
                    if write_inputs.send(input).await.is_err() || failed {
                        break;
                    }
                }
                ConnCmd::Close(code, reason) => {
                    // The peer's answering close frame arrives through the reader.
                    let _ = sink.send(Outgoing::Close(code, reason)).await;
                }
            }
        }
        // Keep the sink (and so the socket's write half) alive until the reader is done.
        futures::future::pending::<()>().await;
    };
    let reader = async move {
        let (code, reason) = loop {
            match stream.next().await {
                Some(Ok(Incoming::Frame(frame))) => {
                    if inputs
                        .send(Input::FrameReceived { conn, frame })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Some(Ok(Incoming::Closed(code, reason))) => break (code, reason),
                Some(Err(e)) => {
                    tracing::debug!(%conn, error = %e, "read failed");
                    break (None, String::new());
                }
                None => break (None, String::new()),
            }
        };
        let _ = inputs
            .send(Input::TransportClosed { conn, code, reason })
            .await;
    };
    futures::pin_mut!(writer, reader);
    futures::future::select(writer, reader).await;
}
