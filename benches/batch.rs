//! The per-Produce record work the broker does on the hot path: `record::validate_batches`
//! (framing, header checks, CRC32C over the whole batch) and `record::assign_offsets` (patching
//! base offset and leader epoch in place). Record sets of 1 KiB records in one batch, as a
//! Produce v3+ request carries them, at the Java client's default batch size (16 KiB) and at
//! 256 KiB, uncompressed and lz4. The broker never decompresses, so an lz4 batch costs what its
//! compressed bytes cost (the JSON-ish values compress about 4x); throughput is in bytes of
//! the record set as sent. `assign_offsets` touches headers only, so watch its time per set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use blumfeld::record::{BatchBuilder, BatchHeader, Compression, assign_offsets, validate_batches};
use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kafka_protocol::records::{self as kp, RecordBatchEncoder, RecordEncodeOptions};

const MAX_MESSAGE_BYTES: usize = 1_048_588;

/// 1 KiB JSON-ish values (lz4 gets a few x on them, not the 100x of a constant pattern).
fn value(i: usize) -> Vec<u8> {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(1024 + 128);
    while out.len() < 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let event = format!(
            r#"{{"user":"u{}","event":"view","page":"/p/{}","ms":{}}},"#,
            x % 100_000,
            (x >> 20) % 997,
            (x >> 40) % 10_000
        );
        out.extend_from_slice(event.as_bytes());
    }
    out.truncate(1024);
    out
}

/// One lz4 batch, encoded by kafka-protocol as a client would send it (BatchBuilder does not
/// compress).
fn lz4_batch(count: usize) -> Vec<u8> {
    let records: Vec<kp::Record> = (0..count)
        .map(|i| kp::Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: kp::TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes.
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(Bytes::from(value(i))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: kp::Compression::Lz4,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.to_vec()
}

fn record_sets() -> Vec<(String, Vec<u8>)> {
    let mut sets = Vec::new();
    for count in [16, 256] {
        let mut plain = BatchBuilder::new(0).timestamps(1_700_000_000_000);
        for i in 0..count {
            plain = plain.record(blumfeld::record::Record {
                timestamp_delta_ms: i as i64,
                key: None,
                value: Some(value(i)),
            });
        }
        sets.push((format!("none/{count}x1KiB"), plain.build()));
        let lz4 = lz4_batch(count);
        let header = BatchHeader::parse(&lz4).unwrap();
        assert_eq!(
            (header.compression(), header.total_len()),
            (Compression::Lz4, lz4.len())
        );
        sets.push((format!("lz4/{count}x1KiB"), lz4));
    }
    sets
}

fn batch_benches(c: &mut Criterion) {
    let sets = record_sets();
    let mut group = c.benchmark_group("validate_batches");
    for (name, set) in &sets {
        group.throughput(Throughput::Bytes(set.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), set, |b, set| {
            b.iter(|| validate_batches(set, MAX_MESSAGE_BYTES).unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("assign_offsets");
    for (name, set) in &sets {
        let mut set = set.clone();
        group.throughput(Throughput::Bytes(set.len() as u64));
        // Patching is an overwrite of two header fields, so repeating it on one buffer is fine.
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| assign_offsets(&mut set, 1_000_000, 3))
        });
    }
    group.finish();
}

criterion_group!(benches, batch_benches);
criterion_main!(benches);
