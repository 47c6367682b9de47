//! Security against Apache Kafka 4.4 itself (Kafka only: Tansu has no SASL user store,
//! and its own TLS does not work; tansu_tls.rs puts stunnel in front of it instead).
//!
//! The test broker (scripts/kafka/kafka.sh) has a SASL_PLAINTEXT listener with PLAIN
//! and SCRAM-SHA-256/512, users made at format time (`--add-scram`), an SSL listener
//! with a PEM keystore signed by a CA made at start, and the StandardAuthorizer with
//! one topic and one group that only the second user may read.
//!
//! - every mechanism logs in, and produce, fetch and a group work through it;
//! - a wrong password and an unknown user are refused by every mechanism, with one
//!   non-retriable authentication error that names the mechanism and the broker and
//!   never the password;
//! - TLS on Kafka's own listener: a round trip, and an untrusted CA refused;
//! - authorization: reading a topic or joining a group without READ is a typed,
//!   non-retriable error that names the resource; the user with the ACL reads both.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::real_kafka;
use futures::StreamExt;
use josefine::protocol::ClientExt;
use josefine::TlsConfig;
use josefine::{
    Claim, Client, ClientBuilder, Consumer, ConsumerGroup, ErrorKind, GroupHandler, KafkaCode,
    NewTopic, OffsetReset, Producer, ProducerRecord, Session, StartOffset,
};
use josefine::{Credentials, SaslConfig};

fn builder(bootstrap: &str) -> ClientBuilder {
    Client::builder()
        .bootstrap([bootstrap])
        .client_id("josefine-security-tests")
        .connect_timeout(Duration::from_secs(5))
        .request_timeout(Duration::from_secs(10))
}

fn mechanisms(user: &str, password: &str) -> [SaslConfig; 3] {
    let c = || Credentials::new(user, password);
    [
        SaslConfig::Plain(c()),
        SaslConfig::ScramSha256(c()),
        SaslConfig::ScramSha512(c()),
    ]
}

struct Count(Arc<AtomicU64>);

