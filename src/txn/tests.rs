//! The coordinator over a real broker: decisions survive a restart and are completed after
//! it, timeouts abort and fence, transactional offsets wait for their marker, and requests
//! get Kafka's errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kafka_protocol::ResponseError;

use super::markers::{LocalMarkerWriter, MarkerError, MarkerResults, MarkerWriter, TxnMarker};
use super::state::TxnState;
use super::*;
use crate::clock::{Clock, ManualClock};
use crate::group::{GroupCoordinator, OffsetCommit};
use crate::record::BatchBuilder;

const TIMEOUT_MS: i32 = 60_000;

fn broker(dir: &std::path::Path, clock: Arc<dyn Clock>) -> Arc<Broker> {
    let config = crate::config::BrokerConfig::load(
        None,
        &[
            format!("log.dirs={}", dir.display()),
            "offsets.topic.num.partitions=2".into(),
            "transaction.state.log.num.partitions=3".into(),
            "transaction.abort.timed.out.transaction.cleanup.interval.ms=1000".into(),
        ],
    )
    .unwrap();
    Broker::open(config, clock).unwrap()
}

/// A marker writer that refuses while `down` is set, then writes like the local one.
struct Flaky {
    local: LocalMarkerWriter,
    down: AtomicBool,
}

impl MarkerWriter for Flaky {
    fn write_markers(&self, marker: &TxnMarker) -> MarkerResults {
        if self.down.load(Ordering::SeqCst) {
            return marker.partitions.iter().map(|tp| (tp.clone(), Err(MarkerError::Group(ResponseError::NotLeaderOrFollower)))).collect();
        }
        self.local.write_markers(marker)
    }
}

struct Node {
    broker: Arc<Broker>,
    groups: Arc<GroupCoordinator>,
    txns: Arc<TransactionCoordinator>,
    flaky: Arc<Flaky>,
}

fn node(dir: &std::path::Path, clock: Arc<dyn Clock>) -> Node {
    let broker = broker(dir, clock);
    if broker.image().topic("t").is_none() {
        broker.auto_create_topic("t").unwrap();
    }
    let groups = GroupCoordinator::new(broker.clone());
    groups.start().unwrap();
    let flaky = Arc::new(Flaky { local: LocalMarkerWriter::new(broker.clone(), groups.clone()), down: AtomicBool::new(false) });
    let txns = TransactionCoordinator::new(broker.clone(), flaky.clone());
    txns.start();
    Node { broker, groups, txns, flaky }
}

fn t0() -> TopicPartition {
    TopicPartition::new("t", 0)
}

/// A transactional batch of `count` records from `pid`/`epoch` at sequence `seq` into t-0.
fn produce(n: &Node, pid: i64, epoch: i16, seq: i32, count: usize) {
    let batch = BatchBuilder::new(0).producer(pid, epoch, seq).attributes(0x10).timestamps(1).records(count, 8).build();
    n.broker.partition(&t0()).unwrap().append(&batch, n.broker.clock.now_ms()).unwrap();
}

fn positions(n: &Node) -> (i64, i64) {
    let p = n.broker.partition(&t0()).unwrap();
    (p.last_stable_offset().0, p.high_watermark().0)
}

#[test]
fn a_commit_writes_markers_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), Arc::new(crate::clock::SystemClock));
    let (pid, epoch) = n.txns.init_producer_id("tx", TIMEOUT_MS, None).unwrap();
    assert_eq!(epoch, 0);
    n.txns.add_partitions("tx", pid, epoch, &BTreeSet::from([t0()])).unwrap();
    produce(&n, pid, epoch, 0, 3);
    assert_eq!(positions(&n), (0, 3), "the open transaction holds the LSO");
    assert_eq!(n.txns.describe("tx").unwrap().state, TxnState::Ongoing);
    n.txns.end_txn("tx", pid, epoch, true).unwrap();
    assert_eq!(positions(&n), (4, 4), "the COMMIT marker is the fourth offset");
    let d = n.txns.describe("tx").unwrap();
    assert_eq!((d.state, d.partitions.len()), (TxnState::CompleteCommit, 0));
    // A retried EndTxn succeeds; the other decision is refused.
    assert_eq!(n.txns.end_txn("tx", pid, epoch, true), Ok(()));
    assert_eq!(n.txns.end_txn("tx", pid, epoch, false), Err(ResponseError::InvalidTxnState));
    // The next InitProducerId bumps the epoch and fences the old one.
    assert_eq!(n.txns.init_producer_id("tx", TIMEOUT_MS, None).unwrap(), (pid, 1));
    assert_eq!(n.txns.add_partitions("tx", pid, 0, &BTreeSet::from([t0()])), Err(ResponseError::ProducerFenced));
    n.broker.shutdown();
}

