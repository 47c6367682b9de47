//! The guard against `kafka-protocol`'s decoders: it must accept what they accept (in
//! the same number of bytes) and stop hostile counts before they reach them.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{FetchResponse, MetadataResponse};
use kafka_protocol::protocol::Decodable;

use super::*;
use crate::protocol::RESPONSE_TYPES;

#[test]
fn every_response_type_has_its_layout_for_every_version_we_speak() {
    for rt in RESPONSE_TYPES {
        let (lo, hi) = rt.schema.versions;
        assert!(
            lo <= rt.versions.min && rt.versions.max <= hi,
            "{:?}: we speak {} but the layout covers {lo}..={hi}",
            rt.api,
            rt.versions
        );
    }
    // Every top-level layout generated is used.
    assert_eq!(schemas::ALL.len(), RESPONSE_TYPES.len() + 1);
}

/// Random well-formed bodies of every type and version: the guard walks exactly the
/// bytes the decoder consumes. This is what pins the generated layouts to the decoders.
#[test]
fn guard_and_decoder_agree_on_generated_bodies() {
    let mut rng = Rng::new(7);
    let mut checked = 0;
    for rt in RESPONSE_TYPES {
        for version in rt.versions.min..=rt.versions.max {
            for _ in 0..40 {
                let body = generate(rt.schema, version, &mut rng);
                let walked = check_schema(rt.schema, &body, version).unwrap_or_else(|e| {
                    panic!(
                        "{:?} v{version}: guard refuses a generated body: {e}",
                        rt.api
                    )
                });
                assert_eq!(walked, body.len(), "{:?} v{version}", rt.api);
                let mut buf = Bytes::from(body.clone());
                (rt.decode_unguarded)(&mut buf, version).unwrap_or_else(|e| {
                    panic!(
                        "{:?} v{version}: decoder refuses a generated body: {e}",
                        rt.api
                    )
                });
                assert_eq!(buf.len(), 0, "{:?} v{version}: decoder left bytes", rt.api);
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "{checked}");
}

/// The 72-byte Metadata v1 frame from DESIGN.md's old "Known limitations": one broker,
/// then a topic array claiming i32::MAX topics. Before the guard this aborted the
/// process (154 GB asked of the allocator).
#[test]
fn metadata_with_absurd_topic_count_is_refused_before_decoding() {
    let mut body = BytesMut::new();
    body.put_i32(1); // brokers
    body.put_i32(1); // node id
    body.put_i16(9);
    body.put_slice(b"localhost");
    body.put_i32(9092);
    body.put_i16(-1); // rack
    body.put_i32(1); // controller id
    body.put_i32(i32::MAX); // topics
    body.put_slice(&[0u8; 20]);
    let err = check::<MetadataResponse>(&body, 1).unwrap_err();
    assert!(
        matches!(
            err,
            GuardError::CountTooLarge {
                field: "topics",
                count: 2_147_483_647,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("topics"), "{err}");
}

#[test]
fn compact_count_near_u32_max_is_refused() {
    // Metadata v12: throttle, brokers = compact count 0xffff_ffff - 1 elements.
    let mut body = vec![0, 0, 0, 0];
    body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    body.extend_from_slice(&[0; 32]);
    assert!(matches!(
        check::<MetadataResponse>(&body, 12),
        Err(GuardError::CountTooLarge {
            field: "brokers",
            ..
        })
    ));
}

#[test]
fn count_that_fits_the_bytes_but_not_the_elements_is_refused() {
    // Five replicas claimed, room for four Int32s: refused by size, not by count.
    let mut body = BytesMut::new();
    body.put_i32(0); // brokers
    body.put_i32(-1); // controller
    body.put_i32(1); // topics
    body.put_i16(0);
    body.put_i16(1);
    body.put_slice(b"t");
    body.put_u8(0); // internal
    body.put_i32(1); // partitions
    body.put_i16(0);
    body.put_i32(0);
    body.put_i32(1);
    body.put_i32(5); // replicas
    body.put_slice(&[0u8; 16]);
    let err = check::<MetadataResponse>(&body, 1).unwrap_err();
    assert!(
        matches!(
            err,
            GuardError::CountTooLarge {
                field: "replica_nodes",
                count: 5,
                min_size: 4,
                remaining: 16,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn negative_counts_and_lengths_are_refused() {
    let mut body = BytesMut::new();
    body.put_i32(-2); // brokers
    assert!(matches!(
        check::<MetadataResponse>(&body, 1),
        Err(GuardError::Negative { value: -2, .. })
    ));
    // A null array is the decoder's business (it refuses non-nullable ones itself).
    let mut body = BytesMut::new();
    body.put_i32(-1);
    body.put_i32(-1);
    body.put_i32(0);
    assert_eq!(check::<MetadataResponse>(&body, 1), Ok(12));
}

#[test]
fn fetch_records_are_skipped_not_scanned() {
    let records = vec![0xffu8; 4096];
    let mut body = BytesMut::new();
    body.put_i32(0); // throttle
    body.put_i16(0); // error
    body.put_i32(0); // session
    body.put_i32(1); // topics
    body.put_i16(1);
    body.put_slice(b"t");
    body.put_i32(1); // partitions
    body.put_i32(0);
    body.put_i16(0);
    body.put_i64(10);
    body.put_i64(10);
    body.put_i64(0);
    body.put_i32(-1); // aborted transactions: null
    body.put_i32(-1); // preferred read replica
    body.put_i32(records.len() as i32);
    body.put_slice(&records);
    assert_eq!(check::<FetchResponse>(&body, 11), Ok(body.len()));
    let mut buf = body.freeze();
    let decoded = FetchResponse::decode(&mut buf, 11).unwrap();
    assert_eq!(
        decoded.responses[0].partitions[0].records.as_deref(),
        Some(&records[..])
    );
}

#[test]
fn known_tagged_field_at_a_version_without_it_is_refused() {
    // Fetch v12..15: tag 0 (node endpoints) exists only from v16; the decoder bails.
    let mut body = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    body.push(1); // responses: empty compact array
    body.extend_from_slice(&[1, 0, 1, 0]); // one tag: 0, size 1, value
    assert!(matches!(
        check::<FetchResponse>(&body, 12),
        Err(GuardError::Tag { tag: 0, .. })
    ));
    assert!(FetchResponse::decode(&mut Bytes::from(body), 12).is_err());
}

#[test]
fn versions_outside_the_decoder_are_refused() {
    assert!(matches!(
        check::<MetadataResponse>(&[], 99),
        Err(GuardError::Version { version: 99, .. })
    ));
}
