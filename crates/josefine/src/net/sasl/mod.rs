//! SASL authentication, client side, sans-io: each mechanism is a state machine that
//! takes the server's last message and returns the next one to send. The I/O driver
//! (in the connection setup) carries these bytes in SaslHandshake (v1) and
//! SaslAuthenticate requests; nothing here touches a socket or a clock.
//!
//! Mechanisms and where they come from:
//!
//! | mechanism | spec | Kafka |
//! |---|---|---|
//! | `PLAIN` | RFC 4616 | KIP-43 |
//! | `SCRAM-SHA-256`, `SCRAM-SHA-512` | RFC 5802, RFC 7677 | KIP-84 |
//! | `OAUTHBEARER` | RFC 7628 (client first message), RFC 6750 (token syntax) | KIP-255, KIP-342 (extensions) |
//!
//! The SaslAuthenticate wrapping is KIP-152; re-authentication (KIP-368) runs a fresh
//! `Mechanism` from `mechanism()` on the same connection.
//!
//! SCRAM is the cargo feature `sasl` (it needs SHA-2, HMAC and PBKDF2); PLAIN and
//! OAUTHBEARER need nothing more and are always built. Without `sasl`,
//! [`SaslConfig::ScramSha256`] and [`SaslConfig::ScramSha512`] still exist, and a client
//! configured with one fails to build with an error naming the feature.
//!
//! Secrets: [`Credentials`] and [`OAuthToken`] print no password or token in `Debug`,
//! and no [`SaslError`] message contains either. Usernames are sent as given: like the
//! Java client and librdkafka, no SASLprep normalisation is applied (RFC 5802 asks for
//! it; brokers that store credentials made by Kafka's tools do not apply it either).

mod oauthbearer;
mod plain;
#[cfg(feature = "sasl")]
mod scram;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

pub(crate) use oauthbearer::OAuthBearer;
pub(crate) use plain::Plain;
#[cfg(feature = "sasl")]
pub(crate) use scram::{Scram, ScramHash};

/// RFC 7677 §4: at least 4096 SCRAM iterations (Kafka's minimum too).
pub(crate) const MIN_ITERATIONS: u32 = 4096;
/// Kafka stores SCRAM credentials with at most 16384 iterations; far more would let a
/// hostile server stall the connection task on PBKDF2.
pub(crate) const MAX_ITERATIONS: u32 = 100_000;

/// A username and password; `Debug` prints the username only, never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    /// Kafka's `sasl.username` and `sasl.password` (librdkafka's names; the Java client
    /// puts them in `sasl.jaas.config`).
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The user name (`sasl.username`).
    pub fn username(&self) -> &str {
        &self.username
    }

    /// For the mechanisms only; never logged or formatted.
    pub(crate) fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Which mechanism, with what it needs (Kafka's `sasl.mechanism`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SaslConfig {
    /// `PLAIN` (RFC 4616): the password travels as it is, so use it over TLS only.
    Plain(Credentials),
    /// `SCRAM-SHA-256` (RFC 7677): the password never leaves the client and the broker
    /// proves it knows the credentials too. Needs the `sasl` feature.
    ScramSha256(Credentials),
    /// `SCRAM-SHA-512`, as SCRAM-SHA-256 with SHA-512. Needs the `sasl` feature.
    ScramSha512(Credentials),
    /// `OAUTHBEARER` (RFC 7628): a bearer token from the provider, fetched anew for every
    /// authentication, so re-authentication (KIP-368) sends a fresh one.
    OAuthBearer(Arc<dyn OAuthTokenProvider>),
}

