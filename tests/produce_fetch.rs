#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Produce and fetch against a running broker: offsets, idempotence, long poll, sessions,
//! ListOffsets, DeleteRecords, OffsetForLeaderEpoch, restart and crash recovery.

mod common;

use std::time::{Duration, Instant};

use blumfeld::record::{BatchBuilder, Record};
use bytes::Bytes;
use common::{Broker, Client};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn create(c: &mut Client, topic: &str, partitions: i32) {
    let mut t = create_topics_request::CreatableTopic::default();
    t.name = name(topic);
    t.num_partitions = partitions;
    t.replication_factor = 1;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    let ResponseKind::CreateTopics(r) = c.call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(req)) else {
        unreachable!()
    };
    assert_eq!(r.topics[0].error_code, 0);
}

/// Record timestamps: recent, so time retention (7 days by default) never touches them.
fn base_timestamp_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    // Rounded, so a test can name exact timestamps relative to it.
    now - now % 1_000_000
}

fn batch(n: usize, value: &str) -> Vec<u8> {
    let mut b = BatchBuilder::new(0).timestamps(base_timestamp_ms());
    for i in 0..n {
        b = b.record(Record { timestamp_delta_ms: i as i64, key: Some(format!("k{i}").into_bytes()), value: Some(value.as_bytes().to_vec()) });
    }
    b.build()
}

fn produce(c: &mut Client, topic: &str, partition: i32, records: Vec<u8>, acks: i16) -> Option<(i16, i64)> {
    let mut p = produce_request::PartitionProduceData::default();
    p.index = partition;
    p.records = Some(Bytes::from(records));
    let mut t = produce_request::TopicProduceData::default();
    t.name = name(topic);
    t.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = 5000;
    req.topic_data = vec![t];
    if acks == 0 {
        let frame = c.request_frame(ApiKey::Produce, 9, &RequestKind::Produce(req));
        c.send_raw(&frame);
        return None;
    }
    let ResponseKind::Produce(r) = c.call(ApiKey::Produce, 9, RequestKind::Produce(req)) else { unreachable!() };
    let p = &r.responses[0].partition_responses[0];
    Some((p.error_code, p.base_offset))
}

fn fetch_req(topic: &str, partition: i32, offset: i64, max_wait_ms: i32, min_bytes: i32) -> FetchRequest {
    let mut p = fetch_request::FetchPartition::default();
    p.partition = partition;
    p.fetch_offset = offset;
    p.partition_max_bytes = 1 << 20;
    p.current_leader_epoch = -1;
    let mut t = fetch_request::FetchTopic::default();
    t.topic = name(topic);
    t.partitions = vec![p];
    let mut req = FetchRequest::default();
    req.max_wait_ms = max_wait_ms;
    req.min_bytes = min_bytes;
    req.max_bytes = 50 << 20;
    req.session_epoch = -1;
    req.topics = vec![t];
    req
}

fn fetch(c: &mut Client, req: FetchRequest) -> FetchResponse {
    let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, 12, RequestKind::Fetch(req)) else { unreachable!() };
    r
}

