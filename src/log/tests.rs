//! Scenario tests for `Log`: round trips, rolls, KIP-74, reopen after close and after a
//! crash, retention, DeleteRecords, truncation, timestamps and idempotence.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use super::segment::{LOG_SUFFIX, segment_file};
use super::*;
use crate::record::{BatchBuilder, BatchIter};
use crate::types::TimestampedOffset;

pub(super) fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 128,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

/// A client batch (base offset 0) of `count` records with `value_len`-byte values.
pub(super) fn batch(count: usize, value_len: usize, timestamp: i64) -> Vec<u8> {
    BatchBuilder::new(0)
        .timestamps(timestamp)
        .records(count, value_len)
        .build()
}

fn idempotent(pid: i64, epoch: i16, seq: i32, count: usize) -> Vec<u8> {
    BatchBuilder::new(0)
        .producer(pid, epoch, seq)
        .timestamps(1_000)
        .records(count, 8)
        .build()
}

fn append(log: &mut Log, bytes: Vec<u8>, now_ms: i64) -> AppendInfo {
    match log.append(&bytes, LeaderEpoch(0), now_ms).unwrap() {
        AppendOutcome::Appended(info) => info,
        AppendOutcome::Duplicate(info) => panic!("unexpected duplicate {info:?}"),
    }
}

fn read_all(log: &Log, from: i64) -> Vec<(i64, i64)> {
    let r = log.read(Offset(from), usize::MAX, Offset(i64::MAX), true).unwrap();
    BatchIter::with_crc_check(&r.bytes)
        .map(|(h, _)| (h.base_offset, h.last_offset()))
        .collect()
}

/// The record at `offset` with `timestamp_ms`, as time lookups answer.
pub(super) fn at(offset: i64, timestamp_ms: i64) -> TimestampedOffset {
    TimestampedOffset { timestamp_ms, offset: Offset(offset) }
}

fn open(dir: &Path, config: LogConfig) -> Log {
    Log::open(dir, config, 0).unwrap()
}

#[test]
fn append_then_read_round_trips_across_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let mut expected = Vec::new();
    for i in 0..40 {
        let info = append(&mut log, batch(3, 50, 1_000 + i), 0);
        assert_eq!(info.first_offset, Offset(i * 3));
        assert_eq!(info.last_offset, Offset(i * 3 + 2));
        assert_eq!(info.log_append_time, -1);
        expected.push((i * 3, i * 3 + 2));
    }
    assert!(log.segment_count() > 3, "small segments must have rolled");
    assert_eq!(log.log_end_offset(), Offset(120));
    assert_eq!(read_all(&log, 0), expected);
    // Mid-batch start: the whole batch containing it comes back.
    assert_eq!(read_all(&log, 31)[0], (30, 32));
    // Reads may continue across segments.
    let r = log.read(Offset(0), 10_000, Offset(i64::MAX), false).unwrap();
    assert!(r.bytes.len() > 2048 && r.bytes.len() <= 10_000);
    assert_eq!(
        r.next_offset,
        Offset(BatchIter::new(&r.bytes).last().unwrap().0.next_offset())
    );
}

