//! Record-level access for the cleaner: decompress a stored batch, walk its records (key,
//! null value, offset and timestamp deltas), and write a batch back with a subset of them.
//!
//! Everything here reads bytes from a segment file, so nothing trusts them: every length is
//! checked and malformed input is a [`RecordsError`], never a panic. Records are kept as
//! their raw encoded bodies; a rewrite copies them verbatim except for the timestamp delta,
//! which changes only when the batch's base timestamp becomes a delete horizon (KIP-534).
//!
//! A rewritten batch keeps the original `baseOffset`, `lastOffsetDelta`, producer id, epoch
//! and base sequence, so offsets never move, the segment's offset range is unchanged and the
//! producer's sequence bookkeeping (`last_sequence = base_sequence + lastOffsetDelta`) replays
//! exactly as before. Compressed batches are recompressed with their own codec.

use crate::record::varint::{put_varlong, read_varlong};
use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{self as codec, Compressor, Decompressor};

use crate::record::batch::{
    ATTRIBUTES_AT, BATCH_HEADER_LEN, CRC_AT, LOG_OVERHEAD_LEN, MAGIC_V2, compute_crc, write_bytes,
};
use crate::record::{BatchHeader, Compression};

/// Attribute bits of a v2 batch the cleaner changes (Kafka's `DefaultRecordBatch`).
const COMPRESSION_MASK: i16 = 0x07;
const DELETE_HORIZON_BIT: i16 = 0x40;

/// Why a stored batch could not be taken apart or put back together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    #[error("malformed record: {0}")]
    Malformed(&'static str),
    #[error("{0:?} (de)compression failed")]
    Codec(Compression),
}

/// One record inside a (decompressed) batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// Everything after the record's length varint.
    pub body: &'a [u8],
    /// Where the timestamp delta ends inside `body`.
    timestamp_delta_end: usize,
    pub timestamp_delta: i64,
    pub offset_delta: i64,
    pub key: Option<&'a [u8]>,
    /// A null value: a tombstone.
    pub is_tombstone: bool,
}

/// The records payload of `batch` (one whole batch), decompressed. `None` for a codec this
/// broker cannot read (attribute values 5-7): the caller leaves such a batch as it is.
pub fn decompressed_payload(
    batch: &[u8],
    header: &BatchHeader,
) -> Result<Option<Vec<u8>>, RecordsError> {
    let payload = batch
        .get(BATCH_HEADER_LEN..header.total_len())
        .ok_or(RecordsError::Malformed("batch shorter than its length"))?;
    let compression = header.compression();
    let mut input = Bytes::copy_from_slice(payload);
    let to_vec = |b: &mut Bytes| Ok(b.to_vec());
    let out = match compression {
        Compression::None => Ok(payload.to_vec()),
        Compression::Gzip => codec::Gzip::decompress(&mut input, to_vec),
        Compression::Snappy => codec::Snappy::decompress(&mut input, to_vec),
        Compression::Lz4 => codec::Lz4::decompress(&mut input, to_vec),
        Compression::Zstd => codec::Zstd::decompress(&mut input, to_vec),
        Compression::Unknown(_) => return Ok(None),
    };
    out.map(Some).map_err(|_| RecordsError::Codec(compression))
}

/// Splits a decompressed payload into `records_count` records.
pub fn parse_records<'a>(
    payload: &'a [u8],
    header: &BatchHeader,
) -> Result<Vec<RawRecord<'a>>, RecordsError> {
    let malformed = RecordsError::Malformed;
    let count = usize::try_from(header.records_count).map_err(|_| malformed("negative count"))?;
    // Each record takes at least 7 bytes, which bounds the allocation by the payload size.
    let mut records = Vec::with_capacity(count.min(payload.len() / 7));
    let mut at = 0;
    while at < payload.len() {
        let (length, body_at) = read_varlong(payload, at).ok_or(malformed("record length"))?;
        let length = usize::try_from(length).map_err(|_| malformed("negative length"))?;
        let end = body_at
            .checked_add(length)
            .ok_or(malformed("record length"))?;
        let body = payload
            .get(body_at..end)
            .ok_or(malformed("record past the batch end"))?;
        let record = parse_body(body).ok_or(malformed("record fields"))?;
        // Offsets must increase inside the batch's range, or the key map and the rewrite
        // (which keeps lastOffsetDelta) would disagree with what readers see.
        let previous = records
            .last()
            .map_or(-1, |r: &RawRecord<'_>| r.offset_delta);
        if record.offset_delta <= previous
            || record.offset_delta > i64::from(header.last_offset_delta)
        {
            return Err(malformed("record offset outside the batch or out of order"));
        }
        records.push(record);
        at = end;
    }
    if records.len() != count {
        return Err(malformed("record count disagrees with the header"));
    }
    Ok(records)
}

