//! SCRAM-SHA-256 and SCRAM-SHA-512, server side (RFC 5802, RFC 7677; Kafka's KIP-84).
//!
//! The mock's own implementation, not the client's: a test of the client against it
//! is then a test of two independent readings of the RFC. Like Kafka, it stores only
//! derived keys (StoredKey, ServerKey), offers no channel binding, and answers a bad
//! proof or an unknown user with SASL_AUTHENTICATION_FAILED rather than RFC 5802's
//! `e=` server-final message.
//!
//! ```text
//! client-first   gs2-header client-first-bare    gs2-header = "n,," | "y,," | "n,a=<authzid>,"
//! server-first   r=<client nonce><server nonce>,s=<base64 salt>,i=<iterations>
//! client-final   c=<base64 gs2-header>,r=<nonce>[,ext]*,p=<base64 ClientProof>
//! server-final   v=<base64 ServerSignature>
//! ```

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// Kafka's default (and RFC 7677's minimum) iteration count for new credentials.
pub(crate) const ITERATIONS: u32 = 4096;
pub(crate) const SALT_LEN: usize = 16;
/// Bytes drawn for a server nonce; each becomes one alphanumeric character.
pub(crate) const SERVER_NONCE_LEN: usize = 24;

/// A server nonce from random bytes: RFC 5802 allows any printable character
/// but `,`; alphanumerics keep logs readable.
pub(crate) fn server_nonce(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

macro_rules! mac {
    ($hash:ty, $key:expr, $data:expr) => {{
        let mut mac = Hmac::<$hash>::new_from_slice($key).expect("HMAC accepts keys of any length");
        mac.update($data);
        mac.finalize().into_bytes().to_vec()
    }};
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => mac!(Sha256, key, data),
            Hash::Sha512 => mac!(Sha512, key, data),
        }
    }

    fn pbkdf2(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Hash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            Hash::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// What the server keeps for one user and hash, as Kafka's `ScramCredential`.
#[derive(Clone)]
pub(crate) struct Credential {
    salt: Vec<u8>,
    iterations: u32,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl Credential {
    /// Derives a credential (PBKDF2 with `iterations` rounds, so not free).
    pub(crate) fn with_salt(hash: Hash, password: &str, salt: Vec<u8>, iterations: u32) -> Self {
        let salted = hash.pbkdf2(password.as_bytes(), &salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        Credential {
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
            salt,
            iterations,
        }
    }
}

/// An exchange after the server-first message, waiting for the client's proof.
pub(crate) struct Pending {
    hash: Hash,
    username: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    credential: Credential,
}

/// Why an exchange failed: the text for SaslAuthenticate's error message.
pub(crate) type Failure = String;

fn invalid_credentials(mechanism: &str) -> Failure {
    format!(
        "Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
    )
}

/// Answers a client-first message, appending `server_nonce` to the client's.
/// `lookup` finds the user's credential.
pub(crate) fn server_first(
    hash: Hash,
    mechanism: &str,
    client_first: &[u8],
    server_nonce: &str,
    lookup: impl FnOnce(&str) -> Option<Credential>,
) -> Result<(Vec<u8>, Pending), Failure> {
    let malformed =
        |why: &str| format!("Authentication failed: invalid SCRAM client-first message ({why})");
    let text = std::str::from_utf8(client_first).map_err(|_| malformed("not UTF-8"))?;
    // gs2-header = gs2-cbind-flag "," [ authzid ] ","
    let (cbind, rest) = text
        .split_once(',')
        .ok_or_else(|| malformed("no GS2 header"))?;
    if cbind != "n" && cbind != "y" {
        return Err(malformed("channel binding is not supported"));
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or_else(|| malformed("no GS2 header"))?;
    let gs2_header = format!("{cbind},{authzid},");
    let mut attributes = bare.split(',');
    let username = attributes
        .next()
        .and_then(|a| a.strip_prefix("n="))
        .ok_or_else(|| malformed("no n= username"))?;
    let username = unescape(username).ok_or_else(|| malformed("bad escape in the username"))?;
    let client_nonce = attributes
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b)))
        .ok_or_else(|| malformed("no valid r= nonce"))?;
    if !authzid.is_empty() {
        // Kafka: the authorization id must be the user itself.
        let authzid = authzid
            .strip_prefix("a=")
            .and_then(unescape)
            .ok_or_else(|| malformed("bad authzid"))?;
        if authzid != username {
            return Err(
                "Authentication failed: Client requested an authorization id that is \
                        different from username"
                    .to_owned(),
            );
        }
    }
    let credential = lookup(&username).ok_or_else(|| invalid_credentials(mechanism))?;
    let nonce = format!("{client_nonce}{server_nonce}");
    let server_first = format!(
        "r={nonce},s={},i={}",
        BASE64.encode(&credential.salt),
        credential.iterations
    );
    let pending = Pending {
        hash,
        username,
        gs2_header,
        client_first_bare: bare.to_owned(),
        server_first: server_first.clone(),
        nonce,
        credential,
    };
    Ok((server_first.into_bytes(), pending))
}

/// Checks a client-final message; on success returns the server-final message (its
/// signature corrupted when `forge`) and the authenticated user.
pub(crate) fn server_final(
    pending: Pending,
    mechanism: &str,
    client_final: &[u8],
    forge: bool,
) -> Result<(Vec<u8>, String), Failure> {
    let malformed =
        |why: &str| format!("Authentication failed: invalid SCRAM client-final message ({why})");
    let text = std::str::from_utf8(client_final).map_err(|_| malformed("not UTF-8"))?;
    let (without_proof, proof) = text
        .rsplit_once(",p=")
        .ok_or_else(|| malformed("no p= proof"))?;
    let mut attributes = without_proof.split(',');
    let binding = attributes
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .ok_or_else(|| malformed("no c= channel binding"))?;
    if BASE64.decode(binding).ok().as_deref() != Some(pending.gs2_header.as_bytes()) {
        return Err(malformed("c= does not repeat the GS2 header"));
    }
    let nonce = attributes
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or_else(|| malformed("no r= nonce"))?;
    if nonce != pending.nonce {
        return Err(malformed("the nonce is not the one the server sent"));
    }
    let proof = BASE64
        .decode(proof)
        .map_err(|_| malformed("the proof is not base64"))?;

    let hash = pending.hash;
    let auth_message = format!(
        "{},{},{without_proof}",
        pending.client_first_bare, pending.server_first
    );
    let client_signature = hash.hmac(&pending.credential.stored_key, auth_message.as_bytes());
    if proof.len() != client_signature.len() {
        return Err(invalid_credentials(mechanism));
    }
    let client_key: Vec<u8> = proof
        .iter()
        .zip(&client_signature)
        .map(|(p, s)| p ^ s)
        .collect();
    if !same(&hash.digest(&client_key), &pending.credential.stored_key) {
        return Err(invalid_credentials(mechanism));
    }
    let mut signature = hash.hmac(&pending.credential.server_key, auth_message.as_bytes());
    if forge {
        signature[0] ^= 0x01;
    }
    let server_final = format!("v={}", BASE64.encode(signature));
    Ok((server_final.into_bytes(), pending.username))
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// RFC 5802 `saslname` back to the name: `=2C` is `,`, `=3D` is `=`, any other `=`
/// is an error.
fn unescape(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3)?;
        out.push(match escape {
            "=2C" => ',',
            "=3D" => '=',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677 §3, seen from the server.
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE_SUFFIX: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc7677_credential() -> Credential {
        Credential::with_salt(Hash::Sha256, "pencil", BASE64.decode(SALT).unwrap(), 4096)
    }

    /// The RFC's exchange, with the RFC's server nonce put in place of ours.
    fn rfc7677_pending() -> Pending {
        let (first, mut pending) = server_first(
            Hash::Sha256,
            "SCRAM-SHA-256",
            CLIENT_FIRST.as_bytes(),
            "ours",
            |user| (user == "user").then(rfc7677_credential),
        )
        .unwrap();
        let first = String::from_utf8(first).unwrap();
        assert!(first.starts_with("r=rOprNGfwEbeRWgbNEkqO"), "{first}");
        assert!(first.ends_with(&format!(",s={SALT},i=4096")), "{first}");
        pending.nonce = format!("rOprNGfwEbeRWgbNEkqO{SERVER_NONCE_SUFFIX}");
        pending.server_first = format!("r={},s={SALT},i=4096", pending.nonce);
        pending
    }

    #[test]
    fn rfc7677_test_vector() {
        let (last, user) = server_final(
            rfc7677_pending(),
            "SCRAM-SHA-256",
            CLIENT_FINAL.as_bytes(),
            false,
        )
        .unwrap();
        assert_eq!(String::from_utf8(last).unwrap(), SERVER_FINAL);
        assert_eq!(user, "user");
    }

    #[test]
    fn forged_signature_differs() {
        let (last, _) = server_final(
            rfc7677_pending(),
            "SCRAM-SHA-256",
            CLIENT_FINAL.as_bytes(),
            true,
        )
        .unwrap();
        let last = String::from_utf8(last).unwrap();
        assert!(last.starts_with("v="));
        assert_ne!(last, SERVER_FINAL);
    }

    #[test]
    fn a_wrong_proof_or_unknown_user_fails() {
        let wrong = CLIENT_FINAL.replace("p=dHz", "p=eHz");
        let err = server_final(rfc7677_pending(), "SCRAM-SHA-256", wrong.as_bytes(), false)
            .err()
            .unwrap();
        assert!(err.contains("invalid credentials"), "{err}");

        let err = server_first(
            Hash::Sha256,
            "SCRAM-SHA-256",
            CLIENT_FIRST.as_bytes(),
            "ours",
            |_| None,
        )
        .err()
        .unwrap();
        assert!(err.contains("invalid credentials"), "{err}");
    }

    #[test]
    fn malformed_client_messages_fail() {
        for first in [
            "",
            "n,,",
            "p=tls-unique,,n=user,r=abc",
            "n,,r=abc,n=user",
            "n,,n=user",
            "n,,n=us=3er,r=abc",
            "n,a=other,n=user,r=abc",
        ] {
            assert!(
                server_first(
                    Hash::Sha256,
                    "SCRAM-SHA-256",
                    first.as_bytes(),
                    "ours",
                    |_| { Some(rfc7677_credential()) }
                )
                .is_err(),
                "{first:?}"
            );
        }
        for last in [
            "",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            "c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO,p=AAAA",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=!!",
        ] {
            assert!(
                server_final(rfc7677_pending(), "SCRAM-SHA-256", last.as_bytes(), false).is_err(),
                "{last:?}"
            );
        }
    }

    #[test]
    fn usernames_are_unescaped_and_authzid_must_match() {
        assert_eq!(unescape("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(unescape("a=2"), None);
        assert_eq!(unescape("a=41"), None);
        let looked_up = std::cell::RefCell::new(String::new());
        server_first(
            Hash::Sha512,
            "SCRAM-SHA-512",
            b"n,a=a=2Cb,n=a=2Cb,r=xyz",
            "ours",
            |user| {
                *looked_up.borrow_mut() = user.to_owned();
                Some(Credential::with_salt(
                    Hash::Sha512,
                    "pw",
                    b"salt".to_vec(),
                    4096,
                ))
            },
        )
        .unwrap();
        assert_eq!(*looked_up.borrow(), "a,b");
    }
}