impl SaslConfig {
    /// The mechanism's name as SaslHandshake sends it.
    pub fn mechanism_name(&self) -> &'static str {
        match self {
            SaslConfig::Plain(_) => "PLAIN",
            SaslConfig::ScramSha256(_) => "SCRAM-SHA-256",
            SaslConfig::ScramSha512(_) => "SCRAM-SHA-512",
            SaslConfig::OAuthBearer(_) => "OAUTHBEARER",
        }
    }

    /// An error naming the cargo feature when this build leaves the mechanism out
    /// (SCRAM without `sasl`).
    pub(crate) fn check_built(&self) -> crate::Result<()> {
        match self {
            #[cfg(not(feature = "sasl"))]
            SaslConfig::ScramSha256(_) | SaslConfig::ScramSha512(_) => Err(scram_disabled(self)),
            _ => Ok(()),
        }
    }
}

#[cfg(not(feature = "sasl"))]
fn scram_disabled(config: &SaslConfig) -> crate::Error {
    crate::Error::feature_disabled(
        format_args!("sasl.mechanism={}", config.mechanism_name()),
        "sasl",
    )
}

/// The OAUTHBEARER hook: users supply tokens (KIP-255's `AuthenticateCallbackHandler`).
///
/// `token` is awaited before every authentication of every connection, so it should
/// cache the token and refresh it before it expires. An error fails that connection
/// attempt with the provider's error.
pub trait OAuthTokenProvider: Send + Sync + fmt::Debug {
    /// The token to authenticate with now. An error fails the connection attempt.
    fn token(&self) -> BoxFuture<'_, crate::Result<OAuthToken>>;
}

/// A bearer token and what goes with it in the client's first message.
///
/// `Debug` prints neither the token nor extension values.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OAuthToken {
    /// The token itself (RFC 6750 `b64token` syntax: a JWT fits).
    pub value: String,
    /// Sent as the GS2 authorization id (`a=`); Kafka refuses it unless it equals the
    /// token's principal, so leave it `None` unless the broker wants it.
    pub principal: Option<String>,
    /// SASL extensions (KIP-342), `key=value` pairs sent after the token; keys are
    /// letters only and `auth` is reserved.
    pub extensions: Vec<(String, String)>,
}

impl OAuthToken {
    /// A token with no principal and no extensions.
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            principal: None,
            extensions: Vec::new(),
        }
    }
}

impl fmt::Debug for OAuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.extensions.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("OAuthToken")
            .field("value", &"<redacted>")
            .field("principal", &self.principal)
            .field("extension_keys", &keys)
            .finish()
    }
}

/// A fixed token, for tests and for tokens that outlive the client.
impl OAuthTokenProvider for OAuthToken {
    fn token(&self) -> BoxFuture<'_, crate::Result<OAuthToken>> {
        let token = self.clone();
        Box::pin(async move { Ok(token) })
    }
}

/// One authentication exchange, sans-io.
pub(crate) trait Mechanism: Send {
    /// The next message for the server. `server` is `None` for the first call, then the
    /// bytes of the server's last SaslAuthenticate answer. `Ok(None)`: nothing more to
    /// send (exchange complete and, for SCRAM, the server signature verified).
    ///
    /// After an error, or after `Ok(None)`, every further call fails with
    /// [`SaslError::UnexpectedStep`].
    fn step(&mut self, server: Option<&[u8]>) -> Result<Option<Vec<u8>>, SaslError>;
}