#[test]
fn read_limits_bytes_and_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for _ in 0..5 {
        append(&mut log, batch(2, 100, 0), 0);
    }
    let one = batch(2, 100, 0).len();
    // KIP-74: the first batch comes back whole even above max_bytes, if min_one_batch.
    let r = log.read(Offset(0), 10, Offset(i64::MAX), true).unwrap();
    assert_eq!(r.bytes.len(), one);
    assert!(log.read(Offset(0), 10, Offset(i64::MAX), false).unwrap().bytes.is_empty());
    // Only whole batches within max_bytes.
    assert_eq!(
        log.read(Offset(0), one * 2 + 5, Offset(i64::MAX), false)
            .unwrap()
            .bytes
            .len(),
        one * 2
    );
    // Only batches wholly below max_offset (the high watermark).
    assert_eq!(read_all_below(&log, 0, 4), vec![(0, 1), (2, 3)]);
    assert_eq!(read_all_below(&log, 0, 5), vec![(0, 1), (2, 3)]);
    assert!(read_all_below(&log, 4, 5).is_empty());
    // Ends of the log.
    assert!(log.read(Offset(10), 100, Offset(i64::MAX), true).unwrap().bytes.is_empty());
    assert!(matches!(
        log.read(Offset(11), 100, Offset(i64::MAX), true),
        Err(LogError::OffsetOutOfRange { requested: Offset(11), .. })
    ));
    assert!(matches!(
        log.read(Offset(-1), 100, Offset(i64::MAX), true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

fn read_all_below(log: &Log, from: i64, max_offset: i64) -> Vec<(i64, i64)> {
    let r = log.read(Offset(from), usize::MAX, Offset(max_offset), true).unwrap();
    BatchIter::new(&r.bytes)
        .map(|(h, _)| (h.base_offset, h.last_offset()))
        .collect()
}

#[test]
fn clean_reopen_reads_no_segment_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for i in 0..30 {
        append(&mut log, batch(2, 60, 500 + i), 0);
    }
    let (segments, end, size) = (log.segment_count(), log.log_end_offset(), log.size_bytes());
    let max_ts = log.max_timestamp();
    log.close(0).unwrap();
    // Blank every segment's data (same lengths): any read of it at open would see garbage.
    let active = segment_file(
        dir.path(),
        *log_bases(dir.path()).last().unwrap(),
        LOG_SUFFIX,
    );
    let saved = std::fs::read(&active).unwrap();
    for base in log_bases(dir.path()) {
        let path = segment_file(dir.path(), base, LOG_SUFFIX);
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        std::fs::write(&path, vec![0u8; len]).unwrap();
    }
    let log = open(dir.path(), small_config());
    assert_eq!(
        (log.segment_count(), log.log_end_offset(), log.size_bytes()),
        (segments, end, size)
    );
    assert_eq!(log.max_timestamp(), max_ts);
    assert!(!dir.path().join(CLEAN_SHUTDOWN_MARKER).exists());
    // Reading the blanked bytes is an error, never a panic.
    assert!(matches!(
        log.read(Offset(0), 100, Offset(i64::MAX), true),
        Err(LogError::CorruptSegment { .. })
    ));
    drop(log);
    // Restore the active segment and crash-reopen: the blank sealed segments are trusted
    // (they were fsynced at roll), the active one is recovered from its real bytes.
    std::fs::write(&active, saved).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), end);
}

fn log_bases(dir: &Path) -> Vec<i64> {
    let mut bases: Vec<i64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()?
                .strip_suffix(LOG_SUFFIX)?
                .parse()
                .ok()
        })
        .collect();
    bases.sort();
    bases
}

#[test]
fn crash_reopen_cuts_a_torn_tail_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for i in 0..25 {
        append(&mut log, batch(2, 40, i), 0);
    }
    let end = log.log_end_offset().0;
    let last_base = log.segment_base_offsets().last().unwrap().0;
    drop(log); // crash: no marker
    let path = segment_file(dir.path(), last_base, LOG_SUFFIX);
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 7).unwrap(); // tear the last batch
    let mut log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), Offset(end - 2));
    let batches = read_all(&log, 0);
    assert_eq!(batches.len(), 24);
    assert_eq!(batches.last(), Some(&(end - 4, end - 3)));
    // The log keeps working at the right offsets, with rebuilt indexes.
    assert_eq!(append(&mut log, batch(1, 10, 0), 0).first_offset, Offset(end - 2));
    assert_eq!(read_all(&log, end - 3)[0], (end - 4, end - 3));
    drop(log);
    // Garbage after the last batch is cut too.
    let mut bytes = std::fs::read(&path).unwrap();
    let good_len = bytes.len();
    bytes.extend_from_slice(&[0xab; 100]);
    std::fs::write(&path, bytes).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), Offset(end - 1));
    assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, good_len);
}

#[test]
fn crash_reopen_cuts_at_a_corrupt_batch_in_the_middle_of_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let mut log = open(dir.path(), config.clone());
    for _ in 0..10 {
        append(&mut log, batch(1, 30, 0), 0);
    }
    drop(log);
    let path = segment_file(dir.path(), 0, LOG_SUFFIX);
    let mut bytes = std::fs::read(&path).unwrap();
    let fourth = BatchIter::new(&bytes).nth(3).unwrap().1;
    bytes[fourth.start + 40] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let log = open(dir.path(), config);
    assert_eq!(log.log_end_offset(), Offset(3));
    assert_eq!(read_all(&log, 0).len(), 3);
}

