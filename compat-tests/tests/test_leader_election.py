"""Leader elections an operator asks for, with Kafka's own `kafka-leader-election`
(org.apache.kafka.tools.LeaderElectionCommand), and the ones the active controller runs itself:

- preferred: leadership that moved away during a restart goes back to the first replica of
  each partition when the tool asks (`--election-type preferred --all-topic-partitions`), and
  a second run finds nothing to do;
- `auto.leader.rebalance.enable` (with a 1 s `leader.imbalance.check.interval.seconds`): the
  same happens without the tool;
- unclean: a partition whose only in-sync replica died stays offline while
  `unclean.leader.election.enable` is false, the tool's `--election-type unclean` gives it the
  out-of-sync replica that is alive, and setting the topic's `unclean.leader.election.enable`
  to true makes the controller do the same for the other partition;
- on a partition with a leader an unclean election is not needed.

The same tests run against Apache Kafka (BROKER=kafka).
"""

from __future__ import annotations

import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from harness.tools import TOPICS, run_tool
from harness.wait import wait_until
from tests.test_cluster import broker_states, cluster_factory  # noqa: F401  (the fixture)

ELECTION = "org.apache.kafka.tools.LeaderElectionCommand"


def partitions(bootstrap: str, topic: str, count: int) -> dict[int, tuple[int, list[int]]] | None:
    """partition -> (leader, ISR) from Metadata (leader -1 when offline); None until all are known."""
    try:
        md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=5).topics.get(topic)
    except KafkaException:
        return None
    if md is None or md.error is not None and md.error.code() != 5 or len(md.partitions) != count:
        return None  # (5: LEADER_NOT_AVAILABLE, which an offline partition's topic carries)
    return {p.id: (p.leader, sorted(p.isrs)) for p in md.partitions.values()}


def create(bootstrap: str, topic: str, assignment: list[list[int]], *configs: str) -> None:
    args = ["--bootstrap-server", bootstrap, "--create", "--topic", topic,
            "--replica-assignment", ",".join(":".join(str(b) for b in r) for r in assignment)]
    for c in configs:
        args += ["--config", c]
    run_tool(TOPICS, *args)


def elect(bootstrap: str, *args: str) -> str:
    out = run_tool(ELECTION, "--bootstrap-server", bootstrap, *args, check=False)
    print(f"kafka-leader-election {' '.join(args)}:\n{out.strip()}")
    return out


ASSIGNMENT = [[1, 2, 3], [1, 3, 2], [1, 2, 3]]


def led_by(bootstrap: str, topic: str, leaders: set[int]) -> dict | None:
    s = partitions(bootstrap, topic, len(ASSIGNMENT))
    return s if s and all(leader in leaders and len(isr) == 3 for leader, isr in s.values()) else None


def move_leadership_off_node_1(c, topic: str) -> None:
    """A controlled restart of node 1: its leaderships move to 2 and 3 and stay there."""
    wait_until(lambda: led_by(c.bootstrap(), topic, {1}), 60, "node 1 leading every partition")
    c.nodes[1].stop()
    wait_until(lambda: led_by(c.bootstrap(), topic, {2, 3}) or partitions(c.bootstrap(), topic, 3), 60, "new leaders")
    c.nodes[1].start()
    wait_until(lambda: led_by(c.bootstrap(), topic, {2, 3}), 90, "node 1 back in every ISR, leading nothing")


def test_preferred_election_moves_leadership_back(cluster_factory):  # noqa: F811
    c = cluster_factory(layout="combined", controllers=3, overrides={"auto.leader.rebalance.enable": "false"})
    c.start()
    topic = "preferred"
    create(c.bootstrap(), topic, ASSIGNMENT)
    move_leadership_off_node_1(c, topic)

    t0 = time.monotonic()
    out = elect(c.bootstrap(), "--election-type", "preferred", "--all-topic-partitions")
    assert "Successfully completed leader election (PREFERRED) for partitions" in out, out
    for p in range(len(ASSIGNMENT)):
        assert f"{topic}-{p}" in out, out
    wait_until(lambda: led_by(c.bootstrap(), topic, {1}), 30, "node 1 leading every partition again")
    print(f"leadership back on the preferred replicas {time.monotonic() - t0:.2f} s after the tool started")

    # Nothing left to elect: the named partition is "already elected".
    out = elect(c.bootstrap(), "--election-type", "preferred", "--topic", topic, "--partition", "0")
    assert "Valid replica already elected for partitions" in out and f"{topic}-0" in out, out
    # An unclean election of a led partition is not needed either.
    out = elect(c.bootstrap(), "--election-type", "unclean", "--topic", topic, "--partition", "1")
    assert "Valid replica already elected for partitions" in out and f"{topic}-1" in out, out


