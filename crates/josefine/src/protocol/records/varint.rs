//! Zigzag varints and varlongs as Kafka writes them inside records (protobuf encoding:
//! little-endian base-128 groups, zigzag so small negative numbers stay short).
//!
//! Reads work on a `&[u8]` plus a cursor instead of `bytes::Buf`: the record decoder calls
//! them several times per record, and a plain slice lets the compiler keep the cursor in a
//! register and fold the bounds checks. One-byte values take an inlined fast path; longer
//! ones are decoded from a fixed-size window (5 or 10 bytes) when that many bytes are in
//! view, so the per-byte bounds checks vanish; only a buffer's last bytes take the
//! checked loop.
//!
//! Unlike Kafka's Java reader, which silently drops the high bits of an over-full last
//! byte, we reject them: no encoder writes such bytes, and accepting them would let two
//! byte strings decode to the same value.

use super::RecordError;

const VARINT_MAX_BYTES: usize = 5;
const VARLONG_MAX_BYTES: usize = 10;

#[inline(always)]
fn unzigzag32(n: u32) -> i32 {
    ((n >> 1) as i32) ^ -((n & 1) as i32)
}

#[inline(always)]
fn unzigzag64(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

#[inline(always)]
fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

#[inline(always)]
fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Reads a zigzag varint (at most 5 bytes) at `*pos`, advancing `*pos` past it.
#[inline(always)]
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, RecordError> {
    let p = *pos;
    if let Some(&b0) = buf.get(p) {
        if b0 < 0x80 {
            *pos = p + 1;
            return Ok(unzigzag32(u32::from(b0)));
        }
    }
    // With a whole maximal varint's worth of bytes in view, decode without per-byte bounds
    // checks; only the tail of a buffer takes the checked loop.
    match buf.get(p..p + VARINT_MAX_BYTES) {
        Some(window) => {
            let window: &[u8; VARINT_MAX_BYTES] = window.try_into().expect("5-byte window");
            let (value, len) = decode_varint_window(window)?;
            *pos = p + len;
            Ok(value)
        }
        None => read_varint_slow(buf, pos),
    }
}

#[inline]
fn decode_varint_window(w: &[u8; VARINT_MAX_BYTES]) -> Result<(i32, usize), RecordError> {
    let mut value = 0u32;
    for (i, &b) in w.iter().enumerate().take(VARINT_MAX_BYTES - 1) {
        value |= u32::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok((unzigzag32(value), i + 1));
        }
    }
    let last = w[VARINT_MAX_BYTES - 1];
    check_last_varint_byte(last)?;
    value |= u32::from(last) << 28;
    Ok((unzigzag32(value), VARINT_MAX_BYTES))
}

#[inline]
fn check_last_varint_byte(b: u8) -> Result<(), RecordError> {
    if b & 0x80 != 0 {
        return Err(RecordError::VarintTooLong {
            max_bytes: VARINT_MAX_BYTES,
        });
    }
    // 4 groups of 7 bits leave 4 bits for the last byte.
    if b > 0x0f {
        return Err(RecordError::VarintOverflow { bits: 32 });
    }
    Ok(())
}

#[inline(never)]
fn read_varint_slow(buf: &[u8], pos: &mut usize) -> Result<i32, RecordError> {
    let mut value = 0u32;
    for i in 0..VARINT_MAX_BYTES {
        let b = *buf
            .get(*pos + i)
            .ok_or(RecordError::UnexpectedEof { context: "varint" })?;
        if i == VARINT_MAX_BYTES - 1 {
            check_last_varint_byte(b)?;
        }
        value |= u32::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            *pos += i + 1;
            return Ok(unzigzag32(value));
        }
    }
    unreachable!("the loop returns on the last allowed byte")
}

/// Reads a zigzag varlong (at most 10 bytes) at `*pos`, advancing `*pos` past it.
#[inline(always)]
pub(crate) fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, RecordError> {
    let p = *pos;
    if let Some(&b0) = buf.get(p) {
        if b0 < 0x80 {
            *pos = p + 1;
            return Ok(unzigzag64(u64::from(b0)));
        }
    }
    match buf.get(p..p + VARLONG_MAX_BYTES) {
        Some(window) => {
            let window: &[u8; VARLONG_MAX_BYTES] = window.try_into().expect("10-byte window");
            let (value, len) = decode_varlong_window(window)?;
            *pos = p + len;
            Ok(value)
        }
        None => read_varlong_slow(buf, pos),
    }
}

