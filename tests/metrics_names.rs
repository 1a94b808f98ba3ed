#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every `blumfeld_*` metric that an alert, a recording rule or a dashboard panel uses must be
//! one the broker exports: a renamed metric otherwise silently blanks a panel or disarms an
//! alert. Names come from PromQL in metrics/alerts.yml and metrics/grafana/blumfeld.json;
//! exported names from the registry's `gather()` after every family has been given a series.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;

use blumfeld::metrics;

use metrics::{BrokerSnapshot, FollowerLag, LogDirSnapshot, LogPositions, MetadataSnapshot, Metrics, MetricsConfig, PartitionSnapshot, QuorumReplicaLag};

const HISTOGRAM_SUFFIXES: &[&str] = &["_bucket", "_sum", "_count"];

fn repo_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A broker's registry with a series in every family, gathered as Prometheus would scrape it.
fn exported_names() -> (BTreeSet<String>, Metrics) {
    let m = Metrics::new(MetricsConfig { partition_detail: true }).unwrap();
    m.register_apis([ApiKey::Produce, ApiKey::Fetch]);
    m.api(ApiKey::Produce).unwrap().record(Duration::from_micros(5), Duration::from_millis(1));
    m.api(ApiKey::Produce).unwrap().record_error(0, 1);
    m.topic("t").record_produce(10, 1);
    m.update_consumer_lag("g", "t", 0, 3);
    m.set_snapshot_source(Box::new(|| BrokerSnapshot {
        partitions: vec![PartitionSnapshot {
            followers: vec![FollowerLag { replica: 2, lag_records: 1, lag_ms: 5 }],
            ..PartitionSnapshot::single_node("t", 0, LogPositions::new(0, 1, 1), 10)
        }],
        log_dirs: vec![LogDirSnapshot { dir: "/data".into(), total_bytes: 10, free_bytes: 5 }],
        metadata: MetadataSnapshot {
            replica_lag: vec![QuorumReplicaLag { node: 2, role: "voter", lag_records: 0 }],
            ..Default::default()
        },
        ..Default::default()
    }));
    let names = m.gather().iter().map(|f| f.name().to_string()).collect();
    (names, m)
}

/// `blumfeld_` metric names in a PromQL expression. Recording-rule names (`blumfeld:...`) and
/// longer identifiers that merely contain `blumfeld_` are not metric references.
fn metric_names_in(expr: &str, out: &mut BTreeSet<String>) {
    let bytes = expr.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while let Some(found) = expr[i..].find("blumfeld_") {
        let start = i + found;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end].is_ascii_digit() || bytes[end] == b'_') {
            end += 1;
        }
        let preceded = start > 0 && ident(bytes[start - 1]);
        let followed = end < bytes.len() && ident(bytes[end]);
        if !preceded && !followed {
            out.insert(expr[start..end].to_string());
        }
        i = end;
    }
}

/// Every string under a key named `expr` or `query` (panel targets, template variables).
fn promql_in_json(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => promql_in_json(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| promql_in_json(i, out)),
        _ => {}
    }
}

fn alert_exprs() -> Vec<String> {
    let doc: serde_yaml::Value = serde_yaml::from_str(&repo_file("metrics/alerts.yml")).unwrap();
    let groups = doc["groups"].as_sequence().expect("alerts.yml: groups");
    let mut exprs = Vec::new();
    for group in groups {
        for rule in group["rules"].as_sequence().expect("alerts.yml: rules") {
            let expr = rule["expr"].as_str().unwrap_or_else(|| panic!("rule without expr: {rule:?}"));
            assert!(rule["alert"].is_string() ^ rule["record"].is_string(), "rule is neither alert nor record: {rule:?}");
            exprs.push(expr.to_string());
        }
    }
    exprs
}

fn dashboard_exprs() -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_str(&repo_file("metrics/grafana/blumfeld.json")).unwrap();
    let mut exprs = Vec::new();
    promql_in_json(&doc, &mut exprs);
    exprs
}

