//! The echo servers' accept loop: bind a free loopback port, print its URL, hand every
//! accepted socket to the server's handler, and exit by itself once no connection has
//! been open for the idle time (so a server left behind by a killed script goes away).

use std::future::Future;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::args::Args;

/// The options every echo server takes; `valued` in [`Args::parse`].
pub const VALUED: &[&str] = &["idle-exit"];

/// How long the servers wait with no connection open before exiting, by default. The
/// fuzzing client opens the next case's connection within milliseconds of the last one
/// closing, so only a run that is over (or a script that died) leaves a server idle.
pub const DEFAULT_IDLE_EXIT: Duration = Duration::from_secs(20);

/// How often the accept loop checks whether it has been idle long enough.
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// Tracks open connections and when the last one opened or closed.
#[derive(Debug)]
struct Activity {
    open: AtomicUsize,
    last: Mutex<Instant>,
}

impl Activity {
    fn touch(&self) {
        // Only this one-line critical section takes the lock; poisoning cannot leave the
        // instant half-written.
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(
            self.last
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .elapsed(),
        )
    }
}

/// Serves on `127.0.0.1:0` until idle for `idle_exit`. The URL goes to stdout as the
/// first line, `ws://127.0.0.1:PORT`, which the script waits for.
///
/// # Errors
///
/// Binding, or an accept error that is not about one connection.
pub async fn serve<F, Fut>(idle_exit: Duration, handle: F) -> io::Result<()>
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let mut stdout = io::stdout();
    writeln!(stdout, "ws://{}", listener.local_addr()?)?;
    stdout.flush()?;
    serve_on(listener, idle_exit, handle).await
}

/// [`serve`] on a listener already bound (and announced).
///
/// # Errors
///
/// None today: accept errors concern one connection and are logged; kept fallible so
/// that a listener failure can end the loop.
pub async fn serve_on<F, Fut>(
    listener: TcpListener,
    idle_exit: Duration,
    handle: F,
) -> io::Result<()>
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let activity = Arc::new(Activity {
        open: AtomicUsize::new(0),
        last: Mutex::new(Instant::now()),
    });
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    // One connection's failure (reset before accept, out of descriptors
                    // for a moment): the next accept may well work.
                    Err(e) => { eprintln!("accept: {e}"); continue; }
                };
                activity.open.fetch_add(1, Ordering::AcqRel);
                activity.touch();
                let served = handle(stream, peer);
                let activity = activity.clone();
                tokio::spawn(async move {
                    served.await;
                    activity.open.fetch_sub(1, Ordering::AcqRel);
                    activity.touch();
                });
            }
            () = tokio::time::sleep(IDLE_CHECK) => {
                if activity.idle_for().is_some_and(|idle| idle >= idle_exit) {
                    return Ok(());
                }
            }
        }
    }
}

/// The `main` of an echo server: `extra` are the server's own valued options; `start`
/// gets the parsed command line and returns the handler, or a usage error.
pub fn main_with<H, F, Fut>(extra: &[&str], start: H) -> ExitCode
where
    H: FnOnce(&Args) -> Result<F, String>,
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let valued: Vec<&str> = VALUED.iter().chain(extra).copied().collect();
    let parsed = Args::parse(std::env::args().skip(1), &valued, &["verbose"]).and_then(|a| {
        let idle = a.seconds("idle-exit", DEFAULT_IDLE_EXIT)?;
        let handler = start(&a)?;
        Ok((idle, handler))
    });
    let (idle, handler) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    crate::exit_code("serve", serve(idle, handler))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server exits by itself once idle, not while a connection is open: a client
    /// holds a connection past the idle time, and the server stops one idle time after
    /// that connection ends (on tokio's paused clock: no real waiting).
    #[test]
    fn exits_when_idle_and_not_before() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let idle = Duration::from_secs(5);
            let hold = Duration::from_secs(8);
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
            // Connected before the loop starts (the kernel completes it in the backlog),
            // so the first accept finds it before any virtual time passes.
            let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let started = Instant::now();
            serve_on(listener, idle, move |_stream, _peer| {
                tokio::time::sleep(hold)
            })
            .await
            .unwrap();
            let took = started.elapsed();
            assert!(took >= hold + idle, "stopped after {took:?}");
            assert!(
                took < hold + idle + IDLE_CHECK * 3,
                "stopped after {took:?}"
            );
            drop(client);
        });
    }

    #[test]
    fn activity_counts_open_connections() {
        let a = Activity {
            open: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        };
        assert!(a.idle_for().is_some());
        a.open.fetch_add(1, Ordering::AcqRel);
        assert_eq!(a.idle_for(), None);
    }
}
