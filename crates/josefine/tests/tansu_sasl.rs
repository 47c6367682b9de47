//! SASL against the real broker. Tansu lists SCRAM in its SaslHandshake answer but
//! cannot store users with memory storage; this build refuses the handshake itself
//! (UNSUPPORTED_SASL_MECHANISM while listing the mechanism: librdkafka 2.16 gets the
//! same answer) rather than answering unknown-user in SaslAuthenticate. Either way
//! it must be one authentication error naming the mechanism and the broker.
//!
//! Tansu only (scripts/test.sh runs it in the Tansu pass): SASL against Kafka, with
//! real users, is kafka_security.rs.

mod common;

use std::time::Duration;

use common::real_broker;
use josefine::{Client, ErrorKind};
use josefine::{Credentials, SaslConfig};

#[tokio::test]
async fn scram_without_a_user_store_is_an_authentication_error() {
    let addr = real_broker!();
    if common::is_kafka() {
        eprintln!("skipped: Tansu's refusal of SCRAM; Kafka's SASL is kafka_security.rs");
        return;
    }
    for sasl in [
        SaslConfig::ScramSha256(Credentials::new("nobody", "pa55word")),
        SaslConfig::ScramSha512(Credentials::new("nobody", "pa55word")),
    ] {
        let name = sasl.mechanism_name();
        let err = Client::builder()
            .bootstrap([addr.as_str()])
            .sasl(sasl)
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect_err("no user can log in to Tansu's memory storage");
        let text = err.to_string();
        assert_eq!(err.kind(), &ErrorKind::Authentication, "{name}: {text}");
        assert!(text.contains(name) && text.contains(&addr), "{text}");
        assert!(!text.contains("pa55word"), "{text}");
        assert!(!err.is_retriable());
        assert!(
            text.contains("refused this mechanism although it lists it")
                || text.contains("refused the credentials"),
            "{text}"
        );
    }
}
