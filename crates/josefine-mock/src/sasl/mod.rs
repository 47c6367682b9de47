//! SASL authentication, broker side: the user store, and each connection's
//! authentication state, sans-io (the clock comes in as `now`).
//!
//! Follows Kafka's `SaslServerAuthenticator` (KIP-43, KIP-152) and re-authentication
//! (KIP-368):
//!
//! ```text
//!              ApiVersions (answered)
//!                  ┌──┐
//!                  ▼  │      SaslHandshake(enabled mechanism)
//!   ┌──────▶ Unauthenticated ───────────────────────────▶ Handshaken ──SaslAuthenticate──┐
//!   │              │ anything else: close                  │  (SCRAM: server-first,     │
//!   │              ▼                                       │   then client-final)       │
//!   │                                                      ▼                            │
//!   │                          ok: Authenticated{principal, expires_at} ◀───────────────┘
//!   │                                   │ SaslHandshake: re-authentication (same
//!   │                                   │ mechanism and principal, KIP-368); meanwhile
//!   │                                   │ other requests are served until expiry
//!   └── (never: failures close) ◀───────┘ any request but SaslHandshake after
//!                                         expires_at: close
//! ```
//!
//! Failures answer (SASL_AUTHENTICATION_FAILED with a message, or
//! UNSUPPORTED_SASL_MECHANISM with the enabled list) and then close the connection,
//! as Kafka does. Without SASL required, SaslHandshake and SaslAuthenticate get
//! ILLEGAL_SASL_STATE, as on a Kafka PLAINTEXT listener.

mod oauthbearer;
mod plain;
mod scram;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;

use crate::entropy::Entropy;

pub(crate) const ILLEGAL_SASL_STATE: i16 = ResponseError::IllegalSaslState.code();
pub(crate) const UNSUPPORTED_SASL_MECHANISM: i16 = ResponseError::UnsupportedSaslMechanism.code();
pub(crate) const SASL_AUTHENTICATION_FAILED: i16 = ResponseError::SaslAuthenticationFailed.code();

/// A SASL mechanism the mock broker can require (Kafka's
/// `sasl.enabled.mechanisms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SaslMechanism {
    /// RFC 4616, checked against the users' passwords.
    Plain,
    /// RFC 7677, with credentials derived from the users' passwords (salted,
    /// 4096 iterations).
    ScramSha256,
    /// As [`ScramSha256`](Self::ScramSha256) with SHA-512.
    ScramSha512,
    /// RFC 7628, with the tokens registered by
    /// [`MockBrokerBuilder::sasl_oauth_tokens`](crate::MockBrokerBuilder::sasl_oauth_tokens).
    OAuthBearer,
}

impl SaslMechanism {
    /// PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512.
    pub const DEFAULT: [SaslMechanism; 3] = [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ];

