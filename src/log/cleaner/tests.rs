//! Scenario tests for the cleaner: latest value per key, tombstones and the delete horizon,
//! compaction lags, the dirty ratio and its checkpoint, retention under `compact`, crashes
//! during the swap, and a large run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;

use super::super::segment::{LOG_SUFFIX, segment_file};
use super::super::*;
use super::swap::{CLEANED_SUFFIX, SWAP_SUFFIX};
use crate::record::{BatchBuilder, BatchIter, Record};

pub(super) fn compact_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        retention_ms: -1,
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: 5_000,
        ..LogConfig::default()
    }
}

/// One uncompressed batch of `(key, value)` records, all at `timestamp`.
pub(super) fn keyed_batch(records: &[(&str, Option<&str>)], timestamp: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new(0).timestamps(timestamp);
    for (key, value) in records {
        builder = builder.record(Record {
            timestamp_delta_ms: 0,
            key: Some(key.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
        });
    }
    builder.build()
}

/// Every record the log returns: offset → (key, value).
pub(super) type Records = BTreeMap<i64, (Option<Bytes>, Option<Bytes>)>;

pub(super) fn read_records(log: &Log) -> Records {
    let read = log
        .read(log.log_start_offset(), usize::MAX, Offset(i64::MAX), true)
        .unwrap();
    let mut out = BTreeMap::new();
    let mut last_offset = -1;
    for (header, range) in BatchIter::with_crc_check(&read.bytes) {
        assert!(header.base_offset > last_offset, "batches must not overlap");
        last_offset = header.last_offset();
        let mut bytes = read.bytes.slice(range);
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
        for record in set.records {
            assert!(record.offset <= header.last_offset());
            let previous = out.insert(record.offset, (record.key, record.value));
            assert!(previous.is_none(), "offset {} twice", record.offset);
        }
    }
    out
}

fn append(log: &mut Log, bytes: Vec<u8>, now_ms: i64) -> AppendInfo {
    *log.append(&bytes, LeaderEpoch(0), now_ms).unwrap().info()
}

fn value_of(records: &Records, key: &str) -> Vec<Option<Bytes>> {
    records
        .values()
        .filter(|(k, _)| k.as_deref() == Some(key.as_bytes()))
        .map(|(_, v)| v.clone())
        .collect()
}

#[test]
fn keeps_the_latest_value_per_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config(), 0).unwrap();
    let mut latest = BTreeMap::new();
    for round in 0..30 {
        let key = format!("k{}", round % 7);
        let value = format!("v{round}");
        let info = append(&mut log, keyed_batch(&[(&key, Some(&value))], 100), 100);
        latest.insert(key, (info.first_offset.0, value));
    }
    log.roll(100).unwrap();
    let end = log.log_end_offset();
    let stats = log.clean(200, end).unwrap().expect("all dirty");
    assert_eq!(stats.end_offset, end.0);
    assert_eq!(stats.records_read, 30);
    assert_eq!(stats.records_retained, 7);
    assert_eq!(log.log_end_offset(), end);
    let records = read_records(&log);
    let got: BTreeMap<String, (i64, String)> = records
        .iter()
        .map(|(offset, (k, v))| {
            let k = String::from_utf8(k.clone().unwrap().to_vec()).unwrap();
            let v = String::from_utf8(v.clone().unwrap().to_vec()).unwrap();
            (k, (*offset, v))
        })
        .collect();
    assert_eq!(got, latest);
    // Nothing new is dirty: no second pass.
    assert_eq!(log.clean(300, end).unwrap(), None);
    assert_eq!(log.first_dirty_offset(), end);
}

