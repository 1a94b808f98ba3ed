"""Stray partition directories on a three-node cluster: a node that was away while its
topics were deleted, and one of them created again under the same name, must not serve the
old records as the new topic's.

- two topics with replicas on all three nodes get records; node 3 stops;
- both are deleted, one is created again (a new topic id) on nodes 1 and 2 and written;
- node 3 starts again: its directories of both old topics are set aside as
  `<topic>-<partition>.<id>-stray` (kept whole, as Kafka keeps them), none is served;
- the new topic is reassigned onto node 3 (`kafka-reassign-partitions`): node 3's new
  directory names the new topic id in `partition.metadata` and holds only the new records.

The same test runs against Apache Kafka (BROKER=kafka), whose broker sets strays aside the
same way at start-up.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from harness.tools import TOPICS, run_tool
from harness.wait import wait_until
from tests.test_cluster import cluster_factory, describe_topic  # noqa: F401  (the fixture)
from tests.test_replication import admin

REASSIGN = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"
OLD_RECORDS = 10
NEW_RECORDS = 4


def produce(bootstrap: str, topic: str, n: int, tag: str) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(n):
        p.produce(topic, value=f"{tag}{i}".encode(), partition=0)
    assert p.flush(60) == 0


def topic_id(bootstrap: str, topic: str) -> str:
    out = run_tool(TOPICS, "--bootstrap-server", bootstrap, "--describe", "--topic", topic)
    m = re.search(r"TopicId:\s*(\S+)", out)
    assert m, out
    return m.group(1)


def isr(bootstrap: str, topic: str) -> list[int] | None:
    try:
        rows = describe_topic(bootstrap, topic)
    except Exception:  # noqa: BLE001 - the tool fails while the topic is unknown: not yet
        return None
    return sorted(int(b) for b in rows[0]["Isr"].split(",") if b) if rows else None


def end_offset(bootstrap: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "stray-check"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)[1]
    finally:
        c.close()


def dirs(data_dir: Path) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir() if p.is_dir())


def test_directories_of_topics_deleted_while_a_node_was_away_are_set_aside(cluster_factory):  # noqa: F811
    c = cluster_factory(layout="combined", controllers=3)
    c.start()
    b = c.bootstrap()
    for topic in ("gone", "again"):
        run_tool(TOPICS, "--bootstrap-server", b, "--create", "--topic", topic, "--replica-assignment", "1:2:3")
        wait_until(lambda: isr(b, topic) == [1, 2, 3], 60, f"{topic} in sync on all three nodes")
        produce(b, topic, OLD_RECORDS, "old")
    old_id = topic_id(b, "again")
    node3 = c.nodes[3]
    wait_until(lambda: {"gone-0", "again-0"} <= set(dirs(node3.data_dir)), 30, "node 3's replicas")
    assert node3.stop() == 0, node3.log_tail()

    survivors = c.bootstrap(exclude=(3,))
    for topic in ("gone", "again"):
        run_tool(TOPICS, "--bootstrap-server", survivors, "--delete", "--topic", topic)
    wait_until(lambda: isr(survivors, "gone") is None and isr(survivors, "again") is None, 60, "both topics deleted")
    run_tool(TOPICS, "--bootstrap-server", survivors, "--create", "--topic", "again", "--replica-assignment", "1:2")
    wait_until(lambda: isr(survivors, "again") == [1, 2], 60, "the new 'again' in sync")
    new_id = topic_id(survivors, "again")
    assert new_id != old_id
    produce(survivors, "again", NEW_RECORDS, "new")

    node3.start()
    wait_until(lambda: len(admin(c.bootstrap()).list_topics(timeout=10).brokers) == 3, 60, "node 3 back")
    # Set aside at start-up, before it serves: kept whole, no plain directory left.
    strays = wait_until(lambda: (s := [d for d in dirs(node3.data_dir) if d.endswith("-stray")]) and len(s) == 2 and s,
                        60, "node 3's two stray directories")
    print(f"\nnode 3's directories after the restart: {dirs(node3.data_dir)}")
    assert sorted(s.split(".", 1)[0] for s in strays) == ["again-0", "gone-0"], strays
    assert not {"gone-0", "again-0"} & set(dirs(node3.data_dir))
    for s in strays:
        assert any(f.stat().st_size > 0 for f in (node3.data_dir / s).glob("*.log")), f"{s} kept its records"

    # Onto node 3 now: a new directory for the new topic, holding the new records only.
    plan = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump({"version": 1, "partitions": [{"topic": "again", "partition": 0, "replicas": [1, 2, 3]}]}, plan)
    plan.close()
    run_tool(REASSIGN, "--bootstrap-server", c.bootstrap(), "--reassignment-json-file", plan.name, "--execute")
    wait_until(lambda: isr(c.bootstrap(), "again") == [1, 2, 3], 90, "node 3 in the new topic's ISR")
    metadata = (node3.data_dir / "again-0" / "partition.metadata").read_text()
    assert metadata.split() == ["version:", "0", "topic_id:", new_id], metadata
    assert end_offset(c.bootstrap(), "again") == NEW_RECORDS
    size = sum(f.stat().st_size for f in (node3.data_dir / "again-0").glob("*.log"))
    old_size = sum(f.stat().st_size for f in (node3.data_dir / next(s for s in strays if s.startswith("again"))).glob("*.log"))
    print(f"node 3: new 'again-0' {size} B of log ({NEW_RECORDS} records), the stray one {old_size} B ({OLD_RECORDS})")
    assert 0 < size < old_size
