//! Admin calls that only Apache Kafka (4.4, started by scripts/test.sh) serves among
//! our test brokers (Tansu and the mock have no DescribeConfigs or
//! IncrementalAlterConfigs): topic and broker configs, read with their sources and
//! changed entry by entry; a reset of an idle group's offsets at the library level;
//! offsets by position and time (ListOffsets), and records deleted (DeleteRecords).

mod common;

use common::real_kafka;
use josefine::{ConfigChange, ConfigSource, NewTopic, ResetTo, TopicPartition};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_configs_are_described_with_sources_and_altered_entry_by_entry() {
    let kafka = real_kafka!();
    let admin = common::client(&kafka.plaintext).await.admin();
    let topic = common::unique("configs");
    admin
        .create_topic(NewTopic::new(&topic, 1).config("retention.ms", "3600000"))
        .await
        .unwrap();
    let entry = |entries: &[josefine::ConfigEntry], name: &str| {
        entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} in {entries:?}"))
            .clone()
    };
    let entries = admin.describe_topic_config(&topic).await.unwrap();
    let retention = entry(&entries, "retention.ms");
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.source, ConfigSource::Topic);
    assert_eq!(
        entry(&entries, "cleanup.policy").source,
        ConfigSource::Default
    );

    admin
        .alter_topic_config(
            &topic,
            &[
                ConfigChange::Set("max.message.bytes".into(), "65536".into()),
                ConfigChange::Delete("retention.ms".into()),
                ConfigChange::Append("cleanup.policy".into(), "compact".into()),
            ],
        )
        .await
        .unwrap();
    let entries = admin.describe_topic_config(&topic).await.unwrap();
    assert_eq!(
        entry(&entries, "max.message.bytes").value.as_deref(),
        Some("65536")
    );
    assert_eq!(
        entry(&entries, "retention.ms").source,
        ConfigSource::Default
    );
    assert_eq!(
        entry(&entries, "cleanup.policy").value.as_deref(),
        Some("delete,compact")
    );

    let err = admin
        .alter_topic_config(
            &topic,
            &[ConfigChange::Set("no.such.config".into(), "1".into())],
        )
        .await
        .unwrap_err();
    assert!(!err.is_retriable(), "{err}");
    assert!(err.to_string().contains("no.such.config"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brokers_configs_are_described() {
    let kafka = real_kafka!();
    let client = common::client(&kafka.plaintext).await;
    let metadata = client.refresh_metadata(&[]).await.unwrap();
    let id = *metadata.brokers.keys().next().expect("a broker");
    let entries = client.admin().describe_broker_config(id).await.unwrap();
    let initial_delay = entries
        .iter()
        .find(|e| e.name == "group.initial.rebalance.delay.ms")
        .expect("a broker config");
    // scripts/kafka/kafka.sh sets it to 0 in server.properties.
    assert_eq!(initial_delay.value.as_deref(), Some("0"));
    assert_eq!(initial_delay.source, ConfigSource::StaticBroker);
}

/// The library's offset reset on an idle group: every target kind, clamped to the
/// log; committed, then read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_groups_offsets_are_planned_and_committed() {
    let kafka = real_kafka!();
    let client = common::client(&kafka.plaintext).await;
    let admin = client.admin();
    let topic = common::unique("reset");
    admin.create_topic(NewTopic::new(&topic, 1)).await.unwrap();
    common::produce_values(&client, &topic, 1, |_| 0..10).await;
    let group = common::unique("reset-group");
    let tp = [TopicPartition::new(topic.as_str(), 0)];
    let plan = |to| {
        let admin = admin.clone();
        let (group, tp) = (group.clone(), tp.clone());
        async move { admin.plan_offset_reset(&group, &tp, to).await.unwrap() }
    };
    assert_eq!(plan(ResetTo::Latest).await[0].target, 10);
    assert_eq!(plan(ResetTo::Earliest).await[0].target, 0);
    assert_eq!(plan(ResetTo::Offset(99)).await[0].target, 10, "clamped");
    assert_eq!(
        plan(ResetTo::ShiftBy(-3)).await[0].target,
        0,
        "from the start"
    );
    let to_seven = plan(ResetTo::Offset(7)).await;
    assert_eq!(to_seven[0].current, None);
    admin.commit_group_offsets(&group, &to_seven).await.unwrap();
    let shifted = plan(ResetTo::ShiftBy(-3)).await;
    assert_eq!((shifted[0].current, shifted[0].target), (Some(7), 4));
    assert_eq!(plan(ResetTo::Timestamp(0)).await[0].target, 0);
    assert_eq!(
        plan(ResetTo::Timestamp(i64::MAX / 2)).await[0].target,
        10,
        "after every record: the end"
    );
}

/// Offsets by position and by time (ListOffsets, the end from Fetch), and records
/// deleted before an offset (DeleteRecords) moving the log start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_listed_and_records_deleted_before_one() {
    use josefine::{KafkaCode, Producer, ProducerRecord, StartOffset};

    let kafka = real_kafka!();
    let client = common::client(&kafka.plaintext).await;
    let admin = client.admin();
    let topic = common::unique("offsets");
    admin.create_topic(NewTopic::new(&topic, 1)).await.unwrap();
    let producer = Producer::builder(client.clone()).build().unwrap();
    let mut deliveries = Vec::new();
    for i in 0..10 {
        let record = ProducerRecord::new(&topic)
            .partition(0)
            .timestamp(1_000 + i)
            .value(format!("r{i}"));
        deliveries.push(producer.enqueue(record).await.unwrap());
    }
    common::delivered(deliveries).await;
    producer.close().await.unwrap();
    let tp = TopicPartition::new(topic.as_str(), 0);
    let at = |start| {
        let (admin, tp) = (admin.clone(), tp.clone());
        async move {
            admin
                .list_offsets(std::slice::from_ref(&tp), start)
                .await
                .unwrap()[&tp]
        }
    };
    assert_eq!(at(StartOffset::Earliest).await, 0);
    assert_eq!(at(StartOffset::Latest).await, 10);
    assert_eq!(at(StartOffset::Timestamp(1_005)).await, 5);
    assert_eq!(
        at(StartOffset::Timestamp(5_000)).await,
        10,
        "after every record"
    );
    assert_eq!(at(StartOffset::Offset(3)).await, 3);

    let deleted = admin.delete_records(&[(tp.clone(), 4)]).await.unwrap();
    assert_eq!(deleted[0].1.as_ref().ok(), Some(&4));
    assert_eq!(at(StartOffset::Earliest).await, 4);
    let past = admin.delete_records(&[(tp.clone(), 99)]).await.unwrap();
    let err = past[0].1.as_ref().unwrap_err();
    assert_eq!(err.code(), Some(KafkaCode::OFFSET_OUT_OF_RANGE), "{err}");
}

