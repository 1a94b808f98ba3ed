//! The exposition names what it should, handles move the right series, and the HTTP listener
//! answers its three paths to a raw TCP client on 127.0.0.1:0.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::*;

fn metrics(partition_detail: bool) -> Metrics {
    let m = Metrics::new(MetricsConfig { partition_detail }).unwrap();
    m.register_apis([ApiKey::Produce, ApiKey::Fetch, ApiKey::Metadata]);
    m
}

fn partition(topic: &str, partition: i32, end: i64, size_bytes: u64) -> PartitionSnapshot {
    let positions = LogPositions::new(0, end, end);
    PartitionSnapshot::single_node(topic, partition, positions, size_bytes)
}

/// The value of the series `name{labels}` in the text exposition (labels as printed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

#[test]
fn exposition_names_the_always_present_families() {
    let text = metrics(false).encode_text().unwrap();
    for name in [
        "blumfeld_build_info",
        "blumfeld_requests_total",
        "blumfeld_request_duration_seconds_bucket",
        "blumfeld_request_queue_time_seconds_count",
        "blumfeld_request_errors_total",
        "blumfeld_connections_open",
        "blumfeld_partitions",
        "blumfeld_under_replicated_partitions",
        "blumfeld_offline_partitions",
        "blumfeld_active_controller_count",
        "blumfeld_metadata_lag_records",
        "blumfeld_isr_shrinks_total",
        "blumfeld_follower_fetch_requests_total",
        "blumfeld_replication_bytes_in_total",
        "blumfeld_replication_bytes_out_total",
        "blumfeld_alter_partition_seconds_count",
        "blumfeld_replica_lag_max_records",
        "blumfeld_replica_lag_max_milliseconds",
        "blumfeld_group_coordinator_groups",
        "blumfeld_transaction_coordinator_transactions",
    ] {
        assert!(text.contains(&format!("\n{name}")), "{name} missing from:\n{text}");
    }
    assert_eq!(sample(&text, r#"blumfeld_requests_total{api="Produce"}"#), Some(0.0));
    assert_eq!(sample(&text, r#"blumfeld_group_coordinator_groups{state="Stable"}"#), Some(0.0));
}

#[test]
fn family_names_follow_the_conventions() {
    let m = metrics(true);
    let names = m.family_names();
    assert!(names.len() > 30, "{names:?}");
    for name in names {
        assert!(name.starts_with("blumfeld_"), "{name}");
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{name}");
    }
    let mut sorted = names.to_vec();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "a family is defined twice");
}

#[test]
fn api_handles_increment_their_own_series() {
    let m = metrics(false);
    let produce = m.api(ApiKey::Produce).unwrap();
    assert_eq!(produce.label(), "Produce");
    produce.record(Duration::from_micros(20), Duration::from_millis(3));
    produce.record(Duration::from_micros(20), Duration::from_millis(3));
    produce.record_errors([0, 0, 3]);
    produce.record_error(9999, 1);
    m.api(ApiKey::Fetch).unwrap().record(Duration::ZERO, Duration::from_millis(600));
    let text = m.encode_text().unwrap();
    assert_eq!(sample(&text, r#"blumfeld_requests_total{api="Metadata"}"#), Some(0.0), "registered: exported at 0");
    assert_eq!(sample(&text, r#"blumfeld_requests_total{api="JoinGroup"}"#), None, "not registered, not used");
    m.api(ApiKey::JoinGroup).unwrap().record(Duration::ZERO, Duration::ZERO);

    let text = m.encode_text().unwrap();
    assert_eq!(sample(&text, r#"blumfeld_requests_total{api="Produce"}"#), Some(2.0));
    assert_eq!(sample(&text, r#"blumfeld_requests_total{api="Fetch"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"blumfeld_requests_total{api="JoinGroup"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"blumfeld_request_errors_total{api="Produce",error="NONE"}"#), Some(2.0));
    assert_eq!(sample(&text, r#"blumfeld_request_errors_total{api="Produce",error="UNKNOWN_TOPIC_OR_PARTITION"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"blumfeld_request_errors_total{api="Produce",error="OTHER"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"blumfeld_request_duration_seconds_bucket{api="Produce",le="0.0025"}"#), Some(0.0));
    assert_eq!(sample(&text, r#"blumfeld_request_duration_seconds_bucket{api="Produce",le="0.005"}"#), Some(2.0));
    assert_eq!(sample(&text, r#"blumfeld_request_duration_seconds_count{api="Fetch"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"blumfeld_request_queue_time_seconds_count{api="Produce"}"#), Some(2.0));
}

#[test]
fn error_names_are_kafkas() {
    assert_eq!(error_name(0), "NONE");
    assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
    assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
    assert_eq!(error_name(10), "MESSAGE_TOO_LARGE");
    assert_eq!(error_name(32000), "CODE_32000");
}

#[test]
fn topic_handles_count_per_topic_and_removal_drops_the_series() {
    let m = metrics(false);
    let a = m.topic("a");
    let a_again = m.topic("a");
    a.record_produce(100, 3);
    a_again.record_produce(50, 1);
    a.record_fetch(70);
    m.topic("b").record_rejected(9);
    let text = m.encode_text().unwrap();
    assert_eq!(sample(&text, r#"blumfeld_topic_bytes_in_total{topic="a"}"#), Some(150.0));
    assert_eq!(sample(&text, r#"blumfeld_topic_messages_in_total{topic="a"}"#), Some(4.0));
    assert_eq!(sample(&text, r#"blumfeld_topic_bytes_out_total{topic="a"}"#), Some(70.0));
    assert_eq!(sample(&text, r#"blumfeld_topic_bytes_rejected_total{topic="b"}"#), Some(9.0));
    m.remove_topic("a");
    let text = m.encode_text().unwrap();
    assert_eq!(sample(&text, r#"blumfeld_topic_bytes_in_total{topic="a"}"#), None);
    assert_eq!(sample(&text, r#"blumfeld_topic_bytes_rejected_total{topic="b"}"#), Some(9.0));
}

#[test]
fn connection_guards_count_open_and_closed() {
    let m = metrics(false);
    let first = m.connection_opened();
    let second = m.connection_opened();
    drop(first);
    let text = m.encode_text().unwrap();
    assert_eq!(sample(&text, "blumfeld_connections_open"), Some(1.0));
    assert_eq!(sample(&text, "blumfeld_connections_created_total"), Some(2.0));
    assert_eq!(sample(&text, "blumfeld_connections_closed_total"), Some(1.0));
    drop(second);
    assert_eq!(sample(&m.encode_text().unwrap(), "blumfeld_connections_open"), Some(0.0));
}

fn snapshot(partitions: Vec<PartitionSnapshot>) -> BrokerSnapshot {
    BrokerSnapshot {
        partitions,
        metadata: MetadataSnapshot { active_controller: true, log_end_offset: 12, last_applied_offset: 10, leader_epoch: 0, ..Default::default() },
        log_dirs: vec![LogDirSnapshot { dir: "/data".into(), total_bytes: 1000, free_bytes: 250 }],
        groups_by_state: vec![("Stable".into(), 2)],
        ..Default::default()
    }
}

#[test]
fn open_transactions_show_as_last_stable_offset_lag_and_queued_markers() {
    let m = metrics(true);
    let mut open = partition("t", 0, 10, 100);
    open.last_stable_offset = 4;
    let mut followed = partition("t", 1, 10, 100);
    followed.is_leader = false;
    followed.last_stable_offset = 0;
    let mut s = snapshot(vec![open, followed]);
    s.marker_queue_transactions = 2;
    m.set_snapshot_source(Box::new(move || s.clone()));
    let text = m.encode_text().unwrap();
    assert_eq!(sample(&text, r#"blumfeld_last_stable_offset_lag{partition="0",topic="t"}"#), Some(6.0));
    assert_eq!(sample(&text, r#"blumfeld_last_stable_offset_lag{partition="1",topic="t"}"#), None, "a follower's LSO is not its own");
    assert_eq!(sample(&text, "blumfeld_last_stable_offset_lag_max"), Some(6.0));
    assert_eq!(sample(&text, "blumfeld_transaction_marker_queue_transactions"), Some(2.0));
    m.txn_markers_written.with_label_values(&["commit"]).inc();
    let text = m.encode_text().unwrap();
    assert_eq!(sample(&text, r#"blumfeld_transaction_markers_written_total{result="commit"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"blumfeld_transaction_markers_written_total{result="abort"}"#), Some(0.0));
}

#[test]
fn snapshot_gauges_follow_the_snapshot_and_forget_what_left() {
    let m = metrics(true);
    let state = Arc::new(std::sync::Mutex::new(snapshot(vec![partition("a", 0, 5, 500), partition("a", 1, 7, 700)])));
    let s = state.clone();
    m.set_snapshot_source(Box::new(move || s.lock().unwrap().clone()));
    let text = m.encode_text().unwrap();
    assert_eq!(sample(&text, "blumfeld_partitions"), Some(2.0));
    assert_eq!(sample(&text, "blumfeld_leader_partitions"), Some(2.0));
    assert_eq!(sample(&text, "blumfeld_under_replicated_partitions"), Some(0.0));
    assert_eq!(sample(&text, "blumfeld_active_controller_count"), Some(1.0));
    assert_eq!(sample(&text, "blumfeld_metadata_lag_records"), Some(2.0));
    assert_eq!(sample(&text, r#"blumfeld_topic_log_size_bytes{topic="a"}"#), Some(1200.0));
    assert_eq!(sample(&text, r#"blumfeld_topic_partitions{topic="a"}"#), Some(2.0));
    assert_eq!(sample(&text, r#"blumfeld_log_end_offset{partition="1",topic="a"}"#), Some(7.0));
    assert_eq!(sample(&text, r#"blumfeld_log_size_bytes{partition="0",topic="a"}"#), Some(500.0));
    assert_eq!(sample(&text, r#"blumfeld_log_dir_free_bytes{dir="/data"}"#), Some(250.0));
    assert_eq!(sample(&text, r#"blumfeld_group_coordinator_groups{state="Stable"}"#), Some(2.0));
    assert_eq!(sample(&text, r#"blumfeld_group_coordinator_groups{state="Empty"}"#), Some(0.0));

    let mut lagging = partition("b", 0, 3, 30);
    lagging.replicas = 3;
    lagging.isr = 1;
    lagging.min_isr = 2;
    lagging.followers = vec![
        FollowerLag { replica: 2, lag_records: 3, lag_ms: 40_000 },
        FollowerLag { replica: 3, lag_records: 1, lag_ms: 45_000 },
    ];
    *state.lock().unwrap() = snapshot(vec![lagging]);
    let text = m.encode_text().unwrap();
    assert_eq!(sample(&text, r#"blumfeld_replica_lag_records{partition="0",replica="2",topic="b"}"#), Some(3.0));
    assert_eq!(sample(&text, r#"blumfeld_replica_lag_milliseconds{partition="0",replica="3",topic="b"}"#), Some(45_000.0));
    assert_eq!(sample(&text, "blumfeld_replica_lag_max_records"), Some(3.0));
    assert_eq!(sample(&text, "blumfeld_replica_lag_max_milliseconds"), Some(45_000.0));
    assert_eq!(sample(&text, "blumfeld_under_replicated_partitions"), Some(1.0));
    assert_eq!(sample(&text, "blumfeld_under_min_isr_partitions"), Some(1.0));
    assert_eq!(sample(&text, r#"blumfeld_topic_log_size_bytes{topic="a"}"#), None, "topic a is gone");
    assert_eq!(sample(&text, r#"blumfeld_log_end_offset{partition="1",topic="a"}"#), None);
}

#[test]
fn without_partition_detail_only_topic_aggregates() {
    let m = metrics(false);
    m.set_snapshot_source(Box::new(|| snapshot(vec![partition("a", 0, 5, 500)])));
    let text = m.encode_text().unwrap();
    assert_eq!(sample(&text, r#"blumfeld_topic_log_size_bytes{topic="a"}"#), Some(500.0));
    assert!(!text.contains("blumfeld_log_end_offset{"), "{text}");
    assert!(!text.contains("blumfeld_log_size_bytes{"), "{text}");
}

#[test]
fn consumer_lag_series_are_set_removed_and_retained() {
    let m = metrics(false);
    m.update_consumer_lag("g1", "t", 0, 5);
    m.update_consumer_lag("g1", "t", 1, 0);
    m.update_consumer_lag("g2", "t", 0, 9);
    let text = m.encode_text().unwrap();
    assert_eq!(sample(&text, r#"blumfeld_consumer_group_lag{group="g1",partition="0",topic="t"}"#), Some(5.0));
    m.remove_consumer_lag("g1", "t", 1);
    m.retain_consumer_lag(|group, _, _| group != "g2");
    let text = m.encode_text().unwrap();
    assert_eq!(sample(&text, r#"blumfeld_consumer_group_lag{group="g1",partition="0",topic="t"}"#), Some(5.0));
    assert_eq!(sample(&text, r#"blumfeld_consumer_group_lag{group="g1",partition="1",topic="t"}"#), None);
    assert_eq!(sample(&text, r#"blumfeld_consumer_group_lag{group="g2",partition="0",topic="t"}"#), None);
}

#[test]
fn consumer_lag_from_the_snapshot_replaces_the_series() {
    let m = metrics(false);
    m.update_consumer_lag("stale", "t", 0, 1);
    m.set_snapshot_source(Box::new(|| BrokerSnapshot {
        partitions: vec![partition("t", 0, 10, 1)],
        group_offsets: Some(vec![
            GroupOffset { group: "g".into(), topic: "t".into(), partition: 0, committed_offset: 4 },
            GroupOffset { group: "g".into(), topic: "gone".into(), partition: 0, committed_offset: 4 },
        ]),
        ..Default::default()
    }));
    let text = m.encode_text().unwrap();
    assert_eq!(sample(&text, r#"blumfeld_consumer_group_lag{group="g",partition="0",topic="t"}"#), Some(6.0));
    assert_eq!(sample(&text, r#"blumfeld_consumer_group_lag{group="stale",partition="0",topic="t"}"#), None);
    assert!(!text.contains(r#"topic="gone""#));
}

#[test]
fn log_dir_space_reads_the_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let space = log_dir_space(dir.path()).unwrap();
    assert!(space.total_bytes > 0 && space.free_bytes <= space.total_bytes, "{space:?}");
    assert!(log_dir_space(&dir.path().join("missing")).is_err());
}

/// Sends `request` on a fresh connection and returns (status, body).
async fn http(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8(response).unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn the_listener_answers_metrics_health_and_ready() {
    let m = Arc::new(metrics(false));
    m.topic("orders").record_produce(42, 1);
    let ready = Arc::new(AtomicBool::new(false));
    let r = ready.clone();
    let health: HealthCheck = Arc::new(move || {
        if r.load(Ordering::Relaxed) { Health::ready() } else { Health::not_ready("metadata not caught up") }
    });
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let server = serve("127.0.0.1:0".parse().unwrap(), m.clone(), health, shutdown_rx).await.unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);

    let (status, body) = http(addr, &get("/metrics")).await;
    assert_eq!(status, 200);
    assert_eq!(sample(&body, r#"blumfeld_topic_bytes_in_total{topic="orders"}"#), Some(42.0));
    assert_eq!(http(addr, &get("/health")).await.0, 200);
    let (status, body) = http(addr, &get("/ready")).await;
    assert_eq!((status, body.as_str()), (503, "not ready: metadata not caught up\n"));
    ready.store(true, Ordering::Relaxed);
    assert_eq!(http(addr, &get("/ready?x=1")).await.0, 200);
    assert_eq!(http(addr, &get("/nope")).await.0, 404);
    assert_eq!(http(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await.0, 405);
    assert_eq!(http(addr, b"garbage\r\n\r\n").await.0, 400);
    let (status, body) = http(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (200, ""));
    let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'x', http::HTTP_REQUEST_HEAD_BYTES_MAX));
    assert_eq!(http(addr, &huge).await.0, 431);

    shutdown_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server.join()).await.unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed after shutdown");
}

#[tokio::test]
async fn at_most_the_connection_limit_is_served_at_once() {
    let m = Arc::new(metrics(false));
    let (_shutdown_tx, shutdown_rx) = watch::channel(false);
    let server = serve("127.0.0.1:0".parse().unwrap(), m, Arc::new(Health::ready), shutdown_rx).await.unwrap();
    let addr = server.local_addr();
    // Idle connections hold every permit; one more is accepted by the kernel only.
    let mut idle = Vec::new();
    for _ in 0..http::HTTP_CONNECTIONS_MAX {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiting = tokio::spawn(async move { http(addr, &get("/health")).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "served beyond the connection limit");
    drop(idle);
    let (status, _) = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
    assert_eq!(status, 200);
}
