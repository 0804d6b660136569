//! The on-disk format: segment headers and event frames, byte by byte.
//!
//! `docs/log-format.md` is the specification; this module is its only implementation. All
//! integers are little-endian. Every frame carries its length, a format version and a CRC32C,
//! and is checked before it is written ([`encode_frame`] decodes what it wrote in debug builds)
//! and after it is read ([`decode_frame`]).

use bytes::Bytes;
use factlog_store::{
    ContentType, EventId, EventType, Metadata, Position, RecordedEvent, StreamName, Timestamp,
    Version,
};

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FLOGSEG\0";
/// Version of the segment header and frame layout this code writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Bytes of a segment header.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// Bytes of a frame before its variable-length fields.
pub const FRAME_FIXED_BYTES: usize = 72;
/// A frame is never larger than this: it bounds what a reader allocates for a corrupt length.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;
/// The writer never has more than this many bytes written but not yet fsynced. Recovery uses it
/// to tell a torn tail (bad bytes within the last unsynced write) from corruption (bad bytes
/// with more than this much log after them).
pub const UNSYNCED_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Frame flag: this frame is the last event of its append. An append is complete, and part of
/// the log, only once its frame with this flag is stored.
/// The position of the first event of a store. Position 0 (`Position::START`) is before every
/// event, so "after 0" and "from 0" both mean "from the beginning".
pub const FIRST_POSITION: u64 = 1;

pub const FLAG_COMMIT: u8 = 0b0000_0001;

const _: () = assert!(FRAME_FIXED_BYTES.is_multiple_of(8));
const _: () = assert!(SEGMENT_HEADER_BYTES >= 8 + 2 + 2 + 4 + 8 + 8 + 4);
const _: () = assert!(UNSYNCED_BYTES_MAX < FRAME_BYTES_MAX as u64);

/// What a segment header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub segment_id: u32,
    pub first_position: u64,
}

// Format: segment header, 64 bytes
//   0  [u8; 8]  magic "FLOGSEG\0"
//   8  u8       format version (1)
//   9  u8       reserved, 0
//  10  u16      header length in bytes (64)
//  12  u32      segment id (0, 1, 2, ...; the file is named after it)
//  16  u64      position of the first event this segment holds
//  24  [u8; 36] reserved, 0
//  60  u32      CRC32C of bytes 0..60
pub fn encode_segment_header(header: &SegmentHeader) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut b = [0u8; SEGMENT_HEADER_BYTES];
    b[0..8].copy_from_slice(&SEGMENT_MAGIC);
    b[8] = FORMAT_VERSION;
    b[10..12].copy_from_slice(&(SEGMENT_HEADER_BYTES as u16).to_le_bytes());
    b[12..16].copy_from_slice(&header.segment_id.to_le_bytes());
    b[16..24].copy_from_slice(&header.first_position.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Why bytes are not a valid header or frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("needs {needed} bytes but only {available} are there")]
    Truncated { needed: usize, available: usize },
    #[error("bad magic number")]
    BadMagic,
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    #[error("frame length {0} is impossible")]
    BadLength(u64),
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("invalid field: {0}")]
    InvalidField(String),
}

pub fn decode_segment_header(b: &[u8]) -> Result<SegmentHeader, DecodeError> {
    if b.len() < SEGMENT_HEADER_BYTES {
        return Err(DecodeError::Truncated {
            needed: SEGMENT_HEADER_BYTES,
            available: b.len(),
        });
    }
    if b[0..8] != SEGMENT_MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let stored = u32_at(b, 60);
    let computed = crc32c::crc32c(&b[0..60]);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    if b[8] != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion(b[8]));
    }
    if usize::from(u16_at(b, 10)) != SEGMENT_HEADER_BYTES {
        return Err(DecodeError::InvalidField("segment header length".into()));
    }
    Ok(SegmentHeader {
        segment_id: u32_at(b, 12),
        first_position: u64_at(b, 16),
    })
}

/// An event ready to be framed: everything the store has decided about it.
#[derive(Debug)]
pub struct FrameInput<'a> {
    pub flags: u8,
    pub position: u64,
    pub version: Version,
    pub recorded_at: Timestamp,
    pub id: EventId,
    pub schema_version: u32,
    pub stream: &'a str,
    pub event_type: &'a str,
    pub content_type: &'a str,
    pub metadata_json: &'a [u8],
    pub data: &'a [u8],
}

