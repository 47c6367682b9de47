//! SCRAM-SHA-256 and SCRAM-SHA-512, client side (RFC 5802, RFC 7677; Kafka's KIP-84),
//! without channel binding (`n,,`), as Kafka offers none.
//!
//! ```text
//! client-first   n,,n=<saslname>,r=<client nonce>
//! server-first   r=<client nonce><server nonce>,s=<base64 salt>,i=<iterations>
//! client-final   c=biws,r=<nonce>,p=<base64 ClientProof>
//! server-final   v=<base64 ServerSignature>      (or e=<error>)
//!
//! SaltedPassword  = PBKDF2-HMAC-H(password, salt, iterations)
//! ClientKey       = HMAC(SaltedPassword, "Client Key")
//! StoredKey       = H(ClientKey)
//! AuthMessage     = client-first-bare "," server-first "," client-final-without-proof
//! ClientProof     = ClientKey XOR HMAC(StoredKey, AuthMessage)
//! ServerSignature = HMAC(HMAC(SaltedPassword, "Server Key"), AuthMessage)
//! ```
//!
//! The exchange only counts as done once the server's signature checked out (compared
//! in constant time): a server that answers "success" without knowing the credentials
//! is refused. The PBKDF2 step costs `iterations` HMACs on the caller's thread, so the
//! count is bounded on both sides ([`MIN_ITERATIONS`], [`MAX_ITERATIONS`]).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::distr::Alphanumeric;
use rand::Rng as _;
use sha2::{Digest, Sha256, Sha512};

use super::{excerpt, Credentials, Mechanism, SaslError, MAX_ITERATIONS, MIN_ITERATIONS};
/// Client nonce length; random alphanumeric characters, as Kafka's own client uses.
const NONCE_LEN: usize = 32;
/// `c=` in the client-final message: base64 of the GS2 header `n,,`.
const CHANNEL_BINDING: &str = "biws";

/// HMAC-`$hash` over `$data` keyed with `$key`, ready to finalize or verify.
macro_rules! keyed_mac {
    ($hash:ty, $key:expr, $data:expr) => {{
        let mut mac = Hmac::<$hash>::new_from_slice($key).expect("HMAC accepts keys of any length");
        mac.update($data);
        mac
    }};
}

/// The hash function a SCRAM mechanism is named after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScramHash {
    Sha256,
    Sha512,
}

impl ScramHash {
    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
            ScramHash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => keyed_mac!(Sha256, key, data)
                .finalize()
                .into_bytes()
                .to_vec(),
            ScramHash::Sha512 => keyed_mac!(Sha512, key, data)
                .finalize()
                .into_bytes()
                .to_vec(),
        }
    }

    /// Whether `tag` is HMAC(key, data), compared in constant time.
    fn verify_hmac(self, key: &[u8], data: &[u8], tag: &[u8]) -> bool {
        match self {
            ScramHash::Sha256 => keyed_mac!(Sha256, key, data).verify_slice(tag).is_ok(),
            ScramHash::Sha512 => keyed_mac!(Sha512, key, data).verify_slice(tag).is_ok(),
        }
    }

    /// RFC 5802's `Hi()`: PBKDF2 with HMAC-H, one block of the hash's output length.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            ScramHash::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// One SCRAM exchange.
pub(crate) struct Scram {
    hash: ScramHash,
    credentials: Credentials,
    nonce: String,
    state: State,
}

enum State {
    Start,
    /// client-first sent; `bare` is it without the GS2 header, for the AuthMessage.
    ClientFirstSent {
        bare: String,
    },
    /// client-final sent; what the server's signature must be HMAC'd from.
    ClientFinalSent {
        server_key: Vec<u8>,
        auth_message: String,
    },
    /// Verified, or failed: nothing more to do either way.
    Done,
}

impl Scram {
    /// An exchange with a fresh random nonce.
    pub(crate) fn new(hash: ScramHash, credentials: Credentials) -> Self {
        let nonce = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(NONCE_LEN)
            .map(char::from)
            .collect();
        Self::with_nonce(hash, credentials, nonce)
    }

    /// An exchange with a fixed client nonce, for test vectors. The nonce must be
    /// printable ASCII without `,`.
    pub(crate) fn with_nonce(hash: ScramHash, credentials: Credentials, nonce: String) -> Self {
        Self {
            hash,
            credentials,
            nonce,
            state: State::Start,
        }
    }

