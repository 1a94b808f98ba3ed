//! The transaction APIs end to end through `dispatch`: a produce into a partition not in the
//! transaction is refused (KIP-890 part 1 verification), TxnOffsetCommit likewise, old
//! clients get INVALID_PRODUCER_EPOCH for PRODUCER_FENCED, a read_committed Fetch stops at
//! the LSO and lists the aborted transactions, ListOffsets answers the LSO; transactions
//! version 2 (Produce v12+ and TxnOffsetCommit v5 add their partitions, EndTxn v5 bumps the
//! epoch and answers it, a used-up epoch moves to a new producer id, retries are answered).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::*;
use crate::record::BatchBuilder;

fn name(s: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(s))
}

/// Requests of the transaction APIs for `api::tests::every_served_version_of_every_handler_encodes`
/// and friends (the transactional InitProducerId ones too); `None` for another API.
pub(super) fn requests(api: ApiKey, version: i16) -> Option<Vec<RequestKind>> {
    Some(match api {
        ApiKey::InitProducerId => {
            let mut txn = InitProducerIdRequest::default();
            txn.transactional_id = Some(TransactionalId(StrBytes::from_static_str("tx")));
            txn.transaction_timeout_ms = 60_000;
            let mut bad_timeout = txn.clone();
            bad_timeout.transaction_timeout_ms = i32::MAX;
            vec![RequestKind::InitProducerId(txn), RequestKind::InitProducerId(bad_timeout)]
        }
        ApiKey::AddPartitionsToTxn => {
            let mut t = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
            t.name = name("t");
            t.partitions = vec![0];
            let mut unknown = t.clone();
            unknown.name = name("nope");
            let mut r = AddPartitionsToTxnRequest::default();
            if version >= 4 {
                let mut x = add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default();
                x.transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
                x.producer_id = ProducerId(-1);
                x.topics = vec![t, unknown];
                let mut verify = x.clone();
                verify.verify_only = true;
                r.transactions = vec![x, verify];
            } else {
                r.v3_and_below_transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
                r.v3_and_below_producer_id = ProducerId(-1);
                r.v3_and_below_topics = vec![t, unknown];
            }
            vec![RequestKind::AddPartitionsToTxn(r)]
        }
        ApiKey::AddOffsetsToTxn => {
            let mut r = AddOffsetsToTxnRequest::default();
            r.transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
            r.group_id = GroupId(StrBytes::from_static_str("g"));
            vec![RequestKind::AddOffsetsToTxn(r)]
        }
        ApiKey::EndTxn => {
            let mut r = EndTxnRequest::default();
            r.transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
            r.committed = true;
            vec![RequestKind::EndTxn(r)]
        }
        ApiKey::TxnOffsetCommit => {
            let mut p = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default();
            p.committed_offset = 1;
            let mut t = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default();
            t.name = name("t");
            t.partitions = vec![p.clone(), { let mut q = p; q.partition_index = 9; q }];
            let mut r = TxnOffsetCommitRequest::default();
            r.transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
            r.group_id = GroupId(StrBytes::from_static_str("g"));
            r.generation_id = -1;
            r.topics = vec![t];
            vec![RequestKind::TxnOffsetCommit(r)]
        }
        ApiKey::DescribeTransactions => {
            let mut r = DescribeTransactionsRequest::default();
            r.transactional_ids = vec![TransactionalId(StrBytes::from_static_str("tx")), TransactionalId(StrBytes::from_static_str("nope"))];
            vec![RequestKind::DescribeTransactions(r)]
        }
        ApiKey::ListTransactions => {
            let mut r = ListTransactionsRequest::default();
            r.duration_filter = -1;
            let mut filtered = r.clone();
            filtered.state_filters = vec![StrBytes::from_static_str("Ongoing"), StrBytes::from_static_str("Bogus")];
            filtered.producer_id_filters = vec![ProducerId(0)];
            if version >= 2 {
                filtered.transactional_id_pattern = Some(StrBytes::from_static_str("t.*"));
            }
            vec![RequestKind::ListTransactions(r), RequestKind::ListTransactions(filtered)]
        }
        ApiKey::DescribeProducers => {
            let mut t = describe_producers_request::TopicRequest::default();
            t.name = name("t");
            t.partition_indexes = vec![0, 9];
            let mut r = DescribeProducersRequest::default();
            r.topics = vec![t];
            vec![RequestKind::DescribeProducers(r)]
        }
        ApiKey::WriteTxnMarkers => {
            let mut t = write_txn_markers_request::WritableTxnMarkerTopic::default();
            t.name = name("t");
            t.partition_indexes = vec![0, 7];
            let mut m = write_txn_markers_request::WritableTxnMarker::default();
            m.producer_id = ProducerId(5);
            m.topics = vec![t];
            let mut r = WriteTxnMarkersRequest::default();
            r.markers = vec![m];
            vec![RequestKind::WriteTxnMarkers(r)]
        }
        _ => return None,
    })
}

