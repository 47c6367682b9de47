//! OAUTHBEARER, client side (RFC 7628; Kafka's KIP-255, extensions KIP-342).
//!
//! ```text
//! client first   n,[a=<saslname>],\x01auth=Bearer <token>\x01[<key>=<value>\x01]*\x01
//! success        the server answers with an empty message
//! failure        the server sends an error (RFC 7628 §3.2.2, JSON: {"status": ...});
//!                the client must answer it with a lone \x01, and the server then ends
//!                the exchange with SASL_AUTHENTICATION_FAILED (Kafka puts the JSON in
//!                the error message)
//! ```
//!
//! The token is checked against RFC 6750's `b64token` and extensions against RFC 7628's
//! `key`/`value` grammar before anything is sent, so a token cannot smuggle a `\x01`
//! into the message and forge fields.

use super::{excerpt, long_excerpt, Mechanism, OAuthToken, SaslError};

/// `kvsep` in RFC 7628.
const SEP: u8 = 0x01;

pub(crate) struct OAuthBearer {
    token: Option<OAuthToken>,
    state: State,
}

enum State {
    Start,
    Sent,
    /// The server reported this error and we acknowledged it with `\x01`.
    ErrorAcknowledged(String),
    Done,
}

impl OAuthBearer {
    pub(crate) fn new(token: Option<OAuthToken>) -> Self {
        Self {
            token,
            state: State::Start,
        }
    }
}

impl Mechanism for OAuthBearer {
    fn step(&mut self, server: Option<&[u8]>) -> Result<Option<Vec<u8>>, SaslError> {
        let state = std::mem::replace(&mut self.state, State::Done);
        match (state, server) {
            (State::Start, None) => {
                let token = self.token.take().ok_or(SaslError::MissingToken)?;
                let message = client_first_message(&token)?;
                self.state = State::Sent;
                Ok(Some(message))
            }
            (State::Sent, Some([])) => Ok(None),
            (State::Sent, Some(error)) => {
                self.state = State::ErrorAcknowledged(long_excerpt(error));
                Ok(Some(vec![SEP]))
            }
            // The server should have failed the exchange after our acknowledgement;
            // whatever it says now, the error stands.
            (State::ErrorAcknowledged(error), Some(_)) => Err(SaslError::ServerError(error)),
            (State::Start, Some(_)) => Err(SaslError::UnexpectedStep(
                "OAUTHBEARER: the client speaks first",
            )),
            (State::Sent | State::ErrorAcknowledged(_), None) => Err(SaslError::UnexpectedStep(
                "OAUTHBEARER: expected the server's answer",
            )),
            (State::Done, _) => Err(SaslError::UnexpectedStep(
                "OAUTHBEARER: the exchange is over",
            )),
        }
    }
}

