"""Prometheus: the shipped configs pass promtool, and a real Prometheus scrapes a real broker.

The end-to-end test needs the broker to serve `metrics.listener` (`--override
metrics.listener=127.0.0.1:0`) and print `metrics listening on HOST:PORT`; until main.rs does,
it fails at that step with a message saying so. It skips only when promtool/prometheus are
missing and cannot be installed (apt-get install prometheus), and for BROKER=kafka, which
exports JMX, not Prometheus.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import OffsetAndMetadata

from harness import wire
from harness.broker import REPO_ROOT, broker_kind
from harness.prometheus import (ALERTS_YML, PROMETHEUS_YML, PrometheusServer, ensure_prometheus, http_get,
                                metrics_address, parse_exposition, promtool)
from harness.wait import wait_until

TOPIC = "prometheus-load"
MESSAGES = 500
VALUE_BYTES = 200
COMMITTED = 120
GROUP = "prometheus-lag"
DEADLINE_S = 60
OFFSET_COMMIT_API = 8
LAG_EXPORT_WAIT_S = 10

DASHBOARD_JSON = REPO_ROOT / "metrics" / "grafana" / "blumfeld.json"
DOCKER_PROMETHEUS_YML = REPO_ROOT / "docker" / "prometheus" / "prometheus.yml"

BROKER_OVERRIDES = {"metrics.listener": "127.0.0.1:0", "metrics.partition.detail": "true"}


@pytest.fixture(scope="module")
def prometheus_ready():
    why = ensure_prometheus()
    if why:
        pytest.skip(why)


def test_promtool_accepts_the_scrape_config(prometheus_ready):
    # rule_files resolve relative to the config, so this also checks alerts.yml.
    proc = promtool("check", "config", str(PROMETHEUS_YML))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_accepts_the_compose_scrape_config(prometheus_ready, tmp_path):
    # docker/compose.yaml mounts metrics/alerts.yml beside this config; do the same.
    shutil.copy(DOCKER_PROMETHEUS_YML, tmp_path / "prometheus.yml")
    shutil.copy(ALERTS_YML, tmp_path / "alerts.yml")
    proc = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_accepts_the_rules(prometheus_ready):
    proc = promtool("check", "rules", str(ALERTS_YML))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout, proc.stdout


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the Grafana dashboard, with Grafana's variables filled in."""
    found: list[str] = []

    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k == "expr" and isinstance(x, str):
                    found.append(x)
                else:
                    walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(json.loads(DASHBOARD_JSON.read_text()))
    fill = {"$__rate_interval": "1m", "$instance": ".*", "$topic": ".*", "$group": ".*"}
    filled = []
    for expr in found:
        for var, value in fill.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr}"
        filled.append(expr)
    return filled


def test_dashboard_queries_are_valid_promql(prometheus_ready, tmp_path):
    queries = dashboard_queries()
    assert len(queries) >= 20, queries
    with PrometheusServer(tmp_path / "prometheus", []) as prom:
        for q in queries:
            prom.query(q)  # raises with Prometheus' parse error