#[test]
fn tombstones_stay_until_the_delete_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config(), 0).unwrap();
    append(
        &mut log,
        keyed_batch(&[("a", Some("1")), ("b", Some("1"))], 10),
        10,
    );
    append(
        &mut log,
        keyed_batch(&[("a", None), ("c", Some("1"))], 10),
        10,
    );
    log.roll(10).unwrap();
    let end = log.log_end_offset();
    log.clean(1_000, end).unwrap().unwrap();
    let records = read_records(&log);
    assert_eq!(
        value_of(&records, "a"),
        vec![None],
        "tombstone kept, older value gone"
    );
    let read = log.read(Offset(0), usize::MAX, Offset(i64::MAX), true).unwrap();
    let stamped = BatchIter::new(&read.bytes)
        .find(|(h, _)| h.has_delete_horizon())
        .unwrap()
        .0;
    assert_eq!(stamped.base_timestamp, 1_000 + 5_000);
    // The horizon has not passed: nothing is due.
    assert_eq!(log.clean(5_999, end).unwrap(), None);
    // Reopening keeps the pending horizon (the checkpoint has it).
    log.close(5_999).unwrap();
    let mut log = Log::open(dir.path(), compact_config(), 5_999).unwrap();
    let stats = log.clean(6_000, end).unwrap().expect("horizon passed");
    assert!(stats.forced);
    assert_eq!(stats.tombstones_removed, 1);
    let records = read_records(&log);
    assert!(value_of(&records, "a").is_empty());
    assert_eq!(value_of(&records, "b").len(), 1);
    assert_eq!(log.log_end_offset(), end);
}

#[test]
fn young_segments_and_data_above_the_high_watermark_stay_dirty() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        min_compaction_lag_ms: 1_000,
        ..compact_config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    for t in [0, 0, 500, 500] {
        append(&mut log, keyed_batch(&[("k", Some("v"))], t), t);
        log.roll(t).unwrap();
    }
    let end = log.log_end_offset();
    // At 1_200 only the segments with timestamp 0 are old enough.
    let stats = log.clean(1_200, end).unwrap().unwrap();
    assert_eq!(stats.end_offset, 2);
    assert_eq!(read_records(&log).len(), 3, "offset 0 superseded by 1 only");
    // The high watermark holds back everything from offset 3 on.
    let stats = log.clean(10_000, Offset(3)).unwrap().unwrap();
    assert_eq!(stats.end_offset, 3);
    assert_eq!(
        read_records(&log).keys().copied().collect::<Vec<_>>(),
        vec![2, 3]
    );
    let stats = log.clean(10_000, end).unwrap().unwrap();
    assert_eq!(stats.end_offset, end.0);
    assert_eq!(
        read_records(&log).keys().copied().collect::<Vec<_>>(),
        vec![3]
    );
}

#[test]
fn the_dirty_ratio_gates_a_pass_and_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..compact_config()
    };
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    for i in 0..100 {
        let value = format!("{i:0>50}");
        append(
            &mut log,
            keyed_batch(&[(&format!("k{i}"), Some(&value))], 0),
            0,
        );
    }
    log.roll(0).unwrap();
    assert!(log.clean(0, Offset(i64::MAX)).unwrap().is_some());
    // A small dirty segment next to a large clean one: below the 0.5 ratio.
    append(&mut log, keyed_batch(&[("k1", Some("x"))], 0), 0);
    log.roll(0).unwrap();
    assert_eq!(log.clean(0, Offset(i64::MAX)).unwrap(), None);
    log.close(0).unwrap();
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    assert_eq!(log.clean(0, Offset(i64::MAX)).unwrap(), None, "checkpoint survived");
    // A lower threshold lets it run; max.compaction.lag.ms forces it too.
    log.set_config(LogConfig {
        max_compaction_lag_ms: 100,
        ..config
    });
    let stats = log.clean(1_000, Offset(i64::MAX)).unwrap().unwrap();
    assert!(stats.forced && stats.dirty_ratio < 0.5);
    assert_eq!(value_of(&read_records(&log), "k1").len(), 1);
}

#[test]
fn compact_only_logs_skip_time_and_size_retention() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: 10,
        retention_bytes: 100,
        ..compact_config()
    };
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    for _ in 0..20 {
        append(&mut log, keyed_batch(&[("k", Some("v"))], 0), 0);
        log.roll(0).unwrap();
    }
    assert_eq!(log.enforce_retention(1_000_000).unwrap(), 0);
    assert_eq!(log.log_start_offset(), Offset(0));
    assert_eq!(log.delete_records_before(Offset(5)).unwrap(), Offset(5));
    log.set_config(LogConfig {
        cleanup_policy: CleanupPolicy::CompactDelete,
        ..config
    });
    assert!(log.enforce_retention(1_000_000).unwrap() > 0);
    assert_eq!(
        log.clean(0, Offset(i64::MAX)).unwrap(),
        None,
        "a delete policy alone never cleans"
    );
}

