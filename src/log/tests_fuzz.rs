//! Op-fuzzer for `Log`: random appends, rolls, retention, truncation, DeleteRecords, flushes,
//! reads, clean reopens and crashes (optionally tearing the active segment anywhere above the
//! flushed offset), checked after every step against a model of which batches, with which
//! bytes, the log must hold. proptest prints the failing op sequence (its seed reproduces it).
//! 32 cases by default because every case fsyncs; `PROPTEST_CASES=2000` for a long run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::path::Path;

use proptest::prelude::*;

use super::segment::{LOG_SUFFIX, segment_file};
use super::*;
use crate::record::{BatchBuilder, BatchIter};

#[derive(Debug, Clone)]
enum Op {
    Append {
        count: usize,
        value_len: usize,
        epoch_bump: bool,
    },
    /// An idempotent producer's next batch, or a retry of one of its recent batches.
    Idempotent {
        count: usize,
        retry: Option<usize>,
    },
    /// ListOffsets by timestamp, for a target in `[0, now + 10)` scaled by `at`.
    TimeLookup {
        at: f64,
    },
    Roll,
    Flush,
    Retention,
    Truncate {
        at: f64,
    },
    DeleteRecords {
        at: f64,
    },
    Read {
        at: f64,
        max_bytes: usize,
        hw_at: f64,
        min_one: bool,
    },
    CloseReopen,
    CrashReopen {
        tear_at: Option<f64>,
    },
    /// Close (or crash), delete or garble one index, time index or producer snapshot file,
    /// reopen: the log must rebuild what it needs and hold exactly the same batches.
    DamageAndReopen {
        pick: usize,
        garble: bool,
        clean: bool,
    },
    Tick {
        ms: i64,
    },
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..6, 0usize..300, prop::bool::weighted(0.05))
            .prop_map(|(count, value_len, epoch_bump)| Op::Append { count, value_len, epoch_bump }),
        // Now and then a batch larger than a scan chunk (64 KiB).
        1 => (1usize..3, 20_000usize..50_000)
            .prop_map(|(count, value_len)| Op::Append { count, value_len, epoch_bump: false }),
        3 => (1usize..4, prop::option::weighted(0.3, 0usize..5))
            .prop_map(|(count, retry)| Op::Idempotent { count, retry }),
        2 => (0.0..1.0f64).prop_map(|at| Op::TimeLookup { at }),
        1 => Just(Op::Roll),
        1 => Just(Op::Flush),
        1 => Just(Op::Retention),
        1 => (0.0..1.2f64).prop_map(|at| Op::Truncate { at }),
        1 => (0.0..1.0f64).prop_map(|at| Op::DeleteRecords { at }),
        3 => (0.0..1.0f64, 0usize..3000, 0.0..1.2f64, any::<bool>())
            .prop_map(|(at, max_bytes, hw_at, min_one)| Op::Read { at, max_bytes, hw_at, min_one }),
        1 => Just(Op::CloseReopen),
        1 => prop::option::of(0.0..1.0f64).prop_map(|tear_at| Op::CrashReopen { tear_at }),
        2 => (0i64..3000).prop_map(|ms| Op::Tick { ms }),
        1 => (any::<usize>(), any::<bool>(), any::<bool>())
            .prop_map(|(pick, garble, clean)| Op::DamageAndReopen { pick, garble, clean }),
    ]
}

fn arb_config() -> impl Strategy<Value = LogConfig> {
    (
        prop_oneof![512u64..4096, Just(1u64 << 20)],
        prop_oneof![Just(i64::MAX / 2), 1_000i64..20_000],
        prop_oneof![Just(-1i64), 5_000i64..50_000],
        prop_oneof![Just(-1i64), 1_000i64..10_000],
        16u64..600,
        prop_oneof![Just(i64::MAX), 1i64..30],
    )
        .prop_map(
            |(segment_bytes, segment_ms, retention_ms, retention_bytes, interval, flush)| {
                LogConfig {
                    segment_bytes,
                    segment_ms,
                    retention_ms,
                    retention_bytes,
                    index_interval_bytes: interval,
                    segment_index_bytes: 8 * 64,
                    flush_interval_messages: flush,
                    ..LogConfig::default()
                }
            },
        )
}

