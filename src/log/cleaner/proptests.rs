//! Property test for the cleaner: random keyed appends (some compressed with each codec via
//! kafka-protocol's encoder, some tombstones, a few without key), rolls, cleaning passes
//! under a rising high watermark, clean reopens and crashes, checked after every step against
//! a model: below the cleaned end exactly the latest record per key survives (a tombstone
//! only until the pass after its delete horizon), everything above it is untouched, every
//! surviving record keeps its offset, and the log end offset never moves. An idempotent
//! producer's batches are mixed in, truncations above the high watermark and DeleteRecords
//! below it; reopening without producer snapshots must rebuild its last sequence from the
//! cleaned log.
//!
//! A second property crashes a pass at every step of the swap protocol, in any group: the
//! reopened log holds something between the old and the cleaned records, and a new pass
//! gives exactly what an uninterrupted one gives.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::records::Compression as Codec;
use proptest::prelude::*;

use super::super::*;
use super::swap::crash_point;
use super::tests::{Records, read_records};
use crate::record::BatchBuilder;

#[derive(Debug, Clone)]
enum Op {
    /// Records as (key, value); `None` key: keyless, `None` value: tombstone.
    Append {
        records: Vec<(Option<u8>, Option<u16>)>,
        codec: u8,
    },
    Roll,
    /// A pass with the high watermark raised by `hw_step` of the remaining distance.
    Clean {
        hw_step: f64,
    },
    /// The idempotent producer (id 1) appends its next batch of keyed records.
    Idempotent {
        keys: Vec<u8>,
    },
    Tick {
        ms: i64,
    },
    Reopen {
        clean: bool,
    },
    /// Crash, delete every producer snapshot, reopen: producer state comes from the log.
    ReopenWithoutSnapshots,
    /// Truncate at a point between the high watermark and the log end.
    Truncate {
        at: f64,
    },
    /// DeleteRecords at a point between the log start and the high watermark.
    DeleteRecords {
        at: f64,
    },
    /// Crash, tearing the active segment somewhere above the flushed offset.
    CrashTear {
        at: f64,
    },
    /// Crash, delete or garble one index, time index, snapshot or the cleaner checkpoint.
    DamageAndReopen {
        pick: usize,
        garble: bool,
    },
}

fn arb_record() -> impl Strategy<Value = (Option<u8>, Option<u16>)> {
    (
        prop::option::weighted(0.97, 0u8..12),
        prop::option::weighted(0.85, any::<u16>()),
    )
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (prop::collection::vec(arb_record(), 1..6), 0u8..5)
            .prop_map(|(records, codec)| Op::Append { records, codec }),
        2 => Just(Op::Roll),
        3 => (0.0..1.0f64).prop_map(|hw_step| Op::Clean { hw_step }),
        3 => (0i64..3_000).prop_map(|ms| Op::Tick { ms }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        2 => prop::collection::vec(0u8..12, 1..4).prop_map(|keys| Op::Idempotent { keys }),
        1 => Just(Op::ReopenWithoutSnapshots),
        1 => (0.0..1.0f64).prop_map(|at| Op::CrashTear { at }),
        1 => (any::<usize>(), any::<bool>())
            .prop_map(|(pick, garble)| Op::DamageAndReopen { pick, garble }),
        1 => (0.0..1.0f64).prop_map(|at| Op::Truncate { at }),
        1 => (0.0..1.0f64).prop_map(|at| Op::DeleteRecords { at }),
    ]
}

fn arb_config() -> impl Strategy<Value = LogConfig> {
    (
        256u64..3000,
        0i64..4_000,
        prop_oneof![Just(0.0), Just(0.5)],
        prop_oneof![Just(usize::MAX / 2), 100usize..2_000],
        16u64..400,
        prop_oneof![Just(0i64), 1i64..5_000],
        prop_oneof![Just(i64::MAX), 5_000i64..20_000],
    )
        .prop_map(
            |(segment_bytes, retention, ratio, dedupe, interval, min_lag, max_lag)| LogConfig {
                segment_bytes,
                index_interval_bytes: interval,
                retention_ms: -1,
                cleanup_policy: CleanupPolicy::Compact,
                delete_retention_ms: retention,
                min_cleanable_dirty_ratio: DirtyRatio(ratio),
                cleaner_dedupe_buffer_bytes: dedupe,
                min_compaction_lag_ms: min_lag,
                max_compaction_lag_ms: max_lag,
                ..LogConfig::default()
            },
        )
}