def produce_and_consume(bootstrap: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    try:
        admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    futures = [producer.send(TOPIC, key=str(i).encode(), value=bytes([i % 256]) * VALUE_BYTES) for i in range(MESSAGES)]
    producer.flush(DEADLINE_S)
    for f in futures:
        f.get(timeout=DEADLINE_S)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    try:
        tp = TopicPartition(TOPIC, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        received = 0
        deadline = time.monotonic() + DEADLINE_S
        while received < MESSAGES and time.monotonic() < deadline:
            received += sum(len(rs) for rs in consumer.poll(timeout_ms=500).values())
        assert received == MESSAGES, f"consumed {received} of {MESSAGES}"
    finally:
        consumer.close()


@pytest.mark.skipif(broker_kind() == "kafka", reason="Apache Kafka exports JMX, not a Prometheus endpoint")
def test_prometheus_scrapes_the_broker(prometheus_ready, broker, tmp_path):
    # Waits for the lead's wiring: `metrics.listener` served and announced on stdout.
    host, port = metrics_address(broker)
    base = f"http://{host}:{port}"
    assert http_get(f"{base}/health")[0] == 200
    wait_until(lambda: http_get(f"{base}/ready")[0] == 200, 30, "/ready to answer 200")
    assert http_get(f"{base}/nope")[0] == 404
    status, text = http_get(f"{base}/metrics")
    assert status == 200 and "blumfeld_build_info" in text, text[:2000]

    with PrometheusServer(tmp_path / "prometheus", [f"{host}:{port}"]) as prom:
        prom.wait_value('up{job="blumfeld"}', lambda v: v == 1, DEADLINE_S, "the broker target to be up")
        produce_and_consume(broker.bootstrap)

        # Counters are exact: the scrape after the load shows every byte and record.
        prom.wait_value(f'sum(blumfeld_topic_messages_in_total{{topic="{TOPIC}"}})', lambda v: v == MESSAGES,
                        DEADLINE_S, f"messages in for {TOPIC} to reach {MESSAGES}")
        bytes_in = prom.value(f'sum(blumfeld_topic_bytes_in_total{{topic="{TOPIC}"}})')
        assert bytes_in is not None and bytes_in >= MESSAGES * VALUE_BYTES, bytes_in
        prom.wait_value(f'sum(blumfeld_topic_bytes_out_total{{topic="{TOPIC}"}})', lambda v: v >= MESSAGES * VALUE_BYTES,
                        DEADLINE_S, f"bytes out for {TOPIC}")
        prom.wait_value('sum(blumfeld_requests_total{api="Produce"})', lambda v: v > 0, DEADLINE_S, "Produce requests")
        prom.wait_value('sum(blumfeld_request_duration_seconds_count{api="Fetch"})', lambda v: v > 0, DEADLINE_S,
                        "Fetch latency observations")
        p99 = prom.value('histogram_quantile(0.99, sum by (le) (blumfeld_request_duration_seconds_bucket{api="Produce"}))')
        assert p99 is not None and 0 < p99 <= 30, p99
        # Scrape-time state from the broker's snapshot source.
        prom.wait_value(f'sum(blumfeld_topic_partitions{{topic="{TOPIC}"}})', lambda v: v == 1, DEADLINE_S,
                        "the topic's partition count")
        prom.wait_value(f'sum(blumfeld_log_end_offset{{topic="{TOPIC}",partition="0"}})', lambda v: v == MESSAGES,
                        DEADLINE_S, "the partition's log end offset (metrics.partition.detail=true)")
        prom.wait_value('sum(blumfeld_active_controller_count)', lambda v: v == 1, DEADLINE_S, "one active controller")
        assert prom.value("sum(blumfeld_under_replicated_partitions)") == 0
        assert prom.value("max(blumfeld_offline_partitions)") == 0
        prom.wait_value("min(blumfeld_log_dir_total_bytes)", lambda v: v > 0, DEADLINE_S, "log dir space")

        # The shipped rules load and evaluate; on a healthy broker nothing is pending or firing.
        def evaluated():
            rules = prom.alert_rules()
            return rules if all(r.get("lastEvaluation", "").startswith("2") and r["health"] == "ok"
                                for r in rules.values()) else None

        rules = wait_until(evaluated, DEADLINE_S, "every alert rule to evaluate")
        assert len(rules) >= 10, sorted(rules)
        active = {name: r["state"] for name, r in rules.items() if r["state"] != "inactive"}
        assert active == {}, f"alerts active on a healthy broker: {active}"

        check_consumer_lag(broker, prom, base)


def check_consumer_lag(broker, prom: PrometheusServer, metrics_url: str) -> None:
    """The broker computes consumer lag itself: a group that committed part of the topic shows
    the rest as lag in Prometheus, and the series drops to 0 once the consumer catches up."""
    assert OFFSET_COMMIT_API in wire.api_versions(broker.host, broker.port), "the broker must serve OffsetCommit"
    tp = TopicPartition(TOPIC, 0)

    def commit(offset: int) -> None:
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=GROUP, enable_auto_commit=False)
        try:
            consumer.assign([tp])
            consumer.commit({tp: OffsetAndMetadata(offset, "", -1)})
        finally:
            consumer.close()

    commit(COMMITTED)

    def lag_exported():
        samples = parse_exposition(http_get(f"{metrics_url}/metrics")[1])
        return any(k.startswith("blumfeld_consumer_group_lag{") and f'group="{GROUP}"' in k for k in samples)

    wait_until(lag_exported, LAG_EXPORT_WAIT_S, f"lag series for {GROUP}")
    lag = f'sum(blumfeld_consumer_group_lag{{group="{GROUP}",topic="{TOPIC}",partition="0"}})'
    prom.wait_value(lag, lambda v: v == MESSAGES - COMMITTED, DEADLINE_S, f"lag of {GROUP} to be {MESSAGES - COMMITTED}")
    # The consumer catches up: lag drops to 0.
    commit(MESSAGES)
    prom.wait_value(lag, lambda v: v == 0, DEADLINE_S, f"lag of {GROUP} to drop to 0")
