"""Fetch from the closest replica (KIP-392) on a 3-node cluster whose nodes are in racks r1, r2
and r3, with `replica.selector.class` set to Kafka's RackAwareReplicaSelector:

- librdkafka consumers with `client.rack` r2 and r3 read every record of a partition led by
  the node in r1, and (on Blumfeld, whose metrics show it) the followers in their racks served
  the records: the leader only pointed them there (`preferred_read_replica`);
- a consumer with no rack reads from the leader.

Passes against Apache Kafka 4.3.1 as well (`BROKER=kafka`), without the metrics checks.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer, TopicPartition

from harness import wire
from harness.tools import TOPICS, run_tool
from harness.wait import wait_until
from tests.test_cluster import cluster_factory, describe_topic, scrape  # noqa: F401  (the fixture)

RACK_AWARE = "org.apache.kafka.common.replica.RackAwareReplicaSelector"
RECORDS = 3_000


def produce(bootstrap: str, topic: str) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    failed = []
    for i in range(RECORDS):
        p.produce(topic, key=str(i).encode(), value=f"v{i}".encode(), partition=0,
                  on_delivery=lambda err, _msg: failed.append(err) if err else None)
        p.poll(0)
    assert p.flush(60) == 0
    assert not failed, failed[:3]


def consume_all(bootstrap: str, topic: str, rack: str | None) -> float:
    """Reads partition 0 from the start to RECORDS records; returns the seconds it took."""
    conf = {"bootstrap.servers": bootstrap, "group.id": f"rack-{rack}-{time.monotonic_ns()}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            # The leader names the preferred replica; refresh metadata often enough that a
            # stale answer does not stall the test.
            "topic.metadata.refresh.interval.ms": 5000}
    if rack is not None:
        conf["client.rack"] = rack
    c = Consumer(conf)
    t0 = time.monotonic()
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        values = []
        deadline = time.monotonic() + 60
        while len(values) < RECORDS and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                values.append(m.value())
        assert [v.decode() for v in values] == [f"v{i}" for i in range(RECORDS)], f"read {len(values)} records"
        return time.monotonic() - t0
    finally:
        c.close()


def topic_bytes_out(c, node: int, topic: str) -> float:
    return scrape(c.nodes[node]).get(f'blumfeld_topic_bytes_out_total{{topic="{topic}"}}', 0.0)


def test_consumers_read_from_the_replica_in_their_rack(cluster_factory):  # noqa: F811
    c = cluster_factory(layout="combined", controllers=3, overrides={"replica.selector.class": RACK_AWARE})
    for node_id, node in c.nodes.items():
        node.overrides["broker.rack"] = f"r{node_id}"
    c.start()
    topic = "rack-reads"
    run_tool(TOPICS, "--bootstrap-server", c.bootstrap(), "--create", "--topic", topic, "--replica-assignment", "1:2:3")
    wait_until(lambda: (p := describe_topic(c.bootstrap(), topic)) and p[0].get("Leader") == "1"
               and sorted(p[0]["Isr"].split(",")) == ["1", "2", "3"], 60, "leader 1 with 3 in-sync replicas")
    produce(c.bootstrap(), topic)
    # Followers must have fetched the whole log (and learnt the high watermark) before they
    # can serve it; the leader only points a consumer at an in-sync follower anyway.
    wait_until(lambda: (p := describe_topic(c.bootstrap(), topic)) and len(p[0]["Isr"].split(",")) == 3, 30, "ISR of 3")

    # The protocol itself: the leader points a consumer in r2 at node 2, with no records.
    leader = c.spec(1)
    assert wire.fetch_preferred_replica(leader.host, leader.broker_port, topic, 0, 0, "r2") == (0, 2, 0)
    err, preferred, size = wire.fetch_preferred_replica(leader.host, leader.broker_port, topic, 0, 0, "r1")
    assert (err, preferred) == (0, -1) and size > 0, (err, preferred, size)

    before = {n: topic_bytes_out(c, n, topic) for n in (2, 3)} if c.kind == "blumfeld" else {}
    for rack, node in (("r2", 2), ("r3", 3)):
        took = consume_all(c.bootstrap(), topic, rack)
        print(f"\nconsumer in rack {rack}: {RECORDS} records in {took:.2f} s")
        if c.kind == "blumfeld":
            served = topic_bytes_out(c, node, topic) - before[node]
            print(f"node {node} (a follower, rack {rack}) served {served:.0f} record bytes")
            assert served > 0, f"node {node} served nothing to the consumer in its rack"
    took = consume_all(c.bootstrap(), topic, None)
    print(f"consumer without a rack: {RECORDS} records in {took:.2f} s")
    row = describe_topic(c.bootstrap(), topic)[0]
    assert row["Leader"] == "1", row