/// The batches the log must hold: those with `last >= start`, in order, as stored.
#[derive(Debug, Default)]
struct Model {
    start: i64,
    end: i64,
    batches: VecDeque<(i64, i64, Vec<u8>)>,
    /// Every batch of the one idempotent producer (id 1, epoch 0) not cut off the tail:
    /// (first seq, first offset, last offset).
    producer: Vec<(i32, i64, i64)>,
}

impl Model {
    fn offset_at(&self, at: f64) -> i64 {
        self.start + ((self.end - self.start) as f64 * at) as i64
    }

    fn advance_start(&mut self, start: i64) {
        assert!(
            start >= self.start && start <= self.end,
            "log start moved from {} to {start}",
            self.start
        );
        self.start = start;
        while self.batches.front().is_some_and(|b| b.1 < start) {
            self.batches.pop_front();
        }
    }

    /// Keeps batches wholly below `end`; the log end becomes `end` (or the start, if higher).
    fn cut_tail(&mut self, end: i64) {
        while self.batches.back().is_some_and(|b| b.1 >= end) {
            self.batches.pop_back();
        }
        self.producer.retain(|b| b.2 < end);
        self.end = end.max(self.start);
        if end < self.start {
            self.batches.clear();
        }
    }

    /// Expected ListOffsets answer: the first record at or above the start whose timestamp
    /// is at least `target`.
    fn first_record_at_or_after(&self, target: i64) -> Option<(i64, i64)> {
        self.batches
            .iter()
            .flat_map(|b| crate::record::record_positions(&b.2).unwrap())
            .find(|r| r.offset >= self.start && r.timestamp >= target)
            .map(|r| (r.offset, r.timestamp))
    }

    /// Expected read: whole batches from the one holding `from`, below `max_offset`, within
    /// `max_bytes` (the first one regardless if `min_one`).
    fn expected_read(
        &self,
        from: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one: bool,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        for (_, last, bytes) in self.batches.iter().filter(|b| b.1 >= from) {
            if *last >= max_offset
                || (out.len() + bytes.len() > max_bytes && !(min_one && out.is_empty()))
            {
                break;
            }
            out.extend_from_slice(bytes);
        }
        out
    }
}

struct Harness {
    dir: tempfile::TempDir,
    config: LogConfig,
    log: Option<Log>,
    model: Model,
    now_ms: i64,
    epoch: i32,
}

impl Harness {
    fn log(&mut self) -> &mut Log {
        self.log.as_mut().unwrap()
    }

    fn apply(&mut self, op: &Op) {
        let now = self.now_ms;
        match *op {
            Op::Append {
                count,
                value_len,
                epoch_bump,
            } => {
                self.epoch += i32::from(epoch_bump);
                let bytes = BatchBuilder::new(0)
                    .timestamps(now)
                    .records(count, value_len)
                    .build();
                let epoch = self.epoch;
                let info = *self.log().append(&bytes, LeaderEpoch(epoch), now).unwrap().info();
                assert_eq!(
                    info.first_offset, Offset(self.model.end),
                    "offsets must continue from the end"
                );
                assert_eq!(info.last_offset, Offset(self.model.end + count as i64 - 1));
                self.model.end = info.last_offset.0 + 1;
                let stored = stored_form(&bytes, info.first_offset.0, epoch);
                self.model
                    .batches
                    .push_back((info.first_offset.0, info.last_offset.0, stored));
            }
            Op::Idempotent { count, retry } => self.idempotent(count, retry),
            Op::TimeLookup { at } => {
                let target = ((now + 10) as f64 * at) as i64;
                let expected = self.model.first_record_at_or_after(target);
                assert_eq!(
                    self.log().offset_for_timestamp(target).unwrap(),
                    expected.map(|(offset, timestamp_ms)| super::tests::at(offset, timestamp_ms)),
                    "target {target}"
                );
            }
            Op::Roll => self.log().roll(now).unwrap(),
            Op::Flush => self.log().flush(now).unwrap(),
            Op::Tick { ms } => self.now_ms += ms,
            Op::Retention => {
                self.log().enforce_retention(now).unwrap();
                let start = self.log().log_start_offset();
                self.model.advance_start(start.0);
            }
            Op::Truncate { at } => {
                // Mostly inside the log; sometimes just below its start.
                let below_start = (self.model.start - 1).max(0);
                let target = if at > 1.1 {
                    below_start
                } else {
                    self.model.offset_at(at)
                };
                self.log().truncate_to(Offset(target), now).unwrap();
                self.model_truncate(target);
            }
            Op::DeleteRecords { at } => {
                let target = self.model.offset_at(at);
                assert_eq!(
                    self.log().delete_records_before(Offset(target)).unwrap(),
                    Offset(target.max(self.model.start))
                );
                self.model.advance_start(target.max(self.model.start));
            }
            Op::Read {
                at,
                max_bytes,
                hw_at,
                min_one,
            } => self.check_read(at, max_bytes, hw_at, min_one),
            Op::CloseReopen => {
                self.log.take().unwrap().close(now).unwrap();
                self.log = Some(Log::open(self.dir.path(), self.config.clone(), now).unwrap());
            }
            Op::CrashReopen { tear_at } => self.crash(tear_at),
            Op::DamageAndReopen {
                pick,
                garble,
                clean,
            } => {
                let log = self.log.take().unwrap();
                if clean {
                    log.close(now).unwrap();
                } else {
                    drop(log);
                }
                damage_one_sidecar(self.dir.path(), pick, garble);
                self.log = Some(Log::open(self.dir.path(), self.config.clone(), now).unwrap());
            }
        }
    }