impl FrameInput<'_> {
    pub fn encoded_len(&self) -> usize {
        FRAME_FIXED_BYTES
            + self.stream.len()
            + self.event_type.len()
            + self.content_type.len()
            + self.metadata_json.len()
            + self.data.len()
    }
}

// Format: event frame, 72 bytes + variable part
//   0  u32      frame length in bytes, this field included
//   4  u32      CRC32C of bytes 8..frame length
//   8  u8       format version (1)
//   9  u8       flags: bit 0 COMMIT (last event of its append); other bits 0
//  10  u16      stream name length S (1..=255)
//  12  u16      event type length T (1..=255)
//  14  u8       content type length C (1..=255)
//  15  u8       reserved, 0
//  16  u64      position
//  24  u64      version inside the stream
//  32  i64      recorded at, microseconds since the Unix epoch, UTC
//  40  [u8; 16] event id (UUID bytes, big-endian as RFC 9562 writes them)
//  56  u32      schema version
//  60  u32      metadata length M (JSON object, UTF-8)
//  64  u32      data length D
//  68  u32      reserved, 0
//  72  stream name (S bytes), event type (T), content type (C), metadata (M), data (D)
/// Appends the frame for `input` to `out`.
pub fn encode_frame(input: &FrameInput<'_>, out: &mut Vec<u8>) {
    let len = input.encoded_len();
    assert!(
        len <= FRAME_BYTES_MAX,
        "frame of {len} bytes passed the store's limits"
    );
    assert!((1..=255).contains(&input.stream.len()));
    assert!((1..=255).contains(&input.event_type.len()));
    assert!((1..=255).contains(&input.content_type.len()));
    let start = out.len();
    out.reserve(len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // CRC, filled in below
    out.push(FORMAT_VERSION);
    out.push(input.flags);
    out.extend_from_slice(&(input.stream.len() as u16).to_le_bytes());
    out.extend_from_slice(&(input.event_type.len() as u16).to_le_bytes());
    out.push(input.content_type.len() as u8);
    out.push(0);
    out.extend_from_slice(&input.position.to_le_bytes());
    out.extend_from_slice(&input.version.to_le_bytes());
    out.extend_from_slice(&input.recorded_at.unix_micros().to_le_bytes());
    out.extend_from_slice(input.id.as_bytes());
    out.extend_from_slice(&input.schema_version.to_le_bytes());
    out.extend_from_slice(&(input.metadata_json.len() as u32).to_le_bytes());
    out.extend_from_slice(&(input.data.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    debug_assert_eq!(out.len() - start, FRAME_FIXED_BYTES);
    out.extend_from_slice(input.stream.as_bytes());
    out.extend_from_slice(input.event_type.as_bytes());
    out.extend_from_slice(input.content_type.as_bytes());
    out.extend_from_slice(input.metadata_json);
    out.extend_from_slice(input.data);
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len() - start, len);
    debug_assert!(decode_frame(&Bytes::copy_from_slice(&out[start..])).is_ok());
}

/// A decoded frame: the event and the frame's flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub flags: u8,
    pub event: RecordedEvent,
}

/// The length a frame claims, from its first four bytes, checked against the fixed bounds.
pub fn frame_len(b: &[u8]) -> Result<usize, DecodeError> {
    if b.len() < 4 {
        return Err(DecodeError::Truncated {
            needed: 4,
            available: b.len(),
        });
    }
    let len = u32_at(b, 0) as usize;
    if !(FRAME_FIXED_BYTES..=FRAME_BYTES_MAX).contains(&len) {
        return Err(DecodeError::BadLength(len as u64));
    }
    Ok(len)
}

/// The checked fixed part of a frame and its stream name, read without decoding the rest:
/// what recovery needs to index a frame. The CRC covers the whole frame, so the variable fields
/// are as the writer validated them; [`decode_frame`] checks them again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader<'a> {
    pub len: usize,
    pub flags: u8,
    pub position: u64,
    pub version: u64,
    pub recorded_at: Timestamp,
    pub id: u128,
    pub stream: &'a str,
}

