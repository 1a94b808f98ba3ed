"""Partition reassignment (KIP-455) on a three-node cluster, driven by Kafka's own
`kafka-reassign-partitions` under the two-producer acks=all load of test_replication:

- (a) a topic with replication factor 1: partition 0 moves to another broker, then its
  replication factor goes from 1 to 3;
- (b) a topic with replication factor 2: partition 0 moves off its leader's broker (the
  leader is removed, so leadership moves when the reassignment completes).

Every reassignment runs with `--throttle` (the tool sets the broker rates and the topic's
throttled replicas) and is then polled with `--verify` until it reports completion, with a
deadline; the broker rates are read back with `kafka-configs --describe --entity-type brokers`;
`--verify` then removes the throttles, which is checked on the topic and the brokers. Afterwards
every record either producer had acknowledged is read back (`assert_clean`).

The same tests run against Apache Kafka (BROKER=kafka).
"""

from __future__ import annotations

import json
import tempfile
import time

from confluent_kafka.admin import ConfigResource

from harness.tools import TOPICS, run_tool, tool_process
from harness.wait import wait_until
from tests.test_cluster import cluster_factory, describe_topic  # noqa: F401  (the fixture)
from tests.test_replication import PARTITIONS, Load, admin, assert_clean

REASSIGN = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"
THROTTLE_BYTES_PER_S = 10_000_000
REASSIGN_TIMEOUT_S = 120
ACKS_BETWEEN_STEPS = 3_000
TOPIC_THROTTLES = ("leader.replication.throttled.replicas", "follower.replication.throttled.replicas")
BROKER_THROTTLES = ("leader.replication.throttled.rate", "follower.replication.throttled.rate")
CONFIGS = "kafka.admin.ConfigCommand"


def reassignment_file(topic: str, moves: dict[int, list[int]]) -> str:
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump({"version": 1, "partitions": [{"topic": topic, "partition": p, "replicas": r} for p, r in moves.items()]}, f)
    f.close()
    return f.name


def topic_throttles(bootstrap: str, topic: str) -> dict[str, str]:
    """The topic's throttled-replica configs that are set (non-empty)."""
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    client = admin(bootstrap)  # kept alive until the future resolves
    configs = client.describe_configs([resource])[resource].result(30)
    return {k: configs[k].value for k in TOPIC_THROTTLES if k in configs and configs[k].value}


def broker_throttles(bootstrap: str, broker: int) -> dict[str, str]:
    """The broker's throttle rates as `kafka-configs --describe --entity-type brokers` lists
    them (the dynamic configs set for it), each line `key=value sensitive=false synonyms={...}`."""
    out = run_tool(CONFIGS, "--bootstrap-server", bootstrap, "--describe", "--entity-type", "brokers",
                   "--entity-name", str(broker))
    found = {}
    for line in out.splitlines():
        key, _, rest = line.strip().partition("=")
        if key in BROKER_THROTTLES:
            found[key] = rest.split(" ", 1)[0]
            assert f"DYNAMIC_BROKER_CONFIG:{key}={found[key]}" in rest, line
    return found


def replicas(bootstrap: str, topic: str, partition: int) -> list[int]:
    row = next(r for r in describe_topic(bootstrap, topic) if r.get("Partition") == str(partition))
    return [int(b) for b in row["Replicas"].split(",") if b]