    /// A retry of one of the producer's last five batches still in the log must come back as
    /// a duplicate with its original offsets; otherwise the next sequence must be accepted
    /// (whether or not the log still remembers the producer).
    fn idempotent(&mut self, count: usize, retry: Option<usize>) {
        let now = self.now_ms;
        let recent: Vec<(i32, i64, i64)> =
            self.model.producer.iter().rev().take(5).copied().collect();
        let candidate = retry.and_then(|k| recent.get(k % recent.len().max(1)).copied());
        if let Some((seq, first, last)) = candidate.filter(|b| b.1 >= self.model.start) {
            let n = (last - first + 1) as usize;
            let bytes = BatchBuilder::new(0)
                .producer(1, 0, seq)
                .timestamps(now)
                .records(n, 7)
                .build();
            let epoch = self.epoch;
            match self.log().append(&bytes, LeaderEpoch(epoch), now).unwrap() {
                AppendOutcome::Duplicate(info) => {
                    assert_eq!((info.first_offset, info.last_offset), (Offset(first), Offset(last)))
                }
                other => panic!("retry of seq {seq} at {first} was not a duplicate: {other:?}"),
            }
            return;
        }
        let seq = self
            .model
            .producer
            .last()
            .map_or(0, |b| b.0 + (b.2 - b.1) as i32 + 1);
        let bytes = BatchBuilder::new(0)
            .producer(1, 0, seq)
            .timestamps(now)
            .records(count, 7)
            .build();
        let epoch = self.epoch;
        match self.log().append(&bytes, LeaderEpoch(epoch), now).unwrap() {
            AppendOutcome::Appended(info) => {
                assert_eq!(info.first_offset, Offset(self.model.end));
                self.model.end = info.last_offset.0 + 1;
                self.model
                    .producer
                    .push((seq, info.first_offset.0, info.last_offset.0));
                let stored = stored_form(&bytes, info.first_offset.0, epoch);
                self.model
                    .batches
                    .push_back((info.first_offset.0, info.last_offset.0, stored));
            }
            other => panic!("new seq {seq} was not appended: {other:?}"),
        }
    }

    fn model_truncate(&mut self, target: i64) {
        let m = &mut self.model;
        if target >= m.end {
            return;
        }
        if target < m.start {
            m.batches.clear();
            m.producer.clear();
            m.start = target;
            m.end = target;
            return;
        }
        let cut = m
            .batches
            .iter()
            .find(|b| b.1 >= target)
            .map_or(m.end, |b| b.0);
        m.cut_tail(cut);
    }

    fn check_read(&mut self, at: f64, max_bytes: usize, hw_at: f64, min_one: bool) {
        let from = self.model.offset_at(at);
        let max_offset = self.model.offset_at(hw_at);
        let expected = self
            .model
            .expected_read(from, max_bytes, max_offset, min_one);
        let got = self
            .log()
            .read(Offset(from), max_bytes, Offset(max_offset), min_one)
            .unwrap();
        assert_eq!(
            got.bytes.as_ref(),
            expected.as_slice(),
            "read({from}, {max_bytes}, {max_offset}, {min_one})"
        );
    }

