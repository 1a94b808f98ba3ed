//! `log::Log` on a temp dir, default config (so no fsync per append, 1 GiB segments):
//! - `append_256KiB`: one batch of 250 1 KiB records (~252 KiB, so four make a 1 MiB fetch)
//!   per append (offset patching, one positioned write, index update). The log is replaced
//!   every 256 MiB, outside the timing, so the bench never rolls a segment or fills the disk;
//! - `read_1MiB`: a 1 MiB read (four batches) from a warm 64 MiB log (page cache), walking the
//!   log: the Fetch path below the codec;
//! - `read_one_batch_at_random_offset`: the offset-index lookup, `read` of one batch at a
//!   random offset in a log of 50,000 single-record batches.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use blumfeld::log::{Log, LogConfig};
use blumfeld::types::{LeaderEpoch, Offset};
use blumfeld::record::BatchBuilder;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tempfile::TempDir;

const KIB: usize = 1024;
/// Records of 1 KiB per "256 KiB" batch: ~252 KiB with framing, four to a 1 MiB read.
const BATCH_RECORDS: usize = 250;

fn open_log() -> (TempDir, Log) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    (dir, log)
}

/// A fresh log holding `batches` copies of `batch`.
fn filled_log(batch: &[u8], batches: usize) -> (TempDir, Log) {
    let (dir, mut log) = open_log();
    let records = batch.to_vec();
    for _ in 0..batches {
        log.append(&records, LeaderEpoch(0), 0).unwrap();
    }
    (dir, log)
}

fn append(c: &mut Criterion) {
    let batch = BatchBuilder::new(0).records(BATCH_RECORDS, KIB).build();
    let appends_per_log = (256 * KIB * KIB) / batch.len();
    let mut group = c.benchmark_group("log");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("append_256KiB", |b| {
        b.iter_custom(|iters| {
            let records = batch.clone();
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let (_dir, mut log) = open_log();
                let n = left.min(appends_per_log as u64);
                let start = Instant::now();
                for _ in 0..n {
                    log.append(&records, LeaderEpoch(0), 0).unwrap();
                }
                elapsed += start.elapsed();
                left -= n;
            }
            elapsed
        })
    });
    group.finish();
}

fn read(c: &mut Criterion) {
    let batch = BatchBuilder::new(0).records(BATCH_RECORDS, KIB).build();
    let (_dir, log) = filled_log(&batch, 256); // 64 MiB, all in the page cache
    let end = log.log_end_offset();
    let first = log.read(Offset(0), 1 << 20, end, true).unwrap().bytes.len();
    assert_eq!(first, 4 * batch.len());
    let mut group = c.benchmark_group("log");
    group.throughput(Throughput::Bytes(first as u64));
    let mut start = Offset(0);
    group.bench_function("read_1MiB", |b| {
        b.iter(|| {
            let read = log.read(start, 1 << 20, end, true).unwrap();
            // Walk the log so successive reads come from different places.
            start = read.next_offset;
            if end.0 - start.0 < 4 * BATCH_RECORDS as i64 {
                start = Offset(0);
            }
            read
        })
    });
    group.finish();
}

fn index_lookup(c: &mut Criterion) {
    let batch = BatchBuilder::new(0).records(1, KIB).build();
    let (_dir, log) = filled_log(&batch, 50_000);
    let end = log.log_end_offset();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut group = c.benchmark_group("log");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("read_one_batch_at_random_offset", |b| {
        b.iter(|| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let offset = Offset((x % end.0 as u64) as i64);
            log.read(offset, 1, end, true).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, append, read, index_lookup);
criterion_main!(benches);
