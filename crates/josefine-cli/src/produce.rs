//! `josefine produce`: one record per input line (stdin or `--file`), optionally
//! `key<SEP>value`, or with `--json` one JSON object per line (what `consume --format
//! json` prints: key, value, headers, partition, timestamp), or `--count N --size B`
//! synthetic records; a progress bar, then a summary. Every record's delivery is awaited before the summary: a failure is
//! reported with how many records made it. With `--transactional-id` the records are
//! written in transactions (one for the whole input, or one per `--transaction-size`
//! records): a failure aborts the open one, so a `read_committed` reader sees whole
//! transactions or nothing of them.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use josefine::{Client, Config, Delivery, ProducerRecord};
use tokio::sync::mpsc;

use crate::consume::check_topics_exist;
use crate::progress::{human, Progress};

#[derive(Args)]
pub struct ProduceArgs {
    #[arg(short, long)]
    topic: String,
    /// Split each line at the first SEP: key before it, value after.
    #[arg(short = 'K', long)]
    key_separator: Option<String>,
    /// none, gzip, snappy, lz4 or zstd (the same as -X compression.type=...).
    #[arg(short = 'z', long)]
    compression: Option<String>,
    /// Read records from this file instead of stdin.
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// Write every record to this partition (default: by key, else spread).
    #[arg(short, long)]
    partition: Option<i32>,
    /// Generate this many synthetic records instead of reading input.
    #[arg(short = 'n', long)]
    count: Option<u64>,
    /// Value size of synthetic records, in bytes.
    #[arg(short, long, default_value_t = 100, requires = "count")]
    size: usize,
    /// A header on every record, KEY=VALUE (repeatable, in order; KEY alone for a
    /// null value).
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// Send an empty value as null (a tombstone, which compaction deletes the key
    /// with) and an empty key as no key (kcat's -Z).
    #[arg(short = 'Z', long)]
    null_empty: bool,
    /// The timestamp of every record, in milliseconds since the epoch (default: now).
    #[arg(long, value_name = "MILLIS")]
    timestamp: Option<i64>,
    /// Each line is a JSON object as `consume --format json` prints it: "key" and
    /// "value" (strings, null, or base64 with "key_encoding"/"value_encoding":
    /// "base64"), "headers" ([{"key": .., "value": ..}]), "partition" and "timestamp"
    /// (both optional; --partition and --timestamp win). Other fields are ignored.
    #[arg(long, conflicts_with_all = ["key_separator", "count"])]
    json: bool,
    /// Write the records in transactions as this transactional id (the same as -X
    /// transactional.id=...); another producer with the same id is fenced.
    #[arg(long, value_name = "ID")]
    transactional_id: Option<String>,
    /// Commit a transaction every N records (default: one transaction for the whole
    /// input).
    #[arg(long, value_name = "N", requires = "transactional_id")]
    transaction_size: Option<u64>,
}

/// Deliveries awaited at most this far behind the newest record: bounds what the
/// command holds besides the producer's own buffer.
const WINDOW: usize = 100_000;
/// Lines handed from the reading thread at a time.
const LINES_PER_CHUNK: usize = 1024;

