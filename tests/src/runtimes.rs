//! The runtimes every socket test runs on: one trait, implemented once for tokio and once
//! for smol, so the loopback, interop and OpenClaw suites run the same scenario on both.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use tether_core::Config;
use tether_driver::server::{GuardConfig, Guarded};
use tether_driver::{Client, ConnectError, SendProtocol};

/// What a scenario needs from the adapter under test.
pub trait TestRuntime: Copy + Send + Sync + 'static {
    /// The adapter's runtime.
    type Runtime: tether_driver::Runtime;
    /// The adapter's dialer.
    type Dial: tether_driver::Dial;
    /// The runtime's name, for failure messages.
    fn name(&self) -> &'static str;
    /// The adapter's front door: `tether_tokio::builder(url)` or `tether_smol::builder(url)`.
    fn builder(&self, url: &str) -> tether_driver::Builder<Self::Runtime, Self::Dial>;
    /// The adapter's `connect`: start a session and wait for the first connect's outcome.
    fn connect<P: SendProtocol>(
        &self,
        url: &str,
        config: Config,
        protocol: P,
    ) -> BoxFuture<'static, Result<Client<P>, ConnectError>>;
    /// Starts a session over the adapter's transport without waiting for it to open.
    ///
    /// # Errors
    ///
    /// An invalid configuration or URL.
    fn start<P: SendProtocol>(
        &self,
        url: &str,
        config: Config,
        protocol: P,
    ) -> Result<Client<P>, ConnectError>;
    /// The runtime's sleep.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
    /// The clock the scenario measures with.
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Accepting one guarded connection through the adapter under test.
pub trait AcceptOne: TestRuntime {
    /// Listens on a free port of 127.0.0.1, accepts one connection through the
    /// adapter's `server::accept` with `config`, and runs `app` on it in a task of the
    /// runtime. Returns the address to connect to.
    fn accept_one<F, Fut>(&self, config: GuardConfig, app: F) -> SocketAddr
    where
        F: FnOnce(Guarded) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static;
}

impl AcceptOne for OnTokio {
    fn accept_one<F, Fut>(&self, config: GuardConfig, app: F) -> SocketAddr
    where
        F: FnOnce(Guarded) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let std = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        std.set_nonblocking(true).expect("nonblocking");
        let addr = std.local_addr().expect("address");
        tokio::spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std).expect("listener");
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            if let Ok(conn) = tether_tokio::server::accept(stream, config).await {
                app(conn).await;
            }
        });
        addr
    }
}

impl AcceptOne for OnSmol {
    fn accept_one<F, Fut>(&self, config: GuardConfig, app: F) -> SocketAddr
    where
        F: FnOnce(Guarded) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let std = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = std.local_addr().expect("address");
        smol::spawn(async move {
            let listener = smol::net::TcpListener::try_from(std).expect("listener");
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            if let Ok(conn) = tether_smol::server::accept(stream, config).await {
                app(conn).await;
            }
        })
        .detach();
        addr
    }
}

/// The seed of sessions started with [`TestRuntime::start`]: fixed, so a failure replays.
const SEED: u64 = 0x7e7e;

/// tokio, through `tether-tokio`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OnTokio;

impl TestRuntime for OnTokio {
    type Runtime = tether_tokio::Tokio;
    type Dial = tether_tokio::TcpDial;

    fn name(&self) -> &'static str {
        "tokio"
    }

    fn builder(&self, url: &str) -> tether_tokio::Builder {
        tether_tokio::builder(url)
    }

    fn connect<P: SendProtocol>(
        &self,
        url: &str,
        config: Config,
        protocol: P,
    ) -> BoxFuture<'static, Result<Client<P>, ConnectError>> {
        let url = url.to_owned();
        Box::pin(async move { tether_tokio::connect(&url, config, protocol).await })
    }

    fn start<P: SendProtocol>(
        &self,
        url: &str,
        config: Config,
        protocol: P,
    ) -> Result<Client<P>, ConnectError> {
        let transport = tether_tokio::WsTransport::new(tether_tokio::TcpDial, url)?;
        Client::start(
            tether_tokio::Tokio,
            transport,
            config,
            protocol,
            SEED,
            "test",
        )
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// smol, through `tether-smol`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OnSmol;

impl TestRuntime for OnSmol {
    type Runtime = tether_smol::Smol;
    type Dial = tether_smol::TcpDial;

    fn name(&self) -> &'static str {
        "smol"
    }

    fn builder(&self, url: &str) -> tether_smol::Builder {
        tether_smol::builder(url)
    }

    fn connect<P: SendProtocol>(
        &self,
        url: &str,
        config: Config,
        protocol: P,
    ) -> BoxFuture<'static, Result<Client<P>, ConnectError>> {
        let url = url.to_owned();
        Box::pin(async move { tether_smol::connect(&url, config, protocol).await })
    }

    fn start<P: SendProtocol>(
        &self,
        url: &str,
        config: Config,
        protocol: P,
    ) -> Result<Client<P>, ConnectError> {
        let transport = tether_smol::WsTransport::new(tether_smol::TcpDial, url)?;
        Client::start(tether_smol::Smol, transport, config, protocol, SEED, "test")
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        smol::Timer::after(duration).map(|_| ()).boxed()
    }
}

/// `fut`, or a panic naming the runtime and `what` after `limit`: every wait in a socket
/// test is bounded.
pub async fn within<R: TestRuntime, T>(
    rt: &R,
    limit: Duration,
    what: &str,
    fut: impl Future<Output = T>,
) -> T {
    match futures::future::select(std::pin::pin!(fut), rt.sleep(limit)).await {
        futures::future::Either::Left((v, _)) => v,
        futures::future::Either::Right(_) => {
            panic!("[{}] {what}: not within {limit:?}", rt.name())
        }
    }
}

/// Runs a scenario `async fn scenario<R: …>(rt: R)` as two tests: `$tokio` on a
/// two-worker tokio runtime and `$smol` under `smol::block_on`.
///
/// ```ignore
/// tether_tests::on_both_runtimes!(bad_upgrades_get_an_http_answer:
///     tokio_bad_upgrades_get_an_http_answer, smol_bad_upgrades_get_an_http_answer);
/// ```
#[macro_export]
macro_rules! on_both_runtimes {
    ($scenario:ident: $tokio:ident, $smol:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $tokio() {
            $scenario($crate::runtimes::OnTokio).await;
        }

        #[test]
        fn $smol() {
            smol::block_on($scenario($crate::runtimes::OnSmol));
        }
    };
}