struct H {
    _dir: tempfile::TempDir,
    api: Api,
    rt: tokio::runtime::Runtime,
}

fn h() -> H {
    h_with(&[])
}

fn h_with(overrides: &[&str]) -> H {
    let dir = tempfile::tempdir().unwrap();
    let api = test_api(dir.path(), overrides);
    api.broker.auto_create_topic("t").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    H { _dir: dir, api, rt }
}

impl H {
    fn call(&self, version: i16, req: RequestKind) -> ResponseKind {
        let api_key = match &req {
            RequestKind::InitProducerId(_) => ApiKey::InitProducerId,
            RequestKind::AddPartitionsToTxn(_) => ApiKey::AddPartitionsToTxn,
            RequestKind::AddOffsetsToTxn(_) => ApiKey::AddOffsetsToTxn,
            RequestKind::EndTxn(_) => ApiKey::EndTxn,
            RequestKind::Produce(_) => ApiKey::Produce,
            RequestKind::Fetch(_) => ApiKey::Fetch,
            RequestKind::ListOffsets(_) => ApiKey::ListOffsets,
            RequestKind::TxnOffsetCommit(_) => ApiKey::TxnOffsetCommit,
            other => panic!("{other:?}"),
        };
        let ctx = RequestContext { api_key, version, correlation_id: 1, client_id: None, client_host: "/127.0.0.1".into(), peer: None };
        match self.rt.block_on(self.api.dispatch(&ctx, req)) {
            Reply::Response(r) | Reply::WithRecords(r, _) => r,
            _ => panic!("no response"),
        }
    }

    fn init(&self, version: i16) -> (i64, i16, i16) {
        let mut r = InitProducerIdRequest::default();
        r.transactional_id = Some(TransactionalId(StrBytes::from_static_str("tx")));
        r.transaction_timeout_ms = 60_000;
        r.producer_id = ProducerId(-1);
        r.producer_epoch = -1;
        let ResponseKind::InitProducerId(r) = self.call(version, RequestKind::InitProducerId(r)) else { panic!() };
        (r.producer_id.0, r.producer_epoch, r.error_code)
    }

