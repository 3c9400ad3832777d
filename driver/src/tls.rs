//! TLS options for `wss://` (the `rustls` feature): which certificates the client trusts,
//! and the rest of rustls's client configuration (client certificates, protocol versions).
//!
//! A failed handshake is reported as [`TransportFailure::Tls`] with the cause in plain
//! words ("certificate not valid for host example.com", "certificate signed by an unknown
//! authority"); [`ClosePolicy`](tether_core::ClosePolicy) classifies TLS failures as fatal
//! by default, because a certificate that does not verify will not verify on the next try.
//! A connection lost in the middle of the handshake is an I/O failure (retried), not a TLS
//! one.

use std::fmt;
use std::io;
use std::sync::Arc;

use futures_rustls::rustls;
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tether_core::TransportFailure;

/// What a `wss://` connection trusts, and how it speaks TLS: rustls's [`ClientConfig`].
///
/// The default is [`Tls::webpki_roots`]: Mozilla's root certificates compiled into the
/// program (the `webpki-roots` crate), the same on every machine.
/// [`Tls::native_roots`] (feature `native-roots`) trusts the operating system's store
/// instead, and [`Tls::config`] takes a configuration of the caller's own: a private CA,
/// client certificates.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
}

impl Tls {
    /// Trusts Mozilla's root certificates compiled into the program (the `webpki-roots`
    /// crate), with rustls's safe default protocol versions on the `ring` provider and no
    /// client certificate. The default.
    #[must_use]
    pub fn webpki_roots() -> Tls {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Tls {
            config: Arc::new(with_roots(roots)),
        }
    }

    /// Trusts the operating system's certificate store (through `rustls-native-certs`:
    /// the system bundle on Linux, honouring `SSL_CERT_FILE` and `SSL_CERT_DIR`; the
    /// keychain on macOS; the system store on Windows), read once, now. Otherwise as
    /// [`webpki_roots`](Self::webpki_roots). Needs the `native-roots` feature.
    ///
    /// Certificates that fail to parse are skipped (and logged) as long as at least one
    /// is usable.
    ///
    /// # Errors
    ///
    /// A [`TlsError::NativeRoots`] when the store cannot be read or holds no usable
    /// certificate.
    #[cfg(feature = "native-roots")]
    pub fn native_roots() -> Result<Tls, TlsError> {
        let loaded = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, skipped) = roots.add_parsable_certificates(loaded.certs);
        if added == 0 {
            let why = if loaded.errors.is_empty() {
                format!("no usable certificate ({skipped} could not be parsed)")
            } else {
                loaded
                    .errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            return Err(TlsError::NativeRoots(why));
        }
        for error in &loaded.errors {
            tracing::warn!(%error, "part of the OS certificate store could not be read");
        }
        if skipped > 0 {
            tracing::warn!(skipped, "OS certificates rustls cannot parse were skipped");
        }
        Ok(Tls {
            config: Arc::new(with_roots(roots)),
        })
    }

    /// A configuration of the caller's own: a private CA, client certificates, other
    /// protocol versions or providers. Build it with the [`rustls`](crate::rustls) this
    /// crate re-exports, so that the versions match. Leave its ALPN protocols empty (or
    /// `http/1.1`): the WebSocket upgrade is HTTP/1.1.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tether_driver::{Tls, rustls};
    ///
    /// # fn ca_der() -> rustls::pki_types::CertificateDer<'static> { unimplemented!() }
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// // Trust a private CA (its certificate in DER form), and nothing else.
    /// let mut roots = rustls::RootCertStore::empty();
    /// roots.add(ca_der())?;
    /// let provider = Arc::new(rustls::crypto::ring::default_provider());
    /// let config = rustls::ClientConfig::builder_with_provider(provider)
    ///     .with_safe_default_protocol_versions()?
    ///     .with_root_certificates(roots)
    ///     .with_no_client_auth(); // or .with_client_auth_cert(chain, key)?
    /// let tls = Tls::config(Arc::new(config));
    /// // WsTransport::new(dial, "wss://internal.example/ws")?.tls(tls)
    /// # let _ = tls; Ok(()) }
    /// ```
    #[must_use]
    pub fn config(config: Arc<ClientConfig>) -> Tls {
        Tls { config }
    }

    /// The rustls configuration in use.
    #[must_use]
    pub fn client_config(&self) -> &Arc<ClientConfig> {
        &self.config
    }
}

impl Default for Tls {
    /// [`Tls::webpki_roots`].
    fn default() -> Self {
        Tls::webpki_roots()
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("alpn", &self.config.alpn_protocols)
            .field(
                "client_auth",
                &self.config.client_auth_cert_resolver.has_certs(),
            )
            .finish_non_exhaustive()
    }
}

/// Why TLS options could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The operating system's certificate store could not be read, or held no
    /// certificate rustls can use ([`Tls::native_roots`]).
    #[error("the OS certificate store is unusable: {0}")]
    NativeRoots(String),
}

fn with_roots(roots: RootCertStore) -> ClientConfig {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        // Invariant: ring supports the safe default versions, so this cannot fail.
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The failure of a TLS handshake with `host`: a certificate or protocol error is
/// [`TransportFailure::Tls`] in plain words; the connection failing underneath is an I/O
/// failure like any other.
pub(crate) fn handshake_failure(e: &io::Error, host: &str) -> TransportFailure {
    let Some(error) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return TransportFailure::Io(format!("during the TLS handshake: {e}"));
    };
    TransportFailure::Tls(match error {
        rustls::Error::InvalidCertificate(c) => certificate_words(c, host),
        other => other.to_string(),
    })
}

/// A certificate error as a sentence that names what failed.
fn certificate_words(error: &CertificateError, host: &str) -> String {
    match error {
        CertificateError::NotValidForName => format!("certificate not valid for host {host}"),
        CertificateError::NotValidForNameContext { presented, .. } => format!(
            "certificate not valid for host {host} (it names {})",
            presented.join(", ")
        ),
        CertificateError::UnknownIssuer => "certificate signed by an unknown authority".into(),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "certificate expired".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "certificate not valid yet".into()
        }
        CertificateError::Revoked => "certificate revoked".into(),
        CertificateError::BadSignature => "certificate signature does not verify".into(),
        other => format!("invalid certificate: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(e: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn certificate_failures_read_well() {
        let unknown = handshake_failure(
            &wrapped(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
            "h",
        );
        assert_eq!(
            unknown.to_string(),
            "tls failed: certificate signed by an unknown authority"
        );
        let name = handshake_failure(
            &wrapped(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            )),
            "example.com",
        );
        assert_eq!(
            name.to_string(),
            "tls failed: certificate not valid for host example.com"
        );
        assert!(matches!(name, TransportFailure::Tls(_)));
    }

    #[test]
    fn a_connection_lost_mid_handshake_is_io_not_tls() {
        let e = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(matches!(
            handshake_failure(&e, "h"),
            TransportFailure::Io(_)
        ));
    }

    #[test]
    fn the_default_is_webpki_roots_without_client_auth() {
        let tls = Tls::default();
        assert!(!tls.client_config().client_auth_cert_resolver.has_certs());
        assert!(format!("{tls:?}").starts_with("Tls {"));
    }
}