    fn client_first(&mut self) -> Vec<u8> {
        let bare = format!(
            "n={},r={}",
            saslname(self.credentials.username()),
            self.nonce
        );
        let message = format!("n,,{bare}");
        self.state = State::ClientFirstSent { bare };
        message.into_bytes()
    }

    fn client_final(&mut self, bare: &str, server_first: &[u8]) -> Result<Vec<u8>, SaslError> {
        let server_first_text = std::str::from_utf8(server_first)
            .map_err(|_| malformed("server-first message is not UTF-8", server_first))?;
        let parsed = ServerFirst::parse(server_first_text, &self.nonce)?;

        let salted = self.hash.salted_password(
            self.credentials.password().as_bytes(),
            &parsed.salt,
            parsed.iterations,
        );
        let client_key = self.hash.hmac(&salted, b"Client Key");
        let stored_key = self.hash.hash(&client_key);
        let without_proof = format!("c={CHANNEL_BINDING},r={}", parsed.nonce);
        let auth_message = format!("{bare},{server_first_text},{without_proof}");
        let client_signature = self.hash.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = self.hash.hmac(&salted, b"Server Key");

        self.state = State::ClientFinalSent {
            server_key,
            auth_message,
        };
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    fn verify_server_final(
        &self,
        server_key: &[u8],
        auth_message: &str,
        server_final: &[u8],
    ) -> Result<(), SaslError> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| malformed("server-final message is not UTF-8", server_final))?;
        // server-final-message = (server-error / verifier) ["," extensions]
        let first = text.split(',').next().unwrap_or_default();
        if let Some(error) = first.strip_prefix("e=") {
            return Err(SaslError::ServerError(bounded(error)));
        }
        let Some(signature) = first.strip_prefix("v=") else {
            return Err(malformed(
                "server-final message has neither v= nor e=",
                server_final,
            ));
        };
        let signature = BASE64
            .decode(signature)
            .map_err(|_| malformed("server signature is not base64", server_final))?;
        if self
            .hash
            .verify_hmac(server_key, auth_message.as_bytes(), &signature)
        {
            Ok(())
        } else {
            Err(SaslError::ServerSignatureMismatch)
        }
    }
}

impl Mechanism for Scram {
    fn step(&mut self, server: Option<&[u8]>) -> Result<Option<Vec<u8>>, SaslError> {
        // Any failure below leaves the exchange Done: a failed exchange is not resumed.
        let state = std::mem::replace(&mut self.state, State::Done);
        match (state, server) {
            (State::Start, None) => Ok(Some(self.client_first())),
            (State::ClientFirstSent { bare }, Some(server_first)) => {
                self.client_final(&bare, server_first).map(Some)
            }
            (
                State::ClientFinalSent {
                    server_key,
                    auth_message,
                },
                Some(server_final),
            ) => self
                .verify_server_final(&server_key, &auth_message, server_final)
                .map(|()| None),
            (State::Start, Some(_)) => {
                Err(SaslError::UnexpectedStep("SCRAM: the client speaks first"))
            }
            (State::ClientFirstSent { .. } | State::ClientFinalSent { .. }, None) => Err(
                SaslError::UnexpectedStep("SCRAM: expected the server's message"),
            ),
            (State::Done, _) => Err(SaslError::UnexpectedStep("SCRAM: the exchange is over")),
        }
    }
}

/// The parts of a server-first message the client uses.
#[derive(Debug)]
struct ServerFirst<'a> {
    nonce: &'a str,
    salt: Vec<u8>,
    iterations: u32,
}

