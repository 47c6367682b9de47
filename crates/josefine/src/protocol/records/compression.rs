//! The five codecs of the `compression.type` setting, compressing and decompressing a whole
//! records section at once (Kafka compresses everything after the 61-byte batch header as
//! one stream).
//!
//! Wire formats, matched to what Apache Kafka's Java client writes so every client reads us:
//! - gzip: one gzip member (RFC 1952); any number of concatenated members is read.
//! - snappy: the Java client writes through snappy-java's `SnappyOutputStream`, i.e. the
//!   "xerial" framing: a 16-byte header (`\x82SNAPPY\0`, version 1, compatible version 1)
//!   then blocks of up to 32 KiB, each a big-endian u32 length and a raw snappy block. We
//!   write the same. librdkafka writes a single *raw* snappy block for v2 batches, and both
//!   snappy-java's `SnappyInputStream` and librdkafka fall back to raw when the magic is
//!   missing, so we read both.
//! - lz4: the LZ4 frame format (not the legacy or raw block format), as
//!   `Lz4BlockOutputStream` writes it: 64 KiB independent blocks, no content size, no
//!   checksums. The Java reader rejects linked blocks, so we never write them.
//! - zstd: a standard zstd frame; we record the content size in the frame header so readers
//!   can inflate in one pass.
//!
//! Decompression never allocates more than the caller's limit (plus one byte used to tell
//! "exactly the limit" from "over it"): sizes announced by the input (gzip ISIZE, snappy
//! length, zstd content size) are only capacity hints, capped by the limit.
//!
//! Integrity is the batch CRC32C's job (it covers the compressed bytes), so the optional
//! LZ4 frame checksums are not recomputed on the fast path.
//!
//! zstd is the cargo feature `zstd` (it builds the C library); in a build without it,
//! zstd is still a known codec, but compressing or decompressing with it is a
//! [`RecordError::CodecDisabled`] error.

use std::fmt;
use std::io::{Read, Write};
use std::ops::RangeInclusive;

use super::RecordError;

/// The codec of a record batch: attribute bits 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Compression {
    /// No compression (id 0).
    #[default]
    None,
    /// gzip (id 1). Levels 1-9, default 6 (Kafka's `compression.gzip.level`).
    Gzip,
    /// snappy (id 2), xerial-framed on write. No levels.
    Snappy,
    /// LZ4 frame format (id 3). Kafka's `compression.lz4.level` range 1-17 is accepted, but
    /// lz4_flex has a single fast mode, so the level does not change the output.
    Lz4,
    /// zstd (id 4). Levels as libzstd allows (negative "fast" levels up to 22), default 3
    /// (Kafka's `compression.zstd.level`). Needs the `zstd` feature.
    Zstd,
}

impl Compression {
    /// Every codec, in id order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The id stored in attribute bits 0-2.
    pub const fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec for an attribute id, `None` for 5-7.
    pub const fn from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The name Kafka's `compression.type` setting uses.
    pub const fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// The level used when none is given, `None` for codecs without levels.
    pub const fn default_level(self) -> Option<i32> {
        match self {
            Compression::Gzip => Some(6),
            // Kafka's default for compression.lz4.level; informational, see `Lz4`.
            Compression::Lz4 => Some(9),
            Compression::Zstd => Some(3),
            Compression::None | Compression::Snappy => None,
        }
    }

    /// The accepted levels, `None` for codecs without levels (and for zstd in a build
    /// without the `zstd` feature, which cannot compress with it).
    pub fn level_range(self) -> Option<RangeInclusive<i32>> {
        match self {
            // Kafka rejects 0 ("stored") too; it would only waste bytes on framing.
            Compression::Gzip => Some(1..=9),
            Compression::Lz4 => Some(1..=17),
            #[cfg(feature = "zstd")]
            Compression::Zstd => Some(zstd::compression_level_range()),
            #[cfg(not(feature = "zstd"))]
            Compression::Zstd => None,
            Compression::None | Compression::Snappy => None,
        }
    }

