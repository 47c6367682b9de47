//! TLS to brokers with rustls (no OpenSSL): the broker's certificate verified against
//! the system roots or a given CA file, its name checked against the broker's host
//! (on by default), an optional client certificate (mTLS), SNI from the host.
//!
//! The cryptography is the process-wide rustls provider when the application installed
//! one (`CryptoProvider::install_default`, to use FIPS or a provider of its choice),
//! else aws-lc-rs with rustls' defaults, which prefer post-quantum key exchange. Not
//! ring: rustls deprecated its ring provider (0.23.48) because it has no post-quantum
//! key exchange.
//!
//! The rustls configuration is built once per client, when the client is built, so a
//! missing or unreadable file fails there, naming the setting. A failed handshake is
//! an [`ErrorKind::Tls`](crate::ErrorKind::Tls) error that says what was wrong with the
//! certificate and which setting addresses it.
//!
//! All of it is the cargo feature `tls` (on by default). Without it [`TlsConfig`] still
//! exists, so programs that set TLS build either way, but building a client with it
//! fails with an error naming the feature.

#[cfg(feature = "tls")]
mod connector;

use std::path::PathBuf;

#[cfg(feature = "tls")]
pub(crate) use connector::{stream_error, Connector};

use crate::error::Result;

/// TLS settings, with Kafka's property names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    ca_location: Option<PathBuf>,
    certificate_location: Option<PathBuf>,
    key_location: Option<PathBuf>,
    skip_hostname_verification: bool,
}

impl TlsConfig {
    /// Verification against the system's root certificates, hostname checked.
    pub fn new() -> Self {
        Self::default()
    }

    /// `ssl.ca.location`: a PEM file of the CA certificates to trust instead of the
    /// system roots.
    pub fn ca_location(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_location = Some(path.into());
        self
    }

    /// `ssl.certificate.location` and `ssl.key.location`: a client certificate (PEM,
    /// chain allowed) and its private key (PEM: PKCS#8, PKCS#1 or SEC1), for brokers
    /// that require one (mTLS).
    pub fn client_certificate(
        mut self,
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.certificate_location = Some(certificate.into());
        self.key_location = Some(key.into());
        self
    }

    /// `ssl.endpoint.identification.algorithm`: `true` (`https`, the default) checks
    /// that the certificate names the broker's host; `false` (`none`) only checks the
    /// chain. Turning it off lets anyone holding a certificate from your CA pose as a
    /// broker.
    pub fn verify_hostname(mut self, verify: bool) -> Self {
        self.skip_hostname_verification = !verify;
        self
    }

    /// The rustls configuration; errors name the setting and the file, or the `tls`
    /// feature when this build leaves TLS out.
    pub(crate) fn build(&self) -> Result<Connector> {
        #[cfg(feature = "tls")]
        return connector::build(self);
        #[cfg(not(feature = "tls"))]
        return Err(crate::Error::feature_disabled(
            "TLS (security.protocol=SSL or SASL_SSL)",
            "tls",
        ));
    }
}

/// Stands in for the rustls connector in a build without TLS: no value of it exists,
/// since [`TlsConfig::build`] fails there.
#[cfg(not(feature = "tls"))]
#[derive(Debug, Clone)]
pub(crate) enum Connector {}

#[cfg(not(feature = "tls"))]
impl Connector {
    pub(crate) async fn connect(
        &self,
        _stream: tokio::net::TcpStream,
        _addr: &str,
    ) -> Result<tokio::net::TcpStream> {
        match *self {}
    }
}

/// An I/O error from a connection's stream: without TLS, always an I/O error.
#[cfg(not(feature = "tls"))]
pub(crate) fn stream_error(err: std::io::Error) -> crate::Error {
    crate::Error::io(err)
}

#[cfg(all(test, not(feature = "tls")))]
mod tests {
    use super::*;

    #[test]
    fn without_the_feature_tls_is_an_error_naming_it() {
        let err = TlsConfig::new().build().unwrap_err();
        assert_eq!(err.kind(), &crate::ErrorKind::Config);
        assert!(err.to_string().contains("`tls` feature"), "{err}");
        assert!(err.to_string().contains("security.protocol=SSL"), "{err}");
    }
}