pub async fn run(client: Client, config: &Config, args: ProduceArgs) -> anyhow::Result<()> {
    check_topics_exist(&client, std::slice::from_ref(&args.topic)).await?;
    let mut config = config.clone();
    if let Some(codec) = &args.compression {
        config.set("compression.type", codec)?;
    }
    if let Some(id) = &args.transactional_id {
        config.set("transactional.id", id)?;
    }
    let producer = config.producer_builder(client)?.build()?;
    let transactional = config.get("transactional.id").is_some();
    let per_transaction = args.transaction_size.unwrap_or(u64::MAX).max(1);
    if transactional {
        producer.begin_transaction().await?;
    }
    let input = match args.count {
        Some(count) => Input::synthetic(count, args.size),
        None => Input::lines(args.file.clone())?,
    };
    let mut progress = match (&input.total_bytes, args.count) {
        (Some(total), _) => Progress::new("produced", "bytes", Some(*total)),
        (None, Some(count)) => Progress::new("produced", "records", Some(count)),
        (None, None) => Progress::new("produced", "records", None),
    };
    let started = Instant::now();
    let mut lines = input.lines;
    let mut pending: VecDeque<Delivery> = VecDeque::new();
    let (mut records, mut bytes, mut delivered) = (0u64, 0u64, 0u64);
    // Records in committed transactions.
    let mut committed = 0u64;
    let outcome: anyhow::Result<()> = async {
        let mut number = 0u64;
        while let Some(chunk) = lines.recv().await {
            for line in chunk {
                number += 1;
                bytes += line.len() as u64;
                let record = if args.json {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match from_json(&args, &line) {
                        Ok(record) => record,
                        Err(err) => {
                            return Err(anyhow::Error::new(BadInput(format!(
                                "input line {number}: {err:#}; the records before it were sent, \
                                 nothing after it"
                            ))))
                        }
                    }
                } else {
                    to_record(&args, line)
                };
                pending.push_back(producer.enqueue(record).await?);
                records += 1;
                if transactional && records % per_transaction == 0 {
                    // The commit delivers every record of the transaction first.
                    producer.commit_transaction().await?;
                    delivered += drain(&mut pending).await?;
                    committed = records;
                    producer.begin_transaction().await?;
                }
                if pending.len() >= WINDOW {
                    let oldest = pending.pop_front().expect("window is full");
                    oldest.await?;
                    delivered += 1;
                }
            }
            let shown = match input.total_bytes {
                Some(_) => input.read_bytes.load(Ordering::Relaxed),
                None => records,
            };
            if input.total_bytes.is_some() {
                progress.note(format!("{} records", human(records as f64)));
            }
            progress.tick(shown);
        }
        if transactional {
            producer.commit_transaction().await?;
        }
        delivered += drain(&mut pending).await?;
        Ok(())
    }
    .await;
    if transactional && outcome.is_err() {
        // What the open transaction holds never becomes visible.
        if let Err(err) = producer.abort_transaction().await {
            eprintln!("aborting the open transaction failed too: {err}");
        }
    }
    let closed = producer.close().await;
    if let Err(err) = outcome {
        if err.downcast_ref::<BadInput>().is_some() {
            closed?;
            return Err(err);
        }
        if transactional {
            return Err(err.context(format!(
                "{committed} of {records} record(s) were committed in earlier transactions; \
                 the open transaction was aborted"
            )));
        }
        return Err(err.context(format!(
            "{delivered} of {records} record(s) were delivered before this failure"
        )));
    }
    closed?;
    progress.finish(match input.total_bytes {
        Some(total) => total,
        None => records,
    });
    let seconds = started.elapsed().as_secs_f64().max(1e-6);
    eprintln!(
        "produced {records} record(s), {} bytes, in {seconds:.2} s: {} records/s, {:.1} MB/s",
        human(bytes as f64),
        human(records as f64 / seconds),
        bytes as f64 / seconds / 1e6
    );
    Ok(())
}

/// Awaits every delivery in `pending`; how many there were.
async fn drain(pending: &mut VecDeque<Delivery>) -> josefine::Result<u64> {
    let mut n = 0;
    while let Some(delivery) = pending.pop_front() {
        delivery.await?;
        n += 1;
    }
    Ok(n)
}

fn to_record(args: &ProduceArgs, line: Vec<u8>) -> ProducerRecord {
    let mut record = ProducerRecord::new(&args.topic);
    if let Some(p) = args.partition {
        record = record.partition(p);
    }
    if let Some(ts) = args.timestamp {
        record = record.timestamp(ts);
    }
    for header in &args.headers {
        record = match header.split_once('=') {
            Some((key, value)) => record.header(key, Bytes::copy_from_slice(value.as_bytes())),
            None => record.null_header(header),
        };
    }
    let line = Bytes::from(line);
    let (key, value) = match args
        .key_separator
        .as_deref()
        .and_then(|sep| find(&line, sep.as_bytes()).map(|at| (at, sep.len())))
    {
        Some((at, len)) => (Some(line.slice(..at)), line.slice(at + len..)),
        None => (None, line),
    };
    if let Some(key) = key.filter(|k| !(args.null_empty && k.is_empty())) {
        record = record.key(key);
    }
    // No value at all is a null value: a tombstone.
    if !(args.null_empty && value.is_empty()) {
        record = record.value(value);
    }
    record
}