#[test]
fn producers_last_batches_survive_as_empty_headers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config(), 0).unwrap();
    let mut idempotent = BatchBuilder::new(0).producer(9, 0, 0).timestamps(0);
    idempotent = idempotent.record(Record {
        timestamp_delta_ms: 0,
        key: Some(b"k".to_vec()),
        value: Some(b"old".to_vec()),
    });
    append(&mut log, idempotent.build(), 0);
    append(&mut log, keyed_batch(&[("k", Some("new"))], 0), 0);
    append(&mut log, keyed_batch(&[("other", Some("x"))], 0), 0);
    log.roll(0).unwrap();
    log.clean(0, Offset(i64::MAX)).unwrap().unwrap();
    let read = log.read(Offset(0), usize::MAX, Offset(i64::MAX), true).unwrap();
    let first = BatchIter::new(&read.bytes).next().unwrap().0;
    assert_eq!(
        (first.producer_id, first.records_count, first.base_sequence),
        (9, 0, 0)
    );
    // Producer state rebuilt from the log alone still knows the sequence.
    log.close(0).unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".snapshot") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let mut log = Log::open(dir.path(), compact_config(), 0).unwrap();
    let entry = log.producer_state().entry(ProducerId(9)).unwrap();
    assert_eq!(entry.batches.back().unwrap().last_seq, 0);
    let next = BatchBuilder::new(0)
        .producer(9, 0, 1)
        .timestamps(0)
        .records(1, 1)
        .build();
    assert!(matches!(
        log.append(&next, LeaderEpoch(0), 0).unwrap(),
        AppendOutcome::Appended(_)
    ));
}

fn one_group_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        ..compact_config()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// A log with four sealed segments whose cleaning merges them into one, its directory
/// before cleaning (`before`), and the records the cleaned log must hold.
fn cleaned_and_uncleaned() -> (tempfile::TempDir, tempfile::TempDir, Records, Vec<Offset>) {
    let cleaned = tempfile::tempdir().unwrap();
    let before = tempfile::tempdir().unwrap();
    let mut log = Log::open(cleaned.path(), compact_config(), 0).unwrap();
    for i in 0..40 {
        let key = format!("k{}", i % 5);
        append(
            &mut log,
            keyed_batch(&[(&key, Some("some value bytes"))], 0),
            0,
        );
    }
    log.roll(0).unwrap();
    let bases = log.segment_base_offsets();
    let end = log.log_end_offset();
    log.close(0).unwrap();
    copy_dir(cleaned.path(), before.path());
    // Segments big enough that the whole log forms one group.
    let mut log = Log::open(cleaned.path(), one_group_config(), 0).unwrap();
    log.clean(0, end).unwrap().unwrap();
    let expected = read_records(&log);
    assert_eq!(expected.len(), 5);
    log.close(0).unwrap();
    (cleaned, before, expected, bases)
}

#[test]
fn a_crash_before_the_swap_commits_keeps_the_old_segments() {
    let (cleaned, before, _, bases) = cleaned_and_uncleaned();
    let old = read_records(&Log::open(before.path(), compact_config(), 0).unwrap());
    std::fs::copy(
        segment_file(cleaned.path(), 0, LOG_SUFFIX),
        segment_file(before.path(), 0, CLEANED_SUFFIX),
    )
    .unwrap();
    let log = Log::open(before.path(), compact_config(), 0).unwrap();
    assert_eq!(log.segment_base_offsets(), bases);
    assert_eq!(read_records(&log), old);
    assert!(!segment_file(before.path(), 0, CLEANED_SUFFIX).exists());
}

