//! Record-batch decode throughput: our codec against kafka-protocol's on the same bytes.
//!
//! One iteration decodes one ~1.1 MiB batch of 10,000 records (100-byte values, no key, no
//! headers): what a Fetch response carries per partition at the default
//! `max.partition.fetch.bytes`. Every record's value length is fed to `black_box` so no
//! parse can be skipped. Criterion reports elements/s; ns/record = 1e9 / that.
//!
//! Cases:
//! - `crc32c_only`: the checksum over the batch, the floor any checking decoder pays;
//! - `josefine/{none,lz4,zstd}`: `batches()` + `records()` with CRC checking on (the
//!   compressed cases include inflating the batch);
//! - `josefine/none_no_crc`: the record parser alone;
//! - `josefine/none_borrowed`: `RecordIter::next_ref`, lending `&[u8]` fields instead of
//!   `Bytes` (no reference counting per record);
//! - `kafka_protocol/{none,lz4}`: the peer, `RecordBatchDecoder::decode_all` on the same
//!   bytes (it checks the CRC too).
//!
//! Run: `cargo bench --bench record_decode`.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use josefine::protocol::records::{
    batches, BatchBuilder, Compression, DecodeOptions, RECORD_BATCH_OVERHEAD,
};
use kafka_protocol::records::RecordBatchDecoder;

const RECORDS: usize = 10_000;
const VALUE_LEN: usize = 100;

/// JSON-ish values with a varying tail, so the codecs see realistic, partly compressible
/// data rather than zeros.
fn values() -> Vec<Vec<u8>> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    (0..RECORDS)
        .map(|i| {
            let mut v =
                format!(r#"{{"id":{i},"user":"user-{:04}","payload":""#, i % 977).into_bytes();
            while v.len() < VALUE_LEN - 2 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                v.push(b"abcdefghijklmnopqrstuvwxyz0123456789"[(seed % 36) as usize]);
            }
            v.extend_from_slice(b"\"}");
            v
        })
        .collect()
}

fn batch(values: &[Vec<u8>], compression: Compression) -> Bytes {
    let mut b = BatchBuilder::with_capacity(RECORDS * (VALUE_LEN + 8) + RECORD_BATCH_OVERHEAD)
        .compression(compression, None);
    for (i, v) in values.iter().enumerate() {
        b.push(1_700_000_000_000 + i as i64, None, Some(v), &[])
            .expect("benchmark records fit a batch");
    }
    b.finish().expect("benchmark batch encodes")
}

fn decode_ours(data: &Bytes, opts: &DecodeOptions) {
    for batch in batches(data.clone(), opts) {
        let batch = batch.expect("valid batch");
        for record in batch.records() {
            let record = record.expect("valid record");
            black_box(record.value().map_or(0, |v| v.len()) + record.key().map_or(0, |k| k.len()));
        }
    }
}

fn decode_ours_borrowed(data: &Bytes, opts: &DecodeOptions) {
    for batch in batches(data.clone(), opts) {
        let batch = batch.expect("valid batch");
        let mut records = batch.records();
        while let Some(record) = records.next_ref() {
            let record = record.expect("valid record");
            black_box(record.value().map_or(0, <[u8]>::len) + record.key().map_or(0, <[u8]>::len));
        }
    }
}

fn record_decode(c: &mut Criterion) {
    let values = values();
    let none = batch(&values, Compression::None);
    let lz4 = batch(&values, Compression::Lz4);
    let zstd = batch(&values, Compression::Zstd);
    eprintln!(
        "batch bytes: none {}, lz4 {}, zstd {}",
        none.len(),
        lz4.len(),
        zstd.len()
    );

    let checked = DecodeOptions::default();
    let unchecked = DecodeOptions {
        verify_crc: false,
        ..DecodeOptions::default()
    };

    let mut group = c.benchmark_group("record_decode");
    group
        .throughput(Throughput::Elements(RECORDS as u64))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    group.bench_function("crc32c_only", |b| {
        b.iter(|| black_box(crc32c::crc32c(&none[21..])))
    });
    group.bench_function("josefine/none", |b| b.iter(|| decode_ours(&none, &checked)));
    group.bench_function("josefine/none_no_crc", |b| {
        b.iter(|| decode_ours(&none, &unchecked))
    });
    group.bench_function("josefine/none_borrowed", |b| {
        b.iter(|| decode_ours_borrowed(&none, &checked))
    });
    group.bench_function("josefine/lz4", |b| b.iter(|| decode_ours(&lz4, &checked)));
    group.bench_function("josefine/zstd", |b| b.iter(|| decode_ours(&zstd, &checked)));
    for (name, data) in [("kafka_protocol/none", &none), ("kafka_protocol/lz4", &lz4)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut buf = data.clone();
                for set in RecordBatchDecoder::decode_all(&mut buf).expect("valid batch") {
                    for record in &set.records {
                        black_box(
                            record.value.as_ref().map_or(0, |v| v.len())
                                + record.key.as_ref().map_or(0, |k| k.len()),
                        );
                    }
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, record_decode);
criterion_main!(benches);
