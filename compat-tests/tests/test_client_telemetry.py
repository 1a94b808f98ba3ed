"""Client telemetry (KIP-714) through Kafka's own tools and client.

`kafka-client-metrics` (org.apache.kafka.tools.ClientMetricsCommand) creates, lists, describes
and deletes a subscription (IncrementalAlterConfigs, ListConfigResources, DescribeConfigs on
CLIENT_METRICS resources); a Java producer (kafka-producer-perf-test, the Java client with its
default `enable.metrics.push=true`) then asks GetTelemetrySubscriptions and pushes its metrics,
which must show on the broker's Prometheus endpoint with its client id.
"""

from __future__ import annotations

import subprocess

import pytest

from harness.broker import broker_kind
from harness.prometheus import http_get, metrics_address
from harness.tools import TOOL_LIB, run_tool, tool_process
from harness.wait import wait_until

CLIENT_METRICS = "org.apache.kafka.tools.ClientMetricsCommand"
PRODUCER_PERF = "org.apache.kafka.tools.ProducerPerformance"
TOPIC = "telemetry-load"
CLIENT_ID = "telemetry-producer"
DEADLINE_S = 60

BROKER_OVERRIDES = {"metrics.listener": "127.0.0.1:0"}


def client_metrics(bootstrap: str, *args: str) -> str:
    return run_tool(CLIENT_METRICS, "--bootstrap-server", bootstrap, *args)


def test_subscription_lifecycle(broker):
    b = broker.bootstrap
    client_metrics(b, "--alter", "--name", "lifecycle", "--metrics", "org.apache.kafka.producer.,org.apache.kafka.consumer.",
                   "--interval", "5000", "--match", "client_software_name=apache-kafka-java")
    assert "lifecycle" in client_metrics(b, "--list").split()
    described = client_metrics(b, "--describe", "--name", "lifecycle")
    assert "interval.ms=5000" in described, described
    assert "org.apache.kafka.producer." in described, described
    assert "client_software_name=apache-kafka-java" in described, described

    # An interval outside Kafka's bounds is refused (INVALID_REQUEST), and nothing changes.
    bad = tool_process(CLIENT_METRICS, "--bootstrap-server", b, "--alter", "--name", "lifecycle", "--interval", "10")
    assert bad.returncode != 0 or "Error" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
    assert "interval.ms=5000" in client_metrics(b, "--describe", "--name", "lifecycle")

    client_metrics(b, "--delete", "--name", "lifecycle")
    assert "lifecycle" not in client_metrics(b, "--list").split()


@pytest.mark.skipif(broker_kind() != "blumfeld", reason="pushed client metrics are exported on Blumfeld's Prometheus endpoint")
def test_pushed_producer_metrics_reach_the_metrics_endpoint(broker):
    b = broker.bootstrap
    host, port = metrics_address(broker)
    client_metrics(b, "--alter", "--name", "producers", "--metrics", "org.apache.kafka.producer.", "--interval", "1000")
    cmd = ["java", "-Xmx256m", "-cp", f"{TOOL_LIB}/*", PRODUCER_PERF, "--topic", TOPIC, "--num-records", "600",
           "--record-size", "100", "--throughput", "30",
           "--producer-props", f"bootstrap.servers={b}", f"client.id={CLIENT_ID}", "enable.metrics.push=true"]
    producer = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def pushed():
            status, text = http_get(f"http://{host}:{port}/metrics")
            lines = [line for line in text.splitlines()
                     if line.startswith("kafka_producer_") and f'client_id="{CLIENT_ID}"' in line]
            return lines if status == 200 and lines else None

        lines = wait_until(pushed, DEADLINE_S, "pushed kafka_producer_* series on /metrics")
        assert all('client_instance_id="' in line for line in lines), lines[:5]
        _, text = http_get(f"http://{host}:{port}/metrics")
        clients = [line for line in text.splitlines() if line.startswith("blumfeld_client_telemetry_clients ")]
        assert clients and float(clients[0].split()[1]) >= 1, clients
    finally:
        producer.kill()
        producer.communicate(timeout=30)
        client_metrics(b, "--delete", "--name", "producers")