#[test]
fn a_crash_after_the_swap_commits_completes_it() {
    // After step 2 (nothing deleted yet), and part-way through step 3 (some old files gone).
    for deleted in [0usize, 1, 3] {
        let (cleaned, before, expected, bases) = cleaned_and_uncleaned();
        assert!(bases.len() > 3, "the group must span several segments");
        std::fs::copy(
            segment_file(cleaned.path(), 0, LOG_SUFFIX),
            segment_file(before.path(), 0, SWAP_SUFFIX),
        )
        .unwrap();
        for base in bases.iter().skip(1).take(deleted) {
            std::fs::remove_file(segment_file(before.path(), base.0, LOG_SUFFIX)).unwrap();
        }
        let log = Log::open(before.path(), compact_config(), 0).unwrap();
        let reference = Log::open(cleaned.path(), compact_config(), 0).unwrap();
        assert_eq!(log.segment_base_offsets(), reference.segment_base_offsets());
        assert_eq!(read_records(&log), expected);
        assert_eq!(log.log_end_offset(), reference.log_end_offset());
        assert!(!segment_file(before.path(), 0, SWAP_SUFFIX).exists());
    }
}

#[test]
fn one_hundred_thousand_updates_over_a_thousand_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 4096,
        ..compact_config()
    };
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for chunk in 0..1_000 {
        let mut batch = Vec::new();
        for i in 0..100 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let key = format!("key-{}", state % 1_000);
            let value = format!("value-{chunk}-{i}");
            latest.insert(key.clone(), value.clone());
            batch.push((key, value));
        }
        let records: Vec<(&str, Option<&str>)> = batch
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_str())))
            .collect();
        append(&mut log, keyed_batch(&records, chunk), chunk);
    }
    let segments = log.segment_count();
    assert!(segments > 100, "many segments rolled: {segments}");
    let end = log.log_end_offset();
    assert_eq!(end, Offset(100_000));
    let stats = log.clean(10_000, end).unwrap().unwrap();
    let records = read_records(&log);
    let active_records = 100_000 - stats.end_offset;
    assert!(active_records < 2_000, "the active segment is small");
    assert!(
        records.len() as i64 <= 1_000 + active_records,
        "{} records remain",
        records.len()
    );
    let mut got: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in records.values() {
        let k = String::from_utf8(k.clone().unwrap().to_vec()).unwrap();
        got.insert(k, String::from_utf8(v.clone().unwrap().to_vec()).unwrap());
    }
    assert_eq!(got, latest);
    assert_eq!(log.log_end_offset(), end);
    // Groups are formed from current sizes, as Kafka does: full segments are not merged by
    // the first pass, the shrunken ones are by the next.
    log.roll(10_000).unwrap();
    log.set_config(LogConfig {
        min_cleanable_dirty_ratio: DirtyRatio(0.0),
        ..config
    });
    log.clean(10_000, Offset(i64::MAX)).unwrap().unwrap();
    assert!(log.segment_count() < 10, "{} segments", log.segment_count());
    assert_eq!(read_records(&log).len(), 1_000);
}

#[test]
fn empty_headers_kept_by_one_pass_go_when_no_longer_needed() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        min_cleanable_dirty_ratio: DirtyRatio(0.0),
        ..compact_config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    let empty_batches = |log: &Log| {
        let read = log.read(Offset(0), usize::MAX, Offset(i64::MAX), true).unwrap();
        BatchIter::new(&read.bytes)
            .filter(|(h, _)| h.records_count == 0)
            .count()
    };
    for round in 0..6 {
        for _ in 0..10 {
            append(&mut log, keyed_batch(&[("k", Some("v"))], 0), 0);
        }
        log.roll(0).unwrap();
        log.clean(0, Offset(i64::MAX)).unwrap().unwrap();
        let groups = log.segment_count() - 1;
        assert!(
            empty_batches(&log) <= groups,
            "round {round}: {} empty batches in {groups} cleaned segments",
            empty_batches(&log)
        );
    }
    assert_eq!(read_records(&log).len(), 1);
}