impl GroupHandler for Count {
    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> josefine::Result<()> {
        while let Some(record) = claim.next().await {
            session.mark(&record?);
            self.0.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }
}

/// Creates a topic, produces 50 records, reads them from the partition and as a
/// group member: every step through `client`'s listener.
async fn round_trip(client: &Client, what: &str) {
    common::trace();
    let topic = common::unique(what);
    client
        .admin()
        .create_topic(NewTopic::new(&topic, 1))
        .await
        .unwrap();
    let producer = Producer::builder(client.clone()).build().unwrap();
    let mut deliveries = Vec::new();
    for i in 0..50 {
        let record = ProducerRecord::new(&topic).value(format!("{what}-{i}"));
        deliveries.push(producer.enqueue(record).await.unwrap());
    }
    producer.close().await.unwrap();
    common::delivered(deliveries).await;

    let consumer = Consumer::builder(client.clone()).build().unwrap();
    let mut reader = consumer
        .consume_partition(&topic, 0, StartOffset::Earliest)
        .await
        .unwrap();
    for offset in 0..50 {
        let record = tokio::time::timeout(Duration::from_secs(20), reader.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: offset {offset} never came"))
            .unwrap()
            .unwrap();
        assert_eq!(record.offset(), offset, "{what}");
        assert_eq!(
            record.value().unwrap(),
            format!("{what}-{offset}").as_bytes()
        );
    }
    drop(reader);

    let group = ConsumerGroup::builder(client.clone(), common::unique(what))
        .session_timeout(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_millis(300))
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let task = {
        let (member, topic, seen) = (group.clone(), topic.clone(), seen.clone());
        tokio::spawn(async move { member.consume(&[&topic], Count(seen)).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.load(Ordering::Acquire) < 50 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the group read {} of 50",
            seen.load(Ordering::Acquire)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::timeout(Duration::from_secs(20), group.close())
        .await
        .expect("close returns")
        .unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sasl_mechanism_logs_in_and_round_trips() {
    let kafka = real_kafka!();
    let (user, password) = &kafka.user;
    for sasl in mechanisms(user, password) {
        let name = sasl.mechanism_name();
        let client = builder(&kafka.sasl)
            .sasl(sasl)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // Metadata sends the client back to the SASL listener, never another one.
        let brokers: Vec<String> = client
            .brokers()
            .iter()
            .map(|b| b.addr().to_string())
            .collect();
        assert_eq!(brokers, [kafka.sasl.as_str()], "{name}");
        round_trip(&client, &format!("sasl-{}", name.to_lowercase())).await;
        client.close();
    }
}

#[tokio::test]
async fn a_wrong_password_or_an_unknown_user_is_refused_by_every_mechanism() {
    let kafka = real_kafka!();
    let (user, _) = &kafka.user;
    for (who, password) in [(user.as_str(), "not-the-password"), ("nobody", "pa55word")] {
        for sasl in mechanisms(who, password) {
            let name = sasl.mechanism_name();
            let err = builder(&kafka.sasl)
                .sasl(sasl)
                .connect()
                .await
                .expect_err("refused");
            let text = err.to_string();
            assert_eq!(
                err.kind(),
                &ErrorKind::Authentication,
                "{name} {who}: {text}"
            );
            assert!(!err.is_retriable(), "{text}");
            assert!(text.contains(name), "{text}");
            assert!(text.contains(&kafka.sasl), "{text}");
            assert!(text.contains("refused the credentials"), "{text}");
            assert!(!text.contains(password), "{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_kafkas_own_listener() {
    let kafka = real_kafka!();
    let client = builder(&kafka.ssl)
        .tls(TlsConfig::new().ca_location(&kafka.ca))
        .connect()
        .await
        .unwrap();
    let brokers: Vec<String> = client
        .brokers()
        .iter()
        .map(|b| b.addr().to_string())
        .collect();
    assert_eq!(brokers, [kafka.ssl.as_str()]);
    round_trip(&client, "kafka-tls").await;
    client.close();

    // The system roots do not know the test CA.
    let err = builder(&kafka.ssl)
        .tls(TlsConfig::new())
        .connect()
        .await
        .expect_err("an untrusted CA is refused");
    assert_eq!(err.kind(), &ErrorKind::Tls, "{err}");
    assert!(!err.is_retriable());
    assert!(err.to_string().contains("CA we do not trust"), "{err}");

    // Plaintext to the TLS port is not Kafka's answer: a clear failure, not a hang.
    let err = builder(&kafka.ssl)
        .connect()
        .await
        .expect_err("plaintext to a TLS listener fails");
    assert!(!matches!(err.kind(), ErrorKind::Tls), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_without_an_acl_is_a_typed_authorization_error() {
    let kafka = real_kafka!();
    let topic = std::env::var("JOSEFINE_KAFKA_ACL_TOPIC").expect("JOSEFINE_KAFKA_ACL_TOPIC");
    let group = std::env::var("JOSEFINE_KAFKA_ACL_GROUP").expect("JOSEFINE_KAFKA_ACL_GROUP");
    let login = |(user, password): &(String, String)| {
        builder(&kafka.sasl).sasl(SaslConfig::ScramSha512(Credentials::new(
            user.as_str(),
            password.as_str(),
        )))
    };
    let alice = login(&kafka.user).connect().await.unwrap();

    // The topic: not even described to a user without an ACL on it.
    let err = Consumer::builder(alice.clone())
        .build()
        .unwrap()
        .consume_partition(&topic, 0, StartOffset::Earliest)
        .await
        .expect_err("no READ on the topic");
    assert_eq!(
        err.code(),
        Some(KafkaCode::TOPIC_AUTHORIZATION_FAILED),
        "{err}"
    );
    assert!(!err.is_retriable(), "{err}");
    assert_eq!(err.context().topic(), Some(topic.as_str()), "{err}");
    assert!(err.to_string().contains(&topic), "{err}");

    // The group, on a topic she may read: the membership is refused, once, typed.
    let open = common::unique("acl-open");
    alice
        .admin()
        .create_topic(NewTopic::new(&open, 1))
        .await
        .unwrap();
    let member = ConsumerGroup::builder(alice.clone(), &group)
        .session_timeout(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_millis(300))
        .build()
        .unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        member.consume(&[&open], Count(seen)),
    )
    .await
    .expect("a refused group fails the consume call, it does not retry forever")
    .expect_err("no READ on the group");
    assert_eq!(
        err.code(),
        Some(KafkaCode::GROUP_AUTHORIZATION_FAILED),
        "{err}"
    );
    assert!(!err.is_retriable(), "{err}");
    assert_eq!(err.context().group(), Some(group.as_str()), "{err}");
    alice.close();

    // Bob has the ACLs: the same topic and group work for him.
    let bob = login(&kafka.other_user).connect().await.unwrap();
    let reader = Consumer::builder(bob.clone())
        .build()
        .unwrap()
        .consume_partition(&topic, 0, StartOffset::Earliest)
        .await
        .unwrap();
    assert_eq!(reader.position(), 0);
    drop(reader);
    let committed = bob
        .admin()
        .committed_offsets(&group, &[josefine::TopicPartition::new(topic.as_str(), 0)])
        .await
        .unwrap();
    assert!(committed.is_empty());
    bob.close();
}
