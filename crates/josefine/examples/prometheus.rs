//! Josefine's metrics in Prometheus text format, served while the client runs.
//!
//! ```text
//! cargo run -p josefine --example prometheus -- localhost:9092 127.0.0.1:9464
//! ```
//!
//! Installs `metrics-exporter-prometheus` (before any client exists: metric handles
//! are looked up when clients, connections and partitions are set up), produces 1,000
//! records and reads them back, then scrapes its own `/metrics` once and prints the
//! `josefine_` lines. Point Prometheus at the address to keep watching. The names are
//! in docs/METRICS.md.

use std::io::{Read, Write};
use std::net::SocketAddr;

use futures::StreamExt;
use josefine::{Client, Consumer, NewTopic, Producer, ProducerRecord, StartOffset};
use metrics_exporter_prometheus::PrometheusBuilder;

const TOPIC: &str = "prometheus-example";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "localhost:9092".into());
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:9464".into())
        .parse()?;
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()?;

    let client = Client::builder().bootstrap([bootstrap]).connect().await?;
    let _ = client.admin().create_topic(NewTopic::new(TOPIC, 1)).await;
    let producer = Producer::builder(client.clone()).build()?;
    for i in 0..1000 {
        producer
            .send(
                ProducerRecord::new(TOPIC)
                    .partition(0)
                    .value(format!("record {i}")),
            )
            .await?;
    }
    let consumer = Consumer::builder(client.clone()).build()?;
    let mut records = consumer
        .consume_partition(TOPIC, 0, StartOffset::Earliest)
        .await?;
    for _ in 0..1000 {
        records.next().await.ok_or("the reader ended")??;
    }

    let body = scrape(addr)?;
    for line in body.lines().filter(|l| l.starts_with("josefine_")) {
        println!("{line}");
    }
    Ok(())
}

/// One GET of `/metrics`.
fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}
