//! The front door: every option of a client session in one place, the same on every
//! runtime. The adapters' `tether_tokio::builder(url)` and `tether_smol::builder(url)` are
//! this with their runtime and dialer.

use std::sync::Arc;

use tether_core::profiles::Raw;
use tether_core::{Config, ConnId};

use crate::client::Client;
use crate::connect::os_seed;
use crate::error::ConnectError;
use crate::inline::Inline;
use crate::proxy::Proxy;
use crate::record::{Options, Recordable, Recorder};
use crate::runtime::Runtime;
use crate::send_protocol::SendProtocol;
use crate::ws::{Dial, HeaderFn, WsTransport};

/// Builds a client session to a WebSocket URL: protocol, configuration, upgrade headers
/// (fixed or computed per attempt), subprotocols, recording and seed. Made by an
/// adapter's `builder(url)`; ends with [`connect`](Self::connect) (wait for the first
/// connect's outcome) or [`start`](Self::start) (the handle at once).
///
/// | option | default |
/// |---|---|
/// | [`protocol`](Self::protocol) | [`Raw`]: frames in, frames out |
/// | [`config`](Self::config) | [`Config::default()`] |
/// | [`header`](Self::header), [`headers_with`](Self::headers_with) | none |
/// | [`subprotocols`](Self::subprotocols) | none offered |
/// | [`record`](Self::record) | no recording |
/// | [`subscriber_bytes`](Self::subscriber_bytes) | [`SUBSCRIBER_BYTES`](crate::SUBSCRIBER_BYTES) (8 MiB) |
/// | [`seed`](Self::seed) | from the OS ([`os_seed`]) |
/// | `tls` (feature `rustls`) | [`Tls::webpki_roots`](crate::Tls::webpki_roots) for `wss://` |
/// | [`proxy`](Self::proxy), [`proxy_from_env`](Self::proxy_from_env) | none: direct |
///
/// Nothing is checked until `connect` or `start`: a bad URL, header or subprotocol is
/// a [`ConnectError`] then.
#[must_use = "a builder does nothing until `connect` or `start`"]
pub struct Builder<R, D, P: tether_core::Protocol = Raw> {
    runtime: R,
    dial: D,
    url: String,
    protocol: P,
    config: Config,
    headers: Vec<(String, String)>,
    headers_with: Option<Arc<HeaderFn>>,
    subprotocols: Vec<String>,
    options: Options<P>,
    subscriber_bytes: Option<usize>,
    seed: Option<u64>,
    #[cfg(feature = "rustls")]
    tls: Option<crate::Tls>,
    proxy: ProxyChoice,
}

/// Where the proxy comes from.
#[derive(Clone, Debug)]
enum ProxyChoice {
    Direct,
    Given(Proxy),
    FromEnv,
}

impl<R, D, P: tether_core::Protocol> std::fmt::Debug for Builder<R, D, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may be credentials, the URL may hold some: neither is shown.
        f.debug_struct("Builder")
            .field("url", &crate::ws::redact(&self.url))
            .field("headers", &self.headers.len())
            .field("headers_with", &self.headers_with.is_some())
            .field("subprotocols", &self.subprotocols)
            .field("proxy", &self.proxy)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime, D: Dial> Builder<R, D, Raw> {
    /// A builder for a session to `url` (`ws://` or `wss://`) on `runtime`, dialing with
    /// `dial`; the adapters' `builder(url)` fills in the first two.
    pub fn new(runtime: R, dial: D, url: impl Into<String>) -> Self {
        Builder {
            runtime,
            dial,
            url: url.into(),
            protocol: Raw,
            config: Config::default(),
            headers: Vec::new(),
            headers_with: None,
            subprotocols: Vec::new(),
            options: Options::default(),
            subscriber_bytes: None,
            seed: None,
            #[cfg(feature = "rustls")]
            tls: None,
            proxy: ProxyChoice::Direct,
        }
    }
}

impl<R: Runtime, D: Dial, P: SendProtocol> Builder<R, D, P> {
    /// The protocol the session speaks (default [`Raw`]). Call it before
    /// [`record`](Self::record): a recorder belongs to one protocol, and one set before
    /// this call is dropped (with a warning in the log).
    pub fn protocol<Q: SendProtocol>(self, protocol: Q) -> Builder<R, D, Q> {
        if self.options.is_recording() {
            tracing::warn!("Builder::protocol after Builder::record: the recorder is dropped");
        }
        Builder {
            runtime: self.runtime,
            dial: self.dial,
            url: self.url,
            protocol,
            config: self.config,
            headers: self.headers,
            headers_with: self.headers_with,
            subprotocols: self.subprotocols,
            options: Options::default(),
            subscriber_bytes: self.subscriber_bytes,
            seed: self.seed,
            #[cfg(feature = "rustls")]
            tls: self.tls,
            proxy: self.proxy,
        }
    }

    /// The session's configuration (default [`Config::default()`]; see its fields for
    /// each default).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Adds a header to every upgrade request (an `Authorization`, an `Origin`); a later
    /// header of the same name replaces an earlier one.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Computes headers for each connection attempt, added after (and over) the fixed
    /// ones: a bearer token refreshed on every reconnect. `f` gets the attempt's
    /// connection id and runs on the session's task, so it must not block. An invalid
    /// name or value fails that attempt (retried with backoff) and is logged.
    ///
    /// ```no_run
    /// # fn demo<R: tether_driver::Runtime, D: tether_driver::Dial>(b: tether_driver::Builder<R, D>) {
    /// # fn fresh_token() -> String { String::new() }
    /// let builder = b.headers_with(|_attempt| {
    ///     vec![("authorization".into(), format!("Bearer {}", fresh_token()))]
    /// });
    /// # }
    /// ```
    pub fn headers_with(
        mut self,
        f: impl Fn(ConnId) -> Vec<(String, String)> + Send + Sync + 'static,
    ) -> Self {
        self.headers_with = Some(Arc::new(f));
        self
    }

