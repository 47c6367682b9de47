//! Configuration from a Java `.properties` file, as Kafka's tools and the Java client
//! read it: the same keys build the client, a producer and a group.
//!
//! ```text
//! cargo run -p josefine --example properties -- client.properties
//! ```
//!
//! Without an argument, writes an example file (bootstrap from `JOSEFINE_BOOTSTRAP`,
//! default localhost:9092) to the temp dir and uses it. An unknown key is an error
//! that names the closest known one.

use futures::StreamExt;
use josefine::{Config, NewTopic, ProducerRecord};

const TOPIC: &str = "examples.properties";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = match std::env::args().nth(1) {
        Some(path) => std::path::PathBuf::from(path),
        None => {
            let bootstrap =
                std::env::var("JOSEFINE_BOOTSTRAP").unwrap_or_else(|_| "localhost:9092".into());
            let path = std::env::temp_dir().join("josefine-example.properties");
            std::fs::write(
                &path,
                format!(
                    "# What the Java client would read.\n\
                     bootstrap.servers={bootstrap}\n\
                     client.id=properties-example\n\
                     group.id=examples.properties-group\n\
                     auto.offset.reset=earliest\n\
                     compression.type=gzip\n\
                     linger.ms=5\n\
                     session.timeout.ms=10000\n"
                ),
            )?;
            path
        }
    };
    let config = Config::from_file(&path)?;
    let client = config.client().await?;
    let _ = client.admin().create_topic(NewTopic::new(TOPIC, 1)).await;
    let producer = config.producer_builder(client.clone())?.build()?;
    let report = producer
        .send(ProducerRecord::new(TOPIC).value("configured from a file"))
        .await?;
    producer.close().await?;
    println!("{}: wrote offset {}", path.display(), report.offset);

    let group = config.group_builder(client)?.build()?;
    let mut records = group.stream(&[TOPIC])?;
    if let Some(record) = records.next().await {
        let record = record?;
        record.mark();
        println!("the group read offset {}", record.offset());
    }
    records.close().await?;

    // A misspelt key is refused with a suggestion.
    let err = Config::parse_properties("sesion.timeout.ms=3000").unwrap_err();
    println!("a typo: {err}");
    Ok(())
}
