#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Protocol-level tests against a running broker: versions, metadata, topic admin, bad input.

mod common;

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::{Broker, Client};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn metadata(c: &mut Client, topics: Option<&[&str]>, auto_create: bool) -> MetadataResponse {
    let mut req = MetadataRequest::default();
    req.topics = topics.map(|t| {
        t.iter()
            .map(|n| {
                let mut x = metadata_request::MetadataRequestTopic::default();
                x.name = Some(topic_name(n));
                x
            })
            .collect()
    });
    req.allow_auto_topic_creation = auto_create;
    match c.call(ApiKey::Metadata, 12, RequestKind::Metadata(req)) {
        ResponseKind::Metadata(r) => r,
        _ => unreachable!(),
    }
}

fn create_topic(c: &mut Client, name: &str, partitions: i32) -> CreateTopicsResponse {
    let mut t = create_topics_request::CreatableTopic::default();
    t.name = topic_name(name);
    t.num_partitions = partitions;
    t.replication_factor = -1;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 10_000;
    match c.call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(req)) {
        ResponseKind::CreateTopics(r) => r,
        _ => unreachable!(),
    }
}

#[test]
fn api_versions_at_every_version_and_unknown_version() {
    let b = Broker::start(&[]);
    let mut c = b.client();
    for v in 0..=4 {
        match c.call(ApiKey::ApiVersions, v, RequestKind::ApiVersions(ApiVersionsRequest::default())) {
            ResponseKind::ApiVersions(r) => {
                assert_eq!(r.error_code, 0);
                let produce = r.api_keys.iter().find(|k| k.api_key == 0).unwrap();
                assert_eq!((produce.min_version, produce.max_version), (0, 13));
            }
            _ => unreachable!(),
        }
    }
    // ApiVersions v99: a v0 answer with UNSUPPORTED_VERSION and the full table.
    let mut frame = BytesMut::new();
    frame.put_u32(10);
    frame.put_i16(18);
    frame.put_i16(99);
    frame.put_i32(42);
    frame.put_i16(-1);
    c.send_raw(&frame);
    let mut resp = c.read_frame().expect("answer");
    let header = ResponseHeader::decode(&mut resp, 0).unwrap();
    assert_eq!(header.correlation_id, 42);
    let r = ApiVersionsResponse::decode(&mut resp, 0).unwrap();
    assert_eq!(r.error_code, 35);
    assert!(r.api_keys.len() >= 10);
}

#[test]
fn unknown_api_key_and_unsupported_version_close_the_connection() {
    let b = Broker::start(&[]);
    for (key, version) in [(9999i16, 0i16), (0, 2), (1, 99)] {
        let mut c = b.client();
        let mut frame = BytesMut::new();
        frame.put_u32(10);
        frame.put_i16(key);
        frame.put_i16(version);
        frame.put_i32(1);
        frame.put_i16(-1);
        c.send_raw(&frame);
        assert!(c.read_frame().is_none(), "key {key} v{version} should close");
    }
    // The broker still serves.
    let mut c = b.client();
    assert_eq!(metadata(&mut c, None, false).brokers.len(), 1);
}

#[test]
fn metadata_auto_creates_and_reports_ids_and_controller() {
    let b = Broker::start(&["num.partitions=3"]);
    let mut c = b.client();
    let r = metadata(&mut c, Some(&["auto-t"]), true);
    assert_eq!(r.controller_id.0, r.brokers[0].node_id.0);
    assert_eq!(r.brokers[0].port as u16, b.port);
    let t = &r.topics[0];
    assert_eq!(t.error_code, 0);
    assert_eq!(t.partitions.len(), 3);
    assert!(!t.topic_id.is_nil());
    let r = metadata(&mut c, Some(&["not-created"]), false);
    assert_eq!(r.topics[0].error_code, 3);
    let r = metadata(&mut c, Some(&["bad name!"]), true);
    assert_eq!(r.topics[0].error_code, 17);
}