#[test]
fn retention_by_time_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: 1_000,
        ..small_config()
    };
    let mut log = open(dir.path(), config);
    for i in 0..30 {
        append(&mut log, batch(2, 120, i * 100), 0);
    }
    let segments = log.segment_count();
    assert!(segments >= 4);
    // At now = 2_000 only segments whose newest timestamp is < 1_000 may go.
    let deleted = log.enforce_retention(2_000).unwrap();
    assert!(deleted > 0);
    let start = log.log_start_offset();
    assert_eq!(start, log.segment_base_offsets()[0]);
    // Batch i (offsets 2i, 2i+1) has max timestamp 100i + 1: the last deleted batch was
    // older than 1_000, and the first kept segment reaches 1_000 or more.
    assert!(100 * (start.0 / 2 - 1) + 1 < 1_000);
    let second_base = log.segment_base_offsets()[1];
    let kept = log.read(start, usize::MAX, second_base, true).unwrap();
    let newest = BatchIter::new(&kept.bytes)
        .map(|(h, _)| h.max_timestamp)
        .max()
        .unwrap();
    assert!(newest >= 1_000, "a segment within retention was deleted");
    assert!(matches!(
        log.read(Offset(0), 10, Offset(i64::MAX), true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // Far in the future everything goes: the expired active segment is rolled and deleted,
    // leaving an empty log that starts at the old end (as Kafka does).
    let end = log.log_end_offset();
    log.enforce_retention(1_000_000).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert_eq!((log.log_start_offset(), log.log_end_offset(), log.size_bytes()), (end, end, 0));
    // An empty active segment is left alone.
    log.enforce_retention(2_000_000).unwrap();
    assert_eq!(log.log_start_offset(), end);

    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: 3_000,
        ..small_config()
    };
    let mut log = open(dir.path(), config);
    for _ in 0..40 {
        append(&mut log, batch(2, 60, 0), 0);
    }
    log.enforce_retention(0).unwrap();
    assert!(log.size_bytes() <= 3_000 + 2048);
    assert!(log.size_bytes() >= 3_000 - 2048 || log.segment_count() == 1);
    let start = log.log_start_offset();
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_start_offset(), start);
}

#[test]
fn delete_records_moves_the_start_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for _ in 0..30 {
        append(&mut log, batch(2, 60, 0), 0);
    }
    let before = log.segment_count();
    assert_eq!(log.delete_records_before(Offset(37)).unwrap(), Offset(37));
    assert!(log.segment_count() < before);
    assert_eq!(log.delete_records_before(Offset(10)).unwrap(), Offset(37));
    assert!(matches!(
        log.read(Offset(36), 10, Offset(i64::MAX), true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // Reading at the new start returns the batch holding it (36..=37).
    assert_eq!(read_all(&log, 37)[0], (36, 37));
    assert!(log.delete_records_before(Offset(61)).is_err());
    log.close(0).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_start_offset(), Offset(37));
    drop(log);
    let log = open(dir.path(), small_config()); // crash reopen
    assert_eq!(log.log_start_offset(), Offset(37));
}

#[test]
fn truncate_to_drops_the_tail_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for i in 0..30 {
        let bytes = batch(2, 60, i);
        log.append(&bytes, LeaderEpoch((i / 10) as i32), 0).unwrap();
    }
    assert_eq!(log.epoch_cache().latest_epoch(), Some(LeaderEpoch(2)));
    log.truncate_to(Offset(25), 0).unwrap(); // mid-batch: the batch 24..=25 goes whole
    assert_eq!(log.log_end_offset(), Offset(24));
    assert_eq!(log.epoch_cache().latest_epoch(), Some(LeaderEpoch(1)));
    assert_eq!(read_all(&log, 0).last(), Some(&(22, 23)));
    assert_eq!(append(&mut log, batch(1, 10, 0), 0).first_offset, Offset(24));
    log.truncate_to(Offset(0), 0).unwrap();
    assert_eq!((log.log_end_offset(), log.segment_count()), (Offset(0), 1));
    assert_eq!(append(&mut log, batch(1, 10, 0), 0).first_offset, Offset(0));
    log.close(0).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), Offset(1));
}

/// A leader records its epoch's start at the log end before it appends anything (Kafka's
/// `maybeAssignEpochStartOffset`); deposed before the first append, it follows a leader that
/// never had that epoch and is told to truncate exactly at its log end. The entry must go
/// (Kafka's `truncateTo` cuts the epoch cache even when the log is not cut), or the follower
/// fetches with that epoch forever and is answered the same divergence every time (found by
/// `replication::sim`: a follower stuck at offset 1 with epoch 3 never rejoined the ISR).
#[test]
fn truncating_at_the_log_end_still_forgets_an_epoch_that_starts_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    log.append(&batch(2, 10, 0), LeaderEpoch(1), 0).unwrap();
    log.assign_epoch_start(LeaderEpoch(3)).unwrap();
    assert_eq!(log.epoch_cache().latest_epoch(), Some(LeaderEpoch(3)));
    log.truncate_to(Offset(2), 0).unwrap();
    assert_eq!(log.log_end_offset(), Offset(2));
    assert_eq!(log.epoch_cache().latest_epoch(), Some(LeaderEpoch(1)), "epoch 3 began at the end and holds nothing");
    // Past the end too, and the cut is persisted.
    log.assign_epoch_start(LeaderEpoch(4)).unwrap();
    log.truncate_to(Offset(7), 0).unwrap();
    assert_eq!(log.epoch_cache().latest_epoch(), Some(LeaderEpoch(1)));
    log.close(0).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.epoch_cache().latest_epoch(), Some(LeaderEpoch(1)));
}

