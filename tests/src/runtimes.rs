//! The runtimes every socket test runs on: one trait, implemented once for tokio and once
//! for smol, so the loopback, interop and OpenClaw suites run the same scenario on both.

use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use tether_core::Config;
use tether_driver::{Client, ConnectError, SendProtocol};

/// What a scenario needs from the adapter under test.
pub trait TestRuntime: Copy + Send + Sync + 'static {
    /// The runtime's name, for failure messages.
    fn name(&self) -> &'static str;
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

/// The seed of sessions started with [`TestRuntime::start`]: fixed, so a failure replays.
const SEED: u64 = 0x7e7e;

/// tokio, through `tether-tokio`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OnTokio;

impl TestRuntime for OnTokio {
    fn name(&self) -> &'static str {
        "tokio"
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
    fn name(&self) -> &'static str {
        "smol"
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
