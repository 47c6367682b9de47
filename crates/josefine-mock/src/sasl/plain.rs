//! PLAIN, server side (RFC 4616; Kafka's KIP-43): `authzid NUL authcid NUL passwd`,
//! checked against the user store. Messages are Kafka's `PlainSaslServer`'s.

/// The authenticated user, or the error message for SaslAuthenticate.
pub(crate) fn authenticate(
    message: &[u8],
    check: impl FnOnce(&str, &str) -> bool,
) -> Result<String, String> {
    let invalid = || "Authentication failed: Invalid username or password".to_owned();
    let text = std::str::from_utf8(message)
        .map_err(|_| "Authentication failed: PLAIN message is not UTF-8".to_owned())?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(username), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("Invalid SASL/PLAIN response: expected 3 tokens".to_owned());
    };
    if username.is_empty() {
        return Err("Authentication failed: username not specified".to_owned());
    }
    if password.is_empty() {
        return Err("Authentication failed: password not specified".to_owned());
    }
    if !authzid.is_empty() && authzid != username {
        return Err(
            "Authentication failed: Client requested an authorization id that is different \
             from username"
                .to_owned(),
        );
    }
    if check(username, password) {
        Ok(username.to_owned())
    } else {
        Err(invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(user: &str, password: &str) -> bool {
        user == "alice" && password == "secret"
    }

    #[test]
    fn checks_username_and_password() {
        assert_eq!(authenticate(b"\0alice\0secret", alice).unwrap(), "alice");
        assert_eq!(
            authenticate(b"alice\0alice\0secret", alice).unwrap(),
            "alice"
        );
        for bad in [
            &b"\0alice\0wrong"[..],
            b"\0bob\0secret",
            b"bob\0alice\0secret",
            b"\0alice\0",
            b"\0\0secret",
            b"\0alice",
            b"\0alice\0secret\0",
            b"\xff\0alice\0secret",
        ] {
            assert!(authenticate(bad, alice).is_err(), "{bad:?}");
        }
        assert_eq!(
            authenticate(b"\0alice\0wrong", alice).unwrap_err(),
            "Authentication failed: Invalid username or password"
        );
    }
}
