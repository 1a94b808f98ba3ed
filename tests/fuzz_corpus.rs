#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Replays the fuzz corpora through the fuzzed functions on every `cargo test`, so a crash
//! found once stays fixed. `cargo test --test fuzz_corpus -- --ignored write_request_seeds`
//! regenerates the request seeds (one valid frame per served API and version).

use blumfeld::log::RecoveryMode;
use std::path::Path;

use blumfeld::api::decode_request;
use blumfeld::api::versions::{SERVED, default_request};
use bytes::BytesMut;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Encodable;

/// As in the broker binary: hostile array lengths must not abort (see `blumfeld::alloc`).
#[global_allocator]
static ALLOCATOR: blumfeld::alloc::LazyLargeAlloc = blumfeld::alloc::LazyLargeAlloc;

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

/// The log-recovery fuzz target's body (fuzz/fuzz_targets/log_recovery.rs), replayed here.
fn recover_from(data: &[u8]) -> Option<i64> {
    let (&mode, rest) = data.split_first()?;
    let dir = tempfile::tempdir().ok()?;
    let (log, other) = rest.split_at(rest.len() / 2);
    let log = if mode & 1 == 0 { rest } else { log };
    std::fs::write(dir.path().join("00000000000000000000.log"), log).ok()?;
    if mode & 1 == 1 {
        let name = match (mode >> 1) % 6 {
            0 => "00000000000000000000.index",
            1 => "00000000000000000000.timeindex",
            2 => "leader-epoch-checkpoint",
            3 => "00000000000000000000.snapshot",
            4 => "00000000000000000000.txnindex",
            _ => "clean-shutdown",
        };
        std::fs::write(dir.path().join(name), other).ok()?;
    }
    let recovery = if mode & 0x80 == 0 { RecoveryMode::Full } else { RecoveryMode::PageCacheIntact };
    let mut log = blumfeld::log::Log::open_with(dir.path(), blumfeld::log::LogConfig::default(), 0, recovery).ok()?;
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    while offset < end {
        match log.read(offset, 1 << 16, end, true) {
            Ok(r) if r.next_offset > offset => offset = r.next_offset,
            _ => break,
        }
    }
    let batch = blumfeld::record::BatchBuilder::new(0).records(2, 8).build();
    if let Ok(blumfeld::log::AppendOutcome::Appended(info)) = log.append(&batch, blumfeld::types::LeaderEpoch(0), 0) {
        assert_eq!(info.first_offset, end);
        let after = blumfeld::types::Offset(end.0 + 2);
        assert!(log.read(end, 1 << 16, after, true).is_ok_and(|r| r.next_offset == after));
    }
    Some(end.0)
}

#[test]
fn log_recovery_corpus_recovers_without_panic() {
    let seeds = corpus("log_recovery");
    assert!(!seeds.is_empty(), "the log recovery corpus is empty");
    for (name, data) in seeds {
        let end = recover_from(&data);
        if name.starts_with("valid-") {
            assert!(end.is_some_and(|e| e > 0), "{name} should recover to a non-empty log");
        }
        for cut in (1..data.len()).step_by(97) {
            let _ = recover_from(&data[..cut]);
        }
    }
}

#[test]
#[ignore = "writes files; run by hand to regenerate seeds"]
fn write_log_recovery_seeds() {
    use blumfeld::record::{BatchBuilder, Record};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/log_recovery");
    std::fs::create_dir_all(&dir).unwrap();
    let mut log = Vec::new();
    let mut offset = 0;
    for i in 0..5 {
        let mut b = BatchBuilder::new(offset).partition_leader_epoch(0).timestamps(1_000 + i);
        for j in 0..3 {
            b = b.record(Record { timestamp_delta_ms: j, key: Some(vec![b'k', j as u8]), value: Some(vec![7; 20]) });
        }
        log.extend_from_slice(&b.build());
        offset += 3;
    }
    let mut valid = vec![0u8];
    valid.extend_from_slice(&log);
    std::fs::write(dir.join("valid-five-batches"), &valid).unwrap();
    let mut torn = valid.clone();
    torn.truncate(valid.len() - 10);
    std::fs::write(dir.join("torn-tail"), &torn).unwrap();
    for mode in [1u8, 3, 5, 7, 9] {
        let mut with_file = vec![mode];
        with_file.extend_from_slice(&log);
        with_file.extend_from_slice(&log[..log.len().min(64)]);
        std::fs::write(dir.join(format!("garbage-side-file-{mode}")), &with_file).unwrap();
    }
}