    /// InitProducerId retried while the coordinator completes the previous transaction
    /// (CONCURRENT_TRANSACTIONS), as a client does; the runtime runs the marker sender
    /// between attempts.
    fn init_retrying(&self, version: i16) -> (i64, i16, i16) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let r = self.init(version);
            if r.2 != ResponseError::ConcurrentTransactions.code() || std::time::Instant::now() > deadline {
                return r;
            }
            self.rt.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(5)).await });
        }
    }

    fn add_t0(&self, pid: i64, epoch: i16) -> i16 {
        let mut t = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
        t.name = TopicName(StrBytes::from_static_str("t"));
        t.partitions = vec![0];
        let mut r = AddPartitionsToTxnRequest::default();
        r.v3_and_below_transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
        r.v3_and_below_producer_id = ProducerId(pid);
        r.v3_and_below_producer_epoch = epoch;
        r.v3_and_below_topics = vec![t];
        let ResponseKind::AddPartitionsToTxn(r) = self.call(3, RequestKind::AddPartitionsToTxn(r)) else { panic!() };
        r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
    }

    fn produce(&self, version: i16, pid: i64, epoch: i16, seq: i32) -> (i16, i64) {
        let batch = BatchBuilder::new(0).producer(pid, epoch, seq).attributes(0x10).timestamps(1).records(2, 8).build();
        let mut p = produce_request::PartitionProduceData::default();
        p.records = Some(Bytes::from(batch));
        let mut t = produce_request::TopicProduceData::default();
        t.name = TopicName(StrBytes::from_static_str("t"));
        t.partition_data = vec![p];
        let mut r = ProduceRequest::default();
        r.acks = -1;
        r.transactional_id = Some(TransactionalId(StrBytes::from_static_str("tx")));
        r.topic_data = vec![t];
        let ResponseKind::Produce(r) = self.call(version, RequestKind::Produce(r)) else { panic!() };
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    fn end(&self, version: i16, pid: i64, epoch: i16, commit: bool) -> i16 {
        self.end_full(version, pid, epoch, commit).0
    }

    /// EndTxn's error code and the producer id and epoch it answers (v5).
    fn end_full(&self, version: i16, pid: i64, epoch: i16, commit: bool) -> (i16, i64, i16) {
        let mut r = EndTxnRequest::default();
        r.transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
        r.producer_id = ProducerId(pid);
        r.producer_epoch = epoch;
        r.committed = commit;
        let ResponseKind::EndTxn(r) = self.call(version, RequestKind::EndTxn(r)) else { panic!() };
        (r.error_code, r.producer_id.0, r.producer_epoch)
    }

    /// TxnOffsetCommit of offset `offset` of t-0 for group `g`.
    fn commit_offset(&self, version: i16, pid: i64, epoch: i16, offset: i64) -> i16 {
        let mut p = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default();
        p.committed_offset = offset;
        let mut t = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default();
        t.name = TopicName(StrBytes::from_static_str("t"));
        t.partitions = vec![p];
        let mut r = TxnOffsetCommitRequest::default();
        r.transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
        r.group_id = GroupId(StrBytes::from_static_str("g"));
        r.producer_id = ProducerId(pid);
        r.producer_epoch = epoch;
        r.generation_id = -1;
        r.topics = vec![t];
        let ResponseKind::TxnOffsetCommit(r) = self.call(version, RequestKind::TxnOffsetCommit(r)) else { panic!() };
        r.topics[0].partitions[0].error_code
    }

    /// The epoch of `pid` in t-0's producer state (what DescribeProducers shows): the epoch
    /// of its last batch or marker.
    fn partition_epoch(&self, pid: i64) -> i16 {
        let p = self.api.broker.partition(&crate::types::TopicPartition::new("t", 0)).unwrap();
        p.producers().into_iter().find(|(id, _)| id.0 == pid).map(|(_, e)| e.epoch).unwrap()
    }

    /// The coordinator's view of "tx".
    fn described(&self) -> crate::txn::TxnDescription {
        self.api.txns.describe("tx").unwrap()
    }

    fn fetch_committed(&self, offset: i64) -> fetch_response::PartitionData {
        let mut p = fetch_request::FetchPartition::default();
        p.fetch_offset = offset;
        p.partition_max_bytes = 1 << 20;
        let mut t = fetch_request::FetchTopic::default();
        t.topic = TopicName(StrBytes::from_static_str("t"));
        t.partitions = vec![p];
        let mut r = FetchRequest::default();
        r.max_bytes = 1 << 20;
        r.isolation_level = 1;
        r.session_epoch = -1;
        r.topics = vec![t];
        let ResponseKind::Fetch(r) = self.call(11, RequestKind::Fetch(r)) else { panic!() };
        r.responses[0].partitions[0].clone()
    }

    fn latest_committed(&self) -> i64 {
        let mut p = list_offsets_request::ListOffsetsPartition::default();
        p.timestamp = -1;
        let mut t = list_offsets_request::ListOffsetsTopic::default();
        t.name = TopicName(StrBytes::from_static_str("t"));
        t.partitions = vec![p];
        let mut r = ListOffsetsRequest::default();
        r.isolation_level = 1;
        r.topics = vec![t];
        let ResponseKind::ListOffsets(r) = self.call(5, RequestKind::ListOffsets(r)) else { panic!() };
        r.topics[0].partitions[0].offset
    }
}