    /// The name SaslHandshake uses, such as `"SCRAM-SHA-256"`.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            SaslMechanism::Plain,
            SaslMechanism::ScramSha256,
            SaslMechanism::ScramSha512,
            SaslMechanism::OAuthBearer,
        ]
        .into_iter()
        .find(|m| m.name() == name)
    }

    fn scram_hash(self) -> Option<scram::Hash> {
        match self {
            SaslMechanism::ScramSha256 => Some(scram::Hash::Sha256),
            SaslMechanism::ScramSha512 => Some(scram::Hash::Sha512),
            SaslMechanism::Plain | SaslMechanism::OAuthBearer => None,
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The builders' SASL settings.
#[derive(Clone, Default)]
pub(crate) struct SaslConfig {
    pub(crate) required: bool,
    pub(crate) users: Vec<(String, String)>,
    pub(crate) mechanisms: Option<Vec<SaslMechanism>>,
    pub(crate) oauth_tokens: Vec<(String, String)>,
    pub(crate) session_lifetime: Option<Duration>,
    pub(crate) forge_server_signature: bool,
}

impl SaslConfig {
    /// Adds or replaces users; any SASL setting makes SASL required.
    pub(crate) fn users<U: Into<String>, P: Into<String>>(
        &mut self,
        users: impl IntoIterator<Item = (U, P)>,
    ) {
        self.required = true;
        for (user, password) in users {
            let user = user.into();
            self.users.retain(|(existing, _)| *existing != user);
            self.users.push((user, password.into()));
        }
    }

    pub(crate) fn mechanisms(&mut self, mechanisms: impl IntoIterator<Item = SaslMechanism>) {
        self.required = true;
        let mut list: Vec<SaslMechanism> = Vec::new();
        for mechanism in mechanisms {
            if !list.contains(&mechanism) {
                list.push(mechanism);
            }
        }
        self.mechanisms = Some(list);
    }

    pub(crate) fn oauth_tokens<T: Into<String>, P: Into<String>>(
        &mut self,
        tokens: impl IntoIterator<Item = (T, P)>,
    ) {
        self.required = true;
        self.oauth_tokens
            .extend(tokens.into_iter().map(|(t, p)| (t.into(), p.into())));
    }

    pub(crate) fn session_lifetime(&mut self, lifetime: Duration) {
        self.required = true;
        self.session_lifetime = Some(lifetime);
    }

    pub(crate) fn forge_server_signature(&mut self, forge: bool) {
        self.required = true;
        self.forge_server_signature = forge;
    }

    /// The broker-side store, with SCRAM credentials derived (PBKDF2, so not
    /// free); salts and server nonces come from `entropy`.
    pub(crate) fn build(&self, entropy: Arc<Entropy>) -> SaslServer {
        let mut server = SaslServer {
            required: self.required,
            mechanisms: self
                .mechanisms
                .clone()
                .unwrap_or_else(|| SaslMechanism::DEFAULT.to_vec()),
            users: HashMap::new(),
            oauth_tokens: self.oauth_tokens.iter().cloned().collect(),
            session_lifetime: self.session_lifetime,
            forge_server_signature: self.forge_server_signature,
            entropy,
        };
        for (user, password) in &self.users {
            let derived = User::new(user, password, &server.entropy);
            server.set_user(user, derived);
        }
        server
    }
}

impl fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users: Vec<&str> = self.users.iter().map(|(u, _)| u.as_str()).collect();
        f.debug_struct("SaslConfig")
            .field("required", &self.required)
            .field("users", &users)
            .field("mechanisms", &self.mechanisms)
            .field("oauth_tokens", &self.oauth_tokens.len())
            .field("session_lifetime", &self.session_lifetime)
            .field("forge_server_signature", &self.forge_server_signature)
            .finish()
    }
}

/// One user: the password for PLAIN, derived keys for SCRAM.
#[derive(Clone)]
pub(crate) struct User {
    password: String,
    sha256: scram::Credential,
    sha512: scram::Credential,
}

impl User {
    /// Derives the SCRAM credentials of user `name`; call it outside any lock.
    /// The salts are random, as Kafka's, or with a seed a function of the
    /// seed and the user's name.
    pub(crate) fn new(name: &str, password: &str, entropy: &Entropy) -> Self {
        let credential = |hash: scram::Hash, label: &[u8]| {
            let mut salt = vec![0u8; scram::SALT_LEN];
            entropy.keyed(&[b"scram-salt", label, name.as_bytes()], &mut salt);
            scram::Credential::with_salt(hash, password, salt, scram::ITERATIONS)
        };
        User {
            password: password.to_owned(),
            sha256: credential(scram::Hash::Sha256, b"sha-256"),
            sha512: credential(scram::Hash::Sha512, b"sha-512"),
        }
    }

    fn scram(&self, hash: scram::Hash) -> &scram::Credential {
        match hash {
            scram::Hash::Sha256 => &self.sha256,
            scram::Hash::Sha512 => &self.sha512,
        }
    }
}

/// The cluster's SASL settings and user store, shared by every broker.
pub(crate) struct SaslServer {
    required: bool,
    mechanisms: Vec<SaslMechanism>,
    users: HashMap<String, User>,
    oauth_tokens: HashMap<String, String>,
    session_lifetime: Option<Duration>,
    pub(crate) forge_server_signature: bool,
    entropy: Arc<Entropy>,
}

impl SaslServer {
    /// A fresh SCRAM server nonce.
    fn server_nonce(&self) -> String {
        let mut bytes = [0u8; scram::SERVER_NONCE_LEN];
        self.entropy.fill("scram-nonce", &mut bytes);
        scram::server_nonce(&bytes)
    }