/// ACLs: created per binding, described with Kafka's filter semantics (a prefixed
/// rule applies to the names it starts), enforced (a DENY takes a user's reads away
/// until it is deleted), deleted per filter with what each removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_are_created_described_enforced_and_deleted() {
    use josefine::{
        AclBinding, AclFilter, AclOperation, AclPermission, Consumer, KafkaCode, PatternType,
        ResourceType, StartOffset,
    };
    use josefine::{Credentials, SaslConfig};
    let kafka = real_kafka!();
    let admin = common::client(&kafka.plaintext).await;
    let topic = common::unique("acl-enforced");
    admin
        .admin()
        .create_topic(NewTopic::new(&topic, 1))
        .await
        .unwrap();
    let bob = format!("User:{}", kafka.other_user.0);
    let prefix = common::unique("acl-pfx");
    let deny_read = AclBinding::new(
        ResourceType::Topic,
        &topic,
        &bob,
        AclOperation::Read,
        AclPermission::Deny,
    );
    let prefixed = AclBinding::new(
        ResourceType::Topic,
        &prefix,
        &bob,
        AclOperation::Write,
        AclPermission::Allow,
    )
    .prefixed();
    let created = admin
        .admin()
        .create_acls(&[deny_read.clone(), prefixed.clone()])
        .await
        .unwrap();
    assert!(created.iter().all(|(_, r)| r.is_ok()), "{created:?}");

    // CreateAcls answers once the controller has the rules; the broker that answers
    // DescribeAcls learns them from the metadata log a moment later: wait for them.
    let described = |filter: AclFilter, done: fn(&[AclBinding], &[AclBinding]) -> bool| {
        let (admin, expected) = (admin.admin(), [deny_read.clone(), prefixed.clone()]);
        async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let found = admin.describe_acls(&filter).await.unwrap();
                if done(&found, &expected) || tokio::time::Instant::now() > deadline {
                    return found;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    // A prefixed rule applies to a name it starts; the literal one to its topic only.
    let applying = described(
        AclFilter::applying_to(ResourceType::Topic, format!("{prefix}-orders")),
        |found, _| !found.is_empty(),
    )
    .await;
    assert_eq!(applying, vec![prefixed.clone()]);
    let bobs = described(AclFilter::all().principal(&bob), |found, expected| {
        expected.iter().all(|e| found.contains(e))
    })
    .await;
    assert!(
        bobs.contains(&deny_read) && bobs.contains(&prefixed),
        "{bobs:?}"
    );
    assert!(bobs.iter().all(|a| a.principal == bob));

    // Enforced: bob cannot read the topic (the ACL reaches the broker through the
    // metadata log: wait until it does).
    let bob_client = josefine::Client::builder()
        .bootstrap([kafka.sasl.as_str()])
        .sasl(SaslConfig::ScramSha512(Credentials::new(
            kafka.other_user.0.as_str(),
            kafka.other_user.1.as_str(),
        )))
        .connect()
        .await
        .unwrap();
    let read = || async {
        Consumer::builder(bob_client.clone())
            .build()
            .unwrap()
            .consume_partition(&topic, 0, StartOffset::Earliest)
            .await
            .map(|_| ())
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let err = loop {
        match read().await {
            Err(err) => break err,
            Ok(()) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the DENY never applied"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(
        err.code(),
        Some(KafkaCode::TOPIC_AUTHORIZATION_FAILED),
        "{err}"
    );

    // Deleted per filter, each with what it removed; then bob reads again.
    let deleted = admin
        .admin()
        .delete_acls(&[deny_read.to_filter(), prefixed.to_filter()])
        .await
        .unwrap();
    assert_eq!(deleted.len(), 2);
    assert_eq!(deleted[0].as_ref().unwrap(), &vec![deny_read.clone()]);
    assert_eq!(deleted[1].as_ref().unwrap(), &vec![prefixed.clone()]);
    let remaining = described(AclFilter::all().principal(&bob), |found, expected| {
        !expected.iter().any(|e| found.contains(e))
    })
    .await;
    assert!(!remaining.contains(&deny_read) && !remaining.contains(&prefixed));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while let Err(err) = read().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still refused: {err}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // A binding with Any in it is refused before anything is sent.
    let mut vague = deny_read;
    vague.pattern_type = PatternType::Any;
    assert!(admin.admin().create_acls(&[vague]).await.is_err());
    bob_client.close();
}