fn key_bytes(key: u8) -> Bytes {
    Bytes::from(format!("key-{key}"))
}

fn value_bytes(value: u16) -> Bytes {
    Bytes::from(format!("value-{value}-{}", "x".repeat(value as usize % 40)))
}

fn encode(records: &[(Option<u8>, Option<u16>)], codec: u8, now_ms: i64) -> Vec<u8> {
    let compression = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ][usize::from(codec) % 5];
    let records: Vec<_> = records
        .iter()
        .map(|(key, value)| (now_ms, key.map(key_bytes), value.map(value_bytes)))
        .collect();
    crate::record::builder::encode_compressed(&records, compression)
}

/// Every record ever appended, and the passes that ran as (time, cleaned end).
#[derive(Debug, Default)]
struct Model {
    appended: Vec<(i64, Option<Bytes>, Option<Bytes>)>,
    /// The append time (= record timestamp) of each appended record, by offset.
    timestamps: BTreeMap<i64, i64>,
    passes: Vec<(i64, i64)>,
    /// The cleaner checkpoint was lost since the last pass: the next pass starts over from the
    /// log start, so its end may lie below the ends before (what those cleaned stays cleaned).
    checkpoint_lost: bool,
    high_watermark: i64,
    log_start: i64,
    /// The idempotent producer's batches: (first sequence, first offset, last offset).
    producer: Vec<(i32, i64, i64)>,
}

impl Model {
    /// The furthest any pass cleaned.
    fn cleaned_end(&self) -> i64 {
        self.passes.iter().map(|p| p.1).max().unwrap_or(0)
    }

    fn expected(&self, delete_retention_ms: i64) -> Records {
        let end = self.cleaned_end();
        let mut latest: HashMap<&Bytes, i64> = HashMap::new();
        for (offset, key, _) in self.appended.iter().filter(|r| r.0 < end) {
            if let Some(key) = key {
                latest.insert(key, *offset);
            }
        }
        let mut out = BTreeMap::new();
        for (offset, key, value) in &self.appended {
            let keep = *offset >= end
                || key.as_ref().is_some_and(|k| {
                    latest.get(k) == Some(offset)
                        && (value.is_some()
                            || !self.tombstone_expired(*offset, delete_retention_ms))
                });
            if keep {
                out.insert(*offset, (key.clone(), value.clone()));
            }
        }
        out.split_off(&self.log_start)
    }

    fn cut_tail(&mut self, end: i64) {
        self.appended.retain(|r| r.0 < end);
        self.timestamps.split_off(&end);
        self.producer.retain(|b| b.2 < end);
        self.high_watermark = self.high_watermark.min(end);
    }

    /// The first pass covering `offset` stamps the horizon; a later pass at or after it
    /// removes the tombstone.
    fn tombstone_expired(&self, offset: i64, delete_retention_ms: i64) -> bool {
        let mut covering = self.passes.iter().filter(|(_, end)| *end > offset);
        let Some((first_ms, _)) = covering.next() else {
            return false;
        };
        let horizon = first_ms + delete_retention_ms;
        covering.any(|(ms, _)| *ms >= horizon)
    }
}

struct Harness {
    dir: tempfile::TempDir,
    config: LogConfig,
    log: Option<Log>,
    model: Model,
    now_ms: i64,
}

impl Harness {
    fn log(&mut self) -> &mut Log {
        self.log.as_mut().unwrap()
    }