fn assert_all_exported(what: &str, exprs: &[String], exported: &BTreeSet<String>) -> usize {
    let mut used = BTreeSet::new();
    for e in exprs {
        metric_names_in(e, &mut used);
    }
    let missing: Vec<&String> = used
        .iter()
        .filter(|name| {
            let histogram_base = HISTOGRAM_SUFFIXES.iter().filter_map(|s| name.strip_suffix(s));
            !exported.contains(*name) && !histogram_base.into_iter().any(|b| exported.contains(b))
        })
        .collect();
    assert!(missing.is_empty(), "{what} uses metrics the broker does not export: {missing:?}\nexported: {exported:?}");
    used.len()
}

#[test]
fn alert_rules_use_only_exported_metrics() {
    let (exported, _) = exported_names();
    let used = assert_all_exported("metrics/alerts.yml", &alert_exprs(), &exported);
    assert!(used >= 10, "only {used} metric names found in alerts.yml");
}

#[test]
fn dashboard_uses_only_exported_metrics() {
    let (exported, _) = exported_names();
    let used = assert_all_exported("metrics/grafana/blumfeld.json", &dashboard_exprs(), &exported);
    assert!(used >= 15, "only {used} metric names found in the dashboard");
}

#[test]
fn every_defined_family_is_gathered_once_populated() {
    // Keeps exported_names() honest: a family it leaves without series would hide from the
    // checks above.
    let (exported, m) = exported_names();
    let defined: BTreeSet<String> = m.family_names().iter().cloned().collect();
    assert_eq!(exported, defined);
}

#[test]
fn the_scanner_finds_names_and_skips_recording_rules() {
    let mut found = BTreeSet::new();
    metric_names_in(
        "sum(rate(blumfeld_topic_bytes_in_total{topic=~\"a\"}[1m])) + blumfeld:requests:rate1m + x_blumfeld_y + blumfeld_up",
        &mut found,
    );
    assert_eq!(found.into_iter().collect::<Vec<_>>(), ["blumfeld_topic_bytes_in_total", "blumfeld_up"]);
}

#[test]
fn prometheus_config_scrapes_three_nodes_and_loads_the_alerts() {
    let doc: serde_yaml::Value = serde_yaml::from_str(&repo_file("metrics/prometheus.yml")).unwrap();
    let rule_files: Vec<&str> = doc["rule_files"].as_sequence().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(rule_files, ["alerts.yml"]);
    let targets = &doc["scrape_configs"][0]["static_configs"][0]["targets"];
    let targets: Vec<&str> = targets.as_sequence().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(targets, ["blumfeld-1:9644", "blumfeld-2:9644", "blumfeld-3:9644"]);
}

/// The compose files mount the metrics/ files and the provisioning that exist in the repo, and
/// Grafana's dashboard provider reads the directory the dashboard is mounted at.
#[test]
fn compose_mounts_files_that_exist() {
    let docker = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker");
    let mut dashboard_mount = None;
    for file in ["compose.yaml", "compose.3node.yaml"] {
        let doc: serde_yaml::Value = serde_yaml::from_str(&repo_file(&format!("docker/{file}"))).unwrap();
        let services = doc["services"].as_mapping().unwrap_or_else(|| panic!("{file}: services"));
        for (name, service) in services {
            let Some(volumes) = service["volumes"].as_sequence() else { continue };
            for v in volumes.iter().filter_map(|v| v.as_str()) {
                let mut parts = v.split(':');
                let (source, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
                if !source.starts_with('.') {
                    continue; // a named volume
                }
                assert!(docker.join(source).exists(), "{file}: {name:?} mounts {source}, which does not exist");
                if source.ends_with("metrics/grafana") {
                    dashboard_mount = Some(target.to_string());
                }
            }
        }
    }
    let provider: serde_yaml::Value =
        serde_yaml::from_str(&repo_file("docker/grafana/provisioning/dashboards/blumfeld.yaml")).unwrap();
    let path = provider["providers"][0]["options"]["path"].as_str().map(str::to_string);
    assert_eq!(path, dashboard_mount, "Grafana reads dashboards where compose.yaml mounts them");
    let doc: serde_yaml::Value = serde_yaml::from_str(&repo_file("docker/compose.yaml")).unwrap();
    let dockerfile = doc["services"]["blumfeld-1"]["build"]["dockerfile"].as_str().unwrap();
    assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join(dockerfile).exists(), "{dockerfile}");
}