    pub(crate) fn set_user(&mut self, name: &str, user: User) {
        self.users.insert(name.to_owned(), user);
    }

    pub(crate) fn remove_user(&mut self, name: &str) -> bool {
        self.users.remove(name).is_some()
    }

    /// The enabled mechanisms' names, for SaslHandshake answers.
    pub(crate) fn mechanism_names(&self) -> Vec<&'static str> {
        self.mechanisms.iter().map(|m| m.name()).collect()
    }
}

/// Whether a request may be served on this connection now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Serve,
    /// Close the connection without an answer, for this reason.
    Close(String),
}

/// SaslHandshake's answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HandshakeAnswer {
    pub(crate) code: i16,
    pub(crate) mechanisms: Vec<&'static str>,
    /// Close the connection after answering.
    pub(crate) close: bool,
}

/// SaslAuthenticate's answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AuthenticateAnswer {
    /// More to come: send these bytes (error code 0) and wait for the next request.
    Continue(Vec<u8>),
    /// Authenticated: send these bytes with the session lifetime (v1+).
    Authenticated {
        auth_bytes: Vec<u8>,
        session_lifetime: Option<Duration>,
    },
    /// Send this error and, when `close`, close the connection.
    Failed {
        code: i16,
        message: String,
        close: bool,
    },
}

/// One connection's authentication state.
#[derive(Default)]
pub(crate) struct Session {
    stage: Stage,
    /// Kept through a re-authentication, which must not change it.
    authenticated: Option<Authenticated>,
}

#[derive(Default)]
enum Stage {
    /// Waiting for SaslHandshake (before authentication or between re-authentications).
    #[default]
    Idle,
    /// SaslHandshake accepted this mechanism; its first token comes next.
    Handshaken(SaslMechanism),
    /// SCRAM server-first sent; the client-final comes next.
    ScramFinal(SaslMechanism, Box<scram::Pending>),
    /// OAUTHBEARER error challenge sent; the client's `\x01` comes next.
    OAuthError(String),
}

struct Authenticated {
    principal: String,
    mechanism: SaslMechanism,
    expires_at: Option<Instant>,
}

impl Session {
    /// Kafka's gate in front of the APIs: before authentication only ApiVersions,
    /// SaslHandshake and SaslAuthenticate, each in its turn; after the session
    /// lifetime only SaslHandshake (KIP-368).
    pub(crate) fn admit(&self, server: &SaslServer, api_key: ApiKey, now: Instant) -> Admission {
        if !server.required {
            return Admission::Serve;
        }
        let mid_exchange = !matches!(self.stage, Stage::Idle);
        match api_key {
            ApiKey::SaslHandshake if mid_exchange => {
                Admission::Close("SaslHandshake in the middle of a SASL exchange".to_owned())
            }
            ApiKey::SaslHandshake => Admission::Serve,
            ApiKey::SaslAuthenticate if mid_exchange => Admission::Serve,
            ApiKey::SaslAuthenticate => {
                Admission::Close("SaslAuthenticate without a SaslHandshake first".to_owned())
            }
            other => match &self.authenticated {
                Some(session) if session.expires_at.is_some_and(|at| now >= at) => {
                    Admission::Close(format!(
                        "{other:?} after the SASL session of {} expired (KIP-368: \
                         re-authenticate first)",
                        session.principal
                    ))
                }
                Some(_) => Admission::Serve,
                None if other == ApiKey::ApiVersions && !mid_exchange => Admission::Serve,
                None => Admission::Close(format!("{other:?} before SASL authentication completed")),
            },
        }
    }

    pub(crate) fn handshake(&mut self, server: &SaslServer, mechanism: &str) -> HandshakeAnswer {
        let answer = |code, close| HandshakeAnswer {
            code,
            mechanisms: server.mechanism_names(),
            close,
        };
        if !server.required {
            return answer(ILLEGAL_SASL_STATE, false);
        }
        let Some(mechanism) =
            SaslMechanism::from_name(mechanism).filter(|m| server.mechanisms.contains(m))
        else {
            return answer(UNSUPPORTED_SASL_MECHANISM, true);
        };
        if let Some(session) = &self.authenticated {
            if session.mechanism != mechanism {
                // KIP-368: re-authentication keeps the mechanism.
                return answer(ILLEGAL_SASL_STATE, true);
            }
        }
        self.stage = Stage::Handshaken(mechanism);
        answer(0, false)
    }

