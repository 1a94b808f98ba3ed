//! The coordinator over a real broker: decisions survive a restart and are completed after
//! it, timeouts abort and fence, transactional offsets wait for their marker, and requests
//! get Kafka's errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kafka_protocol::ResponseError;

use std::sync::Mutex as StdMutex;

use super::channel::Route;
use super::markers::{LocalMarkerWriter, TxnMarker};
use super::sender::{MarkerAnswer, MarkerTransport};
use super::state::TxnState;
use super::*;
use crate::clock::{Clock, ManualClock};
use crate::cluster::txn_markers::BrokerMarkerTransport;
use crate::group::{GroupCoordinator, OffsetCommit};
use crate::record::BatchBuilder;
use crate::types::NodeId;

const TIMEOUT_MS: i32 = 60_000;
/// A version 1 client's requests.
const TV1: TxnVersion = TxnVersion::V0;
/// How long a test waits for markers that should go out at once.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

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

/// The broker's own transport, with two faults to switch on: `down` answers every partition
/// NOT_LEADER_OR_FOLLOWER; partitions of the topic `remote` are led by `remote_leader`, a
/// broker that does not exist: requests to it are recorded, and broker 2 answers
/// NOT_LEADER_OR_FOLLOWER (moving the leadership to 3), broker 3 writes them, and
/// `unreachable` makes every remote request undeliverable.
struct Faulty {
    local: BrokerMarkerTransport,
    down: AtomicBool,
    unreachable: AtomicBool,
    remote_leader: StdMutex<NodeId>,
    sent: StdMutex<Vec<(NodeId, Vec<TxnMarker>)>>,
}

impl MarkerTransport for Faulty {
    fn route(&self, tp: &TopicPartition) -> Route {
        if tp.topic == "remote" {
            return Route::Leader(*self.remote_leader.lock().unwrap());
        }
        self.local.route(tp)
    }

    fn send(&self, destination: NodeId, markers: Vec<TxnMarker>) -> futures::future::BoxFuture<'_, Result<MarkerAnswer, String>> {
        let refuse = |markers: &[TxnMarker], e: ResponseError| -> MarkerAnswer {
            markers.iter().map(|m| m.partitions.iter().map(|tp| (tp.clone(), Some(e))).collect()).collect()
        };
        if self.down.load(Ordering::SeqCst) {
            let answer = refuse(&markers, ResponseError::NotLeaderOrFollower);
            return Box::pin(async move { Ok(answer) });
        }
        if destination == NodeId(2) || destination == NodeId(3) {
            self.sent.lock().unwrap().push((destination, markers.clone()));
            let answer = if self.unreachable.load(Ordering::SeqCst) {
                Err("connection refused".to_string())
            } else if destination == NodeId(2) {
                *self.remote_leader.lock().unwrap() = NodeId(3);
                Ok(refuse(&markers, ResponseError::NotLeaderOrFollower))
            } else {
                Ok(markers.iter().map(|m| m.partitions.iter().map(|tp| (tp.clone(), None)).collect()).collect())
            };
            return Box::pin(async move { answer });
        }
        self.local.send(destination, markers)
    }

    fn route_changes(&self) -> Option<tokio::sync::watch::Receiver<i64>> {
        self.local.route_changes()
    }
}

struct Node {
    broker: Arc<Broker>,
    groups: Arc<GroupCoordinator>,
    txns: Arc<TransactionCoordinator>,
    faulty: Arc<Faulty>,
    rt: tokio::runtime::Runtime,
}

impl Node {
    /// Waits until the markers of `id`'s decided transaction are written (or [`SETTLE`]).
    fn settle(&self, id: &str) {
        self.rt.block_on(self.txns.wait_markers(id, SETTLE));
    }
}