    /// The cargo feature this codec needs when this build leaves it out.
    pub(crate) const fn disabled_feature(self) -> Option<&'static str> {
        match self {
            Compression::Zstd if !cfg!(feature = "zstd") => Some(ZSTD_FEATURE),
            _ => None,
        }
    }

    /// The codecs this build has: every one but zstd without its feature.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn built() -> impl Iterator<Item = Compression> {
        Compression::ALL
            .into_iter()
            .filter(|c| c.disabled_feature().is_none())
    }

    /// [`RecordError::CodecDisabled`] for a codec this build leaves out.
    pub(crate) fn check_built(self) -> Result<(), RecordError> {
        match self.disabled_feature() {
            Some(feature) => Err(RecordError::CodecDisabled {
                codec: self,
                feature,
            }),
            None => Ok(()),
        }
    }

    /// Checks a level before it reaches `BatchBuilder::finish`, e.g. when a producer config
    /// is built. `None` (the codec's default) is always valid, unless this build leaves
    /// the codec out ([`RecordError::CodecDisabled`], whatever the level).
    pub(crate) fn check_level(self, level: Option<i32>) -> Result<(), RecordError> {
        self.check_built()?;
        match (level, self.level_range()) {
            (None, _) => Ok(()),
            (Some(level), Some(range)) if range.contains(&level) => Ok(()),
            (Some(level), _) => Err(RecordError::InvalidCompressionLevel { codec: self, level }),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Compresses `input` with `codec` at `level` (or the codec's default), appending to `out`.
///
/// `Compression::None` copies `input`.
pub fn compress(
    codec: Compression,
    level: Option<i32>,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    codec.check_level(level)?;
    let failed = |e: std::io::Error| RecordError::Compression {
        codec,
        message: e.to_string(),
    };
    match codec {
        Compression::None => out.extend_from_slice(input),
        Compression::Gzip => {
            let level = level.or(codec.default_level()).unwrap_or(6);
            // check_level bounds it to 1..=9.
            let mut encoder =
                flate2::write::GzEncoder::new(out, flate2::Compression::new(level as u32));
            encoder.write_all(input).map_err(failed)?;
            encoder.finish().map_err(failed)?;
        }
        Compression::Snappy => compress_snappy_xerial(input, out)?,
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent)
                .content_checksum(false)
                .block_checksums(false);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
            encoder.write_all(input).map_err(failed)?;
            encoder.finish().map_err(|e| RecordError::Compression {
                codec,
                message: e.to_string(),
            })?;
        }
        Compression::Zstd => compress_zstd(level, input, out)?,
    }
    Ok(())
}

/// The feature that builds zstd.
const ZSTD_FEATURE: &str = "zstd";

#[cfg(feature = "zstd")]
fn compress_zstd(level: Option<i32>, input: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
    let codec = Compression::Zstd;
    let level = level.or(codec.default_level()).unwrap_or(3);
    let start = out.len();
    out.resize(start + zstd::zstd_safe::compress_bound(input.len()), 0);
    // The one-shot API knows the input size, so the frame header records it.
    let written = zstd::bulk::compress_to_buffer(input, &mut out[start..], level).map_err(|e| {
        RecordError::Compression {
            codec,
            message: e.to_string(),
        }
    })?;
    out.truncate(start + written);
    Ok(())
}

#[cfg(not(feature = "zstd"))]
fn compress_zstd(_: Option<i32>, _: &[u8], _: &mut Vec<u8>) -> Result<(), RecordError> {
    Err(zstd_disabled())
}

/// What zstd in a build without it fails with.
#[cfg(not(feature = "zstd"))]
fn zstd_disabled() -> RecordError {
    RecordError::CodecDisabled {
        codec: Compression::Zstd,
        feature: ZSTD_FEATURE,
    }
}

const XERIAL_MAGIC: [u8; 8] = *b"\x82SNAPPY\0";
const XERIAL_HEADER_LEN: usize = 16;
/// snappy-java's default `SnappyOutputStream` block size.
const XERIAL_BLOCK: usize = 32 * 1024;

fn compress_snappy_xerial(input: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes()); // version
    out.extend_from_slice(&1i32.to_be_bytes()); // minimum compatible version
    let mut encoder = snap::raw::Encoder::new();
    for block in input.chunks(XERIAL_BLOCK) {
        let len_at = out.len();
        out.resize(len_at + 4 + snap::raw::max_compress_len(block.len()), 0);
        let written = encoder
            .compress(block, &mut out[len_at + 4..])
            .map_err(|e| RecordError::Compression {
                codec: Compression::Snappy,
                message: e.to_string(),
            })?;
        // A 32 KiB block compresses to well under 4 GiB.
        out[len_at..len_at + 4].copy_from_slice(&(written as u32).to_be_bytes());
        out.truncate(len_at + 4 + written);
    }
    Ok(())
}