    /// Offers these subprotocols (most preferred first) in every upgrade. The server may
    /// select one or none (RFC 6455 §4.1); one it selects that was not offered fails the
    /// attempt. The selected one is [`Client::subprotocol`].
    pub fn subprotocols<I, S>(mut self, subprotocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.subprotocols = subprotocols.into_iter().map(Into::into).collect();
        self
    }

    /// Records the session with `recorder` (`docs/recording.md`).
    pub fn record(mut self, recorder: Recorder) -> Self
    where
        P: Recordable,
    {
        self.options = self.options.record(recorder);
        self
    }

    /// The byte budget of each events subscriber
    /// ([`Options::subscriber_bytes`](crate::record::Options::subscriber_bytes)).
    pub fn subscriber_bytes(mut self, bytes: usize) -> Self {
        self.subscriber_bytes = Some(bytes);
        self
    }

    /// The seed of the session's jitter and idempotency keys (default: from the OS). Fix
    /// it only to reproduce a run: sessions that share a seed share their keys.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// What `wss://` trusts and presents (default [`Tls::webpki_roots`](crate::Tls::webpki_roots);
    /// [`Tls::config`](crate::Tls::config) for a private CA or client certificates).
    #[cfg(feature = "rustls")]
    pub fn tls(mut self, tls: crate::Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Connects through an HTTP proxy with `CONNECT` (default: direct); TLS and the
    /// upgrade run end to end through the tunnel.
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = ProxyChoice::Given(proxy);
        self
    }

    /// Takes the proxy from the environment when the session starts: `HTTPS_PROXY` for
    /// `wss://`, `HTTP_PROXY` for `ws://`, `ALL_PROXY`, honouring `NO_PROXY`
    /// ([`Proxy::from_env`]); direct when none applies.
    pub fn proxy_from_env(mut self) -> Self {
        self.proxy = ProxyChoice::FromEnv;
        self
    }

    /// Starts the session and returns its handle at once, before the first connect's
    /// outcome: watch it with [`Client::updates`] or wait with [`Client::wait_open`].
    ///
    /// # Errors
    ///
    /// [`ConnectError::Url`], [`ConnectError::Header`] or [`ConnectError::Config`].
    pub fn start(self) -> Result<Client<P>, ConnectError> {
        Ok(self.launch()?.0)
    }

    /// Starts the session and waits for the first connect's outcome (a
    /// [lazy](Config::lazy) session returns at once).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), and [`ConnectError::Ended`] (naming `host:port` and
    /// the cause) when the session ended before it opened.
    pub async fn connect(self) -> Result<Client<P>, ConnectError> {
        let lazy = self.config.lazy;
        let (client, target) = self.launch()?;
        if !lazy {
            client
                .wait_open()
                .await
                .map_err(|reason| ConnectError::Ended { target, reason })?;
        }
        Ok(client)
    }

    /// Starts the session to be driven by the calling task ([`Inline`]): no task of its
    /// own and no channel between the application and the session, the fastest way to run
    /// one. It connects as it is polled.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Url`], [`ConnectError::Header`] or [`ConnectError::Config`].
    pub fn inline(self) -> Result<Inline<P, R>, ConnectError> {
        let (parts, _target) = self.parts()?;
        Inline::start_with(
            parts.runtime,
            parts.transport,
            parts.config,
            parts.protocol,
            parts.seed,
            &parts.label,
            parts.options,
        )
    }

    /// The transport these options describe, and the session on it.
    fn launch(self) -> Result<(Client<P>, String), ConnectError> {
        let (parts, target) = self.parts()?;
        let client = Client::start_with(
            parts.runtime,
            parts.transport,
            parts.config,
            parts.protocol,
            parts.seed,
            &parts.label,
            parts.options,
        )?;
        Ok((client, target))
    }

    /// What a session is started from, and the `host:port` it connects to.
    fn parts(self) -> Result<(Parts<R, D, P>, String), ConnectError> {
        let mut transport = WsTransport::new(self.dial, &self.url)?;
        let proxy = match self.proxy {
            ProxyChoice::Direct => None,
            ProxyChoice::Given(p) => Some(p),
            ProxyChoice::FromEnv => Proxy::from_env(&self.url)?,
        };
        if let Some(proxy) = proxy {
            transport = transport.proxy(proxy);
        }
        #[cfg(feature = "rustls")]
        if let Some(tls) = self.tls {
            transport = transport.tls(tls);
        }
        for (name, value) in &self.headers {
            transport = transport.header(name, value)?;
        }
        transport = transport.subprotocols(self.subprotocols)?;
        if let Some(f) = self.headers_with {
            transport = transport.headers_with(move |conn| f(conn));
        }
        let target = transport.target();
        let label = transport.redacted_url();
        let mut options = self.options;
        if let Some(bytes) = self.subscriber_bytes {
            options = options.subscriber_bytes(bytes);
        }
        let parts = Parts {
            runtime: self.runtime,
            transport,
            config: self.config,
            protocol: self.protocol,
            seed: self.seed.unwrap_or_else(os_seed),
            label,
            options,
        };
        Ok((parts, target))
    }
}

/// A session's makings, as the builder's options describe them.
struct Parts<R, D: Dial, P: tether_core::Protocol> {
    runtime: R,
    transport: WsTransport<D>,
    config: Config,
    protocol: P,
    seed: u64,
    label: String,
    options: Options<P>,
}
