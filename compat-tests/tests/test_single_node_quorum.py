"""The single node as the only voter of its own metadata quorum (the default): a data
directory written by the single node's local metadata file of earlier versions (made here with
BLUMFELD_SINGLE_NODE_QUORUM=0, which keeps that mode) is picked up without loss — its file
moves into `__cluster_metadata-0` once and is kept aside — and after a clean restart the
records, the topic configs and the group's committed offsets are all still there; the moved
directory is then refused in the local-file mode rather than opened empty.

Blumfeld only: Kafka has no local-file mode to migrate from."""

from __future__ import annotations

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

import pytest

from harness.broker import broker_kind
from harness.wait import wait_until

pytestmark = pytest.mark.skipif(broker_kind() != "blumfeld", reason="Blumfeld's own metadata migration")

TOPIC = "sn-quorum"
RECORDS = 200


def committed(bootstrap: str) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "sn-group", "enable.auto.commit": False})
    try:
        return [tp.offset for tp in c.committed([TopicPartition(TOPIC, p) for p in range(2)], timeout=30)]
    finally:
        c.close()


def read_all(bootstrap: str) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "sn-reader", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([TOPIC])
    seen: list[bytes] = []

    def done():
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            seen.append(m.value())
        return len(seen) >= RECORDS

    try:
        wait_until(done, 60, f"{RECORDS} records read")
    finally:
        c.close()
    return seen


def test_a_single_node_directory_moves_into_its_quorum_without_loss(broker_factory):
    broker = broker_factory.create()
    broker.env["BLUMFELD_SINGLE_NODE_QUORUM"] = "0"
    broker.start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(TOPIC, 2, 1, config={"retention.ms": "86400000"})])[TOPIC].result(30)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(RECORDS):
        p.produce(TOPIC, key=str(i).encode(), value=f"v{i}".encode())
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "sn-group", "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(TOPIC, 0, 40), TopicPartition(TOPIC, 1, 60)], asynchronous=False)
    c.close()
    assert broker.stop() == 0
    legacy = broker.data_dir / "__cluster_metadata" / "records.jsonl"
    assert legacy.exists(), "the single node kept no local metadata file"

    del broker.env["BLUMFELD_SINGLE_NODE_QUORUM"]
    broker.restart()
    log = broker.log_path.read_text()
    assert "single-node metadata moved into the metadata quorum's log" in log, broker.log_tail()
    assert (broker.data_dir / "__cluster_metadata-0").is_dir()
    assert (broker.data_dir / "__cluster_metadata.migrated" / "records.jsonl").exists(), "the old file is not kept"
    assert not (broker.data_dir / "__cluster_metadata").exists()

    def check(bootstrap: str) -> None:
        assert sorted(read_all(bootstrap)) == sorted(f"v{i}".encode() for i in range(RECORDS))
        assert wait_until(lambda: committed(bootstrap) == [40, 60] or None, 30, "the committed offsets") is True
        resource = ConfigResource(ConfigResource.Type.TOPIC, TOPIC)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        configs = admin.describe_configs([resource])[resource].result(30)
        assert configs["retention.ms"].value == "86400000"

    check(broker.bootstrap)
    # A clean restart runs from the quorum's log alone; nothing is migrated again.
    assert broker.stop() == 0
    broker.restart()
    assert "single-node metadata moved" not in broker.log_path.read_text()
    check(broker.bootstrap)
    # The local-file mode refuses the moved directory instead of opening it without topics.
    assert broker.stop() == 0
    broker.env["BLUMFELD_SINGLE_NODE_QUORUM"] = "0"
    broker.spawn()
    assert broker.proc.wait(60) != 0
    assert "keeps its metadata in the quorum's log" in broker.log_path.read_text(), broker.log_tail()
    assert any(broker.data_dir.glob(f"{TOPIC}-*")), "partition directories were removed"