    fn apply(&mut self, op: &Op) {
        let now = self.now_ms;
        match op {
            Op::Append { records, codec } => {
                let bytes = encode(records, *codec, now);
                let info = *self.log().append(&bytes, LeaderEpoch(0), now).unwrap().info();
                for (i, (key, value)) in records.iter().enumerate() {
                    let offset = info.first_offset.0 + i as i64;
                    let record = (offset, key.map(key_bytes), value.map(value_bytes));
                    self.model.timestamps.insert(record.0, now);
                    self.model.appended.push(record);
                    self.model.timestamps.insert(offset, now);
                }
            }
            Op::Idempotent { keys } => self.idempotent(keys),
            Op::ReopenWithoutSnapshots => {
                drop(self.log.take());
                for entry in std::fs::read_dir(self.dir.path()).unwrap() {
                    let path = entry.unwrap().path();
                    if path.to_string_lossy().ends_with(".snapshot") {
                        std::fs::remove_file(path).unwrap();
                    }
                }
                self.log = Some(Log::open(self.dir.path(), self.config.clone(), now).unwrap());
                self.check_producer();
            }
            Op::CrashTear { at } => {
                let log = self.log.take().unwrap();
                let (flushed, active) = (log.recovery_point(), log.segment_base_offsets());
                drop(log);
                tear_above(self.dir.path(), active.last().unwrap().0, flushed.0, *at);
                let log = Log::open(self.dir.path(), self.config.clone(), now).unwrap();
                assert!(log.log_end_offset() >= flushed, "flushed data lost");
                self.model.cut_tail(log.log_end_offset().0);
                self.log = Some(log);
            }
            Op::DamageAndReopen { pick, garble } => {
                drop(self.log.take());
                let victim = damage_one_sidecar(self.dir.path(), *pick, *garble);
                if victim.is_some_and(|v| v.ends_with(CLEANER_CHECKPOINT)) {
                    self.model.checkpoint_lost = true;
                }
                self.log = Some(Log::open(self.dir.path(), self.config.clone(), now).unwrap());
            }
            Op::Truncate { at } => {
                let (hw, end) = (self.model.high_watermark, self.log().log_end_offset().0);
                let target = hw + ((end - hw) as f64 * at) as i64;
                self.log().truncate_to(Offset(target), now).unwrap();
                let end = self.log().log_end_offset().0;
                assert!(end >= self.model.cleaned_end());
                self.model.cut_tail(end);
            }
            Op::DeleteRecords { at } => {
                let (start, hw) = (self.model.log_start, self.model.high_watermark);
                let target = start + ((hw - start).max(0) as f64 * at) as i64;
                self.model.log_start = self.log().delete_records_before(Offset(target)).unwrap().0;
            }
            Op::Roll => self.log().roll(now).unwrap(),
            Op::Tick { ms } => self.now_ms += ms,
            Op::Clean { hw_step } => self.clean(*hw_step),
            Op::Reopen { clean } => {
                let log = self.log.take().unwrap();
                if *clean {
                    log.close(now).unwrap();
                } else {
                    drop(log);
                }
                self.log = Some(Log::open(self.dir.path(), self.config.clone(), now).unwrap());
            }
        }
    }

    fn idempotent(&mut self, keys: &[u8]) {
        let now = self.now_ms;
        let seq = self
            .model
            .producer
            .last()
            .map_or(0, |b| b.0 + (b.2 - b.1) as i32 + 1);
        let mut builder = BatchBuilder::new(0).producer(1, 0, seq).timestamps(now);
        for key in keys {
            builder = builder.record(crate::record::Record {
                timestamp_delta_ms: 0,
                key: Some(key_bytes(*key).to_vec()),
                value: Some(value_bytes(u16::from(*key)).to_vec()),
            });
        }
        let bytes = builder.build();
        let info = match self.log().append(&bytes, LeaderEpoch(0), now).unwrap() {
            AppendOutcome::Appended(info) => info,
            other => panic!("sequence {seq} not appended: {other:?}"),
        };
        for (i, key) in keys.iter().enumerate() {
            let record = (
                info.first_offset.0 + i as i64,
                Some(key_bytes(*key)),
                Some(value_bytes(u16::from(*key))),
            );
            self.model.timestamps.insert(record.0, now);
            self.model.appended.push(record);
        }
        self.model
            .producer
            .push((seq, info.first_offset.0, info.last_offset.0));
    }

    /// Producer state rebuilt from the log knows the producer's last batch, if that batch is
    /// still in a segment.
    fn check_producer(&mut self) {
        let log = self.log.as_ref().unwrap();
        let first_base = log.segment_base_offsets()[0].0;
        let Some(&(seq, first, last)) = self.model.producer.last() else {
            return;
        };
        if first < first_base {
            return;
        }
        let entry = log.producer_state().entry(ProducerId(1)).expect("producer forgotten");
        let batch = entry.batches.back().unwrap();
        let last_seq = seq + (last - first) as i32;
        assert_eq!((batch.last_seq, batch.last_offset), (last_seq, Offset(last)));
    }

