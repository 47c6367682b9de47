//! The `tracing` spans of `docs/METRICS.md`, seen by a subscriber layer that keeps
//! every span opened in this test binary: their names, levels, fields and parents,
//! driven by a consumer group against the mock cluster.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use josefine::{Claim, Client, ConsumerGroup, GroupHandler, OffsetReset, Session};
use josefine_mock::{MockCluster, Record};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// A span as it was opened.
#[derive(Debug, Clone)]
struct Opened {
    name: &'static str,
    level: Level,
    fields: BTreeMap<String, String>,
    parent: Option<&'static str>,
}

impl Opened {
    fn field(&self, name: &str) -> &str {
        self.fields
            .get(name)
            .unwrap_or_else(|| panic!("span {} has no field {name}: {self:?}", self.name))
    }
}

/// The client's spans (the mock broker has spans of its own).
static OPENED: Mutex<Vec<Opened>> = Mutex::new(Vec::new());

fn opened(name: &str) -> Vec<Opened> {
    OPENED
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.name == name)
        .cloned()
        .collect()
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

struct Capture;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !attrs.metadata().target().starts_with("josefine::") {
            return;
        }
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let parent = ctx
            .span(id)
            .and_then(|span| span.parent())
            .map(|p| p.name());
        OPENED.lock().unwrap().push(Opened {
            name: attrs.metadata().name(),
            level: *attrs.metadata().level(),
            fields,
            parent,
        });
    }
}

/// Waits (bounded) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 30 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Marking;

impl GroupHandler for Marking {
    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> josefine::Result<()> {
        while let Some(record) = claim.next().await {
            session.mark(&record?);
        }
        Ok(())
    }
}

/// The request spans for `api` (Kafka's name) whose parent is `parent`.
fn requests(api: &str, parent: &str) -> usize {
    opened("request")
        .iter()
        .filter(|r| r.field("api") == api && r.parent == Some(parent))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_requests_group_phases_commits_and_fetch_rounds_have_spans() {
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture))
        .expect("the only subscriber of this binary");
    let cluster = MockCluster::builder().topic("s", 2).start().await.unwrap();
    for p in 0..2 {
        cluster
            .produce(
                "s",
                (0..5).map(|i| Record::new().partition(p).value(format!("{i}"))),
            )
            .unwrap();
    }
    let client = Client::builder()
        .bootstrap([cluster.bootstrap()])
        .connect()
        .await
        .unwrap();
    let group = ConsumerGroup::builder(client, "spans")
        .heartbeat_interval(Duration::from_millis(50))
        .auto_commit_interval(Duration::from_millis(20))
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .unwrap();
    let task = {
        let group = group.clone();
        tokio::spawn(async move { group.consume(&["s"], Marking).await })
    };
    until("every record committed", || {
        (0..2).all(|p| cluster.committed("spans", "s", p) == Some(5))
    })
    .await;
    until("a heartbeat", || requests("Heartbeat", "heartbeat") > 0).await;
    group.close().await.unwrap();
    task.await.unwrap().unwrap();

    let connect = opened("connect");
    assert!(!connect.is_empty());
    assert!(connect.iter().all(|s| s.level == Level::DEBUG));
    assert!(connect.iter().any(|s| s.field("broker").starts_with("1@")));
    assert_eq!(connect[0].field("tls"), "false");
    let connections = opened("connection");
    assert!(connections.iter().all(|s| s.parent.is_none()));
    assert!(connections
        .iter()
        .any(|s| s.field("broker").starts_with("1@")));

    let session = opened("session");
    assert_eq!(session.len(), 1, "{session:?}");
    assert_eq!(session[0].level, Level::INFO);
    assert_eq!(session[0].field("group"), "spans");
    assert_eq!(session[0].field("generation"), "1");
    let member_id = session[0].field("member_id").to_string();
    assert!(!member_id.is_empty());
    for phase in ["find_coordinator", "join", "sync", "commit", "fetch_loop"] {
        let spans = opened(phase);
        assert!(!spans.is_empty(), "no {phase} span");
        assert!(spans.iter().all(|s| s.level == Level::DEBUG), "{spans:?}");
    }
    let sync = opened("sync");
    assert!(sync
        .iter()
        .any(|s| s.field("member_id") == member_id && s.field("generation") == "1"));
    assert!(opened("commit").iter().all(|s| s.field("group") == "spans"));
    let fetch = opened("fetch");
    assert!(fetch
        .iter()
        .all(|s| s.level == Level::TRACE && s.parent == Some("fetch_loop")));
    let heartbeat = opened("heartbeat");
    assert!(heartbeat
        .iter()
        .all(|s| s.level == Level::TRACE && s.field("member_id") == member_id));

    // Each request names its broker, API and version, under the step that sent it.
    let request = opened("request");
    assert!(request.iter().all(|r| r.level == Level::TRACE));
    assert!(request.iter().all(|r| !r.field("broker").is_empty()
        && r.field("version").parse::<i16>().is_ok()
        && r.field("correlation_id").parse::<i32>().is_ok()));
    for (api, parent) in [
        ("ApiVersions", "connect"),
        ("JoinGroup", "join"),
        ("SyncGroup", "sync"),
        ("OffsetCommit", "commit"),
        ("Fetch", "fetch"),
        ("Heartbeat", "heartbeat"),
    ] {
        assert!(requests(api, parent) > 0, "no {api} request under {parent}");
    }

    // Quiet by default: only a session's span is at info, nothing above.
    let loud: Vec<&str> = OPENED
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.level <= Level::INFO && s.name != "session")
        .map(|s| s.name)
        .collect();
    assert!(loud.is_empty(), "spans louder than debug: {loud:?}");
}
