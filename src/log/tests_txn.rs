//! Transactions in the log: open transactions hold the first unstable offset, markers close
//! them, aborts land in the marker's segment's transaction index, and all of it survives a
//! clean reopen, a crash, a roll and a truncation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::tests::small_config;
use super::*;
use crate::record::BatchBuilder;

fn txn_batch(pid: i64, epoch: i16, seq: i32, count: usize) -> Vec<u8> {
    BatchBuilder::new(0).producer(pid, epoch, seq).attributes(0x10).timestamps(1_000).records(count, 40).build()
}

fn plain(count: usize) -> Vec<u8> {
    BatchBuilder::new(0).timestamps(1_000).records(count, 40).build()
}

fn append(log: &mut Log, bytes: Vec<u8>) -> AppendInfo {
    *log.append(&bytes, LeaderEpoch(0), 0).unwrap().info()
}

fn marker(log: &mut Log, pid: i64, epoch: i16, commit: bool) -> i64 {
    log.append_marker(ProducerId(pid), epoch, Marker { commit, coordinator_epoch: 0 }, LeaderEpoch(0), 0).unwrap().first_offset.0
}

fn aborted(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
    AbortedTxn { producer_id: pid, first_offset: first, last_offset: last, last_stable_offset: lso }
}

/// Two interleaved transactions and plain data: the first unstable offset follows the oldest
/// open one; the abort is indexed with the LSO it left (the other one still open).
#[test]
fn open_transactions_hold_the_first_unstable_offset_and_aborts_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig { retention_ms: -1, ..LogConfig::default() }, 0).unwrap();
    append(&mut log, plain(2)); // 0..=1
    assert_eq!(log.first_unstable_offset(), None);
    append(&mut log, txn_batch(7, 0, 0, 3)); // 2..=4
    append(&mut log, txn_batch(8, 0, 0, 1)); // 5
    append(&mut log, txn_batch(7, 0, 3, 2)); // 6..=7
    assert_eq!(log.first_unstable_offset(), Some(Offset(2)));
    let abort_at = marker(&mut log, 7, 0, false); // 8
    assert_eq!(abort_at, 8);
    assert_eq!(log.first_unstable_offset(), Some(Offset(5)));
    let commit_at = marker(&mut log, 8, 0, true); // 9
    assert_eq!((commit_at, log.first_unstable_offset()), (9, None));
    assert_eq!(log.collect_aborted(Offset(0), Offset(10)), vec![aborted(7, 2, 8, 5)]);
    assert_eq!(log.collect_aborted(Offset(9), Offset(10)), vec![], "the abort ended before offset 9");
    assert_eq!(log.collect_aborted(Offset(0), Offset(2)), vec![], "the abort started at offset 2");
    // An empty transaction (a marker without data) completes nothing and indexes nothing.
    marker(&mut log, 9, 0, false);
    assert_eq!(log.collect_aborted(Offset(0), Offset(11)).len(), 1);
}

#[test]
fn markers_and_batches_are_checked_against_producer_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    append(&mut log, txn_batch(7, 2, 0, 1));
    let idempotent = BatchBuilder::new(0).producer(7, 2, 1).timestamps(1).records(1, 4).build();
    assert!(matches!(log.append(&idempotent, LeaderEpoch(0), 0), Err(LogError::InvalidTxnState { producer_id: ProducerId(7) })));
    let stale = log.append_marker(ProducerId(7), 1, Marker { commit: true, coordinator_epoch: 0 }, LeaderEpoch(0), 0);
    assert!(matches!(stale, Err(LogError::InvalidProducerEpoch { .. })), "{stale:?}");
    // A fencing marker with a higher epoch is fine, and fences the old epoch's batches.
    log.append_marker(ProducerId(7), 3, Marker { commit: false, coordinator_epoch: 5 }, LeaderEpoch(0), 0).unwrap();
    assert!(matches!(log.append(&txn_batch(7, 2, 1, 1), LeaderEpoch(0), 0), Err(LogError::InvalidProducerEpoch { .. })));
    let fenced = log.append_marker(ProducerId(7), 3, Marker { commit: false, coordinator_epoch: 4 }, LeaderEpoch(0), 0);
    assert!(matches!(fenced, Err(LogError::CoordinatorFenced { .. })), "{fenced:?}");
    // The new epoch starts again at sequence 0.
    append(&mut log, txn_batch(7, 3, 0, 1));
}

/// A transaction that starts in one segment and aborts in the next: the entry is in the
/// marker's segment and found from a fetch in the earlier one; a clean reopen and a crash
/// reopen give the same index and the same open transaction.
#[test]
fn aborts_across_segments_survive_reopen_and_crash() {
    for crash in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        append(&mut log, txn_batch(7, 0, 0, 5));
        let mut seq = 5;
        while log.segment_count() < 3 {
            append(&mut log, txn_batch(7, 0, seq, 5));
            seq += 5;
        }
        let abort_at = marker(&mut log, 7, 0, false);
        let open_at = append(&mut log, txn_batch(8, 0, 0, 2)).first_offset.0;
        let expected = vec![aborted(7, 0, abort_at, open_at)];
        assert_eq!(log.collect_aborted(Offset(0), log.log_end_offset()), expected);
        assert_eq!(log.collect_aborted(Offset(abort_at - 1), Offset(abort_at)), expected, "found from the marker's own segment");
        let bases = log.segment_base_offsets();
        if crash {
            drop(log);
        } else {
            log.close(0).unwrap();
        }
        let log = Log::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!(log.segment_base_offsets(), bases, "crash={crash}");
        assert_eq!(log.collect_aborted(Offset(0), log.log_end_offset()), expected, "crash={crash}");
        assert_eq!(log.first_unstable_offset(), Some(Offset(open_at)), "crash={crash}");
    }
}

/// Truncating below a marker reopens its transaction and forgets its index entry; the
/// snapshot taken at a roll carries the open transaction into the replay.
#[test]
fn truncation_reopens_the_transaction_and_drops_its_abort() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    append(&mut log, txn_batch(7, 0, 0, 3));
    log.roll(0).unwrap();
    append(&mut log, plain(2));
    let abort_at = marker(&mut log, 7, 0, false);
    assert_eq!(log.collect_aborted(Offset(0), Offset(abort_at + 1)).len(), 1);
    log.truncate_to(Offset(abort_at), 0).unwrap();
    assert_eq!(log.collect_aborted(Offset(0), Offset(abort_at + 1)), vec![]);
    assert_eq!(log.first_unstable_offset(), Some(Offset(0)));
}

/// A follower copying a leader's batches rebuilds the same state from the markers.
#[test]
fn follower_appends_replay_markers() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = Log::open(a.path(), small_config(), 0).unwrap();
    append(&mut leader, txn_batch(7, 0, 0, 3));
    marker(&mut leader, 7, 0, false);
    append(&mut leader, txn_batch(9, 0, 0, 1));
    let bytes = leader.read(Offset(0), usize::MAX, Offset(i64::MAX), true).unwrap().bytes;
    let mut follower = Log::open(b.path(), small_config(), 0).unwrap();
    follower.append_as_follower(&bytes, 0).unwrap();
    assert_eq!(follower.collect_aborted(Offset(0), Offset(10)), leader.collect_aborted(Offset(0), Offset(10)));
    assert_eq!(follower.first_unstable_offset(), Some(Offset(4)));
}