/// Checks the frame at the start of `b` (length, CRC, format version, flags, field lengths, the
/// stream name's UTF-8) and returns its header.
pub fn check_frame(b: &[u8]) -> Result<FrameHeader<'_>, DecodeError> {
    let len = frame_len(b)?;
    if b.len() < len {
        return Err(DecodeError::Truncated {
            needed: len,
            available: b.len(),
        });
    }
    let stored = u32_at(b, 4);
    let computed = crc32c::crc32c(&b[8..len]);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    if b[8] != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion(b[8]));
    }
    let flags = b[9];
    if flags & !FLAG_COMMIT != 0 {
        return Err(DecodeError::InvalidField(format!(
            "unknown flags {flags:#04x}"
        )));
    }
    let (s, t, c) = (
        usize::from(u16_at(b, 10)),
        usize::from(u16_at(b, 12)),
        usize::from(b[14]),
    );
    let (m, d) = (u32_at(b, 60) as usize, u32_at(b, 64) as usize);
    if FRAME_FIXED_BYTES + s + t + c + m + d != len {
        return Err(DecodeError::InvalidField(
            "field lengths do not add up to the frame length".into(),
        ));
    }
    let stream = std::str::from_utf8(&b[FRAME_FIXED_BYTES..FRAME_FIXED_BYTES + s])
        .map_err(|_| DecodeError::InvalidField("stream name is not UTF-8".into()))?;
    Ok(FrameHeader {
        len,
        flags,
        position: u64_at(b, 16),
        version: u64_at(b, 24),
        recorded_at: Timestamp::from_unix_micros(u64_at(b, 32) as i64),
        // The id is stored as the UUID's 16 bytes, which read big-endian as `EventId::to_u128`.
        id: u128::from_be_bytes(b[40..56].try_into().expect("16 bytes")),
        stream,
    })
}

/// Decodes and checks the frame at the start of `b`. The event's data is a slice of `b`, not a
/// copy. Returns the frame and its length.
pub fn decode_frame(b: &Bytes) -> Result<(Frame, usize), DecodeError> {
    decode_frame_with(b, &mut DecodeCache::default())
}

/// The names of the last frame decoded. Neighbouring events of a log mostly share their stream,
/// type and content type; a reader that keeps this between frames shares those names (a
/// reference count) instead of checking and allocating them again for each event.
#[derive(Debug, Default)]
pub struct DecodeCache {
    stream: Option<StreamName>,
    event_type: Option<EventType>,
    content_type: Option<ContentType>,
}

/// The cached name if its bytes are `raw`, else `make(raw as UTF-8)`, which becomes the cached
/// one. Comparing bytes first skips the UTF-8 check for a repeated name.
fn cached<T: Clone>(
    slot: &mut Option<T>,
    raw: &[u8],
    what: &str,
    as_str: impl Fn(&T) -> &str,
    make: impl FnOnce(&str) -> Result<T, factlog_store::InvalidName>,
) -> Result<T, DecodeError> {
    if let Some(v) = slot.as_ref().filter(|v| as_str(v).as_bytes() == raw) {
        return Ok(v.clone());
    }
    let text = std::str::from_utf8(raw)
        .map_err(|_| DecodeError::InvalidField(format!("{what} is not UTF-8")))?;
    let v = make(text).map_err(|e| DecodeError::InvalidField(e.to_string()))?;
    *slot = Some(v.clone());
    Ok(v)
}