/// Decompresses a whole records section, failing with
/// [`RecordError::DecompressedTooLarge`] rather than producing more than `limit` bytes.
///
/// `Compression::None` copies `input` (under the same limit).
pub fn decompress(codec: Compression, input: &[u8], limit: usize) -> Result<Vec<u8>, RecordError> {
    match codec {
        Compression::None => {
            if input.len() > limit {
                return Err(RecordError::DecompressedTooLarge { codec, limit });
            }
            Ok(input.to_vec())
        }
        Compression::Gzip => decompress_gzip(input, limit),
        Compression::Snappy => decompress_snappy(input, limit),
        Compression::Lz4 => decompress_lz4(input, limit),
        Compression::Zstd => decompress_zstd(input, limit),
    }
}

fn corrupt(codec: Compression, message: impl fmt::Display) -> RecordError {
    RecordError::Decompression {
        codec,
        message: message.to_string(),
    }
}

/// Drains a streaming decoder into a buffer that never grows past `limit + 1` bytes.
/// `hint` (already capped by the caller or here) sizes the first allocation.
fn read_bounded(
    mut reader: impl Read,
    codec: Compression,
    limit: usize,
    hint: usize,
) -> Result<Vec<u8>, RecordError> {
    // One byte over the limit distinguishes "exactly at the limit" from "beyond it".
    let cap = limit.saturating_add(1);
    let mut out = vec![0u8; hint.max(64).min(cap)];
    let mut filled = 0;
    loop {
        if filled == out.len() {
            if out.len() >= cap {
                return Err(RecordError::DecompressedTooLarge { codec, limit });
            }
            let grown = out.len().saturating_mul(2).min(cap);
            out.resize(grown, 0);
        }
        match reader.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(corrupt(codec, e)),
        }
    }
    out.truncate(filled);
    Ok(out)
}

fn decompress_gzip(input: &[u8], limit: usize) -> Result<Vec<u8>, RecordError> {
    // ISIZE, the last 4 bytes, is the size mod 2^32 of the last member: a good hint for
    // the usual single member, and harmless otherwise since it is capped.
    let hint = match input.len() {
        n if n >= 18 => {
            let isize =
                u32::from_le_bytes([input[n - 4], input[n - 3], input[n - 2], input[n - 1]]);
            // Deflate cannot exceed ~1032:1, so a larger claim is garbage.
            (isize as usize).min(n.saturating_mul(1032))
        }
        n => n,
    };
    let out = read_bounded(
        flate2::bufread::MultiGzDecoder::new(input),
        Compression::Gzip,
        limit,
        hint.saturating_add(1),
    )?;
    Ok(out)
}

fn decompress_snappy(input: &[u8], limit: usize) -> Result<Vec<u8>, RecordError> {
    if input.len() >= XERIAL_HEADER_LEN && input[..8] == XERIAL_MAGIC {
        return decompress_snappy_xerial(&input[XERIAL_HEADER_LEN..], limit);
    }
    let mut out = Vec::new();
    snappy_block_into(input, &mut out, limit)?;
    Ok(out)
}