#[test]
fn a_transactional_produce_outside_the_transaction_is_refused() {
    let h = h();
    let (pid, epoch, error) = h.init(4);
    assert_eq!((epoch, error), (0, 0));
    // Not added yet: old clients get INVALID_TXN_STATE, v11+ TRANSACTION_ABORTABLE.
    assert_eq!(h.produce(9, pid, epoch, 0).0, ResponseError::InvalidTxnState.code());
    assert_eq!(h.produce(11, pid, epoch, 0).0, ResponseError::TransactionAbortable.code());
    assert_eq!(h.add_t0(pid, epoch), 0);
    assert_eq!(h.produce(11, pid, epoch, 0), (0, 0));
    assert_eq!(h.produce(11, pid, epoch, 2), (0, 2), "the open transaction needs no second check");
    // A fenced producer: its EndTxn in v1 gets INVALID_PRODUCER_EPOCH, in v2+ PRODUCER_FENCED.
    assert_eq!(h.init(4).2, ResponseError::ConcurrentTransactions.code(), "the open transaction is aborted first");
    let (_, bumped, _) = h.init_retrying(4);
    assert_eq!(bumped, 2);
    assert_eq!(h.end(1, pid, epoch, true), ResponseError::InvalidProducerEpoch.code());
    assert_eq!(h.end(3, pid, epoch, true), ResponseError::ProducerFenced.code());
    // The zombie cannot start a new transaction in the partition either.
    assert_eq!(h.produce(11, pid, epoch, 4).0, ResponseError::InvalidProducerEpoch.code());
}

#[test]
fn read_committed_fetch_stops_at_the_lso_and_lists_aborts() {
    let h = h();
    let (pid, epoch, _) = h.init(4);
    assert_eq!(h.add_t0(pid, epoch), 0);
    assert_eq!(h.produce(11, pid, epoch, 0).0, 0);
    let open = h.fetch_committed(0);
    assert_eq!((open.high_watermark, open.last_stable_offset), (2, 0));
    assert!(open.records.as_ref().is_none_or(|r| r.is_empty()), "nothing below the LSO yet");
    assert_eq!(h.latest_committed(), 0);
    assert_eq!(h.end(3, pid, epoch, false), 0);
    let done = h.fetch_committed(0);
    assert_eq!((done.high_watermark, done.last_stable_offset), (3, 3));
    let aborted = done.aborted_transactions.unwrap();
    assert_eq!(aborted.iter().map(|a| (a.producer_id.0, a.first_offset)).collect::<Vec<_>>(), vec![(pid, 0)]);
    assert!(done.records.is_some_and(|r| !r.is_empty()), "the aborted batch and its marker still go out");
    assert_eq!(h.latest_committed(), 3);
    // A second, committed transaction: no aborted entry overlaps a fetch from offset 3.
    assert_eq!(h.add_t0(pid, epoch), 0);
    assert_eq!(h.produce(11, pid, epoch, 2).0, 0);
    assert_eq!(h.end(3, pid, epoch, true), 0);
    assert_eq!(h.fetch_committed(3).aborted_transactions, Some(vec![]));
}

#[test]
fn txn_offset_commit_is_verified_like_produce() {
    let h = h();
    let (pid, epoch, _) = h.init(4);
    let commit = |version: i16| h.commit_offset(version, pid, epoch, 5);
    assert_eq!(commit(3), ResponseError::InvalidTxnState.code());
    assert_eq!(commit(4), ResponseError::TransactionAbortable.code());
    let mut add = AddOffsetsToTxnRequest::default();
    add.transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
    add.producer_id = ProducerId(pid);
    add.producer_epoch = epoch;
    add.group_id = GroupId(StrBytes::from_static_str("g"));
    let ResponseKind::AddOffsetsToTxn(r) = h.call(3, RequestKind::AddOffsetsToTxn(add)) else { panic!() };
    assert_eq!(r.error_code, 0);
    assert_eq!(commit(3), 0);
    assert!(h.api.groups.pending_offsets("g").contains(&("t".to_string(), 0)));
    assert_eq!(h.end(3, pid, epoch, true), 0);
    assert_eq!(h.api.groups.fetch_offsets("g", None)[0].2.as_ref().map(|c| c.offset), Some(5));
}

