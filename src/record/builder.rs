//! Writes uncompressed magic-v2 batches with a correct CRC.
//!
//! Used by tests across the crate and, later, by the broker for batches it writes itself
//! (control markers). Records use Kafka's v2 record encoding (zig-zag varints), so real
//! clients can decode what this produces. The builder never compresses; `attributes()` sets
//! bits verbatim so tests can fake a compressed header.

use super::varint::put_varlong;
use super::batch::{
    BATCH_HEADER_LEN, CRC_AT, LOG_OVERHEAD_LEN, MAGIC_V2, compute_crc, write_bytes,
};

/// One record to encode. `timestamp_delta_ms` is relative to the batch's base timestamp.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub timestamp_delta_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// Builder for one batch; see the module docs.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    base_offset: i64,
    partition_leader_epoch: i32,
    attributes: i16,
    base_timestamp_ms: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records: Vec<Record>,
}

impl BatchBuilder {
    pub fn new(base_offset: i64) -> BatchBuilder {
        BatchBuilder {
            base_offset,
            partition_leader_epoch: -1,
            attributes: 0,
            base_timestamp_ms: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: Vec::new(),
        }
    }

    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }

    /// Raw attribute bits (compression, timestamp type, transactional, control).
    pub fn attributes(mut self, attributes: i16) -> Self {
        self.attributes = attributes;
        self
    }

    pub fn timestamps(mut self, base_timestamp_ms: i64) -> Self {
        self.base_timestamp_ms = base_timestamp_ms;
        self
    }

    pub fn record(mut self, record: Record) -> Self {
        self.records.push(record);
        self
    }

    /// Appends `count` records whose values are `value_len` bytes derived from their position,
    /// with timestamps base, base+1, ...
    pub fn records(mut self, count: usize, value_len: usize) -> Self {
        for i in 0..count {
            let value = (0..value_len).map(|j| (i * 31 + j) as u8).collect();
            self.records.push(Record {
                timestamp_delta_ms: i as i64,
                key: None,
                value: Some(value),
            });
        }
        self
    }

    /// Encodes the batch. An empty record list yields a batch with recordsCount 0 (invalid for
    /// Produce, which is sometimes what a test wants).
    pub fn build(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for (delta, record) in self.records.iter().enumerate() {
            encode_record(&mut body, delta as i32, record);
        }
        let count = self.records.len() as i32;
        let last_offset_delta = (count - 1).max(0);
        let max_delta = self
            .records
            .iter()
            .map(|r| r.timestamp_delta_ms)
            .max()
            .unwrap_or(0);
        let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        let batch_length = (BATCH_HEADER_LEN - LOG_OVERHEAD_LEN + body.len()) as i32;
        out.extend_from_slice(&batch_length.to_be_bytes());
        out.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out.push(MAGIC_V2 as u8);
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&self.attributes.to_be_bytes());
        out.extend_from_slice(&last_offset_delta.to_be_bytes());
        out.extend_from_slice(&self.base_timestamp_ms.to_be_bytes());
        out.extend_from_slice(&(self.base_timestamp_ms + max_delta).to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&body);
        let crc = compute_crc(&out);
        write_bytes(&mut out, CRC_AT, &crc.to_be_bytes());
        out
    }
}

fn encode_record(out: &mut Vec<u8>, offset_delta: i32, record: &Record) {
    let mut body = Vec::new();
    body.push(0u8); // record attributes: unused in v2
    put_varlong(&mut body, record.timestamp_delta_ms);
    put_varlong(&mut body, i64::from(offset_delta));
    put_bytes(&mut body, record.key.as_deref());
    put_bytes(&mut body, record.value.as_deref());
    put_varlong(&mut body, 0); // header count
    put_varlong(out, body.len() as i64);
    out.extend_from_slice(&body);
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// One batch of records without a producer (offsets from 0), compressed with `compression` by
/// kafka-protocol's encoder, since [`BatchBuilder`] never compresses: for tests that need
/// real compressed batches. Each record is (timestamp, key, value).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn encode_compressed(
    records: &[(i64, Option<bytes::Bytes>, Option<bytes::Bytes>)],
    compression: kafka_protocol::records::Compression,
) -> Vec<u8> {
    use kafka_protocol::records::{Record as KRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<KRecord> = records
        .iter()
        .enumerate()
        .map(|(i, (timestamp, key, value))| KRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch where offset - sequence changes: one batch.
            sequence: i as i32 - 1,
            timestamp: *timestamp,
            key: key.clone(),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression }).unwrap();
    buf.to_vec()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_kafka_examples() {
        let enc = |v| {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            out
        };
        assert_eq!(enc(0), vec![0]);
        assert_eq!(enc(-1), vec![1]);
        assert_eq!(enc(1), vec![2]);
        assert_eq!(enc(64), vec![0x80, 0x01]);
    }
}
