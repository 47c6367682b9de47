//! TLS with rustls against a real terminator: Debian's stunnel in front of Tansu, with
//! certificates made at test time (`common::tls`). Produce, consume and a consumer
//! group work over TLS; a wrong CA, a certificate for another name and an expired one
//! are each refused with an error naming the problem; a broker that requires a client
//! certificate accepts ours (mTLS) and refuses a client without one.

#[allow(unused_macros, unused_imports)]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::tls::{TlsBroker, TlsVariant};
use futures::StreamExt;
use josefine::TlsConfig;
use josefine::{
    Claim, Client, Consumer, ConsumerGroup, ErrorKind, GroupHandler, NewTopic, OffsetReset,
    Producer, ProducerRecord, Session, StartOffset,
};

/// Starts the fixture on a blocking thread (it waits for ports), or skips.
async fn start(variant: TlsVariant) -> Option<TlsBroker> {
    tokio::task::spawn_blocking(move || TlsBroker::start(variant))
        .await
        .unwrap()
}

async fn connect(broker: &TlsBroker, tls: TlsConfig) -> josefine::Result<Client> {
    connect_to(&broker.bootstrap(), tls).await
}

async fn connect_to(bootstrap: &str, tls: TlsConfig) -> josefine::Result<Client> {
    Client::builder()
        .bootstrap([bootstrap])
        .tls(tls)
        .connect_timeout(Duration::from_secs(5))
        .request_timeout(Duration::from_secs(10))
        .connect()
        .await
}

struct Count(Arc<AtomicU64>);

impl GroupHandler for Count {
    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> josefine::Result<()> {
        while let Some(record) = claim.next().await {
            let record = record?;
            session.mark(&record);
            self.0.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }
}

/// Produce, read back from a partition, and consume as a group member: all over TLS.
async fn round_trip(client: &Client) {
    let topic = common::unique("tls");
    client
        .admin()
        .create_topic(NewTopic::new(&topic, 2))
        .await
        .unwrap();
    let producer = Producer::builder(client.clone()).build().unwrap();
    for i in 0..200 {
        let delivery = producer
            .enqueue(
                ProducerRecord::new(&topic)
                    .partition(i % 2)
                    .value(format!("secret-{i}")),
            )
            .await
            .unwrap();
        drop(delivery); // close() below waits for every delivery
    }
    producer.close().await.unwrap();

    let consumer = Consumer::builder(client.clone()).build().unwrap();
    let mut reader = consumer
        .consume_partition(&topic, 0, StartOffset::Earliest)
        .await
        .unwrap();
    for offset in 0..100 {
        let record = reader.next().await.unwrap().unwrap();
        assert_eq!(record.offset(), offset);
        assert_eq!(
            record.value().unwrap(),
            format!("secret-{}", offset * 2).as_bytes()
        );
    }
    drop(reader);

    let group = ConsumerGroup::builder(client.clone(), common::unique("tls-group"))
        .session_timeout(Duration::from_secs(2))
        .heartbeat_interval(Duration::from_millis(200))
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let member = group.clone();
    let task = {
        let (topic, seen) = (topic.clone(), seen.clone());
        tokio::spawn(async move { member.consume(&[&topic], Count(seen)).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.load(Ordering::Acquire) < 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group read {} of 200",
            seen.load(Ordering::Acquire)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    group.close().await.unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_consume_and_a_group_work_over_tls() {
    let Some(broker) = start(TlsVariant::Valid).await else {
        return;
    };
    let client = connect(&broker, TlsConfig::new().ca_location(broker.ca_pem_path()))
        .await
        .unwrap_or_else(|e| panic!("{e}\nstunnel: {}", broker.stunnel_log()));
    round_trip(&client).await;
    client.close();
}

/// Asserts a TLS refusal whose message contains `problem`.
fn assert_tls_refused(result: josefine::Result<Client>, problem: &str) {
    let err = result.expect_err("the handshake must be refused");
    assert_eq!(err.kind(), &ErrorKind::Tls, "{err}");
    assert!(!err.is_retriable());
    assert!(err.to_string().contains(problem), "{problem:?} in: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_an_untrusted_ca_is_refused() {
    let Some(broker) = start(TlsVariant::Valid).await else {
        return;
    };
    assert_tls_refused(
        connect(
            &broker,
            TlsConfig::new().ca_location(broker.other_ca_pem_path()),
        )
        .await,
        "signed by a CA we do not trust; set ssl.ca.location",
    );
    // The system roots do not know the test CA either.
    assert_tls_refused(
        connect(&broker, TlsConfig::new()).await,
        "CA we do not trust",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_refused_unless_the_check_is_off() {
    let Some(broker) = start(TlsVariant::WrongName).await else {
        return;
    };
    assert_tls_refused(
        connect(&broker, TlsConfig::new().ca_location(broker.ca_pem_path())).await,
        "not valid for \"localhost\"",
    );
    // ssl.endpoint.identification.algorithm=none: the chain is still checked.
    let client = connect(
        &broker,
        TlsConfig::new()
            .ca_location(broker.ca_pem_path())
            .verify_hostname(false),
    )
    .await
    .unwrap();
    client.refresh_all_metadata().await.unwrap();
    client.close();
    assert_tls_refused(
        connect(
            &broker,
            TlsConfig::new()
                .ca_location(broker.other_ca_pem_path())
                .verify_hostname(false),
        )
        .await,
        "CA we do not trust",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused() {
    let Some(broker) = start(TlsVariant::Expired).await else {
        return;
    };
    assert_tls_refused(
        connect(&broker, TlsConfig::new().ca_location(broker.ca_pem_path())).await,
        "certificate has expired",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_requiring_a_client_certificate_accepts_ours_and_refuses_none() {
    let Some(broker) = start(TlsVariant::MutualTls).await else {
        return;
    };
    let client = connect(
        &broker,
        TlsConfig::new()
            .ca_location(broker.ca_pem_path())
            .client_certificate(broker.client_cert_path(), broker.client_key_path()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nstunnel: {}", broker.stunnel_log()));
    round_trip(&client).await;
    client.close();

    // TLS 1.3 reports a missing client certificate on the first read (alert 116),
    // so the refusal comes with the first request.
    let err = connect(&broker, TlsConfig::new().ca_location(broker.ca_pem_path()))
        .await
        .expect_err("no client certificate, no service");
    assert!(
        matches!(err.kind(), ErrorKind::Tls | ErrorKind::NoBrokerAvailable),
        "{err}"
    );
    assert!(err.to_string().contains("client certificate"), "{err}");
}
