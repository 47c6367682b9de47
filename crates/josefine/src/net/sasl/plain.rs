//! PLAIN (RFC 4616, KIP-43): one message, `authzid NUL authcid NUL passwd`, with an
//! empty authzid (Kafka refuses one that differs from the username anyway).
//!
//! The server answers success with an empty token (Kafka) and failure with a
//! SaslAuthenticate error code, which the driver reports; so whatever the server sends
//! back ends the exchange.

use super::{Credentials, Mechanism, SaslError};

pub(crate) struct Plain {
    credentials: Credentials,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Sent,
    Done,
}

impl Plain {
    pub(crate) fn new(credentials: Credentials) -> Self {
        Self {
            credentials,
            state: State::Start,
        }
    }

    fn first_message(&self) -> Result<Vec<u8>, SaslError> {
        let username = self.credentials.username();
        let password = self.credentials.password();
        // RFC 4616: authcid and passwd are 1*SAFE, SAFE being UTF-8 without NUL.
        if username.is_empty() {
            return Err(SaslError::InvalidCredentials("the username is empty"));
        }
        if username.contains('\0') {
            return Err(SaslError::InvalidCredentials(
                "the username contains a NUL byte",
            ));
        }
        if password.is_empty() {
            return Err(SaslError::InvalidCredentials("the password is empty"));
        }
        if password.contains('\0') {
            return Err(SaslError::InvalidCredentials(
                "the password contains a NUL byte",
            ));
        }
        let mut message = Vec::with_capacity(2 + username.len() + password.len());
        message.push(0);
        message.extend_from_slice(username.as_bytes());
        message.push(0);
        message.extend_from_slice(password.as_bytes());
        Ok(message)
    }
}

impl Mechanism for Plain {
    fn step(&mut self, server: Option<&[u8]>) -> Result<Option<Vec<u8>>, SaslError> {
        match (self.state, server) {
            (State::Start, None) => {
                self.state = State::Done;
                let message = self.first_message()?;
                self.state = State::Sent;
                Ok(Some(message))
            }
            (State::Start, Some(_)) => {
                Err(SaslError::UnexpectedStep("PLAIN: the client speaks first"))
            }
            (State::Sent, Some(_)) => {
                self.state = State::Done;
                Ok(None)
            }
            (State::Sent, None) => Err(SaslError::UnexpectedStep(
                "PLAIN: expected the server's answer",
            )),
            (State::Done, _) => Err(SaslError::UnexpectedStep("PLAIN: the exchange is over")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_empty_authzid_username_and_password() {
        let mut plain = Plain::new(Credentials::new("alice", "secret"));
        assert_eq!(
            plain.step(None).unwrap().as_deref(),
            Some(&b"\0alice\0secret"[..])
        );
        assert_eq!(plain.step(Some(b"")).unwrap(), None);
        assert!(matches!(
            plain.step(Some(b"")),
            Err(SaslError::UnexpectedStep(_))
        ));
    }

    #[test]
    fn utf8_credentials_are_sent_as_utf8() {
        let mut plain = Plain::new(Credentials::new("jösé", "pässwörd"));
        let message = plain.step(None).unwrap().unwrap();
        assert_eq!(message, "\0jösé\0pässwörd".as_bytes());
    }

    #[test]
    fn nul_bytes_and_empty_fields_are_refused_without_leaking_the_password() {
        for (user, password) in [("a\0b", "pw"), ("ab", "p\0w-secret"), ("", "pw"), ("u", "")] {
            let err = Plain::new(Credentials::new(user, password))
                .step(None)
                .unwrap_err();
            assert!(matches!(err, SaslError::InvalidCredentials(_)), "{err:?}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[test]
    fn out_of_order_steps_fail() {
        let mut plain = Plain::new(Credentials::new("u", "p"));
        assert!(plain.step(Some(b"x")).is_err());
        let mut plain = Plain::new(Credentials::new("u", "p"));
        plain.step(None).unwrap();
        assert!(plain.step(None).is_err());
    }
}