fn node(dir: &std::path::Path, clock: Arc<dyn Clock>) -> Node {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let _in_runtime = rt.enter();
    let broker = broker(dir, clock);
    if broker.image().topic("t").is_none() {
        broker.auto_create_topic("t").unwrap();
    }
    let groups = GroupCoordinator::new(broker.clone());
    groups.start().unwrap();
    let local = BrokerMarkerTransport::new(broker.clone(), Arc::new(LocalMarkerWriter::new(broker.clone(), groups.clone())));
    let faulty = Arc::new(Faulty {
        local,
        down: AtomicBool::new(false),
        unreachable: AtomicBool::new(false),
        remote_leader: StdMutex::new(NodeId(2)),
        sent: StdMutex::new(Vec::new()),
    });
    let txns = TransactionCoordinator::new(broker.clone(), faulty.clone());
    txns.start();
    drop(_in_runtime);
    Node { broker, groups, txns, faulty, rt }
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
    n.txns.add_partitions("tx", pid, epoch, &BTreeSet::from([t0()]), TV1).unwrap();
    produce(&n, pid, epoch, 0, 3);
    assert_eq!(positions(&n), (0, 3), "the open transaction holds the LSO");
    assert_eq!(n.txns.describe("tx").unwrap().state, TxnState::Ongoing);
    n.txns.end_txn("tx", pid, epoch, true, TV1).unwrap();
    n.settle("tx");
    assert_eq!(positions(&n), (4, 4), "the COMMIT marker is the fourth offset");
    let d = n.txns.describe("tx").unwrap();
    assert_eq!((d.state, d.partitions.len()), (TxnState::CompleteCommit, 0));
    // A retried EndTxn succeeds; the other decision is refused.
    assert_eq!(n.txns.end_txn("tx", pid, epoch, true, TV1), Ok((-1, -1)), "version 1 answers no id");
    assert_eq!(n.txns.end_txn("tx", pid, epoch, false, TV1), Err(ResponseError::InvalidTxnState));
    // The next InitProducerId bumps the epoch and fences the old one.
    assert_eq!(n.txns.init_producer_id("tx", TIMEOUT_MS, None).unwrap(), (pid, 1));
    assert_eq!(n.txns.add_partitions("tx", pid, 0, &BTreeSet::from([t0()]), TV1), Err(ResponseError::ProducerFenced));
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
        n.txns.add_partitions("tx", pid, epoch, &BTreeSet::from([t0()]), TV1).unwrap();
        produce(&n, pid, epoch, 0, 5);
        n.faulty.down.store(true, Ordering::SeqCst);
        n.txns.end_txn("tx", pid, epoch, false, TV1).unwrap();
        assert_eq!(n.txns.describe("tx").unwrap().state, TxnState::PrepareAbort);
        assert_eq!(positions(&n), (0, 5), "no marker yet");
        assert_eq!(n.txns.end_txn("tx", pid, epoch, false, TV1), Err(ResponseError::ConcurrentTransactions));
        assert_eq!(n.txns.init_producer_id("tx", TIMEOUT_MS, None), Err(ResponseError::ConcurrentTransactions));
        // A crash: nothing is closed.
        pid
    };
    let n = node(dir.path(), clock);
    n.settle("tx");
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
    n.txns.add_partitions("tx", pid, epoch, &BTreeSet::from([t0()]), TV1).unwrap();
    produce(&n, pid, epoch, 0, 2);
    clock.advance_ms(4_000);
    n.txns.tick();
    assert_eq!(n.txns.describe("tx").unwrap().state, TxnState::Ongoing);
    clock.advance_ms(2_000);
    n.txns.tick();
    n.settle("tx");
    let d = n.txns.describe("tx").unwrap();
    assert_eq!((d.state, d.producer_epoch), (TxnState::CompleteAbort, 1));
    assert_eq!(positions(&n), (3, 3));
    assert_eq!(n.txns.end_txn("tx", pid, epoch, true, TV1), Err(ResponseError::ProducerFenced));
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
    n.txns.add_partitions("tx", pid, epoch, &BTreeSet::from([t0()]), TV1).unwrap();
    produce(&n, pid, epoch, 0, 2);
    assert_eq!(n.txns.init_producer_id("tx", TIMEOUT_MS, None), Err(ResponseError::ConcurrentTransactions));
    n.settle("tx");
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
    assert_eq!(n.txns.add_partitions("nope", 1, 0, &BTreeSet::from([t0()]), TV1), Err(ResponseError::InvalidProducerIdMapping));
    assert_eq!(n.txns.end_txn("nope", 1, 0, true, TV1), Err(ResponseError::InvalidProducerIdMapping));
    assert_eq!(n.txns.describe("nope").unwrap_err(), ResponseError::TransactionalIdNotFound);
    let (pid, epoch) = n.txns.init_producer_id("tx", TIMEOUT_MS, None).unwrap();
    assert_eq!(n.txns.end_txn("tx", pid, epoch, true, TV1), Err(ResponseError::InvalidTxnState), "nothing to commit");
    assert_eq!(n.txns.add_partitions("tx", pid + 1, epoch, &BTreeSet::from([t0()]), TV1), Err(ResponseError::InvalidProducerIdMapping));
    assert_eq!(n.txns.verify_partitions("tx", pid, epoch, &[t0()]), vec![Err(ResponseError::TransactionAbortable)]);
    n.txns.add_partitions("tx", pid, epoch, &BTreeSet::from([t0()]), TV1).unwrap();
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
            n.txns.add_partitions("tx", pid, epoch, &BTreeSet::from([offsets_tp(group)]), TV1).unwrap();
            assert_eq!(n.groups.txn_commit_offsets(group, pid, epoch, "", None, -1, commit(7)).unwrap(), vec![Ok(())]);
            assert_eq!(n.groups.fetch_offsets(group, None), vec![], "pending offsets are not visible");
            assert!(n.groups.pending_offsets(group).contains(&("t".to_string(), 0)));
            n.txns.end_txn("tx", pid, epoch, decide, TV1).unwrap();
            n.settle("tx");
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
/// transaction.version 1 and above (a new cluster finalizes 2).
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