#[test]
fn truncate_below_log_start_restarts_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for _ in 0..10 {
        append(&mut log, batch(2, 60, 0), 0);
    }
    log.delete_records_before(Offset(15)).unwrap();
    log.truncate_to(Offset(5), 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (Offset(5), Offset(5)));
    assert_eq!(append(&mut log, batch(1, 1, 0), 0).first_offset, Offset(5));
}

#[test]
fn offset_for_timestamp_and_max_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    assert_eq!(log.max_timestamp(), None);
    // Timestamps 0, 10, 20, ... with one out-of-order batch.
    for i in 0..40i64 {
        let ts = if i == 20 { 5 } else { i * 10 };
        append(&mut log, batch(1, 60, ts), 0);
    }
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(at(0, 0)));
    assert_eq!(log.offset_for_timestamp(95).unwrap(), Some(at(10, 100)));
    assert_eq!(log.offset_for_timestamp(200).unwrap(), Some(at(21, 210)));
    assert_eq!(log.offset_for_timestamp(390).unwrap(), Some(at(39, 390)));
    assert_eq!(log.offset_for_timestamp(391).unwrap(), None);
    assert_eq!(log.max_timestamp(), Some(at(39, 390)));
    log.close(0).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.offset_for_timestamp(200).unwrap(), Some(at(21, 210)));
    assert_eq!(log.max_timestamp(), Some(at(39, 390)));
}

#[test]
fn log_append_time_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        message_timestamp_type: MessageTimestampType::LogAppendTime,
        ..small_config()
    };
    let mut log = open(dir.path(), config);
    let info = append(&mut log, batch(2, 5, 1), 77_000);
    assert_eq!((info.log_append_time, info.max_timestamp), (77_000, 77_000));
    let r = log.read(Offset(0), usize::MAX, Offset(i64::MAX), true).unwrap();
    let (h, _) = BatchIter::with_crc_check(&r.bytes).next().unwrap();
    assert_eq!(h.max_timestamp, 77_000);
}

#[test]
fn rolls_on_age_and_on_full_index() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1_000,
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let mut log = open(dir.path(), config);
    append(&mut log, batch(1, 10, 5_000), 5_000);
    append(&mut log, batch(1, 10, 5_500), 5_500);
    assert_eq!(log.segment_count(), 1);
    append(&mut log, batch(1, 10, 6_100), 6_100);
    assert_eq!(log.segment_count(), 2);

    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_index_bytes: 16,
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let mut log = open(dir.path(), config);
    for _ in 0..20 {
        append(&mut log, batch(1, 200, 0), 0);
    }
    assert!(log.segment_count() >= 5, "two index entries per segment");
}

#[test]
fn flush_policy_moves_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_interval_messages: 5,
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let mut log = open(dir.path(), config);
    append(&mut log, batch(3, 1, 0), 0);
    assert_eq!(log.recovery_point(), Offset(0));
    append(&mut log, batch(3, 1, 0), 0);
    assert_eq!(log.recovery_point(), Offset(6));
    let config = LogConfig {
        flush_interval_ms: 100,
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config);
    append(&mut log, batch(1, 1, 0), 50);
    assert_eq!(log.recovery_point(), Offset(0));
    append(&mut log, batch(1, 1, 0), 100);
    assert_eq!(log.recovery_point(), Offset(2));
}

#[test]
fn idempotent_producer_rules() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    append(&mut log, idempotent(7, 0, 0, 3), 0);
    append(&mut log, batch(1, 1, 0), 0); // someone else's batch in between
    append(&mut log, idempotent(7, 0, 3, 2), 0);
    let end = log.log_end_offset();
    let retry = idempotent(7, 0, 0, 3);
    match log.append(&retry, LeaderEpoch(0), 0).unwrap() {
        AppendOutcome::Duplicate(info) => assert_eq!((info.first_offset, info.last_offset), (Offset(0), Offset(2))),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(log.log_end_offset(), end, "a duplicate writes nothing");
    let gap = idempotent(7, 0, 9, 1);
    assert!(matches!(
        log.append(&gap, LeaderEpoch(0), 0),
        Err(LogError::OutOfOrderSequence { .. })
    ));
    append(&mut log, idempotent(7, 1, 0, 1), 0);
    let old = idempotent(7, 0, 5, 1);
    assert!(matches!(
        log.append(&old, LeaderEpoch(0), 0),
        Err(LogError::InvalidProducerEpoch { .. })
    ));
    assert_eq!(log.log_end_offset(), Offset(end.0 + 1));
}