fn list_offset(c: &mut Client, topic: &str, partition: i32, timestamp: i64) -> (i16, i64, i64) {
    let mut p = list_offsets_request::ListOffsetsPartition::default();
    p.partition_index = partition;
    p.timestamp = timestamp;
    p.current_leader_epoch = -1;
    let mut t = list_offsets_request::ListOffsetsTopic::default();
    t.name = name(topic);
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    req.topics = vec![t];
    let ResponseKind::ListOffsets(r) = c.call(ApiKey::ListOffsets, 8, RequestKind::ListOffsets(req)) else {
        unreachable!()
    };
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

#[test]
fn produce_then_fetch_returns_the_same_bytes_with_offsets() {
    let b = Broker::start(&[]);
    let mut c = b.client();
    create(&mut c, "pf", 2);
    assert_eq!(produce(&mut c, "pf", 0, batch(3, "a"), 1), Some((0, 0)));
    assert_eq!(produce(&mut c, "pf", 0, batch(2, "b"), -1), Some((0, 3)));
    let r = fetch(&mut c, fetch_req("pf", 0, 0, 0, 1));
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert_eq!(p.high_watermark, 5);
    let records = p.records.clone().unwrap();
    let mut expect = batch(3, "a");
    expect[..8].copy_from_slice(&0i64.to_be_bytes());
    // Stored bytes are the produced bytes with offset and leader epoch patched.
    assert_eq!(&records[12..16], &0i32.to_be_bytes());
    assert_eq!(&records[16..expect.len()], &expect[16..]);
    // Empty partition: empty records, not null.
    let r = fetch(&mut c, fetch_req("pf", 1, 0, 0, 1));
    assert_eq!(r.responses[0].partitions[0].records.as_ref().map(|r| r.len()), Some(0));
    // Out of range.
    let r = fetch(&mut c, fetch_req("pf", 0, 99, 0, 1));
    assert_eq!(r.responses[0].partitions[0].error_code, 1);
    assert_eq!(list_offset(&mut c, "pf", 0, -2).1, 0);
    assert_eq!(list_offset(&mut c, "pf", 0, -1).1, 5);
    assert_eq!(list_offset(&mut c, "pf", 0, base_timestamp_ms() + 1).1, 1);
    let (_, off, ts) = list_offset(&mut c, "pf", 0, -3);
    assert!(off >= 0 && ts >= base_timestamp_ms());
    // Corrupt batch: flip a byte inside the CRC-covered part.
    let mut bad = batch(1, "x");
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    assert_eq!(produce(&mut c, "pf", 0, bad, 1).map(|x| x.0), Some(2));
    assert_eq!(produce(&mut c, "nope", 0, batch(1, "x"), 1).map(|x| x.0), Some(3));
    assert_eq!(produce(&mut c, "pf", 0, batch(1, "x"), 2).map(|x| x.0), Some(21));
}

#[test]
fn idempotent_retries_get_their_original_offsets() {
    let b = Broker::start(&[]);
    let mut c = b.client();
    create(&mut c, "idem", 1);
    let mut init = InitProducerIdRequest::default();
    init.transactional_id = None;
    init.producer_id = ProducerId(-1);
    init.producer_epoch = -1;
    let ResponseKind::InitProducerId(pid) = c.call(ApiKey::InitProducerId, 4, RequestKind::InitProducerId(init))
    else {
        unreachable!()
    };
    assert_eq!(pid.error_code, 0);
    let id = pid.producer_id.0;
    let mk = |seq: i32, epoch: i16| {
        // Recent timestamps: producer state of long-idle producers expires, as in Kafka.
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        BatchBuilder::new(0).producer(id, epoch, seq).timestamps(now_ms).records(2, 10).build()
    };
    assert_eq!(produce(&mut c, "idem", 0, mk(0, 0), -1), Some((0, 0)));
    assert_eq!(produce(&mut c, "idem", 0, mk(2, 0), -1), Some((0, 2)));
    // A retry of the first batch: same offset, nothing written twice.
    assert_eq!(produce(&mut c, "idem", 0, mk(0, 0), -1), Some((0, 0)));
    assert_eq!(list_offset(&mut c, "idem", 0, -1).1, 4);
    // A gap.
    assert_eq!(produce(&mut c, "idem", 0, mk(9, 0), -1).map(|x| x.0), Some(45));
    // The state survives a restart.
    drop(c);
    let b = b.stop_and_restart();
    let mut c = b.client();
    assert_eq!(produce(&mut c, "idem", 0, mk(2, 0), -1), Some((0, 2)));
    assert_eq!(produce(&mut c, "idem", 0, mk(4, 0), -1), Some((0, 4)));
    // And a crash.
    drop(c);
    let b = b.kill_and_restart();
    let mut c = b.client();
    assert_eq!(produce(&mut c, "idem", 0, mk(4, 0), -1), Some((0, 4)));
}

#[test]
fn long_poll_is_woken_by_an_append() {
    let b = Broker::start(&[]);
    let mut c = b.client();
    create(&mut c, "lp", 1);
    let addr = b.addr();
    let started = Instant::now();
    let waiter = std::thread::spawn(move || {
        let mut c2 = Client::connect(&addr);
        let r = fetch(&mut c2, fetch_req("lp", 0, 0, 20_000, 1));
        r.responses[0].partitions[0].records.clone().unwrap().len()
    });
    // Produce once the fetch is (very likely) parked; correctness does not depend on it.
    while started.elapsed() < Duration::from_millis(100) {
        std::thread::yield_now();
    }
    produce(&mut c, "lp", 0, batch(1, "wake"), 1);
    let got = waiter.join().unwrap();
    assert!(got > 0);
    assert!(started.elapsed() < Duration::from_secs(10), "fetch was not woken by the append");
    // With no data it waits max_wait_ms, then answers empty.
    let t = Instant::now();
    let r = fetch(&mut c, fetch_req("lp", 0, 1, 300, 1));
    assert!(t.elapsed() >= Duration::from_millis(250));
    assert_eq!(r.responses[0].partitions[0].records.as_ref().map(|r| r.len()), Some(0));
}

#[test]
fn incremental_fetch_session_sends_only_changes() {
    let b = Broker::start(&[]);
    let mut c = b.client();
    create(&mut c, "fs", 2);
    produce(&mut c, "fs", 0, batch(1, "a"), 1);
    let mut req = fetch_req("fs", 0, 0, 0, 0);
    let mut p1 = req.topics[0].partitions[0].clone();
    p1.partition = 1;
    req.topics[0].partitions.push(p1);
    req.session_epoch = 0;
    let r = fetch(&mut c, req);
    assert!(r.session_id > 0);
    assert_eq!(r.responses[0].partitions.len(), 2);
    // Incremental: nothing changed and partition 0 moves to offset 1.
    let mut inc = fetch_req("fs", 0, 1, 0, 0);
    inc.session_id = r.session_id;
    inc.session_epoch = 1;
    let r2 = fetch(&mut c, inc);
    assert_eq!(r2.error_code, 0);
    assert!(r2.responses.iter().all(|t| t.partitions.is_empty()), "{r2:?}");
    produce(&mut c, "fs", 1, batch(1, "b"), 1);
    let mut inc = FetchRequest::default();
    inc.session_id = r.session_id;
    inc.session_epoch = 2;
    inc.max_bytes = 1 << 20;
    let r3 = fetch(&mut c, inc.clone());
    assert_eq!(r3.responses.len(), 1);
    assert_eq!(r3.responses[0].partitions[0].partition_index, 1);
    // Wrong epoch.
    inc.session_epoch = 7;
    assert_eq!(fetch(&mut c, inc).error_code, 71);
}

#[test]
fn delete_records_and_epochs() {
    let b = Broker::start(&[]);
    let mut c = b.client();
    create(&mut c, "dr", 1);
    for _ in 0..5 {
        produce(&mut c, "dr", 0, batch(2, "v"), 1);
    }
    let mut p = delete_records_request::DeleteRecordsPartition::default();
    p.partition_index = 0;
    p.offset = 4;
    let mut t = delete_records_request::DeleteRecordsTopic::default();
    t.name = name("dr");
    t.partitions = vec![p];
    let mut req = DeleteRecordsRequest::default();
    req.topics = vec![t];
    let ResponseKind::DeleteRecords(r) = c.call(ApiKey::DeleteRecords, 2, RequestKind::DeleteRecords(req)) else {
        unreachable!()
    };
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    assert_eq!(r.topics[0].partitions[0].low_watermark, 4);
    assert_eq!(list_offset(&mut c, "dr", 0, -2).1, 4);
    let r = fetch(&mut c, fetch_req("dr", 0, 0, 0, 1));
    assert_eq!(r.responses[0].partitions[0].error_code, 1);
    let mut p = offset_for_leader_epoch_request::OffsetForLeaderPartition::default();
    p.partition = 0;
    p.leader_epoch = 0;
    p.current_leader_epoch = -1;
    let mut t = offset_for_leader_epoch_request::OffsetForLeaderTopic::default();
    t.topic = name("dr");
    t.partitions = vec![p];
    let mut req = OffsetForLeaderEpochRequest::default();
    req.replica_id = BrokerId(-1);
    req.topics = vec![t];
    let ResponseKind::OffsetForLeaderEpoch(r) =
        c.call(ApiKey::OffsetForLeaderEpoch, 2, RequestKind::OffsetForLeaderEpoch(req))
    else {
        unreachable!()
    };
    let e = &r.topics[0].partitions[0];
    assert_eq!((e.error_code, e.leader_epoch, e.end_offset), (0, 0, 10));
    // Log start survives a restart.
    drop(c);
    let b = b.stop_and_restart();
    let mut c = b.client();
    assert_eq!(list_offset(&mut c, "dr", 0, -2).1, 4);
}

#[test]
fn acknowledged_messages_survive_kill_9() {
    let b = Broker::start(&["log.flush.interval.messages=1"]);
    let mut c = b.client();
    create(&mut c, "crash", 1);
    for i in 0..50 {
        assert_eq!(produce(&mut c, "crash", 0, batch(2, &format!("m{i}")), -1), Some((0, i * 2)));
    }
    drop(c);
    let b = b.kill_and_restart();
    let mut c = b.client();
    assert_eq!(list_offset(&mut c, "crash", 0, -1).1, 100);
    let r = fetch(&mut c, fetch_req("crash", 0, 0, 0, 1));
    assert!(r.responses[0].partitions[0].records.as_ref().unwrap().len() > 50 * 60);
}

/// Kafka's rule for compacted topics: records without a key are refused with INVALID_RECORD
/// (87); keyed ones go in.
#[test]
fn compacted_topics_refuse_keyless_records() {
    let broker = Broker::start(&[]);
    let mut c = broker.client();
    let mut t = create_topics_request::CreatableTopic::default();
    t.name = name("compacted");
    t.num_partitions = 1;
    t.replication_factor = 1;
    let mut config = create_topics_request::CreatableTopicConfig::default();
    config.name = StrBytes::from_static_str("cleanup.policy");
    config.value = Some(StrBytes::from_static_str("compact"));
    t.configs = vec![config];
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    let ResponseKind::CreateTopics(r) = c.call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(req)) else {
        unreachable!()
    };
    assert_eq!(r.topics[0].error_code, 0);
    let keyless = BatchBuilder::new(0).timestamps(base_timestamp_ms()).records(2, 10).build();
    assert_eq!(produce(&mut c, "compacted", 0, keyless, -1).map(|r| r.0), Some(87));
    assert_eq!(produce(&mut c, "compacted", 0, batch(2, "v"), -1), Some((0, 0)));
}

