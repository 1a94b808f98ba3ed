"""Authorized operations through the Java AdminClient: describeTopics, describeCluster and
describeConsumerGroups with includeAuthorizedOperations(true) (Metadata, DescribeCluster,
DescribeGroups for a classic group, ConsumerGroupDescribe for a KIP-848 group). With no
authorizer Kafka reports every operation its ACL model supports for the resource type; the
expected sets below are what Apache Kafka 4.3 answers (BROKER=kafka passes the same test)."""

from __future__ import annotations

from harness.clients import java_cmd, run_driver

BROKER_OVERRIDES = {"group.initial.rebalance.delay.ms": "0"}

TOPIC = "ALTER,ALTER_CONFIGS,CREATE,DELETE,DESCRIBE,DESCRIBE_CONFIGS,READ,WRITE"
CLUSTER = "ALTER,ALTER_CONFIGS,CLUSTER_ACTION,CREATE,DESCRIBE,DESCRIBE_CONFIGS,IDEMPOTENT_WRITE"
GROUP = "DELETE,DESCRIBE,DESCRIBE_CONFIGS,ALTER_CONFIGS,READ"


def test_admin_client_sees_every_supported_operation(broker):
    out = run_driver(java_cmd("authorized-operations", "--bootstrap", broker.bootstrap, "--topic", "authz",
                              "--group", "authz-group"), timeout_s=180)
    lines = dict(line.split(" ", 1) for line in out.splitlines()
                 if line.split(" ", 1)[0] in ("topic", "cluster", "classic-group", "consumer-group"))
    assert lines.get("topic") == TOPIC, out
    assert lines.get("cluster") == CLUSTER, out
    group = ",".join(sorted(GROUP.split(",")))
    assert lines.get("classic-group") == group, out
    assert lines.get("consumer-group") == group, out