/// RFC 7628 §3.1 `client-resp`, with the GS2 header of RFC 5801 (no channel binding).
fn client_first_message(token: &OAuthToken) -> Result<Vec<u8>, SaslError> {
    if !is_b64token(&token.value) {
        return Err(SaslError::InvalidToken(
            "the token is empty or has characters outside RFC 6750's b64token".to_owned(),
        ));
    }
    let mut message = b"n,".to_vec();
    if let Some(principal) = &token.principal {
        if principal.is_empty() || principal.contains('\0') {
            return Err(SaslError::InvalidToken(
                "the principal is empty or contains a NUL byte".to_owned(),
            ));
        }
        message.extend_from_slice(b"a=");
        for c in principal.chars() {
            match c {
                '=' => message.extend_from_slice(b"=3D"),
                ',' => message.extend_from_slice(b"=2C"),
                c => message.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
    }
    message.push(b',');
    message.push(SEP);
    message.extend_from_slice(b"auth=Bearer ");
    message.extend_from_slice(token.value.as_bytes());
    message.push(SEP);
    for (key, value) in &token.extensions {
        // key = 1*(ALPHA); "auth" is the token's own key (Kafka reserves it too).
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) || key == "auth" {
            return Err(SaslError::InvalidToken(format!(
                "extension key {} must be letters only and not \"auth\"",
                excerpt(key.as_bytes())
            )));
        }
        // value = *(VCHAR / SP / HTAB / CR / LF)
        if !value
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) || matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            return Err(SaslError::InvalidToken(format!(
                "the value of extension {key} has characters RFC 7628 does not allow"
            )));
        }
        message.extend_from_slice(key.as_bytes());
        message.push(b'=');
        message.extend_from_slice(value.as_bytes());
        message.push(SEP);
    }
    message.push(SEP);
    Ok(message)
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const JWT: &str = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.";

    fn first(token: OAuthToken) -> Result<Vec<u8>, SaslError> {
        OAuthBearer::new(Some(token))
            .step(None)
            .map(|m| m.expect("a first message"))
    }

    #[test]
    fn rfc7628_client_first_message() {
        assert_eq!(
            first(OAuthToken::new(JWT)).unwrap(),
            format!("n,,\x01auth=Bearer {JWT}\x01\x01").into_bytes()
        );
    }

    #[test]
    fn extensions_come_before_the_final_separator() {
        let mut token = OAuthToken::new("abc");
        token.extensions = vec![
            ("traceId".into(), "123".into()),
            ("logicalCluster".into(), "lkc-1 x".into()),
        ];
        assert_eq!(
            first(token).unwrap(),
            b"n,,\x01auth=Bearer abc\x01traceId=123\x01logicalCluster=lkc-1 x\x01\x01".to_vec()
        );
    }

    #[test]
    fn principal_is_the_escaped_authzid() {
        let mut token = OAuthToken::new("abc");
        token.principal = Some("al=ice,x".into());
        assert_eq!(
            first(token).unwrap(),
            b"n,a=al=3Dice=2Cx,\x01auth=Bearer abc\x01\x01".to_vec()
        );
    }

    #[test]
    fn success_is_an_empty_answer() {
        let mut oauth = OAuthBearer::new(Some(OAuthToken::new("abc")));
        oauth.step(None).unwrap();
        assert_eq!(oauth.step(Some(b"")).unwrap(), None);
        assert!(matches!(
            oauth.step(Some(b"")),
            Err(SaslError::UnexpectedStep(_))
        ));
    }

    #[test]
    fn a_server_error_is_acknowledged_then_reported() {
        let json = br#"{"status":"invalid_token"}"#;
        let mut oauth = OAuthBearer::new(Some(OAuthToken::new("abc")));
        oauth.step(None).unwrap();
        assert_eq!(oauth.step(Some(json)).unwrap(), Some(vec![0x01]));
        match oauth.step(Some(b"")) {
            Err(SaslError::ServerError(text)) => assert!(text.contains("invalid_token"), "{text}"),
            other => panic!("{other:?}"),
        }
        assert!(oauth.step(Some(b"")).is_err());
    }

    #[test]
    fn invalid_tokens_and_extensions_are_refused_without_echoing_the_token() {
        let secret = "secret\x01auth=Bearer forged";
        let err = first(OAuthToken::new(secret)).unwrap_err();
        assert!(matches!(err, SaslError::InvalidToken(_)), "{err:?}");
        assert!(!err.to_string().contains("secret"), "{err}");

        for bad in ["", "=", "a b", "a=b", "tok\u{e9}n"] {
            assert!(first(OAuthToken::new(bad)).is_err(), "{bad:?}");
        }
        for good in ["a", "a==", "A-._~+/9"] {
            assert!(first(OAuthToken::new(good)).is_ok(), "{good:?}");
        }

        let with_extension = |key: &str, value: &str| {
            let mut token = OAuthToken::new("abc");
            token.extensions.push((key.into(), value.into()));
            first(token)
        };
        assert!(with_extension("auth", "x").is_err());
        assert!(with_extension("", "x").is_err());
        assert!(with_extension("a1", "x").is_err());
        assert!(with_extension("key", "a\x01b").is_err());
        assert!(with_extension("key", "\u{e9}").is_err());
        assert!(with_extension("key", "").is_ok());

        let mut token = OAuthToken::new("abc");
        token.principal = Some("a\0b".into());
        assert!(first(token).is_err());
    }

    #[test]
    fn without_a_token_nothing_is_sent() {
        let mut oauth = OAuthBearer::new(None);
        assert_eq!(oauth.step(None), Err(SaslError::MissingToken));
        assert!(oauth.step(None).is_err());
    }

    proptest! {
        #[test]
        fn random_server_bytes_never_panic(
            answers in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..4),
        ) {
            let mut oauth = OAuthBearer::new(Some(OAuthToken::new("abc")));
            oauth.step(None).unwrap();
            for answer in &answers {
                let _ = oauth.step(Some(answer));
            }
        }

        #[test]
        fn any_accepted_token_keeps_the_message_structure(value in "[ -~]{0,20}") {
            if let Ok(message) = first(OAuthToken::new(value.clone())) {
                // Exactly three separators: after the header, after the token, at the end.
                prop_assert_eq!(message.iter().filter(|b| **b == SEP).count(), 3);
                prop_assert!(message.ends_with(&[SEP, SEP]));
            }
        }
    }
}