fn create_with_configs(c: &mut Client, topic: &str, configs: &[(&str, &str)]) {
    let mut t = create_topics_request::CreatableTopic::default();
    t.name = name(topic);
    t.num_partitions = 1;
    t.replication_factor = 1;
    t.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut config = create_topics_request::CreatableTopicConfig::default();
            config.name = StrBytes::from_string(k.to_string());
            config.value = Some(StrBytes::from_string(v.to_string()));
            config
        })
        .collect();
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    let ResponseKind::CreateTopics(r) = c.call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(req)) else {
        unreachable!()
    };
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

/// Produce v9 of one batch; the whole partition response.
fn produce_v9(c: &mut Client, topic: &str, records: Vec<u8>) -> produce_response::PartitionProduceResponse {
    let mut p = produce_request::PartitionProduceData::default();
    p.records = Some(Bytes::from(records));
    let mut t = produce_request::TopicProduceData::default();
    t.name = name(topic);
    t.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 5000;
    req.topic_data = vec![t];
    let ResponseKind::Produce(mut r) = c.call(ApiKey::Produce, 9, RequestKind::Produce(req)) else { unreachable!() };
    r.responses.remove(0).partition_responses.remove(0)
}

fn batch_indexes(p: &produce_response::PartitionProduceResponse) -> Vec<i32> {
    p.record_errors.iter().map(|e| e.batch_index).collect()
}