    pub(crate) fn authenticate(
        &mut self,
        server: &SaslServer,
        auth_bytes: &[u8],
        now: Instant,
    ) -> AuthenticateAnswer {
        let fail = |code, message: String| AuthenticateAnswer::Failed {
            code,
            message,
            close: true,
        };
        if !server.required {
            return AuthenticateAnswer::Failed {
                code: ILLEGAL_SASL_STATE,
                message: "SASL is not enabled on this listener".to_owned(),
                close: false,
            };
        }
        let (mechanism, principal, auth_bytes) = match std::mem::take(&mut self.stage) {
            Stage::Idle => {
                return fail(
                    ILLEGAL_SASL_STATE,
                    "SaslAuthenticate without a SaslHandshake first".to_owned(),
                )
            }
            Stage::Handshaken(mechanism @ SaslMechanism::Plain) => {
                let check = |user: &str, password: &str| {
                    server
                        .users
                        .get(user)
                        .is_some_and(|u| u.password == password)
                };
                match plain::authenticate(auth_bytes, check) {
                    Ok(principal) => (mechanism, principal, Vec::new()),
                    Err(message) => return fail(SASL_AUTHENTICATION_FAILED, message),
                }
            }
            Stage::Handshaken(mechanism @ SaslMechanism::OAuthBearer) => {
                let lookup = |token: &str| server.oauth_tokens.get(token).cloned();
                match oauthbearer::authenticate(auth_bytes, lookup) {
                    oauthbearer::Outcome::Principal(principal) => {
                        (mechanism, principal, Vec::new())
                    }
                    oauthbearer::Outcome::Challenge(json) => {
                        self.stage = Stage::OAuthError(json.clone());
                        return AuthenticateAnswer::Continue(json.into_bytes());
                    }
                    oauthbearer::Outcome::Failed(message) => {
                        return fail(SASL_AUTHENTICATION_FAILED, message)
                    }
                }
            }
            Stage::Handshaken(mechanism) => {
                let Some(hash) = mechanism.scram_hash() else {
                    return fail(
                        ILLEGAL_SASL_STATE,
                        format!("mock bug: no exchange for {mechanism}"),
                    );
                };
                let lookup = |user: &str| server.users.get(user).map(|u| u.scram(hash).clone());
                let nonce = server.server_nonce();
                match scram::server_first(hash, mechanism.name(), auth_bytes, &nonce, lookup) {
                    Ok((server_first, pending)) => {
                        self.stage = Stage::ScramFinal(mechanism, Box::new(pending));
                        return AuthenticateAnswer::Continue(server_first);
                    }
                    Err(message) => return fail(SASL_AUTHENTICATION_FAILED, message),
                }
            }
            Stage::ScramFinal(mechanism, pending) => {
                let forge = server.forge_server_signature;
                match scram::server_final(*pending, mechanism.name(), auth_bytes, forge) {
                    Ok((server_final, principal)) => (mechanism, principal, server_final),
                    Err(message) => return fail(SASL_AUTHENTICATION_FAILED, message),
                }
            }
            // Kafka's OAuthBearerSaslServer: the client acknowledged (or not) the
            // error challenge; the exchange fails with the challenge as the message.
            Stage::OAuthError(json) => return fail(SASL_AUTHENTICATION_FAILED, json),
        };
        if let Some(previous) = &self.authenticated {
            if previous.principal != principal {
                return fail(
                    SASL_AUTHENTICATION_FAILED,
                    format!(
                        "Cannot change principals during re-authentication from User:{}: User:{principal}",
                        previous.principal
                    ),
                );
            }
        }
        self.authenticated = Some(Authenticated {
            principal,
            mechanism,
            expires_at: server.session_lifetime.map(|lifetime| now + lifetime),
        });
        AuthenticateAnswer::Authenticated {
            auth_bytes,
            session_lifetime: server.session_lifetime,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(configure: impl FnOnce(&mut SaslConfig)) -> SaslServer {
        let mut config = SaslConfig::default();
        config.users([("alice", "secret")]);
        configure(&mut config);
        config.build(Arc::default())
    }

    fn plain_login(session: &mut Session, server: &SaslServer, now: Instant) -> AuthenticateAnswer {
        assert_eq!(session.handshake(server, "PLAIN").code, 0);
        session.authenticate(server, b"\0alice\0secret", now)
    }

    #[test]
    fn only_the_handshake_and_api_versions_come_before_authentication() {
        let server = server(|_| {});
        let now = Instant::now();
        let mut session = Session::default();
        assert_eq!(
            session.admit(&server, ApiKey::ApiVersions, now),
            Admission::Serve
        );
        assert_eq!(
            session.admit(&server, ApiKey::SaslHandshake, now),
            Admission::Serve
        );
        for api in [ApiKey::Metadata, ApiKey::Produce, ApiKey::SaslAuthenticate] {
            assert!(matches!(
                session.admit(&server, api, now),
                Admission::Close(_)
            ));
        }
        assert_eq!(session.handshake(&server, "PLAIN").code, 0);
        // Between handshake and authenticate, only SaslAuthenticate.
        assert_eq!(
            session.admit(&server, ApiKey::SaslAuthenticate, now),
            Admission::Serve
        );
        for api in [ApiKey::ApiVersions, ApiKey::SaslHandshake, ApiKey::Metadata] {
            assert!(matches!(
                session.admit(&server, api, now),
                Admission::Close(_)
            ));
        }
        assert!(matches!(
            session.authenticate(&server, b"\0alice\0secret", now),
            AuthenticateAnswer::Authenticated { .. }
        ));
        assert_eq!(
            session.admit(&server, ApiKey::Metadata, now),
            Admission::Serve
        );
    }

    #[test]
    fn without_sasl_everything_is_served_and_sasl_requests_are_illegal() {
        let server = SaslConfig::default().build(Arc::default());
        let mut session = Session::default();
        let now = Instant::now();
        assert_eq!(
            session.admit(&server, ApiKey::Metadata, now),
            Admission::Serve
        );
        let answer = session.handshake(&server, "PLAIN");
        assert_eq!((answer.code, answer.close), (ILLEGAL_SASL_STATE, false));
        assert!(matches!(
            session.authenticate(&server, b"\0alice\0secret", now),
            AuthenticateAnswer::Failed {
                code: ILLEGAL_SASL_STATE,
                close: false,
                ..
            }
        ));
    }

    #[test]
    fn unknown_or_disabled_mechanisms_are_unsupported() {
        let server = server(|c| c.mechanisms([SaslMechanism::ScramSha512]));
        let mut session = Session::default();
        for name in ["GSSAPI", "PLAIN", "plain"] {
            let answer = session.handshake(&server, name);
            assert_eq!(answer.code, UNSUPPORTED_SASL_MECHANISM);
            assert_eq!(answer.mechanisms, ["SCRAM-SHA-512"]);
            assert!(answer.close);
        }
    }

    #[test]
    fn plain_wrong_password_and_unknown_user_fail() {
        let server = server(|_| {});
        let now = Instant::now();
        for message in [&b"\0alice\0wrong"[..], b"\0mallory\0secret"] {
            let mut session = Session::default();
            session.handshake(&server, "PLAIN");
            match session.authenticate(&server, message, now) {
                AuthenticateAnswer::Failed {
                    code,
                    message,
                    close,
                } => {
                    assert_eq!(code, SASL_AUTHENTICATION_FAILED);
                    assert_eq!(
                        message,
                        "Authentication failed: Invalid username or password"
                    );
                    assert!(close);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn sessions_expire_and_reauthentication_renews_them() {
        let server = server(|c| c.session_lifetime(Duration::from_secs(10)));
        let start = Instant::now();
        let mut session = Session::default();
        assert_eq!(
            plain_login(&mut session, &server, start),
            AuthenticateAnswer::Authenticated {
                auth_bytes: Vec::new(),
                session_lifetime: Some(Duration::from_secs(10)),
            }
        );
        let later = start + Duration::from_secs(10);
        assert!(matches!(
            session.admit(&server, ApiKey::Metadata, later),
            Admission::Close(_)
        ));
        // KIP-368: the handshake is still allowed, and a re-authentication renews.
        assert_eq!(
            session.admit(&server, ApiKey::SaslHandshake, later),
            Admission::Serve
        );
        assert!(matches!(
            plain_login(&mut session, &server, later),
            AuthenticateAnswer::Authenticated { .. }
        ));
        assert_eq!(
            session.admit(&server, ApiKey::Metadata, later),
            Admission::Serve
        );
        assert!(matches!(
            session.admit(&server, ApiKey::Metadata, later + Duration::from_secs(10)),
            Admission::Close(_)
        ));
    }

    #[test]
    fn reauthentication_keeps_mechanism_and_principal() {
        let server = server(|c| c.users([("bob", "pw")]));
        let now = Instant::now();
        let mut session = Session::default();
        plain_login(&mut session, &server, now);
        let answer = session.handshake(&server, "SCRAM-SHA-256");
        assert_eq!((answer.code, answer.close), (ILLEGAL_SASL_STATE, true));

        let mut session = Session::default();
        plain_login(&mut session, &server, now);
        session.handshake(&server, "PLAIN");
        match session.authenticate(&server, b"\0bob\0pw", now) {
            AuthenticateAnswer::Failed { code, message, .. } => {
                assert_eq!(code, SASL_AUTHENTICATION_FAILED);
                assert!(message.contains("Cannot change principals"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn oauthbearer_error_challenge_then_failure() {
        let server = server(|c| {
            c.mechanisms([SaslMechanism::OAuthBearer]);
            c.oauth_tokens([("good", "alice")]);
        });
        let now = Instant::now();
        let mut session = Session::default();
        session.handshake(&server, "OAUTHBEARER");
        assert_eq!(
            session.authenticate(&server, b"n,,\x01auth=Bearer bad\x01\x01", now),
            AuthenticateAnswer::Continue(oauthbearer::INVALID_TOKEN.as_bytes().to_vec())
        );
        assert!(matches!(
            session.authenticate(&server, b"\x01", now),
            AuthenticateAnswer::Failed {
                code: SASL_AUTHENTICATION_FAILED,
                ..
            }
        ));

        let mut session = Session::default();
        session.handshake(&server, "OAUTHBEARER");
        assert!(matches!(
            session.authenticate(&server, b"n,,\x01auth=Bearer good\x01\x01", now),
            AuthenticateAnswer::Authenticated { .. }
        ));
    }

    proptest::proptest! {
        /// Nothing a client sends panics the server side, whatever the mechanism
        /// and step. SCRAM's first step is made to parse (so the second sees
        /// random bytes) half of the time.
        #[test]
        fn random_client_bytes_never_panic(
            mechanism in proptest::sample::select(vec![
                "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER",
            ]),
            first in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
            second in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
            valid_first in proptest::prelude::any::<bool>(),
        ) {
            static SERVER: std::sync::OnceLock<SaslServer> = std::sync::OnceLock::new();
            let server = SERVER.get_or_init(|| {
                server(|c| {
                    c.mechanisms([
                        SaslMechanism::Plain,
                        SaslMechanism::ScramSha256,
                        SaslMechanism::ScramSha512,
                        SaslMechanism::OAuthBearer,
                    ]);
                    c.oauth_tokens([("t", "alice")]);
                })
            });
            let now = Instant::now();
            let mut session = Session::default();
            session.handshake(server, mechanism);
            let first = if valid_first && mechanism.starts_with("SCRAM") {
                b"n,,n=alice,r=nonce".to_vec()
            } else {
                first
            };
            session.authenticate(server, &first, now);
            let _ = session.admit(server, ApiKey::SaslAuthenticate, now);
            session.authenticate(server, &second, now);
        }
    }

    #[test]
    fn debug_does_not_print_passwords() {
        let mut config = SaslConfig::default();
        config.users([("alice", "hunter2")]);
        let text = format!("{config:?}");
        assert!(
            text.contains("alice") && !text.contains("hunter2"),
            "{text}"
        );
    }
}