/// [`decode_frame`], sharing names with the previous frame through `cache`.
pub fn decode_frame_with(
    b: &Bytes,
    cache: &mut DecodeCache,
) -> Result<(Frame, usize), DecodeError> {
    let header = check_frame(b)?;
    let len = header.len;
    let (s, t, c) = (
        usize::from(u16_at(b, 10)),
        usize::from(u16_at(b, 12)),
        usize::from(b[14]),
    );
    let m = u32_at(b, 60) as usize;
    let mut at = FRAME_FIXED_BYTES + s;
    let mut field = |n: usize| {
        let r = at..at + n;
        at += n;
        r
    };
    let (tr, cr, mr, dr) = (field(t), field(c), field(m), at..len);
    let stream = cached(
        &mut cache.stream,
        header.stream.as_bytes(),
        "stream name",
        StreamName::as_str,
        |t| StreamName::new(t),
    )?;
    let event_type = cached(
        &mut cache.event_type,
        &b[tr],
        "event type",
        EventType::as_str,
        |t| EventType::new(t),
    )?;
    let content_type = cached(
        &mut cache.content_type,
        &b[cr],
        "content type",
        ContentType::as_str,
        |t| ContentType::new(t),
    )?;
    // Most events carry no metadata: skip the JSON parser for the empty object.
    let metadata: Metadata = if &b[mr.clone()] == b"{}" {
        Metadata::new()
    } else {
        serde_json::from_slice(&b[mr])
            .map_err(|e| DecodeError::InvalidField(format!("metadata: {e}")))?
    };
    let event = RecordedEvent {
        id: EventId::from_bytes(header.id.to_be_bytes()),
        stream,
        version: header.version,
        position: Position::from_raw(header.position),
        event_type,
        schema_version: u32_at(b, 56),
        content_type,
        data: b.slice(dr),
        metadata,
        recorded_at: header.recorded_at,
    };
    Ok((
        Frame {
            flags: header.flags,
            event,
        },
        len,
    ))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("two bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn input<'a>(stream: &'a str, data: &'a [u8], meta: &'a [u8]) -> FrameInput<'a> {
        FrameInput {
            flags: FLAG_COMMIT,
            position: 7,
            version: 3,
            recorded_at: Timestamp::from_unix_micros(1_700_000_000_000_000),
            id: EventId::from_bytes([9; 16]),
            schema_version: 2,
            stream,
            event_type: "Happened",
            content_type: "application/json",
            metadata_json: meta,
            data,
        }
    }

    #[test]
    fn header_round_trip_and_checks() {
        let h = SegmentHeader {
            segment_id: 3,
            first_position: 99,
        };
        let mut b = encode_segment_header(&h);
        assert_eq!(decode_segment_header(&b), Ok(h));
        b[20] ^= 1;
        assert!(matches!(
            decode_segment_header(&b),
            Err(DecodeError::Checksum { .. })
        ));
        assert_eq!(
            decode_segment_header(&[0; 10]).unwrap_err(),
            DecodeError::Truncated {
                needed: 64,
                available: 10
            }
        );
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut out = Vec::new();
        encode_frame(&input("s-1", b"{\"a\":1}", b"{}"), &mut out);
        for bit in 0..out.len() * 8 {
            let mut bad = out.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_frame(&Bytes::from(bad)).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    proptest! {
        #[test]
        fn frame_round_trip(
            stream in "[a-z]{1,20}(-[0-9]{1,5})?",
            data in proptest::collection::vec(any::<u8>(), 0..512),
            key in "[a-z]{0,8}",
            position in any::<u64>(),
            version in any::<u64>(),
            micros in any::<i64>(),
        ) {
            let meta = serde_json::to_vec(&serde_json::json!({ key.clone(): "v" })).unwrap();
            let mut i = input(&stream, &data, &meta);
            i.position = position;
            i.version = version;
            i.recorded_at = Timestamp::from_unix_micros(micros);
            let mut out = vec![0xAA]; // frames are appended after whatever the buffer holds
            encode_frame(&i, &mut out);
            prop_assert_eq!(out.len() - 1, i.encoded_len());
            let (frame, len) = decode_frame(&Bytes::from(out[1..].to_vec())).unwrap();
            prop_assert_eq!(len, i.encoded_len());
            prop_assert_eq!(frame.flags, FLAG_COMMIT);
            let e = frame.event;
            prop_assert_eq!(e.stream.as_str(), stream.as_str());
            prop_assert_eq!(&e.data[..], &data[..]);
            prop_assert_eq!(e.position.raw(), position);
            prop_assert_eq!(e.version, version);
            prop_assert_eq!(e.recorded_at.unix_micros(), micros);
            prop_assert_eq!(e.schema_version, 2);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_frame(&Bytes::from(bytes.clone()));
            let _ = decode_segment_header(&bytes);
        }
    }
}