/// Why an exchange failed on the client's side. Messages never contain the password
/// or the token; excerpts of server messages are bounded and escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
// The SCRAM failures, without the `sasl` feature.
#[cfg_attr(not(feature = "sasl"), allow(dead_code))]
pub(crate) enum SaslError {
    /// The server's message does not follow the mechanism's grammar.
    #[error("malformed SASL server message: {0}")]
    MalformedServerMessage(String),
    /// SCRAM: the server's final `v=` is wrong, so it does not know the credentials
    /// (or someone in between changed the exchange).
    #[error("the server's SCRAM signature is wrong: it does not hold these credentials")]
    ServerSignatureMismatch,
    /// SCRAM: the server's nonce does not start with (and extend) the client's.
    #[error("the server's SCRAM nonce does not extend the client's nonce")]
    NonceMismatch,
    /// The server reported an error inside the exchange: SCRAM's `e=` value, or the
    /// OAUTHBEARER error (RFC 7628 JSON).
    #[error("the server refused the authentication: {0}")]
    ServerError(String),
    /// SCRAM: fewer iterations than RFC 7677's minimum of 4096.
    #[error("the server asks for {0} SCRAM iterations; at least {min} are required", min = MIN_ITERATIONS)]
    IterationCountTooLow(u32),
    /// SCRAM: more iterations than we are willing to compute (a hostile server could
    /// stall the connection for hours otherwise).
    #[error("the server asks for {0} SCRAM iterations; at most {max} are accepted", max = MAX_ITERATIONS)]
    IterationCountTooHigh(u32),
    /// SCRAM: the server requires an extension (`m=`) that we do not know.
    #[error("the server requires a SCRAM extension this client does not support")]
    UnsupportedExtension,
    /// The credentials cannot be encoded for the mechanism (a NUL byte in a PLAIN
    /// username, say).
    #[error("invalid credentials: {0}")]
    InvalidCredentials(&'static str),
    /// The OAuth token, principal or an extension is not valid for OAUTHBEARER.
    #[error("invalid OAuth token: {0}")]
    InvalidToken(String),
    /// OAUTHBEARER was started without a token.
    #[error("OAUTHBEARER needs a token from the provider")]
    MissingToken,
    /// `step` was called when the exchange did not expect it: with a server message
    /// before the first client message, without one later, or after the end.
    #[error("unexpected SASL step: {0}")]
    UnexpectedStep(&'static str),
}

/// The mechanism for `config`; `token` is used by OAUTHBEARER only (the driver awaits
/// the provider first). OAUTHBEARER without a token fails at its first step. A mechanism
/// this build leaves out is the error of [`SaslConfig::check_built`].
pub(crate) fn mechanism(
    config: &SaslConfig,
    token: Option<OAuthToken>,
) -> crate::Result<Box<dyn Mechanism>> {
    Ok(match config {
        SaslConfig::Plain(credentials) => Box::new(Plain::new(credentials.clone())),
        #[cfg(feature = "sasl")]
        SaslConfig::ScramSha256(credentials) => {
            Box::new(Scram::new(ScramHash::Sha256, credentials.clone()))
        }
        #[cfg(feature = "sasl")]
        SaslConfig::ScramSha512(credentials) => {
            Box::new(Scram::new(ScramHash::Sha512, credentials.clone()))
        }
        #[cfg(not(feature = "sasl"))]
        SaslConfig::ScramSha256(_) | SaslConfig::ScramSha512(_) => {
            return Err(scram_disabled(config))
        }
        SaslConfig::OAuthBearer(_) => Box::new(OAuthBearer::new(token)),
    })
}

/// A bounded, escaped excerpt of a server message for error texts.
fn excerpt(bytes: &[u8]) -> String {
    excerpt_of(bytes, 64)
}

/// [`excerpt`] with room for a whole error report (an OAUTHBEARER JSON).
fn long_excerpt(bytes: &[u8]) -> String {
    excerpt_of(bytes, 512)
}

fn excerpt_of(bytes: &[u8], max: usize) -> String {
    let shown = &bytes[..bytes.len().min(max)];
    let mut text = format!("{:?}", String::from_utf8_lossy(shown));
    if bytes.len() > max {
        text.push_str(&format!(" (+{} bytes)", bytes.len() - max));
    }
    text
}

// Mostly SCRAM against the mock's own SCRAM server.
#[cfg(all(test, feature = "sasl"))]
mod mock_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let credentials = Credentials::new("alice", "s3cr3t-pw");
        let text = format!("{credentials:?}");
        assert!(text.contains("alice"), "{text}");
        assert!(!text.contains("s3cr3t-pw"), "{text}");

        let config = SaslConfig::ScramSha512(credentials);
        assert!(!format!("{config:?}").contains("s3cr3t-pw"));

        let mut token = OAuthToken::new("eyJhbGciOiJub25lIn0.e30.");
        token
            .extensions
            .push(("traceId".into(), "hidden-value".into()));
        let text = format!("{:?}", SaslConfig::OAuthBearer(Arc::new(token)));
        assert!(!text.contains("eyJhbGci"), "{text}");
        assert!(!text.contains("hidden-value"), "{text}");
        assert!(text.contains("traceId"), "{text}");
    }

