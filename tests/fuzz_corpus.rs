//! Replays the fuzz corpora through the fuzzed functions on every `cargo test`, so a crash
//! found once stays fixed. `cargo test --test fuzz_corpus -- --ignored write_request_seeds`
//! regenerates the request seeds (one valid frame per served API and version).

use std::path::Path;

use blumfeld::api::{decode_request, versions::SERVED};
use bytes::BytesMut;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Encodable;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            out.push((e.file_name().to_string_lossy().to_string(), std::fs::read(e.path()).unwrap()));
        }
    }
    out
}

#[test]
fn request_corpus_decodes_without_panic() {
    let seeds = corpus("request_decode");
    assert!(!seeds.is_empty(), "the request corpus is empty");
    for (name, data) in seeds {
        let full = decode_request(bytes::Bytes::from(data.clone()));
        // Every truncation of a seed must fail cleanly too.
        for cut in (0..data.len()).step_by(3) {
            let _ = decode_request(bytes::Bytes::copy_from_slice(&data[..cut]));
        }
        if name.starts_with("valid-") {
            assert!(full.is_ok(), "{name} should decode");
        }
    }
}

fn default_request(api: ApiKey) -> Option<RequestKind> {
    Some(match api {
        ApiKey::Produce => RequestKind::Produce(ProduceRequest::default()),
        ApiKey::Fetch => RequestKind::Fetch(FetchRequest::default()),
        ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default()),
        ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(CreateTopicsRequest::default()),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(DeleteTopicsRequest::default()),
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(DeleteRecordsRequest::default()),
        ApiKey::InitProducerId => RequestKind::InitProducerId(InitProducerIdRequest::default()),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default()),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(DescribeConfigsRequest::default()),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(CreatePartitionsRequest::default()),
        ApiKey::IncrementalAlterConfigs => {
            RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default())
        }
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        _ => return None,
    })
}

#[test]
#[ignore = "writes files; run by hand to regenerate seeds"]
fn write_request_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/request_decode");
    std::fs::create_dir_all(&dir).unwrap();
    for s in SERVED {
        let Some(body) = default_request(s.api) else { continue };
        for v in s.min..=s.max {
            let mut header = RequestHeader::default();
            header.request_api_key = s.api as i16;
            header.request_api_version = v;
            header.correlation_id = 1;
            let mut buf = BytesMut::new();
            header.encode(&mut buf, s.api.request_header_version(v)).unwrap();
            body.encode(&mut buf, v).unwrap();
            std::fs::write(dir.join(format!("valid-{:?}-v{v}", s.api)), &buf).unwrap();
        }
    }
}
