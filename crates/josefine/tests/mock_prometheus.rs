//! The Prometheus exporter as `examples/prometheus.rs` installs it, scraped: a
//! producer and a consumer against the mock show their requests, connections,
//! produced and consumed records and lag in Prometheus text format, under the names
//! docs/METRICS.md lists. Its own test binary: the exporter is the process's global
//! recorder.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use josefine::{Client, Consumer, Producer, ProducerRecord, StartOffset};
use josefine_mock::MockCluster;
use metrics_exporter_prometheus::PrometheusBuilder;

fn scrape(addr: SocketAddr) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The sum of the samples of `name` whose labels contain `label`.
fn sum(body: &str, name: &str, label: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_shows_the_client_s_metrics() {
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .unwrap();
    let cluster = MockCluster::builder()
        .brokers(1)
        .topic("scraped", 1)
        .start()
        .await
        .unwrap();
    let client = Client::builder()
        .bootstrap([cluster.bootstrap()])
        .client_id("scraped-client")
        .connect()
        .await
        .unwrap();
    let producer = Producer::builder(client.clone()).build().unwrap();
    for i in 0..200 {
        producer
            .send(
                ProducerRecord::new("scraped")
                    .partition(0)
                    .value(format!("v{i}")),
            )
            .await
            .unwrap();
    }
    let consumer = Consumer::builder(client.clone()).build().unwrap();
    let mut reader = consumer
        .consume_partition("scraped", 0, StartOffset::Earliest)
        .await
        .unwrap();
    for _ in 0..200 {
        reader.next().await.unwrap().unwrap();
    }

    // The exporter serves what was recorded; wait until the consumed records show.
    let topic = "topic=\"scraped\"";
    let body = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(body) = scrape(addr) {
                if sum(&body, "josefine_consumer_records", topic) >= 200.0 {
                    return body;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a scrape with the consumed records");
    assert_eq!(
        sum(&body, "josefine_producer_records", topic),
        200.0,
        "{body}"
    );
    assert!(
        sum(&body, "josefine_requests", "api=\"Produce\"") >= 1.0,
        "{body}"
    );
    assert!(
        sum(&body, "josefine_requests", "api=\"Fetch\"") >= 1.0,
        "{body}"
    );
    assert!(
        sum(&body, "josefine_connections_opened", "") >= 1.0,
        "{body}"
    );
    assert!(
        body.lines()
            .any(|l| l.starts_with("josefine_consumer_lag{") && l.contains(topic)),
        "{body}"
    );
    assert!(
        body.contains("josefine_request_latency_seconds"),
        "the latency histogram: {body}"
    );
}