/// The decision is durable before the markers: markers that fail at first are written by
/// the restarted coordinator, which then completes the transaction.
#[test]
fn a_decided_transaction_is_completed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
    let pid = {
        let n = node(dir.path(), clock.clone());
        let (pid, epoch) = n.txns.init_producer_id("tx", TIMEOUT_MS, None).unwrap();
        n.txns.add_partitions("tx", pid, epoch, &BTreeSet::from([t0()])).unwrap();
        produce(&n, pid, epoch, 0, 5);
        n.flaky.down.store(true, Ordering::SeqCst);
        n.txns.end_txn("tx", pid, epoch, false).unwrap();
        assert_eq!(n.txns.describe("tx").unwrap().state, TxnState::PrepareAbort);
        assert_eq!(positions(&n), (0, 5), "no marker yet");
        assert_eq!(n.txns.end_txn("tx", pid, epoch, false), Err(ResponseError::ConcurrentTransactions));
        assert_eq!(n.txns.init_producer_id("tx", TIMEOUT_MS, None), Err(ResponseError::ConcurrentTransactions));
        // A crash: nothing is closed.
        pid
    };
    let n = node(dir.path(), clock);
    let d = n.txns.describe("tx").unwrap();
    assert_eq!((d.state, d.producer_id), (TxnState::CompleteAbort, pid));
    assert_eq!(positions(&n), (6, 6));
    let aborted = n.broker.partition(&t0()).unwrap().read_for_fetch(crate::types::Offset(0), 1 << 20, true, crate::partition::Isolation::ReadCommitted).unwrap();
    assert_eq!(aborted.aborted.unwrap().iter().map(|a| (a.producer_id, a.first_offset)).collect::<Vec<_>>(), vec![(pid, 0)]);
    n.broker.shutdown();
}

/// A transaction open past its timeout is aborted with a bumped epoch, which fences its
/// producer in the coordinator and in the partition.
#[test]
fn an_open_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let n = node(dir.path(), clock.clone());
    let (pid, epoch) = n.txns.init_producer_id("tx", 5_000, None).unwrap();
    n.txns.add_partitions("tx", pid, epoch, &BTreeSet::from([t0()])).unwrap();
    produce(&n, pid, epoch, 0, 2);
    clock.advance_ms(4_000);
    n.txns.tick();
    assert_eq!(n.txns.describe("tx").unwrap().state, TxnState::Ongoing);
    clock.advance_ms(2_000);
    n.txns.tick();
    let d = n.txns.describe("tx").unwrap();
    assert_eq!((d.state, d.producer_epoch), (TxnState::CompleteAbort, 1));
    assert_eq!(positions(&n), (3, 3));
    assert_eq!(n.txns.end_txn("tx", pid, epoch, true), Err(ResponseError::ProducerFenced));
    let late = BatchBuilder::new(0).producer(pid, epoch, 2).attributes(0x10).timestamps(1).records(1, 8).build();
    assert!(n.broker.partition(&t0()).unwrap().append(&late, 0).is_err(), "the zombie's batch is refused");
    n.broker.shutdown();
}

/// A second InitProducerId while a transaction is open aborts it (CONCURRENT_TRANSACTIONS);
/// the retry gets the next epoch.
#[test]
fn init_producer_id_aborts_the_open_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), Arc::new(crate::clock::SystemClock));
    let (pid, epoch) = n.txns.init_producer_id("tx", TIMEOUT_MS, None).unwrap();
    n.txns.add_partitions("tx", pid, epoch, &BTreeSet::from([t0()])).unwrap();
    produce(&n, pid, epoch, 0, 2);
    assert_eq!(n.txns.init_producer_id("tx", TIMEOUT_MS, None), Err(ResponseError::ConcurrentTransactions));
    assert_eq!(positions(&n), (3, 3), "aborted at once");
    assert_eq!(n.txns.init_producer_id("tx", TIMEOUT_MS, None), Ok((pid, 2)));
    n.broker.shutdown();
}

