//! Control batches: the COMMIT and ABORT markers a transaction coordinator writes into every
//! partition of a transaction, in Kafka's format, so every client reads them.
//!
//! A marker is a batch with the transactional and control attribute bits, the producer's id
//! and epoch, base sequence -1 and exactly one uncompressed record whose
//! - key is the control record key: version i16 (0), type i16 (0 = ABORT, 1 = COMMIT);
//! - value is the `EndTransactionMarker`: version i16 (0), coordinator epoch i32.
//!
//! [`parse_marker`] reads a stored control batch back; anything it does not recognise
//! (a compressed control batch, an unknown key version or type, cut bytes) is `None`, never
//! a panic: stored bytes are input too.

use super::batch::{BATCH_HEADER_LEN, BatchHeader, Compression};
use super::builder::{BatchBuilder, Record};
use super::varint::read_varlong;

/// Attribute bits of a marker batch: transactional (0x10) and control (0x20).
pub const MARKER_ATTRIBUTES: i16 = 0x10 | 0x20;
const CONTROL_KEY_VERSION: i16 = 0;
const MARKER_VALUE_VERSION: i16 = 0;
const TYPE_ABORT: i16 = 0;
const TYPE_COMMIT: i16 = 1;

/// What a marker says and who wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// The control record key of a marker.
pub fn control_key(commit: bool) -> Vec<u8> {
    let kind = if commit { TYPE_COMMIT } else { TYPE_ABORT };
    let mut out = Vec::with_capacity(4);
    out.extend_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out
}

/// The `EndTransactionMarker` value.
pub fn marker_value(coordinator_epoch: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(6);
    out.extend_from_slice(&MARKER_VALUE_VERSION.to_be_bytes());
    out.extend_from_slice(&coordinator_epoch.to_be_bytes());
    out
}

/// One marker batch (base offset 0; the log assigns the real one).
pub fn marker_batch(producer_id: i64, producer_epoch: i16, marker: Marker, timestamp_ms: i64) -> Vec<u8> {
    BatchBuilder::new(0)
        .producer(producer_id, producer_epoch, -1)
        .attributes(MARKER_ATTRIBUTES)
        .timestamps(timestamp_ms)
        .record(Record {
            timestamp_delta_ms: 0,
            key: Some(control_key(marker.commit)),
            value: Some(marker_value(marker.coordinator_epoch)),
        })
        .build()
}

/// The control record type of a control record key: `Some(true)` COMMIT, `Some(false)`
/// ABORT; `None` for anything else.
pub fn parse_control_key(key: &[u8]) -> Option<bool> {
    let version = i16::from_be_bytes([*key.first()?, *key.get(1)?]);
    let kind = i16::from_be_bytes([*key.get(2)?, *key.get(3)?]);
    match (version, kind) {
        (v, TYPE_ABORT) if v >= 0 => Some(false),
        (v, TYPE_COMMIT) if v >= 0 => Some(true),
        _ => None,
    }
}

/// The marker a whole stored control batch holds, or `None` (see the module docs).
pub fn parse_marker(batch: &[u8]) -> Option<Marker> {
    let header = BatchHeader::parse(batch).ok()?;
    if !header.is_control() || header.compression() != Compression::None || batch.len() < header.total_len() {
        return None;
    }
    let batch = batch.get(..header.total_len())?;
    let (length, body_at) = read_varlong(batch, BATCH_HEADER_LEN)?;
    let end = body_at.checked_add(usize::try_from(length).ok()?)?;
    let body = batch.get(body_at..end)?;
    // attributes i8, timestamp delta, offset delta, then key and value as varint-prefixed bytes.
    let (_, at) = read_varlong(body, 1)?;
    let (_, at) = read_varlong(body, at)?;
    let (key_len, at) = read_varlong(body, at)?;
    let key_end = at.checked_add(usize::try_from(key_len).ok()?)?;
    let commit = parse_control_key(body.get(at..key_end)?)?;
    let (value_len, at) = read_varlong(body, key_end)?;
    let coordinator_epoch = match usize::try_from(value_len) {
        Ok(n) if n >= 6 => {
            let v = body.get(at..at.checked_add(n)?)?;
            i32::from_be_bytes([v[2], v[3], v[4], v[5]])
        }
        // A marker without a readable value still says commit or abort.
        _ => -1,
    };
    Some(Marker { commit, coordinator_epoch })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn markers_round_trip_and_decode_as_kafka_records() {
        for commit in [true, false] {
            let bytes = marker_batch(42, 3, Marker { commit, coordinator_epoch: 7 }, 1_000);
            let h = BatchHeader::parse(&bytes).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence, h.records_count), (42, 3, -1, 1));
            assert_eq!(parse_marker(&bytes), Some(Marker { commit, coordinator_epoch: 7 }));
            // kafka-protocol, a client-side decoder, sees one control record with our key.
            let mut buf = bytes::Bytes::from(bytes.clone());
            let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buf).unwrap();
            let record = &sets[0].records[0];
            assert!(record.control && record.transactional);
            assert_eq!(record.key.as_deref(), Some(control_key(commit).as_slice()));
        }
        let data = BatchBuilder::new(0).records(1, 4).build();
        assert_eq!(parse_marker(&data), None);
    }

    proptest! {
        /// Arbitrary bytes, and every cut or bit flip of a real marker, parse or give `None`.
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..120, flip in 0usize..120) {
            let _ = parse_marker(&bytes);
            let _ = parse_control_key(&bytes);
            let mut marker = marker_batch(1, 0, Marker { commit: true, coordinator_epoch: 0 }, 0);
            let _ = parse_marker(&marker[..cut.min(marker.len())]);
            let at = flip % marker.len();
            marker[at] ^= 0x5a;
            let _ = parse_marker(&marker);
        }
    }
}