/// Partitions led by other brokers get their markers over the transport, one request per
/// destination batching them; a NOT_LEADER_OR_FOLLOWER answer sends them again to the leader
/// the image names next; the transaction completes only once every leader acknowledged.
#[test]
fn markers_for_other_leaders_are_retried_at_the_new_leader_before_completion() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), Arc::new(crate::clock::SystemClock));
    let (pid, epoch) = n.txns.init_producer_id("tx", TIMEOUT_MS, None).unwrap();
    let remote = [TopicPartition::new("remote", 0), TopicPartition::new("remote", 1)];
    let mut all = BTreeSet::from([t0()]);
    all.extend(remote.iter().cloned());
    n.txns.add_partitions("tx", pid, epoch, &all, TV1).unwrap();
    produce(&n, pid, epoch, 0, 3);
    n.txns.end_txn("tx", pid, epoch, true, TV1).unwrap();
    n.settle("tx");
    let d = n.txns.describe("tx").unwrap();
    assert_eq!((d.state, d.partitions.len()), (TxnState::CompleteCommit, 0));
    assert_eq!(positions(&n), (4, 4), "the local partition got its marker");
    let sent = n.faulty.sent.lock().unwrap().clone();
    let destinations: Vec<NodeId> = sent.iter().map(|(d, _)| *d).collect();
    assert_eq!(destinations, vec![NodeId(2), NodeId(3)], "refused by 2, then sent to the new leader 3");
    for (_, markers) in &sent {
        assert_eq!(markers.len(), 1, "one marker per transaction");
        let m = &markers[0];
        assert_eq!((m.producer_id, m.producer_epoch, m.commit), (pid, epoch, true));
        assert_eq!(m.partitions, remote.to_vec(), "both remote partitions in one request");
    }
    n.broker.shutdown();
}

/// While a leader cannot be reached the transaction stays decided but not complete
/// (CONCURRENT_TRANSACTIONS for the producer's next transaction); once it answers, the
/// transaction completes.
#[test]
fn an_unreachable_leader_holds_the_completion_until_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), Arc::new(crate::clock::SystemClock));
    *n.faulty.remote_leader.lock().unwrap() = NodeId(3);
    n.faulty.unreachable.store(true, Ordering::SeqCst);
    let (pid, epoch) = n.txns.init_producer_id("tx", TIMEOUT_MS, None).unwrap();
    n.txns.add_partitions("tx", pid, epoch, &BTreeSet::from([t0(), TopicPartition::new("remote", 0)]), TV1).unwrap();
    produce(&n, pid, epoch, 0, 1);
    n.txns.end_txn("tx", pid, epoch, false, TV1).unwrap();
    n.rt.block_on(n.txns.wait_markers("tx", std::time::Duration::from_millis(500)));
    let d = n.txns.describe("tx").unwrap();
    assert_eq!(d.state, TxnState::PrepareAbort);
    assert_eq!(d.partitions, vec![("remote".to_string(), vec![0])], "the local marker is acknowledged, the remote one is not");
    assert!(n.faulty.sent.lock().unwrap().len() >= 2, "retried meanwhile");
    assert_eq!(n.txns.add_partitions("tx", pid, epoch, &BTreeSet::from([t0()]), TV1), Err(ResponseError::ConcurrentTransactions));
    n.faulty.unreachable.store(false, Ordering::SeqCst);
    n.settle("tx");
    assert_eq!(n.txns.describe("tx").unwrap().state, TxnState::CompleteAbort);
    n.broker.shutdown();
}

/// The value records of `tx` in `__transaction_state`, in order.
fn state_records(n: &Node, id: &str) -> Vec<records::TxnValue> {
    let tp = TopicPartition::new(TRANSACTION_STATE_TOPIC, n.txns.partition_for(id));
    let read = n.broker.partition(&tp).unwrap().read(crate::types::Offset(0), 1 << 20, true).unwrap();
    let mut buf = read.records.clone();
    let sets = RecordBatchDecoder::decode_all(&mut buf).unwrap();
    sets.iter()
        .flat_map(|s| s.records.iter())
        .filter(|r| r.key.as_deref().and_then(records::parse_key).as_deref() == Some(id))
        .filter_map(|r| r.value.as_deref().and_then(records::parse_value))
        .collect()
}