#[test]
fn producer_state_survives_clean_and_crash_reopen() {
    for crash in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), small_config());
        for seq in 0..60 {
            append(&mut log, idempotent(1, 0, seq * 2, 2), 0);
        }
        assert!(log.segment_count() > 2);
        if crash {
            drop(log);
        } else {
            log.close(0).unwrap();
        }
        let mut log = open(dir.path(), small_config());
        let retry = idempotent(1, 0, 114, 2);
        match log.append(&retry, LeaderEpoch(0), 0).unwrap() {
            AppendOutcome::Duplicate(info) => assert_eq!(info.first_offset, Offset(114)),
            other => panic!("crash={crash}: expected a duplicate, got {other:?}"),
        }
        let gap = idempotent(1, 0, 121, 1);
        assert!(matches!(
            log.append(&gap, LeaderEpoch(0), 0),
            Err(LogError::OutOfOrderSequence { .. })
        ));
        append(&mut log, idempotent(1, 0, 120, 1), 0);
    }
}

#[test]
fn producer_state_follows_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for seq in 0..30 {
        append(&mut log, idempotent(1, 0, seq, 1), 0);
    }
    log.truncate_to(Offset(10), 0).unwrap();
    // Sequence 10 is next again; 29 is no longer a duplicate but out of order.
    let late = idempotent(1, 0, 29, 1);
    assert!(matches!(
        log.append(&late, LeaderEpoch(0), 0),
        Err(LogError::OutOfOrderSequence { .. })
    ));
    assert_eq!(
        append(&mut log, idempotent(1, 0, 10, 1), 0).first_offset,
        Offset(10)
    );
}

#[test]
fn follower_appends_keep_offsets_and_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let mut bytes = BatchBuilder::new(0)
        .partition_leader_epoch(3)
        .records(2, 5)
        .build();
    bytes.extend(
        BatchBuilder::new(5)
            .partition_leader_epoch(4)
            .records(1, 5)
            .build(),
    );
    assert_eq!(log.append_as_follower(&bytes, 0).unwrap(), Some((Offset(0), Offset(5))));
    assert_eq!(log.log_end_offset(), Offset(6));
    assert_eq!(log.end_offset_for_epoch(LeaderEpoch(3)), (LeaderEpoch(3), Offset(5)));
    assert_eq!(log.end_offset_for_epoch(LeaderEpoch(4)), (LeaderEpoch(4), Offset(6)));
    log.assign_epoch_start(LeaderEpoch(9)).unwrap();
    assert_eq!(log.end_offset_for_epoch(LeaderEpoch(4)), (LeaderEpoch(4), Offset(6)));
    assert_eq!(log.end_offset_for_epoch(LeaderEpoch(9)), (LeaderEpoch(9), Offset(6)));
    let stale = BatchBuilder::new(4).records(1, 5).build();
    assert!(matches!(
        log.append_as_follower(&stale, 0),
        Err(LogError::NonMonotonicOffsets { .. })
    ));
    let mut corrupt = BatchBuilder::new(6).records(1, 5).build();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert!(log.append_as_follower(&corrupt, 0).is_err());
}

#[test]
fn stray_files_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    append(&mut log, batch(1, 1, 0), 0);
    log.close(0).unwrap();
    for name in [
        "00000000000000000000.log.deleted",
        "x.cleaned",
        "y.swap",
        "leader-epoch-checkpoint.tmp",
        "00000000000000000999.index",
    ] {
        std::fs::write(dir.path().join(name), b"junk").unwrap();
    }
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), Offset(1));
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains("junk")
            && !n.ends_with(".swap")
            && !n.ends_with(".tmp")
            && !n.starts_with("00000000000000000999")),
        "{names:?}"
    );
}

#[test]
fn append_refuses_partial_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let mut bytes = batch(2, 10, 0);
    bytes.pop();
    assert!(matches!(
        log.append(&bytes, LeaderEpoch(0), 0),
        Err(LogError::InvalidRecords(_))
    ));
    assert!(matches!(
        log.append(&[], LeaderEpoch(0), 0),
        Err(LogError::InvalidRecords(_))
    ));
    assert_eq!(log.log_end_offset(), Offset(0));
}