/// An input line that is not a record: said as it is, not as a delivery failure.
#[derive(Debug)]
struct BadInput(String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// A record from one JSON line (see `--json`).
fn from_json(args: &ProduceArgs, line: &[u8]) -> anyhow::Result<ProducerRecord> {
    use serde_json::Value;
    let object: serde_json::Map<String, Value> =
        serde_json::from_slice(line).context("not a JSON object")?;
    let bytes =
        |object: &serde_json::Map<String, Value>, name: &str| -> anyhow::Result<Option<Bytes>> {
            let base64 = match object.get(&format!("{name}_encoding")) {
                None | Some(Value::Null) => false,
                Some(Value::String(e)) if e == "base64" => true,
                Some(other) => anyhow::bail!("{name}_encoding must be \"base64\", not {other}"),
            };
            match object.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) if base64 => {
                    use base64::Engine;
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .with_context(|| format!("{name} is not base64"))?;
                    Ok(Some(Bytes::from(decoded)))
                }
                Some(Value::String(text)) => Ok(Some(Bytes::copy_from_slice(text.as_bytes()))),
                Some(other) => anyhow::bail!("{name} must be a string or null, not {other}"),
            }
        };
    let mut record = ProducerRecord::new(&args.topic);
    let partition = match (args.partition, object.get("partition")) {
        (Some(p), _) => Some(p),
        (None, None | Some(Value::Null)) => None,
        (None, Some(v)) => Some(
            v.as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .filter(|p| *p >= 0)
                .with_context(|| format!("partition must be a partition number, not {v}"))?,
        ),
    };
    if let Some(p) = partition {
        record = record.partition(p);
    }
    let timestamp =
        match (args.timestamp, object.get("timestamp")) {
            (Some(t), _) => Some(t),
            (None, None | Some(Value::Null)) => None,
            (None, Some(v)) => Some(v.as_i64().with_context(|| {
                format!("timestamp must be milliseconds since the epoch, not {v}")
            })?),
        };
    if let Some(t) = timestamp {
        record = record.timestamp(t);
    }
    if let Some(key) = bytes(&object, "key")? {
        record = record.key(key);
    }
    if let Some(value) = bytes(&object, "value")? {
        record = record.value(value);
    }
    for header in &args.headers {
        record = match header.split_once('=') {
            Some((key, value)) => record.header(key, Bytes::copy_from_slice(value.as_bytes())),
            None => record.null_header(header),
        };
    }
    match object.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(headers)) => {
            for header in headers {
                let Value::Object(header) = header else {
                    anyhow::bail!("a header must be an object with key and value, not {header}");
                };
                let key = bytes(header, "key")?.context("a header needs a key")?;
                let key = std::str::from_utf8(&key).context("a header key must be UTF-8")?;
                record = match bytes(header, "value")? {
                    Some(value) => record.header(key, value),
                    None => record.null_header(key),
                };
            }
        }
        Some(other) => anyhow::bail!("headers must be an array, not {other}"),
    }
    Ok(record)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Lines (or synthetic values) arriving from a reading thread, in chunks.
struct Input {
    lines: mpsc::Receiver<Vec<Vec<u8>>>,
    /// A file's size, for the progress bar.
    total_bytes: Option<u64>,
    read_bytes: Arc<AtomicU64>,
}

impl Input {
    fn lines(file: Option<PathBuf>) -> anyhow::Result<Self> {
        let (reader, total): (Box<dyn Read + Send>, Option<u64>) = match &file {
            Some(path) => {
                let f = std::fs::File::open(path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                let size = f.metadata().map(|m| m.len()).ok();
                (Box::new(f), size)
            }
            None => (Box::new(std::io::stdin()), None),
        };
        let (tx, rx) = mpsc::channel(4);
        let read_bytes = Arc::new(AtomicU64::new(0));
        let counter = read_bytes.clone();
        // Blocking reads on a thread of their own, so the runtime keeps sending.
        std::thread::spawn(move || {
            let mut input = BufReader::with_capacity(1 << 16, reader);
            let mut chunk = Vec::with_capacity(LINES_PER_CHUNK);
            loop {
                let mut line = Vec::new();
                match input.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        counter.fetch_add(n as u64, Ordering::Relaxed);
                        if line.last() == Some(&b'\n') {
                            line.pop();
                            if line.last() == Some(&b'\r') {
                                line.pop();
                            }
                        }
                        chunk.push(line);
                        if chunk.len() == LINES_PER_CHUNK
                            && tx.blocking_send(std::mem::take(&mut chunk)).is_err()
                        {
                            return;
                        }
                    }
                }
            }
            if !chunk.is_empty() {
                let _ = tx.blocking_send(chunk);
            }
        });
        Ok(Self {
            lines: rx,
            total_bytes: total,
            read_bytes,
        })
    }

    /// `count` values of `size` bytes: value byte j of record i is `(i + j) * 31 + 7`,
    /// as `josefine bench produce` makes them.
    fn synthetic(count: u64, size: usize) -> Self {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut i = 0u64;
            while i < count {
                let n = (count - i).min(LINES_PER_CHUNK as u64);
                let chunk: Vec<Vec<u8>> = (i..i + n)
                    .map(|r| {
                        (0..size)
                            .map(|j| ((r as usize + j) * 31 + 7) as u8)
                            .collect()
                    })
                    .collect();
                if tx.send(chunk).await.is_err() {
                    return;
                }
                i += n;
            }
        });
        Self {
            lines: rx,
            total_bytes: None,
            read_bytes: Arc::new(AtomicU64::new(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_separator_splits_at_its_first_occurrence() {
        assert_eq!(find(b"k:v:w", b":"), Some(1));
        assert_eq!(find(b"key::value", b"::"), Some(3));
        assert_eq!(find(b"value", b":"), None);
        assert_eq!(find(b"value", b""), None);
    }
}