/// Transactions version 2 (a Java 4.x client once `transaction.version` 2 is finalized): the
/// produce adds its partition (no AddPartitionsToTxn), EndTxn v5 bumps the epoch with every
/// commit and abort and answers it, the markers carry it, a retried EndTxn is answered with
/// the current id and epoch, the old epoch is fenced.
#[test]
fn version_2_produce_adds_its_partition_and_every_end_bumps_the_epoch() {
    let h = h();
    let (pid, epoch, error) = h.init(5);
    assert_eq!((epoch, error), (0, 0));
    assert_eq!(h.produce(12, pid, 0, 0), (0, 0), "added by the produce itself");
    let d = h.described();
    assert_eq!((d.state, d.partitions.clone()), (crate::txn::state::TxnState::Ongoing, vec![("t".to_string(), vec![0])]));
    assert_eq!(h.produce(12, pid, 0, 2), (0, 2), "the open transaction needs no second add");
    assert_eq!(h.end_full(5, pid, 0, true), (0, pid, 1), "committed; go on at epoch 1");
    assert_eq!(h.partition_epoch(pid), 1, "the COMMIT marker carries the new epoch");
    assert_eq!(h.latest_committed(), 5, "four records and the marker, all stable");
    // A retry of the commit (its response lost) gets the same answer; an abort is refused.
    assert_eq!(h.end_full(5, pid, 0, true), (0, pid, 1));
    assert_eq!(h.end_full(5, pid, 0, false).0, ResponseError::InvalidTxnState.code());
    // The old epoch cannot start a transaction any more.
    assert_eq!(h.produce(12, pid, 0, 4).0, ResponseError::InvalidProducerEpoch.code());
    // The next transaction runs on epoch 1, from sequence 0, and its abort bumps again.
    assert_eq!(h.produce(12, pid, 1, 0).0, 0);
    assert_eq!(h.described().producer_epoch, 1);
    assert_eq!(h.end_full(5, pid, 1, false), (0, pid, 2));
    assert_eq!(h.partition_epoch(pid), 2);
    let aborted = h.fetch_committed(5).aborted_transactions.unwrap();
    assert_eq!(aborted.iter().map(|a| (a.producer_id.0, a.first_offset)).collect::<Vec<_>>(), vec![(pid, 5)]);
    // An abort with nothing open bumps too; a commit with nothing open is refused.
    assert_eq!(h.end_full(5, pid, 2, true).0, ResponseError::InvalidTxnState.code());
    assert_eq!(h.end_full(5, pid, 2, false), (0, pid, 3));
    // A fenced producer's EndTxn v5 gets PRODUCER_FENCED and no id.
    assert_eq!(h.end_full(5, pid, 1, false), (ResponseError::ProducerFenced.code(), -1, -1));
    // InitProducerId still bumps (and fences) as in version 1.
    assert_eq!(h.init(5), (pid, 4, 0));
}

/// Version 1 is unchanged beside it: EndTxn v4 keeps the epoch and answers no id, Produce
/// v11 verifies, and the same producer can go on with either protocol (the request version
/// decides, as in Kafka).
#[test]
fn version_1_requests_keep_the_epoch() {
    let h = h();
    let (pid, epoch, _) = h.init(4);
    assert_eq!(h.produce(11, pid, epoch, 0).0, ResponseError::TransactionAbortable.code(), "v11 only verifies");
    assert_eq!(h.add_t0(pid, epoch), 0);
    assert_eq!(h.produce(11, pid, epoch, 0).0, 0);
    assert_eq!(h.end_full(4, pid, epoch, true), (0, -1, -1));
    assert_eq!(h.described().producer_epoch, epoch);
    assert_eq!(h.end_full(4, pid, epoch, true), (0, -1, -1), "a retry");
    // Upgraded mid-life (a Java client whose broker finalized level 2 meanwhile): version 2
    // from its next transaction.
    assert_eq!(h.produce(12, pid, epoch, 2).0, 0);
    assert_eq!(h.end_full(5, pid, epoch, true), (0, pid, epoch + 1));
}