#[test]
fn committed_transactional_data_compacts_like_any_other_and_keyless_records_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config(), 0).unwrap();
    let record = |key: &[u8], value: &[u8]| Record {
        timestamp_delta_ms: 0,
        key: Some(key.to_vec()),
        value: Some(value.to_vec()),
    };
    let plain_c = BatchBuilder::new(0).record(record(b"c", b"plain")).build();
    let txn = BatchBuilder::new(1)
        .producer(5, 0, 0)
        .attributes(0x10)
        .record(record(b"a", b"txn"))
        .record(record(b"c", b"txn"))
        .build();
    let marker = BatchBuilder::new(3)
        .producer(5, 0, -1)
        .attributes(0x30)
        .record(record(&[0, 0, 0, 1], &[0, 0, 0, 0, 0, 0]))
        .build();
    let mut newer = BatchBuilder::new(4).record(record(b"a", b"new"));
    newer = newer.record(Record {
        timestamp_delta_ms: 0,
        key: None,
        value: Some(b"keyless".to_vec()),
    });
    for batch in [plain_c, txn, marker, newer.build()] {
        log.append_as_follower(&batch, 0).unwrap();
    }
    log.roll(0).unwrap();
    log.clean(0, Offset(i64::MAX)).unwrap().unwrap();
    let offsets: Vec<i64> = read_records(&log).keys().copied().collect();
    // 0: shadowed by the committed transactional "c" at 2; 1: "a" shadowed by 4; 3: the
    // marker stays, its transaction still has data; 4: latest "a"; 5 (keyless) dropped.
    assert_eq!(offsets, vec![2, 3, 4]);
    assert_eq!(log.log_end_offset(), Offset(6));
}

/// Kafka's rules for transactions: aborted data goes in the first pass (its marker and index
/// entry stay with it); the next pass finds the abort without data and stamps the marker with
/// a delete horizon; a pass after `delete.retention.ms` removes it. A committed transaction's
/// marker follows its data the same way once compaction removed all of it.
#[test]
fn aborted_data_goes_and_markers_go_after_their_delete_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { min_cleanable_dirty_ratio: DirtyRatio(0.0), ..compact_config() };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    let txn = |pid: i64, seq: i32, key: &str, value: &str| {
        BatchBuilder::new(0).producer(pid, 0, seq).attributes(0x10).record(Record {
            timestamp_delta_ms: 0,
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
        })
        .build()
    };
    let marker = |log: &mut Log, pid: i64, commit: bool| {
        log.append_marker(ProducerId(pid), 0, crate::record::control::Marker { commit, coordinator_epoch: 0 }, LeaderEpoch(0), 0).unwrap().first_offset.0
    };
    log.append(&txn(1, 0, "k", "aborted"), LeaderEpoch(0), 0).unwrap(); // 0
    log.append(&txn(2, 0, "k", "committed"), LeaderEpoch(0), 0).unwrap(); // 1
    let abort_at = marker(&mut log, 1, false); // 2
    let commit_at = marker(&mut log, 2, true); // 3
    log.append(&keyed_batch(&[("k", Some("plain"))], 0), LeaderEpoch(0), 0).unwrap(); // 4: shadows 1
    log.roll(0).unwrap();
    assert_eq!(log.collect_aborted(Offset(0), Offset(5)).len(), 1);

    let stats = log.clean(1_000, Offset(i64::MAX)).unwrap().unwrap();
    assert_eq!((stats.aborted_records_removed, stats.markers_removed), (1, 0));
    let offsets: Vec<i64> = read_records(&log).keys().copied().collect();
    assert_eq!(offsets, vec![abort_at, commit_at, 4], "aborted and shadowed data gone, markers stay");
    assert_eq!(log.collect_aborted(Offset(0), Offset(5)).len(), 1, "the abort's entry stays with its marker");

    // Nothing new is dirty, so force passes with new data in a later segment.
    let pass = |log: &mut Log, now: i64| {
        log.append(&keyed_batch(&[("other", Some("x"))], now), LeaderEpoch(0), now).unwrap();
        log.roll(now).unwrap();
        log.clean(now, Offset(i64::MAX)).unwrap().unwrap()
    };
    let second = pass(&mut log, 2_000);
    assert_eq!(second.markers_removed, 0);
    assert!(read_records(&log).contains_key(&abort_at), "stamped, not yet removed");
    assert_eq!(log.collect_aborted(Offset(0), Offset(5)), vec![], "an abort without data needs no entry");
    let third = pass(&mut log, 2_000 + 5_000);
    assert_eq!(third.markers_removed, 2);
    let offsets: Vec<i64> = read_records(&log).keys().copied().collect();
    assert!(!offsets.contains(&abort_at) && !offsets.contains(&commit_at), "{offsets:?}");
    assert!(offsets.contains(&4));
}