    #[test]
    fn mechanism_names_are_kafkas() {
        let c = || Credentials::new("u", "p");
        assert_eq!(SaslConfig::Plain(c()).mechanism_name(), "PLAIN");
        assert_eq!(
            SaslConfig::ScramSha256(c()).mechanism_name(),
            "SCRAM-SHA-256"
        );
        assert_eq!(
            SaslConfig::ScramSha512(c()).mechanism_name(),
            "SCRAM-SHA-512"
        );
        let provider: Arc<dyn OAuthTokenProvider> = Arc::new(OAuthToken::new("t"));
        assert_eq!(
            SaslConfig::OAuthBearer(provider).mechanism_name(),
            "OAUTHBEARER"
        );
    }

    #[test]
    fn mechanism_builds_the_configured_exchange() {
        let plain = SaslConfig::Plain(Credentials::new("u", "p"));
        let first = mechanism(&plain, None)
            .unwrap()
            .step(None)
            .unwrap()
            .unwrap();
        assert_eq!(first, b"\0u\0p");

        #[cfg(feature = "sasl")]
        {
            let scram = SaslConfig::ScramSha256(Credentials::new("u", "p"));
            let first = mechanism(&scram, None)
                .unwrap()
                .step(None)
                .unwrap()
                .unwrap();
            assert!(first.starts_with(b"n,,n=u,r="), "{first:?}");
        }

        let provider: Arc<dyn OAuthTokenProvider> = Arc::new(OAuthToken::new("t"));
        let oauth = SaslConfig::OAuthBearer(provider);
        let first = mechanism(&oauth, Some(OAuthToken::new("abc")))
            .unwrap()
            .step(None)
            .unwrap()
            .unwrap();
        assert_eq!(first, b"n,,\x01auth=Bearer abc\x01\x01");
        assert_eq!(
            mechanism(&oauth, None).unwrap().step(None),
            Err(SaslError::MissingToken)
        );
    }

    #[cfg(not(feature = "sasl"))]
    #[test]
    fn scram_without_its_feature_is_an_error_naming_it() {
        let c = || Credentials::new("u", "p");
        for (config, name) in [
            (SaslConfig::ScramSha256(c()), "SCRAM-SHA-256"),
            (SaslConfig::ScramSha512(c()), "SCRAM-SHA-512"),
        ] {
            for err in [
                config.check_built().unwrap_err(),
                mechanism(&config, None).err().unwrap(),
            ] {
                assert_eq!(err.kind(), &crate::ErrorKind::Config);
                let text = err.to_string();
                assert!(text.contains(&format!("sasl.mechanism={name}")), "{text}");
                assert!(text.contains("`sasl` feature"), "{text}");
            }
        }
        // PLAIN and OAUTHBEARER need no feature.
        assert!(SaslConfig::Plain(c()).check_built().is_ok());
        let provider: Arc<dyn OAuthTokenProvider> = Arc::new(OAuthToken::new("t"));
        assert!(SaslConfig::OAuthBearer(provider).check_built().is_ok());
    }

    #[tokio::test]
    async fn a_fixed_token_is_its_own_provider() {
        let token = OAuthToken::new("abc");
        assert_eq!(token.token().await.unwrap(), token);
    }

    #[test]
    fn excerpts_are_bounded_and_escaped() {
        assert_eq!(excerpt(b"a\x01b"), "\"a\\u{1}b\"");
        let long = excerpt(&[b'x'; 100]);
        assert!(long.ends_with("(+36 bytes)"), "{long}");
    }
}