def test_auto_leader_rebalance_moves_leadership_back(cluster_factory):  # noqa: F811
    c = cluster_factory(layout="combined", controllers=3, overrides={"leader.imbalance.check.interval.seconds": "1"})
    c.start()
    topic = "rebalanced"
    create(c.bootstrap(), topic, ASSIGNMENT)
    wait_until(lambda: led_by(c.bootstrap(), topic, {1}), 60, "node 1 leading every partition")
    c.nodes[1].stop()
    wait_until(lambda: (s := partitions(c.bootstrap(), topic, 3)) and all(l in (2, 3) for l, _ in s.values()), 60,
               "leaders 2 and 3 while node 1 is down")
    t0 = time.monotonic()
    c.nodes[1].start()
    wait_until(lambda: led_by(c.bootstrap(), topic, {1}), 90, "the controller moving leadership back to node 1")
    print(f"leadership back on node 1 {time.monotonic() - t0:.2f} s after its restart began")


def test_unclean_election_by_the_tool_and_by_the_topic_config(cluster_factory):  # noqa: F811
    # Kafka's controller looks for partitions to elect uncleanly every
    # unclean.leader.election.interval.ms (5 min by default) and when brokers change; 2 s here
    # for both. (Blumfeld's also looks after every metadata change.)
    c = cluster_factory(layout="dedicated", controllers=3, brokers=2, overrides={"unclean.leader.election.interval.ms": "2000"})
    c.start()
    a, b = c.broker_ids
    topic = "lonely"
    create(c.bootstrap(), topic, [[a, b], [a, b]], "min.insync.replicas=1")
    wait_until(lambda: (s := partitions(c.bootstrap(), topic, 2)) and all(isr == sorted([a, b]) for _, isr in s.values()),
               60, "both replicas in sync")
    # b dies: it leaves the ISRs once fenced; then a, the last in-sync replica, dies too.
    c.nodes[b].kill9()
    wait_until(lambda: (s := partitions(c.bootstrap(), topic, 2)) and all(isr == [a] for _, isr in s.values()), 60,
               f"{b} out of the ISRs")
    c.nodes[a].kill9()
    c.nodes[b].start()
    wait_until(lambda: broker_states(c.bootstrap()) == {a: "fenced", b: "unfenced"}, 60, f"{a} fenced, {b} back and unfenced")
    # Unclean elections are off by default: b, out of sync, does not lead.
    states = wait_until(lambda: partitions(c.bootstrap(), topic, 2), 30, "the partitions described")
    assert all(leader == -1 for leader, _ in states.values()), states

    out = elect(c.bootstrap(), "--election-type", "unclean", "--topic", topic, "--partition", "0")
    assert "Successfully completed leader election (UNCLEAN) for partitions" in out and f"{topic}-0" in out, out
    wait_until(lambda: (s := partitions(c.bootstrap(), topic, 2)) and s[0] == (b, [b]), 30, f"{b} leading {topic}-0")
    assert partitions(c.bootstrap(), topic, 2)[1][0] == -1, "the other partition stays offline"

    admin = AdminClient({"bootstrap.servers": c.bootstrap()})
    resource = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("unclean.leader.election.enable", "true", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(30)
    t0 = time.monotonic()
    wait_until(lambda: (s := partitions(c.bootstrap(), topic, 2)) and s[1] == (b, [b]), 60,
               f"the controller electing {b} for {topic}-1")
    print(f"unclean election of {topic}-1 {time.monotonic() - t0:.2f} s after the topic allowed it")