/// An open transaction holds the cleaner below its first offset (the partition passes the
/// LSO as the bound): its data is neither mapped nor cleaned.
#[test]
fn the_cleaner_stays_below_an_open_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { min_cleanable_dirty_ratio: DirtyRatio(0.0), ..compact_config() };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    let open = BatchBuilder::new(0).producer(1, 0, 0).attributes(0x10).record(Record {
        timestamp_delta_ms: 0,
        key: Some(b"k".to_vec()),
        value: Some(b"open".to_vec()),
    });
    log.append(&open.build(), LeaderEpoch(0), 0).unwrap();
    log.roll(0).unwrap();
    log.append(&keyed_batch(&[("k", Some("later"))], 0), LeaderEpoch(0), 0).unwrap();
    log.roll(0).unwrap();
    let lso = log.first_unstable_offset().unwrap();
    assert!(log.clean(0, lso).unwrap().is_none(), "nothing below the LSO to clean");
    assert!(read_records(&log).contains_key(&0));
}

#[test]
fn truncation_lowers_the_checkpoint_so_new_data_is_dirty() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        min_cleanable_dirty_ratio: DirtyRatio(0.0),
        ..compact_config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    for i in 0..20 {
        append(&mut log, keyed_batch(&[("k", Some(&format!("{i}")))], 0), 0);
        if i % 5 == 4 {
            log.roll(0).unwrap();
        }
    }
    log.clean(0, Offset(20)).unwrap().unwrap();
    assert_eq!(log.first_dirty_offset(), Offset(20));
    log.truncate_to(Offset(12), 0).unwrap();
    let end = log.log_end_offset();
    assert_eq!(log.first_dirty_offset(), end);
    append(&mut log, keyed_batch(&[("k", Some("after"))], 0), 0);
    log.roll(0).unwrap();
    log.clean(0, Offset(i64::MAX)).unwrap().unwrap();
    let records = read_records(&log);
    assert_eq!(value_of(&records, "k"), vec![Some(Bytes::from("after"))]);
    assert_eq!(records.keys().copied().collect::<Vec<_>>(), vec![end.0]);
}

#[test]
fn a_compacted_active_segment_rolls_at_max_compaction_lag() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1 << 20,
        max_compaction_lag_ms: 1_000,
        ..compact_config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    append(&mut log, keyed_batch(&[("k", Some("1"))], 0), 0);
    append(&mut log, keyed_batch(&[("k", Some("2"))], 500), 500);
    assert_eq!(log.segment_count(), 1);
    append(&mut log, keyed_batch(&[("k", Some("3"))], 1_001), 1_001);
    assert_eq!(log.segment_count(), 2, "rolled at max.compaction.lag.ms");
    let stats = log.clean(1_001, Offset(i64::MAX)).unwrap().unwrap();
    assert_eq!(stats.end_offset, 2);
    assert_eq!(
        read_records(&log).keys().copied().collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[test]
fn a_checkpoint_beyond_the_log_end_is_lowered_at_open() {
    // As after a crash that lost unflushed data the cleaner had not seen yet.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config(), 0).unwrap();
    for _ in 0..20 {
        append(&mut log, keyed_batch(&[("k", Some("v"))], 0), 0);
    }
    log.close(0).unwrap();
    std::fs::write(
        dir.path().join(CLEANER_CHECKPOINT),
        "0\n1\n50 9223372036854775807\n",
    )
    .unwrap();
    let mut log = Log::open(dir.path(), compact_config(), 0).unwrap();
    for _ in 0..40 {
        append(&mut log, keyed_batch(&[("k", Some("v"))], 0), 0);
    }
    assert_eq!(log.first_dirty_offset(), Offset(20));
}
