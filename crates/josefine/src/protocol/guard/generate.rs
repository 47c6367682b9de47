//! Random well-formed messages from the layouts: seeds for the fuzz targets and the
//! guard's own agreement tests with `kafka-protocol`'s decoders.
//!
//! Every field is written as the decoder reads it at the version: non-null strings of
//! ASCII letters (the decoder insists on UTF-8, and on non-null where the schema does,
//! which the layout does not record), short arrays, known tagged fields with their real
//! size, and now and then an unknown tag for the decoder to skip.

use bytes::BufMut;

use super::{at, Elem, Schema, Ty};

/// SplitMix64: tiny, fast and the same on every platform, so a seed names one input.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`); the modulo bias is irrelevant here.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub(crate) fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Deepest nesting at which arrays still get elements, so output stays small.
const MAX_DEPTH: usize = 4;

/// A random `schema` message at `version`, encoded as `kafka-protocol` decodes it.
pub(crate) fn generate(schema: &'static Schema, version: i16, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    structure(&mut out, schema, version, rng, 0);
    out
}

fn uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn structure(
    out: &mut Vec<u8>,
    schema: &'static Schema,
    version: i16,
    rng: &mut Rng,
    depth: usize,
) {
    for field in schema.fields {
        if let Some(ty) = at(field.reads, version) {
            value(out, ty, version, rng, depth);
        }
    }
    if !schema.flexible(version) {
        return;
    }
    let mut tagged: Vec<(u32, Vec<u8>)> = Vec::new();
    for known in schema.tags {
        if let Some(ty) = at(known.reads, version) {
            if rng.chance(2) {
                let mut v = Vec::new();
                value(&mut v, ty, version, rng, depth + 1);
                tagged.push((known.tag, v));
            }
        }
    }
    if rng.chance(4) {
        // Unknown to this decoder: skipped by its size.
        let tag = 1000 + rng.below(1000) as u32;
        let len = rng.below(6);
        tagged.push((tag, (0..len).map(|_| rng.next_u64() as u8).collect()));
    }
    uvarint(out, tagged.len() as u32);
    for (tag, v) in tagged {
        uvarint(out, tag);
        uvarint(out, v.len() as u32);
        out.extend_from_slice(&v);
    }
}

fn letters(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(9);
    (0..len).map(|_| b'a' + rng.below(26) as u8).collect()
}

fn count(rng: &mut Rng, depth: usize) -> usize {
    if depth >= MAX_DEPTH {
        0
    } else {
        rng.below(4)
    }
}

fn value(out: &mut Vec<u8>, ty: Ty, version: i16, rng: &mut Rng, depth: usize) {
    match ty {
        Ty::Int8 => out.put_i8(rng.below(3) as i8 - 1),
        Ty::Boolean => out.put_u8(rng.below(2) as u8),
        Ty::Int16 => out.put_i16(rng.below(100) as i16 - 1),
        Ty::UInt16 => out.put_u16(rng.below(100) as u16),
        Ty::Int32 => out.put_i32(rng.below(1000) as i32 - 1),
        Ty::UInt32 => out.put_u32(rng.below(1000) as u32),
        Ty::Int64 => out.put_i64(rng.below(100_000) as i64 - 1),
        Ty::Float64 => out.put_f64(rng.below(1000) as f64 / 8.0),
        Ty::Uuid => {
            for _ in 0..16 {
                out.push(rng.next_u64() as u8);
            }
        }
        Ty::UnsignedVarInt => uvarint(out, rng.below(1 << 20) as u32),
        Ty::String => {
            let s = letters(rng);
            out.put_i16(s.len() as i16);
            out.extend_from_slice(&s);
        }
        Ty::CompactString => {
            let s = letters(rng);
            uvarint(out, s.len() as u32 + 1);
            out.extend_from_slice(&s);
        }
        Ty::Bytes => {
            let b = letters(rng);
            out.put_i32(b.len() as i32);
            out.extend_from_slice(&b);
        }
        Ty::CompactBytes => {
            let b = letters(rng);
            uvarint(out, b.len() as u32 + 1);
            out.extend_from_slice(&b);
        }
        Ty::Struct(schema) => structure(out, schema, version, rng, depth + 1),
        Ty::OptionStruct(schema) => {
            if rng.chance(2) {
                out.put_i8(1);
                structure(out, schema, version, rng, depth + 1);
            } else {
                out.put_i8(-1);
            }
        }
        Ty::Array(elem) => {
            let n = count(rng, depth);
            out.put_i32(n as i32);
            elements(out, elem, n, version, rng, depth);
        }
        Ty::CompactArray(elem) => {
            let n = count(rng, depth);
            uvarint(out, n as u32 + 1);
            elements(out, elem, n, version, rng, depth);
        }
    }
}

fn elements(out: &mut Vec<u8>, elem: Elem, n: usize, version: i16, rng: &mut Rng, depth: usize) {
    for _ in 0..n {
        value(out, elem.ty(), version, rng, depth + 1);
    }
}