#[test]
fn batches_larger_than_the_scan_chunk_survive_recovery_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let mut log = open(dir.path(), config.clone());
    append(&mut log, batch(1, 10, 0), 0);
    append(&mut log, batch(2, 100_000, 0), 0); // ~200 KB, several scan chunks
    append(&mut log, batch(1, 10, 0), 0);
    append(&mut log, batch(1, 150_000, 0), 0);
    drop(log);
    let log = open(dir.path(), config.clone());
    assert_eq!(log.log_end_offset(), Offset(5));
    assert_eq!(read_all(&log, 0), vec![(0, 0), (1, 2), (3, 3), (4, 4)]);
    assert_eq!(read_all(&log, 3), vec![(3, 3), (4, 4)]);
    drop(log);
    // Tear the big last batch: recovery must cut exactly it.
    let path = segment_file(dir.path(), 0, LOG_SUFFIX);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 1000)
        .unwrap();
    let log = open(dir.path(), config);
    assert_eq!(log.log_end_offset(), Offset(4));
    assert_eq!(read_all(&log, 0).len(), 3);
}

#[test]
fn offset_for_timestamp_finds_the_record_inside_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    // Batch i holds offsets 5i..5i+4 with timestamps 100i..100i+4.
    for i in 0..20 {
        append(&mut log, batch(5, 30, 100 * i), 0);
    }
    assert_eq!(log.offset_for_timestamp(203).unwrap(), Some(at(13, 203)));
    assert_eq!(log.offset_for_timestamp(205).unwrap(), Some(at(15, 300)));
    assert_eq!(log.offset_for_timestamp(1_904).unwrap(), Some(at(99, 1_904)));
    assert_eq!(log.offset_for_timestamp(1_905).unwrap(), None);
    assert_eq!(log.max_timestamp(), Some(at(95, 1_904))); // batch granularity
    assert_eq!(log.offset_of_max_timestamp().unwrap(), Some(at(99, 1_904)));
    // Never below the log start, even inside the batch holding it.
    log.delete_records_before(Offset(12)).unwrap();
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(at(12, 202)));
    // A compressed batch is answered at batch granularity.
    let compressed = BatchBuilder::new(0)
        .attributes(1)
        .timestamps(5_000)
        .records(3, 4)
        .build();
    log.append(&compressed, LeaderEpoch(0), 0).unwrap();
    assert_eq!(log.offset_for_timestamp(5_001).unwrap(), Some(at(100, 5_002)));
}

/// Startup cost after a clean shutdown, on a 1 GiB log (run with `--ignored`; writes 1 GiB).
#[test]
#[ignore]
fn clean_open_of_a_gigabyte_is_fast() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 128 << 20,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config.clone());
    let template = batch(16, 1024, 0);
    while log.size_bytes() < 1 << 30 {
        let bytes = template.clone();
        log.append(&bytes, LeaderEpoch(0), 0).unwrap();
    }
    let end = log.log_end_offset();
    log.close(0).unwrap();
    let started = std::time::Instant::now();
    let log = open(dir.path(), config.clone());
    let clean_ms = started.elapsed().as_millis();
    assert_eq!(log.log_end_offset(), end);
    drop(log);
    let started = std::time::Instant::now();
    let log = open(dir.path(), config);
    let crash_ms = started.elapsed().as_millis();
    assert_eq!(log.log_end_offset(), end);
    eprintln!(
        "1 GiB log: clean open {clean_ms} ms, crash open (recovers one 128 MiB segment) {crash_ms} ms"
    );
    assert!(clean_ms < 1_000);
}

#[test]
fn idle_producers_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    append(&mut log, idempotent(3, 0, 0, 1), 0); // batch timestamp 1_000
    let day_ms = LogConfig::default().producer_id_expiration_ms;
    log.enforce_retention(1_000 + day_ms - 1).unwrap();
    let gap = idempotent(3, 0, 50, 1);
    assert!(log.append(&gap, LeaderEpoch(0), 0).is_err());
    log.enforce_retention(1_000 + day_ms).unwrap();
    assert_eq!(append(&mut log, idempotent(3, 0, 50, 1), 0).first_offset, Offset(1));
}

#[test]
fn damaged_checkpoints_are_rebuilt_or_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for i in 0..20 {
        let bytes = batch(1, 100, 0);
        log.append(&bytes, LeaderEpoch(i / 5), 0).unwrap();
    }
    let entries = log.epoch_cache().entries().to_vec();
    log.close(0).unwrap();
    std::fs::write(
        dir.path().join(epoch_cache::LEADER_EPOCH_CHECKPOINT),
        "garbage",
    )
    .unwrap();
    std::fs::write(dir.path().join(LOG_START_OFFSET_CHECKPOINT), "0\n1\nnope\n").unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.epoch_cache().entries(), entries.as_slice());
    assert_eq!(log.log_start_offset(), Offset(0));
    assert_eq!(log.log_end_offset(), Offset(20));
}

