//! Wire codec cost on the data path, through the crate's own entry points
//! (`api::decode_request`, `api::encode_response`): decoding a Produce frame carrying one
//! 256 KiB batch of 1 KiB records, encoding a Fetch response carrying ~1 MiB of stored batches,
//! and ApiVersions/Metadata decodes as small-request baselines. Record bytes should be carried
//! by reference (decode) or copied once (encode); a regression here shows as a drop in GiB/s.
//! Versions are the highest the broker serves, as a current Java client sends them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use blumfeld::api::response_frame::ByReference;
use blumfeld::api::{Decoded, decode_request, encode_response};
use blumfeld::partition::RecordSet;
use blumfeld::record::{BatchBuilder, assign_offsets};
use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

const PRODUCE_V: i16 = 13;
const FETCH_V: i16 = 17;
const METADATA_V: i16 = 13;
const API_VERSIONS_V: i16 = 4;

/// A request frame as the connection hands it to the API layer (no length prefix).
fn frame(api: ApiKey, version: i16, body: &RequestKind) -> Bytes {
    let mut out = BytesMut::new();
    let mut header = RequestHeader::default();
    header.request_api_key = api as i16;
    header.request_api_version = version;
    header.correlation_id = 7;
    header.client_id = Some(StrBytes::from_static_str("bench-client"));
    header
        .encode(&mut out, api.request_header_version(version))
        .unwrap();
    body.encode(&mut out, version).unwrap();
    out.freeze()
}

fn bench_decode(c: &mut Criterion, name: &str, frame: Bytes) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function(name, |b| {
        b.iter(|| match decode_request(frame.clone()).unwrap() {
            Decoded::Request(ctx, request) => (ctx.correlation_id, request),
            Decoded::UnsupportedApiVersions { .. } => unreachable!(),
        })
    });
    group.finish();
}

fn produce_decode(c: &mut Criterion) {
    let batch = BatchBuilder::new(0).records(256, 1024).build();
    let mut partition = produce_request::PartitionProduceData::default();
    partition.records = Some(Bytes::from(batch));
    let mut topic = produce_request::TopicProduceData::default();
    topic.topic_id = uuid::Uuid::from_u128(1);
    topic.partition_data = vec![partition];
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 30_000;
    request.topic_data = vec![topic];
    let frame = frame(ApiKey::Produce, PRODUCE_V, &RequestKind::Produce(request));
    bench_decode(c, "produce_decode_256KiB", frame);
}

fn small_decodes(c: &mut Criterion) {
    let mut versions = ApiVersionsRequest::default();
    versions.client_software_name = StrBytes::from_static_str("apache-kafka-java");
    versions.client_software_version = StrBytes::from_static_str("4.0.0");
    let api_versions = frame(
        ApiKey::ApiVersions,
        API_VERSIONS_V,
        &RequestKind::ApiVersions(versions),
    );
    bench_decode(c, "api_versions_decode", api_versions);

    let mut topic = metadata_request::MetadataRequestTopic::default();
    topic.name = Some(TopicName(StrBytes::from_static_str("bench-topic")));
    let mut metadata = MetadataRequest::default();
    metadata.topics = Some(vec![topic]);
    let metadata = frame(
        ApiKey::Metadata,
        METADATA_V,
        &RequestKind::Metadata(metadata),
    );
    bench_decode(c, "metadata_decode_1_topic", metadata);
}

fn fetch_encode(c: &mut Criterion) {
    // Four stored 256 KiB batches with consecutive offsets, as `Log::read` returns them.
    let mut records = Vec::new();
    for i in 0..4 {
        let mut batch = BatchBuilder::new(0).records(256, 1024).build();
        assign_offsets(&mut batch, i * 256, 0);
        records.extend_from_slice(&batch);
    }
    let mut partition = fetch_response::PartitionData::default();
    partition.high_watermark = 1024;
    partition.last_stable_offset = 1024;
    let (field, reference) = ByReference::for_set(RecordSet::Memory(Bytes::from(records)), 0).unwrap();
    let by_reference = vec![reference.unwrap()];
    partition.records = Some(field);
    let mut topic = fetch_response::FetchableTopicResponse::default();
    topic.topic_id = uuid::Uuid::from_u128(1);
    topic.partitions = vec![partition];
    let mut response = FetchResponse::default();
    response.responses = vec![topic];
    let response = ResponseKind::Fetch(response);

    let encoded_len = encode_response(ApiKey::Fetch, FETCH_V, 7, &response, &[])
        .unwrap()
        .len();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(encoded_len as u64));
    // What the broker does: the records stay a chunk of their own.
    group.bench_function("fetch_encode_1MiB_by_reference", |b| {
        b.iter(|| encode_response(ApiKey::Fetch, FETCH_V, 7, &response, &by_reference).unwrap())
    });
    // The encoder copying the records, for comparison.
    group.bench_function("fetch_encode_1MiB_copied", |b| {
        b.iter(|| encode_response(ApiKey::Fetch, FETCH_V, 7, &response, &[]).unwrap())
    });
    group.finish();
}

criterion_group!(benches, produce_decode, fetch_encode, small_decodes);
criterion_main!(benches);
