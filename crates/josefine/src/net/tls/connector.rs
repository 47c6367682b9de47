//! The rustls half of [`super`], built with the `tls` feature: the client configuration
//! (roots, hostname check, client certificate, crypto provider), the handshake, and
//! rustls errors described for the user.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::TlsConfig;
use crate::error::{Error, ErrorKind, Result};

/// The rustls configuration of `config`; errors name the setting and the file.
pub(super) fn build(config: &TlsConfig) -> Result<Connector> {
    let roots = match &config.ca_location {
        Some(path) => ca_file_roots(path)?,
        None => system_roots()?,
    };
    let provider = crypto_provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("TLS: {e}")))?;
    let builder = if config.skip_hostname_verification {
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| Error::config(format!("TLS: {e}")))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
    } else {
        builder.with_root_certificates(roots)
    };
    let client = match (&config.certificate_location, &config.key_location) {
        (Some(cert), Some(key)) => {
            let chain = read_certificates(cert, "ssl.certificate.location")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                Error::config(format!(
                    "ssl.key.location {}: no usable private key ({e})",
                    key.display()
                ))
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                Error::config(format!(
                    "ssl.certificate.location / ssl.key.location: the key does not fit the certificate ({e})"
                ))
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(Error::config(
                "ssl.certificate.location and ssl.key.location go together: set both or neither",
            ))
        }
    };
    Ok(Connector {
        connector: TlsConnector::from(Arc::new(client)),
    })
}

/// The application's process-wide provider if it installed one, else aws-lc-rs (see the
/// module docs).
fn crypto_provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// A built TLS configuration, shared by every connection of a client.
#[derive(Clone)]
pub(crate) struct Connector {
    connector: TlsConnector,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Connector(rustls)")
    }
}

impl Connector {
    /// The TLS handshake over `stream` with the broker at `addr` (`host:port`).
    pub(crate) async fn connect(
        &self,
        stream: TcpStream,
        addr: &str,
    ) -> Result<TlsStream<TcpStream>> {
        let host = host_of(addr);
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| Error::config(format!("{host:?} is not a valid host name for TLS")))?;
        self.connector
            .connect(name, stream)
            .await
            .map_err(|e| tls_or_io(e, Some(host)))
    }
}

/// `host` of `host:port` (an IPv6 literal's brackets removed).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn system_roots() -> Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(Error::config(format!(
            "TLS: no usable CA certificates in the system store{}; set ssl.ca.location to a PEM file",
            found
                .errors
                .first()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )));
    }
    Ok(roots)
}

fn ca_file_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(path, "ssl.ca.location")? {
        roots.add(cert).map_err(|e| {
            Error::config(format!(
                "ssl.ca.location {}: not a usable CA certificate ({e})",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

fn read_certificates(path: &Path, setting: &str) -> Result<Vec<CertificateDer<'static>>> {
    let unreadable =
        |e: &dyn fmt::Display| Error::config(format!("{setting} {}: {e}", path.display()));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| unreadable(&e))?;
    if certs.is_empty() {
        return Err(unreadable(&"no PEM certificate in the file"));
    }
    Ok(certs)
}

/// An I/O error from a connection's stream once it is open. A TLS failure surfaces as
/// one too (TLS 1.3 reports a refused client certificate on the first read, not in the
/// handshake): that becomes an [`ErrorKind::Tls`] error saying what it is, anything
/// else an I/O error.
pub(crate) fn stream_error(err: std::io::Error) -> Error {
    tls_or_io(err, None)
}

/// `err` as an [`ErrorKind::Tls`] error naming the certificate problem when rustls
/// caused it (with the broker's `host` when known), else as an I/O error.
fn tls_or_io(err: std::io::Error, host: Option<&str>) -> Error {
    match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(tls) => describe(tls, host),
        None => Error::io(err),
    }
}

/// A rustls error as an [`ErrorKind::Tls`] error that says what was wrong and which
/// setting addresses it; `host` when known.
fn describe(err: &rustls::Error, host: Option<&str>) -> Error {
    let message = match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the broker's certificate has expired".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the broker's certificate is not valid yet (check the clocks)".to_string()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the broker's certificate is not valid for {:?}; connect by a name it lists, \
                     or (not recommended) set ssl.endpoint.identification.algorithm=none",
                    host.unwrap_or("this host")
                )
            }
            CertificateError::UnknownIssuer => {
                "the broker's certificate is signed by a CA we do not trust; set ssl.ca.location \
                 to the PEM file of the CA that signed it"
                    .to_string()
            }
            CertificateError::Revoked => "the broker's certificate is revoked".to_string(),
            other => format!("the broker's certificate was refused: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => format!(
            "the broker refused the TLS session ({alert:?}); if it requires a client certificate, \
             set ssl.certificate.location and ssl.key.location"
        ),
        other => format!("TLS failed: {other}"),
    };
    Error::new(ErrorKind::Tls, message)
}