#[test]
fn log_can_move_between_threads_behind_a_mutex() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Log>();
}

#[test]
fn follower_gaps_are_read_and_truncated_sensibly() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let mut bytes = BatchBuilder::new(0).records(2, 5).build(); // 0..=1
    bytes.extend(BatchBuilder::new(10).records(2, 5).build()); // 10..=11 (compacted gap)
    bytes.extend(BatchBuilder::new(20).records(1, 5).build()); // 20
    log.append_as_follower(&bytes, 0).unwrap();
    assert_eq!(log.log_end_offset(), Offset(21));
    assert_eq!(read_all(&log, 5), vec![(10, 11), (20, 20)]);
    log.truncate_to(Offset(15), 0).unwrap();
    assert_eq!(log.log_end_offset(), Offset(20));
    log.close(0).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), Offset(20));
    assert_eq!(read_all(&log, 0), vec![(0, 1), (10, 11)]);
}

#[test]
fn config_validation_refuses_unusable_settings() {
    assert!(LogConfig::default().validate().is_ok());
    let bad = [
        LogConfig {
            segment_bytes: 1 << 40,
            ..LogConfig::default()
        },
        LogConfig {
            index_interval_bytes: 0,
            ..LogConfig::default()
        },
        LogConfig {
            segment_index_bytes: 4,
            ..LogConfig::default()
        },
        LogConfig {
            segment_ms: 0,
            ..LogConfig::default()
        },
        LogConfig {
            flush_interval_messages: 0,
            ..LogConfig::default()
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    for config in bad {
        assert!(matches!(
            Log::open(dir.path(), config, 0),
            Err(LogError::InvalidConfig(_))
        ));
    }
}

#[test]
fn truncation_restores_segment_max_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let mut log = open(dir.path(), config);
    for ts in [10, 50, 30, 70, 20] {
        append(&mut log, batch(1, 100, ts), 0);
    }
    assert_eq!(log.max_timestamp(), Some(at(3, 70)));
    log.truncate_to(Offset(3), 0).unwrap();
    assert_eq!(log.max_timestamp(), Some(at(1, 50)));
    assert_eq!(log.offset_for_timestamp(40).unwrap(), Some(at(1, 50)));
    assert_eq!(log.offset_for_timestamp(60).unwrap(), None);
    log.truncate_to(Offset(0), 0).unwrap();
    assert_eq!(log.max_timestamp(), None);
}

#[test]
fn follower_offset_jumps_beyond_a_relative_index_start_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let far = 1i64 << 40;
    let bytes = BatchBuilder::new(far).records(1, 5).build();
    log.append_as_follower(&bytes, 0).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (Offset(far), Offset(far + 1))
    );
    let bytes = BatchBuilder::new(far + 10).records(1, 5).build();
    log.append_as_follower(&bytes, 0).unwrap();
    let farther = BatchBuilder::new(far * 2).records(1, 5).build();
    log.append_as_follower(&farther, 0).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![Offset(far), Offset(far * 2)]);
    assert_eq!(
        read_all(&log, far),
        vec![(far, far), (far + 10, far + 10), (far * 2, far * 2)]
    );
    log.close(0).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(
        read_all(&log, far + 1),
        vec![(far + 10, far + 10), (far * 2, far * 2)]
    );
    let mut wide = BatchBuilder::new(far * 3).records(1, 5).build();
    wide.extend(BatchBuilder::new(far * 4).records(1, 5).build());
    let mut log = log;
    assert!(matches!(
        log.append_as_follower(&wide, 0),
        Err(LogError::InvalidRecords(_))
    ));
}

#[test]
fn repeated_restarts_keep_one_snapshot_per_segment_plus_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    };
    for _ in 0..5 {
        let mut log = open(dir.path(), config.clone());
        let seq = log.log_end_offset().0 as i32;
        append(&mut log, idempotent(1, 0, seq, 1), 0);
        log.close(0).unwrap();
    }
    assert_eq!(producer_state::list_snapshots(dir.path()).unwrap(), vec![5]);
    let mut log = open(dir.path(), config);
    let retry = idempotent(1, 0, 4, 1);
    assert!(matches!(
        log.append(&retry, LeaderEpoch(0), 0).unwrap(),
        AppendOutcome::Duplicate(_)
    ));
}