/// attributes (1 byte), timestampDelta varlong, offsetDelta varint, key, value, headers.
fn parse_body(body: &[u8]) -> Option<RawRecord<'_>> {
    let (timestamp_delta, after_ts) = read_varlong(body, 1)?;
    let (offset_delta, after_offset) = read_varlong(body, after_ts)?;
    let (key, after_key) = read_nullable_bytes(body, after_offset)?;
    let (value_len, _) = read_varlong(body, after_key)?;
    Some(RawRecord {
        body,
        timestamp_delta_end: after_ts,
        timestamp_delta,
        offset_delta,
        key,
        is_tombstone: value_len < 0,
    })
}

fn read_nullable_bytes(buf: &[u8], at: usize) -> Option<(Option<&[u8]>, usize)> {
    let (len, at) = read_varlong(buf, at)?;
    if len < 0 {
        return Some((None, at));
    }
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    Some((Some(buf.get(at..end)?), end))
}

/// How to write a batch back: which records, and whether it now carries a delete horizon.
#[derive(Debug, Clone, Copy)]
pub struct Rewrite {
    /// `Some(ms)`: set the `hasDeleteHorizon` bit and make `ms` the base timestamp.
    pub delete_horizon_ms: Option<i64>,
}

/// A batch holding `records` (a subset of the original's, in order) with the original's
/// header fields, compressed with its codec. With no records the batch is an empty header,
/// uncompressed, as Kafka's `writeEmptyHeader`: it only keeps the offsets and the producer's
/// sequence alive.
pub fn rewrite_batch(
    original: &BatchHeader,
    records: &[RawRecord<'_>],
    rewrite: Rewrite,
) -> Result<Vec<u8>, RecordsError> {
    let old_base_ts = original.base_timestamp;
    let base_timestamp = rewrite.delete_horizon_ms.unwrap_or(old_base_ts);
    let mut raw = Vec::new();
    let mut max_timestamp: Option<i64> = None;
    for record in records {
        let timestamp = old_base_ts.saturating_add(record.timestamp_delta);
        max_timestamp = Some(max_timestamp.map_or(timestamp, |m| m.max(timestamp)));
        encode_record(&mut raw, record, timestamp.saturating_sub(base_timestamp));
    }
    let mut attributes = original.attributes;
    if rewrite.delete_horizon_ms.is_some() {
        attributes |= DELETE_HORIZON_BIT;
    }
    let payload = if records.is_empty() {
        attributes &= !COMPRESSION_MASK;
        Vec::new()
    } else {
        compress(original.compression(), &raw)?
    };
    // Under LogAppendTime every record reads the batch's max timestamp: keep it.
    let max_timestamp = match (original.timestamp_type(), max_timestamp) {
        (crate::record::TimestampType::CreateTime, Some(ts)) => ts,
        _ => original.max_timestamp,
    };
    let count = i32::try_from(records.len()).map_err(|_| RecordsError::Malformed("count"))?;
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + payload.len());
    out.extend_from_slice(&original.base_offset.to_be_bytes());
    let batch_length = i32::try_from(BATCH_HEADER_LEN - LOG_OVERHEAD_LEN + payload.len())
        .map_err(|_| RecordsError::Malformed("batch too large"))?;
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&original.partition_leader_epoch.to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&original.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&original.producer_id.to_be_bytes());
    out.extend_from_slice(&original.producer_epoch.to_be_bytes());
    out.extend_from_slice(&original.base_sequence.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    debug_assert_eq!(out.len(), BATCH_HEADER_LEN);
    debug_assert_eq!(ATTRIBUTES_AT, 21);
    out.extend_from_slice(&payload);
    let crc = compute_crc(&out);
    write_bytes(&mut out, CRC_AT, &crc.to_be_bytes());
    Ok(out)
}

fn compress(compression: Compression, raw: &[u8]) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    let fill = |tmp: &mut BytesMut| {
        tmp.extend_from_slice(raw);
        Ok(())
    };
    let result = match compression {
        Compression::None => return Ok(raw.to_vec()),
        Compression::Gzip => codec::Gzip::compress(&mut out, fill),
        Compression::Snappy => codec::Snappy::compress(&mut out, fill),
        Compression::Lz4 => codec::Lz4::compress(&mut out, fill),
        Compression::Zstd => codec::Zstd::compress(&mut out, fill),
        Compression::Unknown(_) => return Err(RecordsError::Codec(compression)),
    };
    result.map_err(|_| RecordsError::Codec(compression))?;
    Ok(out)
}