def reassign(bootstrap: str, topic: str, moves: dict[int, list[int]]) -> None:
    """--execute with a throttle, then --verify until complete; checks the throttles came and
    went and the replicas are the target."""
    path = reassignment_file(topic, moves)
    t0 = time.monotonic()
    out = run_tool(REASSIGN, "--bootstrap-server", bootstrap, "--reassignment-json-file", path,
                   "--execute", "--throttle", str(THROTTLE_BYTES_PER_S))
    print(out)
    assert "Successfully started partition reassignment" in out, out
    assert f"The inter-broker throttle limit was set to {THROTTLE_BYTES_PER_S} B/s" in out, out
    brokers = sorted({b for r in moves.values() for b in r})
    for b in brokers:
        assert broker_throttles(bootstrap, b) == {k: str(THROTTLE_BYTES_PER_S) for k in BROKER_THROTTLES}, b

    def verified() -> str | None:
        text = run_tool(REASSIGN, "--bootstrap-server", bootstrap, "--reassignment-json-file", path, "--verify")
        if "still in progress" in text:
            return None
        # The tool asks the controller whether the reassignment is still going, then asks a
        # broker for the replicas; the broker may apply the completion a moment after the
        # controller committed it (Kafka has the same window), and the tool then reports
        # "no active reassignment ... but replica set is X rather than Y". Ask again.
        if "There is no active reassignment" in text and "rather than" in text:
            return None
        return text

    out = wait_until(verified, REASSIGN_TIMEOUT_S, f"the reassignment {moves} of {topic} to complete", interval_s=0.5)
    print(out)
    print(f"reassignment {moves} of {topic} verified complete {time.monotonic() - t0:.1f} s after --execute started")
    for p in moves:
        assert f"Reassignment of partition {topic}-{p} is completed" in out, out
    assert "Clearing broker-level throttles" in out and "Clearing topic-level throttles" in out, out
    # The broker describing the topic may apply the committed change a moment later.
    wait_until(lambda: topic_throttles(bootstrap, topic) == {}, 30, "--verify to have removed the topic throttles")
    for b in brokers:
        wait_until(lambda: broker_throttles(bootstrap, b) == {}, 30, f"--verify to have removed broker {b}'s throttles")
    for p, target in moves.items():
        assert replicas(bootstrap, topic, p) == target


def create_topic(bootstrap: str, topic: str, assignment: list[list[int]]) -> None:
    assert len(assignment) == PARTITIONS  # read_back reads PARTITIONS partitions
    run_tool(TOPICS, "--bootstrap-server", bootstrap, "--create", "--topic", topic,
             "--replica-assignment", ",".join(":".join(str(b) for b in r) for r in assignment))


def test_an_rf1_partition_moves_to_another_broker_then_grows_to_three_replicas(cluster_factory):  # noqa: F811
    c = cluster_factory(layout="combined", controllers=3)
    c.start()
    topic = "reassigned-rf1"
    create_topic(c.bootstrap(), topic, [[1], [2], [3]])
    wait_until(lambda: replicas(c.bootstrap(), topic, 0) == [1], 60, "the topic's registration")
    with Load(c.bootstrap(), topic) as load:
        load.wait_acks(ACKS_BETWEEN_STEPS, 60, "before the move")
        reassign(c.bootstrap(), topic, {0: [2]})
        load.wait_acks(ACKS_BETWEEN_STEPS, 60, "after the move")
        # KIP-860: with --disallow-replication-factor-change the RF change is refused.
        path = reassignment_file(topic, {0: [2, 1, 3]})
        proc = tool_process(REASSIGN, "--bootstrap-server", c.bootstrap(), "--reassignment-json-file", path,
                            "--execute", "--disallow-replication-factor-change")
        out = proc.stdout + proc.stderr
        assert f"{topic}-0: The replication factor is changed from 1 to 3" in out, out
        assert replicas(c.bootstrap(), topic, 0) == [2]
        reassign(c.bootstrap(), topic, {0: [2, 1, 3]})
        load.wait_acks(ACKS_BETWEEN_STEPS, 60, "after the replication factor went to 3")
    row = next(r for r in describe_topic(c.bootstrap(), topic) if r.get("Partition") == "0")
    assert sorted(int(b) for b in row["Isr"].split(",")) == [1, 2, 3], row
    assert_clean(load, c.bootstrap(), topic, 3 * ACKS_BETWEEN_STEPS)


def test_a_partition_moves_off_its_leaders_broker_under_load(cluster_factory):  # noqa: F811
    c = cluster_factory(layout="combined", controllers=3)
    c.start()
    topic = "reassigned-rf2"
    create_topic(c.bootstrap(), topic, [[1, 2], [2, 3], [3, 1]])
    wait_until(lambda: replicas(c.bootstrap(), topic, 0) == [1, 2], 60, "the topic's registration")
    with Load(c.bootstrap(), topic) as load:
        load.wait_acks(ACKS_BETWEEN_STEPS, 60, "before the move")
        reassign(c.bootstrap(), topic, {0: [3, 2]})
        load.wait_acks(ACKS_BETWEEN_STEPS, 60, "after the move")
    row = next(r for r in describe_topic(c.bootstrap(), topic) if r.get("Partition") == "0")
    assert int(row["Leader"]) in (2, 3), row
    assert_clean(load, c.bootstrap(), topic, 2 * ACKS_BETWEEN_STEPS)