#[test]
fn requests_get_kafkas_errors() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), Arc::new(crate::clock::SystemClock));
    assert_eq!(n.txns.init_producer_id("", TIMEOUT_MS, None), Err(ResponseError::InvalidRequest));
    assert_eq!(n.txns.init_producer_id("tx", 900_001, None), Err(ResponseError::InvalidTransactionTimeout));
    assert_eq!(n.txns.init_producer_id("tx", 0, None), Err(ResponseError::InvalidTransactionTimeout));
    assert_eq!(n.txns.add_partitions("nope", 1, 0, &BTreeSet::from([t0()])), Err(ResponseError::InvalidProducerIdMapping));
    assert_eq!(n.txns.end_txn("nope", 1, 0, true), Err(ResponseError::InvalidProducerIdMapping));
    assert_eq!(n.txns.describe("nope").unwrap_err(), ResponseError::TransactionalIdNotFound);
    let (pid, epoch) = n.txns.init_producer_id("tx", TIMEOUT_MS, None).unwrap();
    assert_eq!(n.txns.end_txn("tx", pid, epoch, true), Err(ResponseError::InvalidTxnState), "nothing to commit");
    assert_eq!(n.txns.add_partitions("tx", pid + 1, epoch, &BTreeSet::from([t0()])), Err(ResponseError::InvalidProducerIdMapping));
    assert_eq!(n.txns.verify_partitions("tx", pid, epoch, &[t0()]), vec![Err(ResponseError::TransactionAbortable)]);
    n.txns.add_partitions("tx", pid, epoch, &BTreeSet::from([t0()])).unwrap();
    assert_eq!(n.txns.verify_partitions("tx", pid, epoch, &[t0()]), vec![Ok(())]);
    n.broker.shutdown();
}

/// TxnOffsetCommit's offsets stay pending (and OffsetFetch's require_stable sees them) until
/// the marker on `__consumer_offsets`; a commit makes them the group's offsets, across a
/// restart too, and an aborted transaction's offsets never appear.
#[test]
fn transactional_offsets_wait_for_their_marker() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
    {
        let n = node(dir.path(), clock.clone());
        let (pid, epoch) = n.txns.init_producer_id("tx", TIMEOUT_MS, None).unwrap();
        n.groups.ensure_offsets_topic().unwrap();
        let offsets_tp = |g: &str| TopicPartition::new(crate::group::OFFSETS_TOPIC, n.groups.partition_for(g));
        let commit = |offset| vec![OffsetCommit { topic: "t".into(), partition: 0, offset, leader_epoch: -1, metadata: None }];
        for (group, decide) in [("kept", true), ("dropped", false)] {
            n.txns.add_partitions("tx", pid, epoch, &BTreeSet::from([offsets_tp(group)])).unwrap();
            assert_eq!(n.groups.txn_commit_offsets(group, pid, epoch, "", None, -1, commit(7)).unwrap(), vec![Ok(())]);
            assert_eq!(n.groups.fetch_offsets(group, None), vec![], "pending offsets are not visible");
            assert!(n.groups.pending_offsets(group).contains(&("t".to_string(), 0)));
            n.txns.end_txn("tx", pid, epoch, decide).unwrap();
            assert!(n.groups.pending_offsets(group).is_empty());
        }
        assert_eq!(n.groups.fetch_offsets("kept", None)[0].2.as_ref().map(|c| c.offset), Some(7));
        assert_eq!(n.groups.fetch_offsets("dropped", None), vec![]);
        // A generation names a group that must exist.
        assert_eq!(n.groups.txn_commit_offsets("nobody", pid, epoch, "m", None, 3, commit(1)), Err(ResponseError::IllegalGeneration));
        n.broker.shutdown();
    }
    let n = node(dir.path(), clock);
    assert_eq!(n.groups.fetch_offsets("kept", None)[0].2.as_ref().map(|c| c.offset), Some(7));
    assert_eq!(n.groups.fetch_offsets("dropped", None), vec![]);
    assert!(n.groups.pending_offsets("kept").is_empty());
    n.broker.shutdown();
}

/// The records of `__transaction_state` are Kafka's: a key v0 and a flexible value v1 under
/// transaction.version 1.
#[test]
fn the_state_topic_holds_kafkas_records() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), Arc::new(crate::clock::SystemClock));
    let (pid, _) = n.txns.init_producer_id("tx", TIMEOUT_MS, None).unwrap();
    let tp = TopicPartition::new(TRANSACTION_STATE_TOPIC, n.txns.partition_for("tx"));
    let read = n.broker.partition(&tp).unwrap().read(crate::types::Offset(0), 1 << 20, true).unwrap();
    let mut buf = read.records.clone();
    let sets = RecordBatchDecoder::decode_all(&mut buf).unwrap();
    let record = &sets[0].records[0];
    assert_eq!(record.key.as_deref().and_then(records::parse_key).as_deref(), Some("tx"));
    let value = record.value.as_deref().unwrap();
    assert_eq!(&value[..2], &[0, 1], "value version 1");
    let v = records::parse_value(value).unwrap();
    assert_eq!((v.producer_id, v.producer_epoch, v.state, v.timeout_ms), (pid, 0, TxnState::Empty, TIMEOUT_MS));
    assert_eq!(n.broker.image().topic(TRANSACTION_STATE_TOPIC).unwrap().partition_count(), 3);
    n.broker.shutdown();
}