    fn clean(&mut self, hw_step: f64) {
        let now = self.now_ms;
        let end = self.log().log_end_offset().0;
        let hw = self.model.high_watermark;
        self.model.high_watermark = hw + ((end - hw) as f64 * hw_step).ceil() as i64;
        let hw = self.model.high_watermark;
        let Some(stats) = self.log().clean(now, Offset(hw)).unwrap() else {
            return;
        };
        let previous_end = if self.model.checkpoint_lost { 0 } else { self.model.passes.last().map_or(0, |p| p.1) };
        assert!(stats.end_offset >= previous_end, "cleaned end moved back");
        self.model.checkpoint_lost = false;
        assert!(stats.end_offset <= hw, "cleaned above the high watermark");
        let youngest = now - self.config.min_compaction_lag_ms;
        let mut newly_cleaned = self.model.timestamps.range(previous_end..stats.end_offset);
        if let Some((offset, ts)) = newly_cleaned.find(|(_, ts)| **ts > youngest) {
            panic!("offset {offset} at {ts} cleaned at {now} despite min.compaction.lag.ms");
        }
        assert_eq!(self.log().log_end_offset().0, end, "log end offset moved");
        self.model.passes.push((now, stats.end_offset));
    }

    fn check(&mut self) {
        let expected = self.model.expected(self.config.delete_retention_ms);
        let end = self.model.appended.last().map_or(0, |r| r.0 + 1);
        let log = self.log.as_ref().unwrap();
        assert_eq!(log.log_end_offset(), Offset(end));
        assert_eq!(log.log_start_offset(), Offset(self.model.log_start));
        let got = read_records(log).split_off(&self.model.log_start);
        assert_eq!(got, expected, "passes {:?}", self.model.passes);
        // Reads from any offset start at the batch holding it (offset index intact).
        for from in (self.model.log_start..end).step_by(7) {
            let read = log.read(Offset(from), 1, Offset(i64::MAX), true).unwrap();
            let first = crate::record::BatchIter::new(&read.bytes).next();
            let want = expected.range(from..).next().map(|(o, _)| *o);
            match (first, want) {
                (Some((h, _)), Some(o)) => {
                    assert!(h.base_offset <= o.max(from) && h.last_offset() >= from)
                }
                (None, None) => {}
                (Some((h, _)), None) => assert!(h.last_offset() >= from),
                (None, Some(o)) => panic!("read from {from} found nothing, record {o} exists"),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn cleaning_keeps_exactly_the_latest_record_per_key(
        config in arb_config(),
        ops in prop::collection::vec(arb_op(), 1..80),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), config.clone(), 0).unwrap();
        let mut h = Harness { dir, config, log: Some(log), model: Model::default(), now_ms: 0 };
        for op in &ops {
            h.apply(op);
            h.check();
        }
        // A final pass over everything, far in the future, then a crash and a clean reopen.
        h.apply(&Op::Roll);
        h.apply(&Op::Tick { ms: 10_000 });
        h.apply(&Op::Clean { hw_step: 1.0 });
        h.apply(&Op::Tick { ms: 10_000 });
        h.apply(&Op::Clean { hw_step: 1.0 });
        h.check();
        h.apply(&Op::Reopen { clean: false });
        h.check();
        h.apply(&Op::Reopen { clean: true });
        h.check();
    }
}

/// Cuts the active segment's file at a point at or above the first batch at `flushed`.
fn tear_above(dir: &std::path::Path, active_base: i64, flushed: i64, at: f64) {
    use super::super::segment::{LOG_SUFFIX, segment_file};
    let path = segment_file(dir, active_base, LOG_SUFFIX);
    let bytes = std::fs::read(&path).unwrap();
    let from = crate::record::BatchIter::new(&bytes)
        .find(|(h, _)| h.base_offset >= flushed)
        .map_or(bytes.len(), |(_, r)| r.start);
    let cut = from + ((bytes.len() - from) as f64 * at) as usize;
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(cut as u64).unwrap();
}

/// Returns the file damaged, if there was one.
fn damage_one_sidecar(dir: &std::path::Path, pick: usize, garble: bool) -> Option<std::path::PathBuf> {
    let mut victims: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.to_string_lossy();
            [".index", ".timeindex", ".snapshot", CLEANER_CHECKPOINT]
                .iter()
                .any(|suffix| name.ends_with(suffix))
        })
        .collect();
    victims.sort();
    if victims.is_empty() {
        return None;
    }
    let victim = victims.swap_remove(pick % victims.len());
    if garble {
        std::fs::write(&victim, b"\x01\x02 not what it should be").unwrap();
    } else {
        std::fs::remove_file(&victim).unwrap();
    }
    Some(victim)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// `small` ⊆ `large`, record for record.