/// Kafka's `LogValidator` names every refused record (Produce v8+ `record_errors`), so a
/// client fails those and retries the rest: 10 keyless records among 100 into a compacted topic.
#[test]
fn keyless_records_into_a_compacted_topic_are_each_named() {
    let broker = Broker::start(&[]);
    let mut c = broker.client();
    create_with_configs(&mut c, "compacted", &[("cleanup.policy", "compact")]);
    let mut b = BatchBuilder::new(0).timestamps(base_timestamp_ms());
    for i in 0..100 {
        let key = (i % 10 != 3).then(|| format!("k{i}").into_bytes());
        b = b.record(Record { timestamp_delta_ms: i, key, value: Some(b"v".to_vec()) });
    }
    let p = produce_v9(&mut c, "compacted", b.build());
    assert_eq!(p.error_code, 87, "INVALID_RECORD");
    assert_eq!(batch_indexes(&p), (0..10).map(|i| i * 10 + 3).collect::<Vec<_>>());
    let expected = "Compacted topic cannot accept message without key in topic partition compacted-0";
    assert!(p.record_errors.iter().all(|e| e.batch_index_error_message.as_deref() == Some(expected)), "{:?}", p.record_errors);
    let message = p.error_message.as_deref().unwrap_or_default();
    assert!(
        message.starts_with("One or more records have been rejected due to 10 record errors in total, and only showing the first three errors at most: [RecordError(batchIndex=3, message='Compacted topic"),
        "{message}"
    );
    assert_eq!(message.matches("RecordError(").count(), 3, "{message}");
    assert_eq!(list_offset(&mut c, "compacted", 0, -1).1, 0, "nothing of the batch was appended");
}