#[inline]
fn decode_varlong_window(w: &[u8; VARLONG_MAX_BYTES]) -> Result<(i64, usize), RecordError> {
    let mut value = 0u64;
    for (i, &b) in w.iter().enumerate().take(VARLONG_MAX_BYTES - 1) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok((unzigzag64(value), i + 1));
        }
    }
    let last = w[VARLONG_MAX_BYTES - 1];
    check_last_varlong_byte(last)?;
    value |= u64::from(last) << 63;
    Ok((unzigzag64(value), VARLONG_MAX_BYTES))
}

#[inline]
fn check_last_varlong_byte(b: u8) -> Result<(), RecordError> {
    if b & 0x80 != 0 {
        return Err(RecordError::VarintTooLong {
            max_bytes: VARLONG_MAX_BYTES,
        });
    }
    // 9 groups of 7 bits leave 1 bit for the last byte.
    if b > 0x01 {
        return Err(RecordError::VarintOverflow { bits: 64 });
    }
    Ok(())
}

#[inline(never)]
fn read_varlong_slow(buf: &[u8], pos: &mut usize) -> Result<i64, RecordError> {
    let mut value = 0u64;
    for i in 0..VARLONG_MAX_BYTES {
        let b = *buf
            .get(*pos + i)
            .ok_or(RecordError::UnexpectedEof { context: "varlong" })?;
        if i == VARLONG_MAX_BYTES - 1 {
            check_last_varlong_byte(b)?;
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            *pos += i + 1;
            return Ok(unzigzag64(value));
        }
    }
    unreachable!("the loop returns on the last allowed byte")
}

/// Appends `v` as a zigzag varint.
#[inline]
pub(crate) fn write_varint(out: &mut Vec<u8>, v: i32) {
    write_unsigned(out, u64::from(zigzag32(v)));
}

/// Appends `v` as a zigzag varlong.
#[inline]
pub(crate) fn write_varlong(out: &mut Vec<u8>, v: i64) {
    write_unsigned(out, zigzag64(v));
}