    fn crash(&mut self, tear_at: Option<f64>) {
        let log = self.log.take().unwrap();
        let flushed = log.recovery_point().0;
        let active_base = log.segment_base_offsets().last().unwrap().0;
        drop(log); // no close: no marker, as after a crash
        if let Some(at) = tear_at {
            tear_above(self.dir.path(), active_base, flushed, at);
        }
        let log = Log::open(self.dir.path(), self.config.clone(), self.now_ms).unwrap();
        let end = log.log_end_offset().0;
        assert!(end <= self.model.end, "crash recovery invented data");
        assert!(
            end >= flushed.max(self.model.start),
            "flushed data lost: end {end} < {flushed}"
        );
        assert!(
            end == self.model.start || self.model.batches.iter().any(|b| b.1 + 1 == end),
            "end {end} is not a batch boundary"
        );
        self.model.cut_tail(end);
        self.log = Some(log);
    }

    fn check_invariants(&mut self) {
        let log = self.log.as_ref().unwrap();
        assert_eq!(log.log_start_offset(), Offset(self.model.start));
        assert_eq!(log.log_end_offset(), Offset(self.model.end));
        let all = log
            .read(Offset(self.model.start), usize::MAX, Offset(i64::MAX), true)
            .unwrap();
        let expected = self
            .model
            .expected_read(self.model.start, usize::MAX, i64::MAX, true);
        assert!(
            all.bytes.as_ref() == expected.as_slice(),
            "full read differs from the model"
        );
        let bases: Vec<i64> = log.segment_base_offsets().into_iter().map(|b| b.0).collect();
        assert!(bases[0] <= log.log_start_offset().0);
        assert_eq!(log.size_bytes(), segment_sizes(self.dir.path(), &bases));
        for segment in log.segments.values() {
            let (scan, largest) = segment.lookup_scan_bounds();
            let bound = self.config.index_interval_bytes + largest;
            assert!(
                scan <= bound,
                "segment {} scans {scan} > {bound} bytes",
                segment.base_offset()
            );
        }
    }
}

/// Cuts the active segment's file at a point at or above the first batch at `flushed`.
fn tear_above(dir: &Path, active_base: i64, flushed: i64, at: f64) {
    let path = segment_file(dir, active_base, LOG_SUFFIX);
    let bytes = std::fs::read(&path).unwrap();
    let from = BatchIter::new(&bytes)
        .find(|(h, _)| h.base_offset >= flushed)
        .map_or(bytes.len(), |(_, r)| r.start);
    let cut = from + ((bytes.len() - from) as f64 * at) as usize;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut as u64)
        .unwrap();
}

/// Deletes or overwrites with junk one `.index`, `.timeindex` or `.snapshot` file.
fn damage_one_sidecar(dir: &Path, pick: usize, garble: bool) {
    let mut victims: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".index") || name.ends_with(".timeindex") || name.ends_with(".snapshot")
        })
        .collect();
    victims.sort();
    if victims.is_empty() {
        return;
    }
    let victim = &victims[pick % victims.len()];
    if garble {
        std::fs::write(victim, b"\x01\x02\x03 not an index or snapshot").unwrap();
    } else {
        std::fs::remove_file(victim).unwrap();
    }
}

fn segment_sizes(dir: &Path, bases: &[i64]) -> u64 {
    bases
        .iter()
        .map(|b| {
            std::fs::metadata(segment_file(dir, *b, LOG_SUFFIX))
                .unwrap()
                .len()
        })
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_the_model(config in arb_config(), ops in prop::collection::vec(arb_op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), config.clone(), 0).unwrap();
        let mut h = Harness { dir, config, log: Some(log), model: Model::default(), now_ms: 0, epoch: 0 };
        for op in &ops {
            h.apply(op);
            h.check_invariants();
        }
    }
}

/// The bytes the log stores for a client batch: offsets and leader epoch assigned (the log
/// patches copies of the headers and leaves the caller's bytes alone).
fn stored_form(bytes: &[u8], first_offset: i64, epoch: i32) -> Vec<u8> {
    let mut stored = bytes.to_vec();
    crate::record::assign_offsets(&mut stored, first_offset, epoch);
    stored
}