impl<'a> ServerFirst<'a> {
    /// `server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count
    /// ["," extensions]`, attributes in that order.
    fn parse(text: &'a str, client_nonce: &str) -> Result<Self, SaslError> {
        let mut attributes = text.split(',');
        let mut next = |name: &'static str| -> Result<&'a str, SaslError> {
            let attribute = attributes.next().unwrap_or_default();
            if attribute.starts_with("m=") {
                return Err(SaslError::UnsupportedExtension);
            }
            if let Some(error) = attribute.strip_prefix("e=") {
                return Err(SaslError::ServerError(bounded(error)));
            }
            attribute.strip_prefix(name).ok_or_else(|| {
                SaslError::MalformedServerMessage(format!(
                    "server-first message lacks {name} where expected in {}",
                    excerpt(text.as_bytes())
                ))
            })
        };
        let nonce = next("r=")?;
        let salt = next("s=")?;
        let iterations = next("i=")?;

        if !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(malformed(
                "server nonce has non-printable characters",
                text.as_bytes(),
            ));
        }
        // The server must add its own part: a nonce equal to ours would let an
        // attacker replay an old exchange.
        if nonce.len() <= client_nonce.len() || !nonce.starts_with(client_nonce) {
            return Err(SaslError::NonceMismatch);
        }
        let salt = BASE64
            .decode(salt)
            .map_err(|_| malformed("salt is not base64", text.as_bytes()))?;
        if salt.is_empty() {
            return Err(malformed("salt is empty", text.as_bytes()));
        }
        if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed(
                "iteration count is not a number",
                text.as_bytes(),
            ));
        }
        // All digits: only overflow can fail, and that is too many anyway.
        let iterations = iterations.parse::<u32>().unwrap_or(u32::MAX);
        if iterations < MIN_ITERATIONS {
            return Err(SaslError::IterationCountTooLow(iterations));
        }
        if iterations > MAX_ITERATIONS {
            return Err(SaslError::IterationCountTooHigh(iterations));
        }
        Ok(Self {
            nonce,
            salt,
            iterations,
        })
    }
}

/// RFC 5802's `saslname`: the username with `=` as `=3D` and `,` as `=2C`.
fn saslname(username: &str) -> String {
    let mut out = String::with_capacity(username.len());
    for c in username.chars() {
        match c {
            '=' => out.push_str("=3D"),
            ',' => out.push_str("=2C"),
            c => out.push(c),
        }
    }
    out
}

fn malformed(what: &str, message: &[u8]) -> SaslError {
    SaslError::MalformedServerMessage(format!("{what}: {}", excerpt(message)))
}

