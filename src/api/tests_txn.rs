//! The transaction APIs end to end through `dispatch`: a produce into a partition not in the
//! transaction is refused (KIP-890 part 1 verification), TxnOffsetCommit likewise, old
//! clients get INVALID_PRODUCER_EPOCH for PRODUCER_FENCED, a read_committed Fetch stops at
//! the LSO and lists the aborted transactions, ListOffsets answers the LSO.

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
    let dir = tempfile::tempdir().unwrap();
    let api = test_api(dir.path(), &[]);
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
        let mut r = EndTxnRequest::default();
        r.transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
        r.producer_id = ProducerId(pid);
        r.producer_epoch = epoch;
        r.committed = commit;
        let ResponseKind::EndTxn(r) = self.call(version, RequestKind::EndTxn(r)) else { panic!() };
        r.error_code
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
    let commit = |version: i16| {
        let mut p = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default();
        p.committed_offset = 5;
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
        let ResponseKind::TxnOffsetCommit(r) = h.call(version, RequestKind::TxnOffsetCommit(r)) else { panic!() };
        r.topics[0].partitions[0].error_code
    };
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