fn assert_subset(small: &Records, large: &Records, what: &str) {
    for (offset, record) in small {
        assert_eq!(large.get(offset), Some(record), "{what}: offset {offset}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_crash_anywhere_in_a_pass_leaves_old_or_new_segments(
        config in arb_config(),
        appends in prop::collection::vec(
            (prop::collection::vec(arb_record(), 1..6), 0u8..5, prop::bool::weighted(0.2)),
            1..60,
        ),
        group in 0usize..4,
        step in 1u8..=4,
    ) {
        // A pass repeated at the same time must not drop tombstones the crashed one stamped.
        let config = LogConfig { delete_retention_ms: config.delete_retention_ms.max(1), ..config };
        let built = tempfile::tempdir().unwrap();
        let mut log = Log::open(built.path(), config.clone(), 0).unwrap();
        for (records, codec, roll) in &appends {
            let bytes = encode(records, *codec, 0);
            log.append(&bytes, LeaderEpoch(0), 0).unwrap();
            if *roll {
                log.roll(0).unwrap();
            }
        }
        log.roll(0).unwrap();
        let end = log.log_end_offset();
        let original = read_records(&log);
        log.close(0).unwrap();
        let (reference, crashed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        copy_dir(built.path(), reference.path());
        copy_dir(built.path(), crashed.path());

        // Cleaning with larger segments merges several old ones into each group.
        let config = LogConfig { segment_bytes: config.segment_bytes * 4, ..config };
        let mut log = Log::open(reference.path(), config.clone(), 0).unwrap();
        prop_assume!(log.clean(100, end).unwrap().is_some());
        let expected = read_records(&log);

        let mut log = Log::open(crashed.path(), config.clone(), 0).unwrap();
        crash_point::arm(group, step);
        let outcome = log.clean(100, end);
        crash_point::disarm();
        if outcome.is_ok() {
            // The pass had fewer groups than `group`: it simply completed.
            prop_assert_eq!(read_records(&log), expected);
            return Ok(());
        }
        drop(log);
        let mut log = Log::open(crashed.path(), config.clone(), 100).unwrap();
        prop_assert_eq!(log.log_end_offset(), end);
        let got = read_records(&log);
        assert_subset(&expected, &got, "cleaned records lost by the crash");
        assert_subset(&got, &original, "records invented by the crash");
        log.clean(100, end).unwrap().expect("the checkpoint was not written: still dirty");
        prop_assert_eq!(read_records(&log), expected.clone());
        log.close(100).unwrap();
        let log = Log::open(crashed.path(), config, 100).unwrap();
        prop_assert_eq!(read_records(&log), expected);
    }
}

/// Produce into a compacted topic: a keyless record anywhere, in any codec, is refused, and
/// each one is named by its index in its batch.
#[test]
fn compacted_topics_refuse_keyless_records_in_every_codec() {
    use super::{FaultyRecord, RecordChecks, RecordFault, check_records};
    let checks = RecordChecks { require_key: true, timestamps: None };
    for codec in 0..5u8 {
        let keyed = encode(&[(Some(1), Some(10)), (Some(2), None)], codec, 1_000);
        assert_eq!(check_records(&keyed, &checks), Ok(vec![]), "codec {codec}");
        let mut two = keyed.clone();
        two.extend(encode(&[(Some(3), Some(1)), (None, Some(7)), (None, None)], codec, 1_000));
        let no_key = |batch_index| FaultyRecord { batch_index, fault: RecordFault::NoKey };
        assert_eq!(check_records(&two, &checks), Ok(vec![no_key(1), no_key(2)]), "codec {codec}");
    }
}