/// A server-supplied error value, bounded so a hostile server cannot fill logs.
fn bounded(text: &str) -> String {
    const MAX: usize = 256;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    // RFC 7677 §3.
    const NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc7677() -> Scram {
        Scram::with_nonce(
            ScramHash::Sha256,
            Credentials::new("user", "pencil"),
            NONCE.to_owned(),
        )
    }

    fn text(bytes: Option<Vec<u8>>) -> String {
        String::from_utf8(bytes.expect("a message")).expect("UTF-8")
    }

    /// The exchange up to the client-final message.
    fn after_server_first(server_first: &str) -> Result<Scram, SaslError> {
        let mut scram = rfc7677();
        scram.step(None)?;
        scram.step(Some(server_first.as_bytes()))?;
        Ok(scram)
    }

    /// The RFC 7677 exchange waiting for the server-final message, without paying for
    /// PBKDF2 each time (the proptests need hundreds).
    fn awaiting_server_final() -> Scram {
        static KEYS: std::sync::OnceLock<(Vec<u8>, String)> = std::sync::OnceLock::new();
        let (server_key, auth_message) =
            KEYS.get_or_init(|| match after_server_first(SERVER_FIRST).unwrap().state {
                State::ClientFinalSent {
                    server_key,
                    auth_message,
                } => (server_key, auth_message),
                _ => unreachable!("after server-first the client-final is sent"),
            });
        let mut scram = rfc7677();
        scram.state = State::ClientFinalSent {
            server_key: server_key.clone(),
            auth_message: auth_message.clone(),
        };
        scram
    }

    #[test]
    fn rfc7677_test_vector() {
        let mut scram = rfc7677();
        assert_eq!(
            text(scram.step(None).unwrap()),
            "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
        );
        assert_eq!(
            text(scram.step(Some(SERVER_FIRST.as_bytes())).unwrap()),
            CLIENT_FINAL
        );
        assert_eq!(scram.step(Some(SERVER_FINAL.as_bytes())).unwrap(), None);
        assert_eq!(
            scram.step(Some(SERVER_FINAL.as_bytes())),
            Err(SaslError::UnexpectedStep("SCRAM: the exchange is over"))
        );
        // The tests' shortcut holds the same keys as the real exchange.
        assert_eq!(
            awaiting_server_final().step(Some(SERVER_FINAL.as_bytes())),
            Ok(None)
        );
    }

    #[test]
    fn forged_server_signature_is_refused() {
        let mut scram = after_server_first(SERVER_FIRST).unwrap();
        // Same length, one bit changed in the first byte.
        let forged = "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
        assert_eq!(
            scram.step(Some(forged.as_bytes())),
            Err(SaslError::ServerSignatureMismatch)
        );
        // A failed exchange is over.
        assert!(scram.step(Some(SERVER_FINAL.as_bytes())).is_err());

        for forged in [
            "v=",
            "v=AAAA",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=AAAA",
        ] {
            let mut scram = awaiting_server_final();
            assert!(scram.step(Some(forged.as_bytes())).is_err(), "{forged}");
        }
    }

    #[test]
    fn server_error_in_final_message_is_reported() {
        let mut scram = awaiting_server_final();
        assert_eq!(
            scram.step(Some(b"e=invalid-proof")),
            Err(SaslError::ServerError("invalid-proof".to_owned()))
        );
    }

    #[test]
    fn nonce_not_extending_ours_is_refused() {
        for server_first in [
            // a different client part
            "r=XOprNGfwEbeRWgbNEkqO%hvYDpWUa2,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            // no server part at all
            "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            // a prefix of ours
            "r=rOprNG,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        ] {
            assert_eq!(
                after_server_first(server_first).err(),
                Some(SaslError::NonceMismatch),
                "{server_first}"
            );
        }
    }

    #[test]
    fn iteration_counts_are_bounded() {
        let with = |i: &str| {
            after_server_first(&format!(
                "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i={i}"
            ))
            .err()
        };
        assert_eq!(with("4095"), Some(SaslError::IterationCountTooLow(4095)));
        assert_eq!(with("1"), Some(SaslError::IterationCountTooLow(1)));
        assert_eq!(with("0"), Some(SaslError::IterationCountTooLow(0)));
        assert_eq!(
            with("100001"),
            Some(SaslError::IterationCountTooHigh(100_001))
        );
        assert_eq!(
            with("99999999999999999999"),
            Some(SaslError::IterationCountTooHigh(u32::MAX))
        );
        for bad in ["", "-4096", "+4096", "4096.0", " 4096", "0x1000"] {
            assert!(
                matches!(with(bad), Some(SaslError::MalformedServerMessage(_))),
                "{bad:?}: {:?}",
                with(bad)
            );
        }
        assert_eq!(with("4096"), None);
    }

    #[test]
    fn malformed_server_first_messages_fail() {
        for server_first in [
            "",
            ",,,",
            "s=W22ZaJ0SNY7soEsUEjb6gQ==,r=rOprNGfwEbeRWgbNEkqOxyz,i=4096",
            "r=rOprNGfwEbeRWgbNEkqOxyz,i=4096,s=W22ZaJ0SNY7soEsUEjb6gQ==",
            "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==",
            "r=rOprNGfwEbeRWgbNEkqOxyz,s=not base64!,i=4096",
            "r=rOprNGfwEbeRWgbNEkqOxyz,s=,i=4096",
            "r=rOprNGfwEbeRWgbNEkqO\u{7f}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        ] {
            assert!(
                matches!(
                    after_server_first(server_first).err(),
                    Some(SaslError::MalformedServerMessage(_))
                ),
                "{server_first:?}"
            );
        }
        let mut scram = rfc7677();
        scram.step(None).unwrap();
        assert!(matches!(
            scram.step(Some(&[0xff, 0xfe])),
            Err(SaslError::MalformedServerMessage(_))
        ));
    }

    #[test]
    fn mandatory_extensions_and_early_errors_are_refused() {
        assert_eq!(
            after_server_first("m=foo,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
                .err(),
            Some(SaslError::UnsupportedExtension)
        );
        assert_eq!(
            after_server_first("e=unknown-user").err(),
            Some(SaslError::ServerError("unknown-user".to_owned()))
        );
        // Extensions after the iteration count are allowed and ignored.
        assert!(after_server_first(&format!("{SERVER_FIRST},x=ext")).is_ok());
    }

    #[test]
    fn malformed_server_final_messages_fail() {
        for server_final in [
            "",
            "x=1",
            "v=!!!",
            "V=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        ] {
            let mut scram = awaiting_server_final();
            assert!(
                matches!(
                    scram.step(Some(server_final.as_bytes())),
                    Err(SaslError::MalformedServerMessage(_))
                ),
                "{server_final:?}"
            );
        }
    }

    #[test]
    fn usernames_are_escaped() {
        assert_eq!(saslname("a=b,c"), "a=3Db=2Cc");
        assert_eq!(saslname("=2C"), "=3D2C");
        let mut scram = Scram::with_nonce(
            ScramHash::Sha512,
            Credentials::new("us,er=", "pw"),
            "abc".to_owned(),
        );
        assert_eq!(text(scram.step(None).unwrap()), "n,,n=us=2Cer=3D,r=abc");
    }

    #[test]
    fn sha512_round_trip_against_an_independent_server_computation() {
        // The server side, computed here from the RFC 5802 definitions.
        let hash = ScramHash::Sha512;
        let salt = b"0123456789abcdef";
        let mut scram = Scram::with_nonce(
            hash,
            Credentials::new("alice", "secret"),
            "clientnonce".to_owned(),
        );
        let first = text(scram.step(None).unwrap());
        let bare = first.strip_prefix("n,,").unwrap();
        let server_first = format!("r=clientnonceSERVER,s={},i=4096", BASE64.encode(salt));
        let client_final = text(scram.step(Some(server_first.as_bytes())).unwrap());
        let (without_proof, proof) = client_final.split_once(",p=").unwrap();
        assert_eq!(without_proof, "c=biws,r=clientnonceSERVER");

        let salted = hash.salted_password(b"secret", salt, 4096);
        let stored_key = hash.hash(&hash.hmac(&salted, b"Client Key"));
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let signature = hash.hmac(&stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = BASE64
            .decode(proof)
            .unwrap()
            .iter()
            .zip(&signature)
            .map(|(p, s)| p ^ s)
            .collect();
        assert_eq!(hash.hash(&client_key), stored_key, "the proof verifies");

        let server_key = hash.hmac(&salted, b"Server Key");
        let server_signature = hash.hmac(&server_key, auth_message.as_bytes());
        let server_final = format!("v={}", BASE64.encode(server_signature));
        assert_eq!(scram.step(Some(server_final.as_bytes())).unwrap(), None);
    }

    #[test]
    fn random_nonces_are_long_printable_and_fresh() {
        let nonce = |scram: &mut Scram| {
            let first = text(scram.step(None).unwrap());
            first.rsplit_once(",r=").unwrap().1.to_owned()
        };
        let credentials = Credentials::new("u", "p");
        let a = nonce(&mut Scram::new(ScramHash::Sha256, credentials.clone()));
        let b = nonce(&mut Scram::new(ScramHash::Sha256, credentials));
        assert!(a.len() >= 24, "{a}");
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn errors_never_contain_the_password() {
        let mut scram = Scram::with_nonce(
            ScramHash::Sha256,
            Credentials::new("user", "hunter2-secret"),
            NONCE.to_owned(),
        );
        scram.step(None).unwrap();
        scram.step(Some(SERVER_FIRST.as_bytes())).unwrap();
        let err = scram.step(Some(SERVER_FINAL.as_bytes())).unwrap_err();
        assert_eq!(err, SaslError::ServerSignatureMismatch);
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the server sends, at either step, the client answers or fails;
        /// it never panics. Server-first messages that parse cost a PBKDF2, so most
        /// cases are made to fail before it.
        #[test]
        fn random_server_bytes_never_panic(
            first in proptest::collection::vec(any::<u8>(), 0..200),
            last in proptest::collection::vec(any::<u8>(), 0..200),
            prefix in proptest::sample::select(vec!["", "r=", "r=rOprNGfwEbeRWgbNEkqO", "e=", "m=", "v="]),
        ) {
            let mut scram = rfc7677();
            scram.step(None).unwrap();
            let mut server_first = prefix.as_bytes().to_vec();
            server_first.extend_from_slice(&first);
            let _ = scram.step(Some(&server_first));

            let mut scram = awaiting_server_final();
            let mut server_final = prefix.as_bytes().to_vec();
            server_final.extend_from_slice(&last);
            let result = scram.step(Some(&server_final));
            prop_assert!(result.is_err() || server_final == SERVER_FINAL.as_bytes());
        }

        /// Structured but wrong server-first messages fail cleanly too.
        #[test]
        fn random_server_first_fields_never_panic(
            nonce in "[ -~]{0,40}",
            salt in "[ -~]{0,30}",
            iterations in "[0-9+-]{0,12}",
        ) {
            let mut scram = rfc7677();
            scram.step(None).unwrap();
            let message = format!("r={nonce},s={salt},i={iterations}");
            let _ = scram.step(Some(message.as_bytes()));
        }
    }
}