#[inline]
fn write_unsigned(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Bytes `write_varint(v)` appends.
#[inline]
pub(crate) fn varint_len(v: i32) -> usize {
    unsigned_len(u64::from(zigzag32(v)))
}

/// Bytes `write_varlong(v)` appends.
#[inline]
pub(crate) fn varlong_len(v: i64) -> usize {
    unsigned_len(zigzag64(v))
}

#[inline]
fn unsigned_len(n: u64) -> usize {
    // Each byte carries 7 bits; zero still takes one byte.
    let bits = 64 - (n | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc32(v: i32) -> Vec<u8> {
        let mut out = Vec::new();
        write_varint(&mut out, v);
        out
    }

    fn enc64(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        write_varlong(&mut out, v);
        out
    }

    fn dec32(buf: &[u8]) -> Result<(i32, usize), RecordError> {
        let mut pos = 0;
        read_varint(buf, &mut pos).map(|v| (v, pos))
    }

    fn dec64(buf: &[u8]) -> Result<(i64, usize), RecordError> {
        let mut pos = 0;
        read_varlong(buf, &mut pos).map(|v| (v, pos))
    }

    #[test]
    fn known_encodings() {
        // Values from the protobuf zigzag table and Kafka's ByteUtilsTest.
        assert_eq!(enc32(0), [0x00]);
        assert_eq!(enc32(-1), [0x01]);
        assert_eq!(enc32(1), [0x02]);
        assert_eq!(enc32(-2), [0x03]);
        assert_eq!(enc32(63), [0x7e]);
        assert_eq!(enc32(-64), [0x7f]);
        assert_eq!(enc32(64), [0x80, 0x01]);
        assert_eq!(enc32(i32::MAX), [0xfe, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(enc32(i32::MIN), [0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(
            enc64(i64::MAX),
            [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        assert_eq!(
            enc64(i64::MIN),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn edge_values_round_trip() {
        for v in [
            0,
            -1,
            1,
            63,
            -64,
            64,
            -65,
            8191,
            -8192,
            8192,
            i32::MIN,
            i32::MAX,
        ] {
            let bytes = enc32(v);
            assert_eq!(bytes.len(), varint_len(v), "{v}");
            assert_eq!(dec32(&bytes), Ok((v, bytes.len())), "{v}");
        }
        for v in [
            0,
            -1,
            1,
            i64::from(i32::MIN),
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let bytes = enc64(v);
            assert_eq!(bytes.len(), varlong_len(v), "{v}");
            assert_eq!(dec64(&bytes), Ok((v, bytes.len())), "{v}");
        }
    }

    #[test]
    fn window_and_tail_paths_agree() {
        // The same encoding read with following bytes in view (window path) and at the
        // very end of the buffer (checked path).
        for v in [64, -65, 8192, 1 << 20, i32::MIN, i32::MAX] {
            let bytes = enc32(v);
            let mut padded = bytes.clone();
            padded.extend_from_slice(&[0xff; 10]);
            assert_eq!(dec32(&padded), Ok((v, bytes.len())), "{v}");
        }
        for v in [64, -65, 1 << 40, i64::MIN, i64::MAX] {
            let bytes = enc64(v);
            let mut padded = bytes.clone();
            padded.extend_from_slice(&[0xff; 10]);
            assert_eq!(dec64(&padded), Ok((v, bytes.len())), "{v}");
        }
        // Errors, too: over-full last byte seen through the window.
        let mut over = vec![0xff, 0xff, 0xff, 0xff, 0x1f];
        over.extend_from_slice(&[0; 8]);
        assert_eq!(dec32(&over), Err(RecordError::VarintOverflow { bits: 32 }));
    }

    #[test]
    fn reads_at_cursor_and_advances() {
        let buf = [0xaa, 0x80, 0x01, 0x03];
        let mut pos = 1;
        assert_eq!(read_varint(&buf, &mut pos), Ok(64));
        assert_eq!(pos, 3);
        assert_eq!(read_varlong(&buf, &mut pos), Ok(-2));
        assert_eq!(pos, 4);
        assert_eq!(
            read_varint(&buf, &mut pos),
            Err(RecordError::UnexpectedEof { context: "varint" })
        );
        assert_eq!(pos, 4, "a failed read leaves the cursor alone");
    }

    #[test]
    fn truncated_is_eof() {
        for v in [64, i32::MAX, i32::MIN] {
            let bytes = enc32(v);
            for cut in 0..bytes.len() {
                assert_eq!(
                    dec32(&bytes[..cut]),
                    Err(RecordError::UnexpectedEof { context: "varint" })
                );
            }
        }
        let bytes = enc64(i64::MIN);
        for cut in 0..bytes.len() {
            assert_eq!(
                dec64(&bytes[..cut]),
                Err(RecordError::UnexpectedEof { context: "varlong" })
            );
        }
    }

    #[test]
    fn overlong_is_rejected() {
        assert_eq!(
            dec32(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
            Err(RecordError::VarintTooLong { max_bytes: 5 })
        );
        assert_eq!(
            dec64(&[0x80; 11]),
            Err(RecordError::VarintTooLong { max_bytes: 10 })
        );
        let mut ten = vec![0x80; 10];
        ten.push(0x00);
        assert_eq!(
            dec64(&ten),
            Err(RecordError::VarintTooLong { max_bytes: 10 })
        );
        // Bits beyond the type's width on the last byte.
        assert_eq!(
            dec32(&[0xff, 0xff, 0xff, 0xff, 0x1f]),
            Err(RecordError::VarintOverflow { bits: 32 })
        );
        assert_eq!(
            dec64(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            Err(RecordError::VarintOverflow { bits: 64 })
        );
    }

    #[test]
    fn non_minimal_but_in_range_is_accepted() {
        // Padding with zero groups is legal protobuf and Kafka reads it.
        assert_eq!(dec32(&[0x82, 0x80, 0x00]), Ok((1, 3)));
        assert_eq!(dec64(&[0x80, 0x00]), Ok((0, 2)));
    }

    proptest! {
        #[test]
        fn varint_round_trips(v: i32, tail in proptest::collection::vec(any::<u8>(), 0..12)) {
            let mut bytes = enc32(v);
            let len = bytes.len();
            prop_assert_eq!(len, varint_len(v));
            prop_assert_eq!(dec32(&bytes), Ok((v, len)));
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(dec32(&bytes), Ok((v, len)));
        }

        #[test]
        fn varlong_round_trips(v: i64, tail in proptest::collection::vec(any::<u8>(), 0..12)) {
            let mut bytes = enc64(v);
            let len = bytes.len();
            prop_assert_eq!(len, varlong_len(v));
            prop_assert_eq!(dec64(&bytes), Ok((v, len)));
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(dec64(&bytes), Ok((v, len)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes: Vec<u8>, start in 0usize..16) {
            let start = start.min(bytes.len());
            let mut pos = start;
            if read_varint(&bytes, &mut pos).is_ok() {
                prop_assert!(pos > start && pos <= bytes.len());
            }
            let mut pos = start;
            if read_varlong(&bytes, &mut pos).is_ok() {
                prop_assert!(pos > start && pos <= bytes.len());
            }
        }
    }
}