/// Transactions version 2 in the log: the records of a version 2 transaction carry
/// ClientTransactionVersion 2, a decision that used up the epoch carries its next producer
/// id, and a coordinator loading them after a crash (markers not yet written) completes the
/// transaction onto the new producer id at epoch 0, markers at the old id's last epoch.
#[test]
fn a_version_2_decision_that_rotates_the_producer_id_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
    let tv2 = TxnVersion::V2;
    let (pid, next_pid) = {
        let n = node(dir.path(), clock.clone());
        let (pid, _) = n.txns.init_producer_id("tx", TIMEOUT_MS, None).unwrap();
        n.txns.set_epoch_for_test("tx", i16::MAX - 1);
        n.txns.add_partitions("tx", pid, i16::MAX - 1, &BTreeSet::from([t0()]), tv2).unwrap();
        produce(&n, pid, i16::MAX - 1, 0, 2);
        n.faulty.down.store(true, Ordering::SeqCst);
        let (next_pid, epoch) = n.txns.end_txn("tx", pid, i16::MAX - 1, true, tv2).unwrap();
        assert_ne!(next_pid, pid);
        assert_eq!(epoch, 0);
        let values = state_records(&n, "tx");
        let ongoing = &values[values.len() - 2];
        assert_eq!((ongoing.state, ongoing.client_transaction_version), (TxnState::Ongoing, 2));
        let decided = values.last().unwrap();
        assert_eq!(
            (decided.state, decided.producer_id, decided.producer_epoch, decided.next_producer_id, decided.client_transaction_version),
            (TxnState::PrepareCommit, pid, i16::MAX, next_pid, 2)
        );
        assert_eq!(positions(&n), (0, 2), "no marker yet");
        (pid, next_pid)
    };
    let n = node(dir.path(), clock);
    n.settle("tx");
    let d = n.txns.describe("tx").unwrap();
    assert_eq!((d.state, d.producer_id, d.producer_epoch), (TxnState::CompleteCommit, next_pid, 0));
    assert_eq!(positions(&n), (3, 3), "the COMMIT marker after the two records");
    let entry = n.broker.partition(&t0()).unwrap().producers().into_iter().find(|(id, _)| id.0 == pid).unwrap().1;
    assert_eq!(entry.epoch, i16::MAX, "the marker carries the old id's last epoch");
    let complete = state_records(&n, "tx").pop().unwrap();
    assert_eq!((complete.producer_id, complete.previous_producer_id, complete.next_producer_id), (next_pid, pid, -1));
    // The client's retry with its old id and epoch, across the restart and the rotation.
    assert_eq!(n.txns.end_txn("tx", pid, i16::MAX - 1, true, tv2), Ok((next_pid, 0)));
    n.txns.add_partitions("tx", next_pid, 0, &BTreeSet::from([t0()]), tv2).unwrap();
    produce(&n, next_pid, 0, 0, 1);
    assert_eq!(n.txns.end_txn("tx", next_pid, 0, false, tv2), Ok((next_pid, 1)));
    n.settle("tx");
    assert_eq!(positions(&n), (5, 5));
    n.broker.shutdown();
}

/// The coordinator's own aborts follow the finalized `transaction.version`: at level 2 a
/// timed-out transaction is aborted as version 2 (recorded so), at level 1 as version 1; the
/// epoch is bumped once either way, which fences the producer.
#[test]
fn timeouts_abort_in_the_finalized_version() {
    for (level, recorded) in [(2i16, 2i16), (1, 0)] {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let n = node(dir.path(), clock.clone());
        let kind = if level == 2 { crate::metadata::features::UpgradeType::Upgrade } else { crate::metadata::features::UpgradeType::SafeDowngrade };
        n.broker.update_features(&[(TRANSACTION_VERSION.to_string(), level, kind)], false).unwrap().unwrap();
        assert_eq!(n.txns.server_version(), TxnVersion(level));
        let (pid, epoch) = n.txns.init_producer_id("tx", 5_000, None).unwrap();
        n.txns.add_partitions("tx", pid, epoch, &BTreeSet::from([t0()]), TxnVersion::V2).unwrap();
        produce(&n, pid, epoch, 0, 2);
        clock.advance_ms(6_000);
        n.txns.tick();
        n.settle("tx");
        let d = n.txns.describe("tx").unwrap();
        assert_eq!((d.state, d.producer_epoch), (TxnState::CompleteAbort, 1), "level {level}");
        let aborted = state_records(&n, "tx").into_iter().find(|v| v.state == TxnState::PrepareAbort).unwrap();
        assert_eq!(aborted.client_transaction_version, recorded, "level {level}");
        assert_eq!(n.txns.end_txn("tx", pid, epoch, true, TV1), Err(ResponseError::ProducerFenced));
        // Version 2 takes an EndTxn one epoch back for a retry: of the other decision here,
        // so INVALID_TXN_STATE, as Kafka answers it.
        assert_eq!(n.txns.end_txn("tx", pid, epoch, true, TxnVersion::V2), Err(ResponseError::InvalidTxnState));
        n.broker.shutdown();
    }
}