/// TxnOffsetCommit v5 adds the group's `__consumer_offsets` partition (no AddOffsetsToTxn);
/// v4 still only verifies; the offsets become the group's with the bumped-epoch marker.
#[test]
fn version_2_txn_offset_commit_adds_the_offsets_partition() {
    let h = h();
    let (pid, _, _) = h.init(5);
    assert_eq!(h.commit_offset(4, pid, 0, 5), ResponseError::TransactionAbortable.code());
    assert_eq!(h.commit_offset(5, pid, 0, 5), 0);
    assert!(h.api.groups.pending_offsets("g").contains(&("t".to_string(), 0)));
    let offsets_tp = crate::types::TopicPartition::new(crate::group::OFFSETS_TOPIC, h.api.groups.partition_for("g"));
    assert_eq!(h.described().partitions, vec![(offsets_tp.topic.clone(), vec![offsets_tp.partition.0])]);
    assert_eq!(h.end_full(5, pid, 0, true), (0, pid, 1));
    assert_eq!(h.api.groups.fetch_offsets("g", None)[0].2.as_ref().map(|c| c.offset), Some(5));
    // The next transaction's offsets, aborted, never show.
    assert_eq!(h.commit_offset(5, pid, 0, 9), ResponseError::InvalidProducerEpoch.code(), "the old epoch is fenced");
    assert_eq!(h.commit_offset(5, pid, 1, 9), 0);
    assert_eq!(h.end_full(5, pid, 1, false), (0, pid, 2));
    assert_eq!(h.api.groups.fetch_offsets("g", None)[0].2.as_ref().map(|c| c.offset), Some(5));
}

/// With `transaction.partition.verification.enable=false` version 1 writes are not checked,
/// but version 2 still adds its partitions (Kafka adds whatever that setting says).
#[test]
fn version_2_adds_even_without_verification() {
    let h = h_with(&["transaction.partition.verification.enable=false"]);
    let (pid, _, _) = h.init(5);
    assert_eq!(h.produce(12, pid, 0, 0).0, 0);
    assert_eq!(h.described().partitions, vec![("t".to_string(), vec![0])]);
    assert_eq!(h.end_full(5, pid, 0, true), (0, pid, 1));
}

/// A version 2 produce for the next transaction while the previous one's markers are still
/// being written: the add is retried on CONCURRENT_TRANSACTIONS (the previous transaction
/// completes meanwhile) and then goes through; with no retry time the error is answered as
/// it is (not NOT_ENOUGH_REPLICAS, as for version 1).
#[test]
fn version_2_produce_waits_out_the_previous_transaction() {
    for (retry_ms, want) in [("5000", 0), ("0", ResponseError::ConcurrentTransactions.code())] {
        let h = h_with(&[&format!("add.partitions.to.txn.retry.backoff.max.ms={retry_ms}")]);
        let (pid, _, _) = h.init(5);
        assert_eq!(h.produce(12, pid, 0, 0).0, 0);
        // Decided without yielding to the runtime: the marker sender has not run yet.
        let decided = h.rt.block_on(async { h.api.txns.end_txn("tx", pid, 0, true, crate::txn::TxnVersion::V2) });
        assert_eq!(decided, Ok((pid, 1)));
        assert_eq!(h.described().state, crate::txn::state::TxnState::PrepareCommit);
        assert_eq!(h.produce(12, pid, 1, 0).0, want, "retry time {retry_ms} ms");
        if want == 0 {
            let d = h.described();
            assert_eq!((d.state, d.producer_epoch), (crate::txn::state::TxnState::Ongoing, 1));
            assert_eq!(h.partition_epoch(pid), 1);
        }
    }
}

/// The last usable epoch: EndTxn v5 answers a new producer id at epoch 0 (the markers carry
/// the old id at `i16::MAX`), a retry with the old id and epoch gets the same answer, and the
/// producer goes on with the new id.
#[test]
fn version_2_overflow_moves_to_a_new_producer_id() {
    let h = h();
    let (pid, _, _) = h.init(5);
    h.api.txns.set_epoch_for_test("tx", i16::MAX - 1);
    assert_eq!(h.produce(12, pid, i16::MAX - 1, 0).0, 0);
    let (error, next_pid, next_epoch) = h.end_full(5, pid, i16::MAX - 1, true);
    assert_eq!((error, next_epoch), (0, 0));
    assert_ne!(next_pid, pid);
    assert_eq!(h.partition_epoch(pid), i16::MAX, "the marker carries the old id at the last epoch");
    let d = h.described();
    assert_eq!((d.state, d.producer_id, d.producer_epoch), (crate::txn::state::TxnState::CompleteCommit, next_pid, 0));
    assert_eq!(h.end_full(5, pid, i16::MAX - 1, true), (0, next_pid, 0), "a retry across the rotation");
    assert_eq!(h.produce(12, next_pid, 0, 0).0, 0);
    assert_eq!(h.end_full(5, next_pid, 0, true), (0, next_pid, 1));
    assert_eq!(h.latest_committed(), 6);
}