/// The timestamp range is checked per record: each record outside it is named, the error is
/// INVALID_TIMESTAMP, and a keyless record of the same batch counts as INVALID_RECORD within.
#[test]
fn out_of_range_timestamps_are_each_named() {
    let broker = Broker::start(&[]);
    let mut c = broker.client();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    create_with_configs(&mut c, "ts", &[("message.timestamp.after.max.ms", "60000"), ("message.timestamp.before.max.ms", "3600000")]);
    let record = |delta: i64| Record { timestamp_delta_ms: delta, key: Some(b"k".to_vec()), value: Some(b"v".to_vec()) };
    // The first record and the batch's maxTimestamp are in range; record 1 is two hours old
    // and record 3 ten minutes ahead.
    let hour = 3_600_000;
    let batch = BatchBuilder::new(0)
        .timestamps(now)
        .record(record(0))
        .record(record(-2 * hour))
        .record(record(1))
        .record(record(600_000))
        .build();
    let p = produce_v9(&mut c, "ts", batch);
    assert_eq!(p.error_code, 32, "INVALID_TIMESTAMP");
    assert_eq!(batch_indexes(&p), vec![1, 3]);
    assert_eq!(p.error_message.as_deref(), Some("One or more records have been rejected due to invalid timestamp"));
    let first = p.record_errors[0].batch_index_error_message.as_deref().unwrap_or_default();
    let prefix = format!("Timestamp {} of message with offset 1 is out of range. The timestamp should be within [", now - 2 * hour);
    assert!(first.starts_with(&prefix), "{first}");

    // In range, the batch goes in.
    let good = BatchBuilder::new(0).timestamps(now).record(record(0)).record(record(5)).build();
    assert_eq!(produce_v9(&mut c, "ts", good).error_code, 0);

    // Compacted as well: the keyless record is listed too, the error stays INVALID_TIMESTAMP.
    create_with_configs(&mut c, "ts-compacted", &[("cleanup.policy", "compact"), ("message.timestamp.after.max.ms", "60000")]);
    let keyless = Record { timestamp_delta_ms: 0, key: None, value: Some(b"v".to_vec()) };
    let mixed = BatchBuilder::new(0).timestamps(now).record(keyless).record(record(600_000)).build();
    let p = produce_v9(&mut c, "ts-compacted", mixed);
    assert_eq!((p.error_code, batch_indexes(&p)), (32, vec![0, 1]));
}