/// After a process crash with the page cache intact, recovery walks headers: a write cut
/// short at the end, or a last batch whose bytes do not match its CRC, is cut; every
/// earlier batch is kept with its offsets and indexes, and nothing is fsynced at open.
#[test]
fn page_cache_intact_recovery_walks_headers_and_checks_the_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_bytes: 1 << 20, index_interval_bytes: 128, retention_ms: -1, ..LogConfig::default() };
    let mut log = open(dir.path(), config.clone());
    for i in 0..40 {
        append(&mut log, batch(3, 200, i), 0);
    }
    let end = log.log_end_offset().0;
    let reopen = |dir: &Path| Log::open_with(dir, config.clone(), 0, RecoveryMode::PageCacheIntact).unwrap();
    drop(log); // crash: no marker
    let path = segment_file(dir.path(), 0, LOG_SUFFIX);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 7).unwrap();
    let mut log = reopen(dir.path());
    assert_eq!(log.log_end_offset(), Offset(end - 3));
    assert_eq!(read_all(&log, 0).len(), 39);
    assert_eq!(log.recovery_point(), Offset(0), "the recovered tail is not known to be on disk");
    assert_eq!(read_all(&log, 60), read_all(&open_read_only_copy(dir.path()), 60));
    append(&mut log, batch(3, 200, 99), 0);
    drop(log);
    // Flip a byte inside the last batch's records: its CRC no longer matches.
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let log = reopen(dir.path());
    assert_eq!(log.log_end_offset(), Offset(end - 3));
    assert_eq!(read_all(&log, 0).len(), 39);
}

/// A full-check open of a copy of `dir`, to compare reads with.
fn open_read_only_copy(dir: &Path) -> Log {
    let copy = tempfile::tempdir().unwrap().keep();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    Log::open(&copy, small_config(), 0).unwrap()
}

/// A stored batch whose offsets a segment cannot index (valid CRC, absurd base offset) ends
/// the recovered data like a torn batch, in both recovery modes; the log then appends and
/// rolls normally (keeping it used to fail an index assertion at the next roll).
#[test]
fn recovery_cuts_a_batch_with_offsets_beyond_the_segment() {
    for mode in [RecoveryMode::Full, RecoveryMode::PageCacheIntact] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), small_config());
        append(&mut log, batch(2, 10, 5), 0);
        let end = log.log_end_offset();
        drop(log); // crash
        let path = segment_file(dir.path(), 0, LOG_SUFFIX);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend(BatchBuilder::new(1 << 40).timestamps(9).records(1, 10).build());
        std::fs::write(&path, &bytes).unwrap();
        let mut log = Log::open_with(dir.path(), small_config(), 0, mode).unwrap();
        assert_eq!(log.log_end_offset(), end, "{mode:?}");
        for i in 0..40 {
            append(&mut log, batch(2, 40, 10 + i), 0);
        }
        assert!(log.segment_base_offsets().len() > 1, "{mode:?}: the log rolled");
        assert_eq!(read_all(&log, 0).len(), 41);
    }
}

/// Kafka 4.x accepts an empty `cleanup.policy`: neither retention by time or size nor the
/// cleaner touches the log, so its data stays (infinite retention without compaction).
#[test]
fn empty_cleanup_policy_keeps_everything() {
    assert_eq!(CleanupPolicy::parse(""), Some(CleanupPolicy::Neither));
    assert_eq!(CleanupPolicy::parse(" , "), Some(CleanupPolicy::Neither));
    assert_eq!(CleanupPolicy::parse("compact,"), Some(CleanupPolicy::Compact));
    assert_eq!(CleanupPolicy::parse("remove"), None);
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: 1_000,
        retention_bytes: 100,
        cleanup_policy: CleanupPolicy::Neither,
        ..small_config()
    };
    let mut log = open(dir.path(), config);
    let record = |key: &str| crate::record::Record { timestamp_delta_ms: 0, key: Some(key.as_bytes().to_vec()), value: Some(vec![1; 100]) };
    for _ in 0..30 {
        append(&mut log, BatchBuilder::new(0).timestamps(0).record(record("same-key")).build(), 0);
    }
    assert!(log.segment_count() >= 2);
    let (segments, size) = (log.segment_count(), log.size_bytes());
    assert_eq!(log.enforce_retention(1_000_000).unwrap(), 0);
    assert_eq!(log.clean(1_000_000, Offset(i64::MAX)).unwrap(), None, "an empty policy never compacts");
    assert_eq!((log.log_start_offset(), log.segment_count(), log.size_bytes()), (Offset(0), segments, size));
    assert_eq!(log.delete_records_before(Offset(4)).unwrap(), Offset(4));
}