fn decompress_snappy_xerial(mut blocks: &[u8], limit: usize) -> Result<Vec<u8>, RecordError> {
    let codec = Compression::Snappy;
    let mut out = Vec::new();
    while !blocks.is_empty() {
        let Some((len, rest)) = blocks.split_first_chunk::<4>() else {
            return Err(corrupt(codec, "truncated xerial block length"));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len > rest.len() {
            return Err(corrupt(codec, "xerial block longer than the input"));
        }
        let (block, rest) = rest.split_at(len);
        snappy_block_into(block, &mut out, limit)?;
        blocks = rest;
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, checking its announced size against `limit`
/// before allocating.
fn snappy_block_into(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), RecordError> {
    let codec = Compression::Snappy;
    let len = snap::raw::decompress_len(block).map_err(|e| corrupt(codec, e))?;
    let start = out.len();
    if len > limit.saturating_sub(start) {
        return Err(RecordError::DecompressedTooLarge { codec, limit });
    }
    out.resize(start + len, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| corrupt(codec, e))?;
    if written != len {
        return Err(corrupt(codec, "block shorter than its announced length"));
    }
    Ok(())
}

#[cfg(not(feature = "zstd"))]
fn decompress_zstd(_: &[u8], _: usize) -> Result<Vec<u8>, RecordError> {
    Err(zstd_disabled())
}

#[cfg(feature = "zstd")]
fn decompress_zstd(input: &[u8], limit: usize) -> Result<Vec<u8>, RecordError> {
    let codec = Compression::Zstd;
    // A frame that records its size (ours, librdkafka's) inflates in one call into an
    // exact buffer. Streamed frames (the Java client's), several concatenated frames, or a
    // failure of the one-shot call take the bounded streaming path, which also produces
    // the error message for corrupt input.
    match zstd::zstd_safe::get_frame_content_size(input) {
        Ok(Some(size)) if size > limit as u64 => {
            return Err(RecordError::DecompressedTooLarge { codec, limit })
        }
        Ok(Some(size)) => {
            let mut out = Vec::with_capacity(size as usize);
            if let Ok(written) = zstd::bulk::decompress_to_buffer(input, &mut out) {
                if written == size as usize {
                    return Ok(out);
                }
            }
        }
        _ => {}
    }
    let decoder = zstd::stream::read::Decoder::with_buffer(input).map_err(|e| corrupt(codec, e))?;
    read_bounded(decoder, codec, limit, input.len().saturating_mul(4))
}

const LZ4_MAGIC: u32 = 0x184D_2204;

fn decompress_lz4(input: &[u8], limit: usize) -> Result<Vec<u8>, RecordError> {
    match lz4_independent_frames(input, limit) {
        Some(result) => result,
        // Linked blocks, the legacy frame, dictionaries or skippable frames: rare enough in
        // Kafka (the Java client cannot read linked blocks) to take lz4_flex's slower reader.
        None => read_bounded(
            lz4_flex::frame::FrameDecoder::new(input),
            Compression::Lz4,
            limit,
            input.len().saturating_mul(4),
        ),
    }
}

/// One parsed LZ4 frame block.
struct Lz4Block<'a> {
    data: &'a [u8],
    compressed: bool,
    /// The frame's maximum block size.
    max: usize,
}

/// Walks concatenated LZ4 frames of independent blocks, calling `f` for each block.
/// `Ok(false)` means a frame feature this fast path does not handle.
fn walk_lz4_frames<'a>(
    mut input: &'a [u8],
    mut f: impl FnMut(Lz4Block<'a>) -> Result<(), RecordError>,
) -> Result<bool, RecordError> {
    let codec = Compression::Lz4;
    let eof = || corrupt(codec, "truncated frame");
    while !input.is_empty() {
        let Some((magic, rest)) = input.split_first_chunk::<4>() else {
            return Err(eof());
        };
        if u32::from_le_bytes(*magic) != LZ4_MAGIC {
            return Ok(false);
        }
        let [flg, bd, ..] = *rest else {
            return Err(eof());
        };
        let version = flg >> 6;
        let independent = flg & 0x20 != 0;
        let block_checksum = flg & 0x10 != 0;
        let content_size = flg & 0x08 != 0;
        let content_checksum = flg & 0x04 != 0;
        let dict_id = flg & 0x01 != 0;
        if version != 1 || !independent || dict_id {
            return Ok(false);
        }
        let max = match (bd >> 4) & 0x07 {
            4 => 64 << 10,
            5 => 256 << 10,
            6 => 1 << 20,
            7 => 4 << 20,
            _ => return Err(corrupt(codec, "invalid block size")),
        };
        // FLG, BD, optional content size, header checksum byte.
        let header = 2 + if content_size { 8 } else { 0 } + 1;
        input = rest.get(header..).ok_or_else(eof)?;
        loop {
            let Some((size, rest)) = input.split_first_chunk::<4>() else {
                return Err(eof());
            };
            let size = u32::from_le_bytes(*size);
            input = rest;
            if size == 0 {
                break;
            }
            let compressed = size & 0x8000_0000 == 0;
            let len = (size & 0x7fff_ffff) as usize;
            if len > input.len() {
                return Err(eof());
            }
            let (data, rest) = input.split_at(len);
            input = rest;
            if block_checksum {
                input = input.get(4..).ok_or_else(eof)?;
            }
            f(Lz4Block {
                data,
                compressed,
                max,
            })?;
        }
        if content_checksum {
            input = input.get(4..).ok_or_else(eof)?;
        }
    }
    Ok(true)
}

/// The fast path: a sizing pass over the block headers, one allocation, then every block
/// decompressed straight into place.
fn lz4_independent_frames(input: &[u8], limit: usize) -> Option<Result<Vec<u8>, RecordError>> {
    let codec = Compression::Lz4;
    let mut bound = 0usize;
    let walked = walk_lz4_frames(input, |block| {
        let most = if block.compressed {
            block.max
        } else {
            block.data.len()
        };
        bound = bound.saturating_add(most);
        Ok(())
    });
    match walked {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => return Some(Err(e)),
    }
    let cap = limit.saturating_add(1);
    let mut out = vec![0u8; bound.min(cap)];
    let mut filled = 0usize;
    let walked = walk_lz4_frames(input, |block| {
        let room = out.len() - filled;
        if !block.compressed {
            if block.data.len() > room || filled + block.data.len() > limit {
                return Err(RecordError::DecompressedTooLarge { codec, limit });
            }
            out[filled..filled + block.data.len()].copy_from_slice(block.data);
            filled += block.data.len();
            return Ok(());
        }
        let window = room.min(block.max);
        match lz4_flex::block::decompress_into(block.data, &mut out[filled..filled + window]) {
            Ok(n) => {
                filled += n;
                if filled > limit {
                    return Err(RecordError::DecompressedTooLarge { codec, limit });
                }
                Ok(())
            }
            // Only the limit can make the window smaller than a valid block's output.
            Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) if window < block.max => {
                Err(RecordError::DecompressedTooLarge { codec, limit })
            }
            Err(e) => Err(corrupt(codec, e)),
        }
    });
    Some(walked.map(|_| {
        out.truncate(filled);
        out
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivially so.
        (0..len)
            .map(|i| ((i * 7) % 251) as u8 ^ (i / 97) as u8)
            .collect()
    }

    const ALL: [Compression; 5] = Compression::ALL;

    fn built() -> impl Iterator<Item = Compression> {
        Compression::built()
    }

    #[test]
    fn ids_and_names() {
        for c in ALL {
            assert_eq!(Compression::from_id(c.id()), Some(c));
            assert_eq!(c.to_string(), c.name());
        }
        assert_eq!(Compression::from_id(5), None);
        assert_eq!(Compression::from_id(7), None);
    }

    #[test]
    fn levels_are_checked() {
        assert_eq!(Compression::Gzip.check_level(Some(9)), Ok(()));
        assert_eq!(
            Compression::Gzip.check_level(Some(0)),
            Err(RecordError::InvalidCompressionLevel {
                codec: Compression::Gzip,
                level: 0
            })
        );
        #[cfg(feature = "zstd")]
        {
            assert!(Compression::Zstd.check_level(Some(22)).is_ok());
            assert!(Compression::Zstd.check_level(Some(-5)).is_ok());
            assert!(Compression::Zstd.check_level(Some(23)).is_err());
        }
        assert!(Compression::Lz4.check_level(Some(17)).is_ok());
        assert!(Compression::Lz4.check_level(Some(18)).is_err());
        assert!(Compression::Snappy.check_level(Some(1)).is_err());
        assert!(Compression::None.check_level(Some(1)).is_err());
        for c in built() {
            assert_eq!(c.check_level(None), Ok(()));
        }
        let mut out = Vec::new();
        assert!(compress(Compression::Gzip, Some(10), b"x", &mut out).is_err());
    }

    #[test]
    fn round_trips_every_codec_and_size() {
        for c in built() {
            for len in [0, 1, 100, XERIAL_BLOCK, XERIAL_BLOCK + 1, 300_000] {
                let input = sample(len);
                let mut out = vec![0xee]; // compress appends
                compress(c, None, &input, &mut out).unwrap();
                assert_eq!(out[0], 0xee);
                let back = decompress(c, &out[1..], usize::MAX).unwrap();
                assert_eq!(back, input, "{c} len {len}");
            }
        }
    }

    #[test]
    fn levels_round_trip() {
        let input = sample(100_000);
        for (c, levels) in [
            (Compression::Gzip, vec![1, 6, 9]),
            (Compression::Lz4, vec![1, 17]),
            (Compression::Zstd, vec![-5, 1, 3, 19]),
        ]
        .into_iter()
        .filter(|(c, _)| c.disabled_feature().is_none())
        {
            for level in levels {
                let mut out = Vec::new();
                compress(c, Some(level), &input, &mut out).unwrap();
                assert_eq!(
                    decompress(c, &out, input.len()).unwrap(),
                    input,
                    "{c} {level}"
                );
            }
        }
    }

    #[test]
    fn snappy_writes_xerial_framing() {
        let input = sample(XERIAL_BLOCK * 2 + 10);
        let mut out = Vec::new();
        compress(Compression::Snappy, None, &input, &mut out).unwrap();
        assert_eq!(&out[..8], b"\x82SNAPPY\0");
        assert_eq!(&out[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
        // Three blocks: walk the lengths.
        let mut rest = &out[16..];
        let mut blocks = 0;
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            rest = &rest[4 + len..];
            blocks += 1;
        }
        assert_eq!(blocks, 3);
    }

    #[test]
    fn snappy_reads_raw_blocks() {
        // What librdkafka writes for v2 batches.
        let input = sample(70_000);
        let raw = snap::raw::Encoder::new().compress_vec(&input).unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &raw, usize::MAX).unwrap(),
            input
        );
    }

    #[test]
    fn snappy_reads_upstream_xerial_bytes() {
        // A records section snappy-compressed by Apache Kafka (as quoted in kafka-protocol's
        // tests): one record with value "sdfdsf".
        let upstream = b"\x82\x53\x4e\x41\x50\x50\x59\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x0f\x0d\x30\x18\x00\x00\x00\x01\x0csdfdsf\x00";
        let expected = b"\x18\x00\x00\x00\x01\x0csdfdsf\x00";
        assert_eq!(
            decompress(Compression::Snappy, upstream, 1024).unwrap(),
            expected
        );
        // And we frame it the same way.
        let mut ours = Vec::new();
        compress(Compression::Snappy, None, expected, &mut ours).unwrap();
        assert_eq!(&ours[..], &upstream[..]);
    }

    #[test]
    fn lz4_header_matches_java_client() {
        let mut out = Vec::new();
        compress(Compression::Lz4, None, b"hello hello hello", &mut out).unwrap();
        assert_eq!(&out[..4], &LZ4_MAGIC.to_le_bytes());
        // FLG: version 01, independent blocks, nothing else. BD: 64 KiB blocks.
        assert_eq!(out[4], 0x60);
        assert_eq!(out[5], 0x40);
    }

    #[test]
    fn lz4_linked_blocks_take_the_fallback() {
        let input = sample(200_000);
        let info = lz4_flex::frame::FrameInfo::new()
            .block_mode(lz4_flex::frame::BlockMode::Linked)
            .content_checksum(true);
        let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(&input).unwrap();
        let framed = enc.finish().unwrap();
        assert_eq!(
            decompress(Compression::Lz4, &framed, usize::MAX).unwrap(),
            input
        );
        assert!(matches!(
            decompress(Compression::Lz4, &framed, 1000),
            Err(RecordError::DecompressedTooLarge { .. })
        ));
    }

    #[test]
    fn lz4_fast_path_handles_checksums_and_content_size() {
        let input = sample(150_000);
        let info = lz4_flex::frame::FrameInfo::new()
            .block_checksums(true)
            .content_checksum(true)
            .content_size(Some(input.len() as u64));
        let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(&input).unwrap();
        let mut framed = enc.finish().unwrap();
        // Two concatenated frames read as one stream.
        framed.extend_from_within(..);
        let back = decompress(Compression::Lz4, &framed, usize::MAX).unwrap();
        assert_eq!(back.len(), input.len() * 2);
        assert_eq!(&back[..input.len()], &input[..]);
        assert_eq!(&back[input.len()..], &input[..]);
    }

    #[cfg(feature = "zstd")]
    #[test]
    fn zstd_reads_streamed_frames_without_content_size() {
        // The Java client's ZstdOutputStream does not know the size up front.
        let input = sample(300_000);
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.include_contentsize(false).unwrap();
        enc.write_all(&input).unwrap();
        let framed = enc.finish().unwrap();
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&framed).unwrap(),
            None
        );
        assert_eq!(
            decompress(Compression::Zstd, &framed, input.len()).unwrap(),
            input
        );
        assert!(matches!(
            decompress(Compression::Zstd, &framed, input.len() - 1),
            Err(RecordError::DecompressedTooLarge { .. })
        ));
    }

    #[cfg(not(feature = "zstd"))]
    #[test]
    fn zstd_without_its_feature_is_an_error_naming_it() {
        let disabled = RecordError::CodecDisabled {
            codec: Compression::Zstd,
            feature: "zstd",
        };
        let mut out = Vec::new();
        for level in [None, Some(3)] {
            assert_eq!(
                compress(Compression::Zstd, level, b"x", &mut out),
                Err(disabled.clone())
            );
            assert_eq!(Compression::Zstd.check_level(level), Err(disabled.clone()));
        }
        assert!(out.is_empty());
        assert_eq!(
            decompress(Compression::Zstd, b"\x28\xb5\x2f\xfd", 1 << 20),
            Err(disabled.clone())
        );
        assert!(
            disabled.to_string().contains("`zstd` feature"),
            "{disabled}"
        );
    }

    #[test]
    fn limit_is_exact() {
        let input = sample(50_000);
        for c in built() {
            let mut out = Vec::new();
            compress(c, None, &input, &mut out).unwrap();
            assert_eq!(decompress(c, &out, input.len()).unwrap(), input, "{c}");
            assert_eq!(
                decompress(c, &out, input.len() - 1),
                Err(RecordError::DecompressedTooLarge {
                    codec: c,
                    limit: input.len() - 1
                }),
                "{c}"
            );
        }
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        // 256 MiB of zeros compresses to a few hundred KiB; inflating it must stop at 1 MiB.
        let zeros = vec![0u8; 256 << 20];
        for c in built().filter(|&c| c != Compression::None) {
            let mut bomb = Vec::new();
            compress(c, None, &zeros, &mut bomb).unwrap();
            assert!(bomb.len() < 16 << 20, "{c} {}", bomb.len());
            assert_eq!(
                decompress(c, &bomb, 1 << 20),
                Err(RecordError::DecompressedTooLarge {
                    codec: c,
                    limit: 1 << 20
                }),
                "{c}"
            );
        }
    }

    #[test]
    fn lying_size_headers_do_not_allocate() {
        // A raw snappy block announcing 4 GiB, a zstd frame announcing 2^60 bytes, a gzip
        // trailer announcing 4 GiB: all rejected or capped without allocating the claim.
        let snappy = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(matches!(
            decompress(Compression::Snappy, &snappy, 1 << 20),
            Err(RecordError::DecompressedTooLarge { .. })
        ));
        // zstd: magic, single-segment descriptor with an 8-byte content size, one empty
        // raw last block.
        #[cfg(feature = "zstd")]
        {
            let mut zstd_frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0xe0];
            zstd_frame.extend_from_slice(&(1u64 << 60).to_le_bytes());
            zstd_frame.extend_from_slice(&[0x01, 0x00, 0x00]);
            assert!(matches!(
                decompress(Compression::Zstd, &zstd_frame, 1 << 20),
                Err(RecordError::DecompressedTooLarge { .. })
            ));
        }
        let mut gzip = Vec::new();
        compress(Compression::Gzip, None, b"abc", &mut gzip).unwrap();
        let n = gzip.len();
        gzip[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decompress(Compression::Gzip, &gzip, 1 << 20),
            Err(RecordError::Decompression { .. })
        ));
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
        for c in built().filter(|&c| c != Compression::None) {
            match decompress(c, &garbage, 1 << 20) {
                Err(RecordError::Decompression { codec, .. }) => assert_eq!(codec, c),
                other => panic!("{c}: {other:?}"),
            }
        }
    }

    #[test]
    fn truncated_streams_never_panic() {
        let input = sample(80_000);
        for c in built() {
            let mut out = Vec::new();
            compress(c, None, &input, &mut out).unwrap();
            // Every prefix near the ends, and a stride through the middle.
            let cuts = (0..out.len().min(64))
                .chain((0..out.len()).step_by(97))
                .chain(out.len().saturating_sub(64)..out.len());
            for cut in cuts {
                let _ = decompress(c, &out[..cut], 1 << 20);
            }
        }
    }
}