/// The record's bytes with `timestamp_delta` in place of its own.
fn encode_record(out: &mut Vec<u8>, record: &RawRecord<'_>, timestamp_delta: i64) {
    let rest = record.body.get(record.timestamp_delta_end..).unwrap_or(&[]);
    let attributes = record.body.first().copied().unwrap_or(0);
    let mut delta = Vec::with_capacity(10);
    put_varlong(&mut delta, timestamp_delta);
    let length = 1 + delta.len() + rest.len();
    put_varlong(out, length as i64);
    out.push(attributes);
    out.extend_from_slice(&delta);
    out.extend_from_slice(rest);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::record::{BatchBuilder, Record, record_positions};

    fn keyed(key: &str, value: Option<&str>, ts: i64) -> Record {
        Record {
            timestamp_delta_ms: ts,
            key: Some(key.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
        }
    }

    #[test]
    fn parses_and_rewrites_a_subset_keeping_offsets() {
        let bytes = BatchBuilder::new(100)
            .producer(7, 1, 40)
            .timestamps(1_000)
            .record(keyed("a", Some("1"), 0))
            .record(keyed("b", None, 5))
            .record(keyed("c", Some("3"), 9))
            .build();
        let header = BatchHeader::parse(&bytes).unwrap();
        let payload = decompressed_payload(&bytes, &header).unwrap().unwrap();
        let records = parse_records(&payload, &header).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[1].key, Some(&b"b"[..]));
        assert!(records[1].is_tombstone && !records[0].is_tombstone);
        let kept = [records[1]];
        let horizon = Rewrite {
            delete_horizon_ms: Some(90_000),
        };
        let out = rewrite_batch(&header, &kept, horizon).unwrap();
        let h = BatchHeader::parse(&out).unwrap();
        assert!(crate::record::batch::crc_matches(&out));
        assert_eq!(
            (h.base_offset, h.last_offset(), h.records_count),
            (100, 102, 1)
        );
        assert_eq!((h.base_sequence, h.last_sequence()), (40, 42));
        assert!(h.has_delete_horizon());
        assert_eq!((h.base_timestamp, h.max_timestamp), (90_000, 1_005));
        let positions = record_positions(&out).unwrap();
        assert_eq!((positions[0].offset, positions[0].timestamp), (101, 1_005));
        let empty = rewrite_batch(
            &header,
            &[],
            Rewrite {
                delete_horizon_ms: None,
            },
        )
        .unwrap();
        let e = BatchHeader::parse(&empty).unwrap();
        assert_eq!(
            (e.records_count, e.last_offset(), e.total_len()),
            (0, 102, 61)
        );
    }

    #[test]
    fn round_trips_every_codec() {
        use kafka_protocol::records::Compression as KCompression;
        for (codec, ours) in [
            (KCompression::Gzip, Compression::Gzip),
            (KCompression::Snappy, Compression::Snappy),
            (KCompression::Lz4, Compression::Lz4),
            (KCompression::Zstd, Compression::Zstd),
        ] {
            let records: Vec<_> = (0..5)
                .map(|i| {
                    let value = (i != 3).then(|| Bytes::from(vec![i as u8; 100]));
                    (500 + i, Some(Bytes::from(format!("k{}", i % 2))), value)
                })
                .collect();
            let buf = crate::record::builder::encode_compressed(&records, codec);
            let header = BatchHeader::parse(&buf).unwrap();
            assert_eq!(header.compression(), ours);
            let payload = decompressed_payload(&buf, &header).unwrap().unwrap();
            let parsed = parse_records(&payload, &header).unwrap();
            assert!(parsed[3].is_tombstone);
            let out = rewrite_batch(
                &header,
                &parsed[3..],
                Rewrite {
                    delete_horizon_ms: None,
                },
            )
            .unwrap();
            let mut bytes = Bytes::from(out);
            let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).unwrap();
            let got: Vec<(i64, i64, bool)> = set
                .records
                .iter()
                .map(|r| (r.offset, r.timestamp, r.value.is_none()))
                .collect();
            assert_eq!(got, vec![(3, 503, true), (4, 504, false)], "{ours:?}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let bytes = BatchBuilder::new(0)
            .record(keyed("a", Some("b"), 0))
            .build();
        let header = BatchHeader::parse(&bytes).unwrap();
        let payload = decompressed_payload(&bytes, &header).unwrap().unwrap();
        for cut in 0..payload.len() {
            assert!(parse_records(&payload[..cut], &header).is_err());
        }
        let mut flipped = payload.clone();
        flipped[0] = 0x7f;
        assert!(parse_records(&flipped, &header).is_err());
        let two = BatchBuilder::new(0).records(2, 3).build();
        let mut short = BatchHeader::parse(&two).unwrap();
        let two_payload = decompressed_payload(&two, &short).unwrap().unwrap();
        short.last_offset_delta = 0;
        assert!(
            parse_records(&two_payload, &short).is_err(),
            "offset beyond the batch"
        );
        let gz = BatchBuilder::new(0).attributes(1).records(2, 3).build();
        let gz_header = BatchHeader::parse(&gz).unwrap();
        assert!(decompressed_payload(&gz, &gz_header).is_err());
    }
}