#[test]
fn create_delete_and_validate_topics() {
    let b = Broker::start(&[]);
    let mut c = b.client();
    let r = create_topic(&mut c, "t1", 6);
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    assert_eq!(r.topics[0].num_partitions, 6);
    assert!(r.topics[0].configs.as_ref().is_some_and(|c| !c.is_empty()));
    assert_eq!(create_topic(&mut c, "t1", 6).topics[0].error_code, 36);
    assert_eq!(create_topic(&mut c, "t/2", 1).topics[0].error_code, 17);
    assert_eq!(create_topic(&mut c, "t3", 0).topics[0].error_code, 37);
    let mut req = DeleteTopicsRequest::default();
    let mut s = delete_topics_request::DeleteTopicState::default();
    s.name = Some(topic_name("t1"));
    req.topics = vec![s];
    match c.call(ApiKey::DeleteTopics, 6, RequestKind::DeleteTopics(req.clone())) {
        ResponseKind::DeleteTopics(r) => assert_eq!(r.responses[0].error_code, 0),
        _ => unreachable!(),
    }
    match c.call(ApiKey::DeleteTopics, 6, RequestKind::DeleteTopics(req)) {
        ResponseKind::DeleteTopics(r) => assert_eq!(r.responses[0].error_code, 3),
        _ => unreachable!(),
    }
    // Recreate right away under the same name.
    assert_eq!(create_topic(&mut c, "t1", 2).topics[0].error_code, 0);
    // Topics survive a restart.
    drop(c);
    let b = b.stop_and_restart();
    let mut c = b.client();
    let r = metadata(&mut c, Some(&["t1"]), false);
    assert_eq!(r.topics[0].partitions.len(), 2);
}

#[test]
fn garbage_frames_never_stop_the_broker() {
    let b = Broker::start(&["socket.request.max.bytes=1048576"]);
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..2000 {
        let mut c = Client::connect(&b.addr());
        c.stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut frame = BytesMut::new();
        match i % 7 {
            5 => {
                // Metadata v1 claiming 2^31-16 topics in a 4-byte body (allocation bomb).
                frame.put_u32(14);
                frame.put_i16(3);
                frame.put_i16(1);
                frame.put_i32(i);
                frame.put_i16(-1);
                frame.put_i32(0x7fff_fff0);
            }
            6 => {
                // Fetch v12 (flexible): a compact array length of u32::MAX as a varint.
                let body = [0xffu8, 0xff, 0xff, 0xff, 0x0f];
                frame.put_u32((8 + 2 + 1 + 4 * 4 + 1 + body.len()) as u32);
                frame.put_i16(1);
                frame.put_i16(12);
                frame.put_i32(i);
                frame.put_i16(-1);
                frame.put_u8(0);
                frame.put_i32(-1);
                frame.put_i32(500);
                frame.put_i32(1);
                frame.put_i32(1 << 20);
                frame.put_i8(0);
                frame.put_slice(&body);
            }
            0 => frame.put_u32(0x7fff_ffff),      // larger than socket.request.max.bytes
            1 => frame.put_i32(-5),               // negative length
            2 => {
                // A valid-looking header of a random API with random body bytes.
                let body: Vec<u8> = (0..(next() % 64)).map(|_| next() as u8).collect();
                frame.put_u32((8 + body.len()) as u32);
                frame.put_i16((next() % 80) as i16);
                frame.put_i16((next() % 20) as i16);
                frame.put_i32(i);
                frame.put_slice(&body);
            }
            3 => {
                // Truncated: announce more than is sent, then hang up.
                frame.put_u32(100);
                frame.put_slice(&[0, 3, 0, 9]);
            }
            _ => {
                let body: Vec<u8> = (0..(next() % 32)).map(|_| next() as u8).collect();
                frame.put_u32(body.len() as u32);
                frame.put_slice(&body);
            }
        }
        c.send_raw(&frame);
        if i % 7 != 3 {
            let _ = c.read_frame();
        }
    }
    let mut c = b.client();
    let r = metadata(&mut c, Some(&["still-alive"]), true);
    assert_eq!(r.topics[0].error_code, 0);
}