/// Verifies the chain and signatures, but not that the certificate names the host
/// (`ssl.endpoint.identification.algorithm=none`).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn hosts_come_from_addresses() {
        assert_eq!(host_of("broker-1.example:9093"), "broker-1.example");
        assert_eq!(host_of("[::1]:9093"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }

    #[test]
    fn missing_files_name_the_setting() {
        let err = TlsConfig::new()
            .ca_location("/no/such/ca.pem")
            .build()
            .unwrap_err();
        assert!(
            err.to_string().contains("ssl.ca.location /no/such/ca.pem"),
            "{err}"
        );
        let err = TlsConfig {
            certificate_location: Some("/x.pem".into()),
            ..TlsConfig::new()
        }
        .build()
        .unwrap_err();
        assert!(err.to_string().contains("go together"), "{err}");
    }

    /// A TLS server on 127.0.0.1 presenting a certificate for `localhost` signed by a
    /// fresh CA; it echoes one byte per connection. Returns the CA's PEM file, an
    /// unrelated CA's, and the server's port.
    async fn echo_server(dir: &Path) -> (PathBuf, PathBuf, u16) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        use rustls::pki_types::PrivatePkcs8KeyDer;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        // Named apart: a chain is matched to its issuer by name.
        let authority = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
        };
        let (ca, other_ca) = (authority("test CA"), authority("unrelated CA"));
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let server = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut byte = [0u8];
                    if tls.read_exact(&mut byte).await.is_ok() {
                        let _ = tls.write_all(&byte).await;
                        let _ = tls.flush().await;
                    }
                });
            }
        });
        let ca_path = dir.join("ca.pem");
        let other_path = dir.join("other-ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        std::fs::write(&other_path, other_ca.pem()).unwrap();
        (ca_path, other_path, port)
    }

    async fn handshake(tls: TlsConfig, addr: &str, port: u16) -> Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tls.build()?.connect(tcp, addr).await
    }

    #[tokio::test]
    async fn handshakes_verify_the_chain_and_the_name() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let dir = tempfile::tempdir().unwrap();
        let (ca, other_ca, port) = echo_server(dir.path()).await;
        let localhost = format!("localhost:{port}");

        let mut stream = handshake(TlsConfig::new().ca_location(&ca), &localhost, port)
            .await
            .unwrap();
        stream.write_all(b"k").await.unwrap();
        stream.flush().await.unwrap();
        let mut echoed = [0u8];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"k");

        let err = handshake(TlsConfig::new().ca_location(&other_ca), &localhost, port)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Tls, "{err}");
        assert!(err.to_string().contains("set ssl.ca.location"), "{err}");

        // The certificate names localhost, not 127.0.0.1.
        let by_address = format!("127.0.0.1:{port}");
        let err = handshake(TlsConfig::new().ca_location(&ca), &by_address, port)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Tls, "{err}");
        assert!(
            err.to_string().contains("not valid for \"127.0.0.1\""),
            "{err}"
        );
        let chain_only = TlsConfig::new().ca_location(&ca).verify_hostname(false);
        handshake(chain_only, &by_address, port).await.unwrap();
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("josefine-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = TlsConfig::new().ca_location(&path).build().unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
