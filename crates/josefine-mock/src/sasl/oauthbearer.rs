//! OAUTHBEARER, server side (RFC 7628; Kafka's KIP-255 and KIP-342).
//!
//! Tokens are opaque strings a test registers with the principal they stand for
//! (Kafka validates JWTs; the mock only looks tokens up). An unknown token gets
//! RFC 7628's error challenge, `{"status":"invalid_token"}`, which the client must
//! acknowledge with a lone `\x01`; the exchange then fails with that JSON as the
//! error message, as Kafka's `OAuthBearerSaslServer` does.

/// The error challenge for a token the server does not accept.
pub(crate) const INVALID_TOKEN: &str = r#"{"status":"invalid_token"}"#;

/// What the client's first message leads to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Authenticated as this principal.
    Principal(String),
    /// Send this error challenge and wait for the client's `\x01`.
    Challenge(String),
    /// Fail now with this message.
    Failed(String),
}

/// `gs2-header kvsep *kvpair kvsep`, with `auth=Bearer <token>` among the pairs.
pub(crate) fn authenticate(message: &[u8], lookup: impl FnOnce(&str) -> Option<String>) -> Outcome {
    let failed =
        |why: &str| Outcome::Failed(format!("Invalid OAUTHBEARER client first message: {why}"));
    let Ok(text) = std::str::from_utf8(message) else {
        return failed("not UTF-8");
    };
    let Some((cbind, rest)) = text.split_once(',') else {
        return failed("no GS2 header");
    };
    if cbind != "n" && cbind != "y" {
        return failed("channel binding is not supported");
    }
    let Some((authzid, rest)) = rest.split_once(',') else {
        return failed("no GS2 header");
    };
    let Some(pairs) = rest
        .strip_prefix('\u{1}')
        .and_then(|r| r.strip_suffix("\u{1}\u{1}"))
    else {
        return failed("no \\x01 separators around the key-value pairs");
    };
    let mut token = None;
    for pair in pairs.split('\u{1}') {
        let Some((key, value)) = pair.split_once('=') else {
            return failed("a key-value pair without '='");
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
            return failed("an extension key that is not letters only");
        }
        if key == "auth" {
            let scheme_and_token = value.split_once(' ');
            match scheme_and_token {
                Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.is_empty() => {
                    token = Some(t.trim_start_matches(' '));
                }
                _ => return failed("auth is not \"Bearer <token>\""),
            }
        }
    }
    let Some(token) = token else {
        return failed("no auth=Bearer <token>");
    };
    let Some(principal) = lookup(token) else {
        return Outcome::Challenge(INVALID_TOKEN.to_owned());
    };
    if !authzid.is_empty() && authzid.strip_prefix("a=") != Some(principal.as_str()) {
        return Outcome::Failed(format!(
            "Authentication failed: Client requested an authorization id ({}) that is different \
             from the token's principal name ({principal})",
            authzid.trim_start_matches("a=")
        ));
    }
    Outcome::Principal(principal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(token: &str) -> Option<String> {
        (token == "good-token").then(|| "alice".to_owned())
    }

    #[test]
    fn known_tokens_authenticate_their_principal() {
        assert_eq!(
            authenticate(b"n,,\x01auth=Bearer good-token\x01\x01", tokens),
            Outcome::Principal("alice".into())
        );
        assert_eq!(
            authenticate(
                b"n,a=alice,\x01auth=Bearer good-token\x01traceId=1 2\x01\x01",
                tokens
            ),
            Outcome::Principal("alice".into())
        );
    }

    #[test]
    fn unknown_tokens_get_the_error_challenge() {
        assert_eq!(
            authenticate(b"n,,\x01auth=Bearer other\x01\x01", tokens),
            Outcome::Challenge(INVALID_TOKEN.into())
        );
    }

    #[test]
    fn malformed_messages_and_foreign_authzids_fail() {
        for bad in [
            &b""[..],
            b"n,,auth=Bearer good-token",
            b"n,,\x01auth=Bearer good-token\x01",
            b"n,,\x01auth=Basic good-token\x01\x01",
            b"n,,\x01auth=Bearer \x01\x01",
            b"n,,\x01x1=2\x01auth=Bearer good-token\x01\x01",
            b"n,,\x01\x01",
            b"p=x,,\x01auth=Bearer good-token\x01\x01",
            b"n,a=bob,\x01auth=Bearer good-token\x01\x01",
        ] {
            assert!(
                matches!(authenticate(bad, tokens), Outcome::Failed(_)),
                "{bad:?}"
            );
        }
    }
}
