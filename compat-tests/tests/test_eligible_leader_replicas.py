"""Eligible leader replicas (KIP-966) as Kafka's own `kafka-topics --describe` shows them (it
asks DescribeTopicPartitions, whose answer carries each partition's ELR and last known ELR),
on a cluster of one controller and four brokers: three host a topic with replication factor 3
and `min.insync.replicas` 2, the fourth answers the tools while the others are down.

1. Records are acknowledged (acks=all) while the ISR is 3, then 2 replicas.
2. A replica stopped (controlled shutdown) while the ISR is at min ISR just leaves the ISR;
   the next one stopped leaves the ISR below min ISR and enters the ELR. An acks=all write is
   now refused: nothing more is acknowledged.
3. The last ISR member, the leader, is stopped: the ISR is empty, the ELR holds both, the last
   known ELR the lost leader, and the partition has no leader.
4. The replica stopped second starts again (a clean restart: it names its previous broker
   epoch): the controller elects it from the ELR, although it is not in the ISR and unclean
   elections are off; it alone is the ISR, the other stays eligible.
5. The replica stopped first starts again and rejoins the ISR: with the ISR back at min ISR
   the ELR is cleared, and every acknowledged record is read back at its offset.

The same test runs against Apache Kafka (BROKER=kafka).
"""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, Producer

from harness.readback import read_partitions
from harness.tools import TOPICS, describe_partitions, run_tool
from harness.wait import wait_until
from tests.test_cluster import cluster_factory  # noqa: F401  (the fixture)

TOPIC = "eligible"
RECORDS_PER_STEP = 200
STEP_TIMEOUT_S = 90


def partition(bootstrap: str) -> dict | None:
    try:
        return describe_partitions(bootstrap, TOPIC).get(0)
    except AssertionError:
        return None  # the tool failed (a broker that is going away): ask again


def produce(bootstrap: str, first: int, count: int, timeout_ms: int = 30_000) -> tuple[dict[int, bytes], list[str]]:
    """acks=all writes of values `first..first+count`; (offset -> value of the acknowledged
    ones, the errors of the others)."""
    acked: dict[int, bytes] = {}
    errors: list[str] = []

    def report(err, msg):
        if err is None:
            acked[msg.offset()] = msg.value()
        else:
            errors.append(err.name())

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": timeout_ms, "linger.ms": 5})
    for i in range(first, first + count):
        p.produce(TOPIC, value=f"record-{i}".encode(), partition=0, on_delivery=report)
        p.poll(0)
    p.flush(timeout_ms / 1000 + 30)
    return acked, errors


def test_the_elr_holds_replicas_out_of_the_isr_and_gives_the_leader(cluster_factory):  # noqa: F811
    c = cluster_factory(layout="dedicated", controllers=1, brokers=4)
    c.start()
    a, b, r3, _observer = c.broker_ids
    run_tool(TOPICS, "--bootstrap-server", c.bootstrap(), "--create", "--topic", TOPIC,
             "--replica-assignment", f"{a}:{b}:{r3}", "--config", "min.insync.replicas=2")
    tools = c.bootstrap()

    def state(leader: int, isr: set[int], elr: set[int], last_known: set[int] | None = None, why: str = ""):
        def check():
            p = partition(c.bootstrap())
            if p is None or p["elr"] is None:
                return None
            ok = p["leader"] == leader and set(p["isr"]) == isr and set(p["elr"]) == elr
            if last_known is not None:
                ok = ok and set(p["last_known_elr"] or []) == last_known
            return p if ok else None
        p = wait_until(check, STEP_TIMEOUT_S, why or f"leader {leader}, ISR {isr}, ELR {elr}")
        print(f"{why}: {p}")
        return p

    state(a, {a, b, r3}, set(), set(), "all three in sync")
    acked, errors = produce(tools, 0, RECORDS_PER_STEP)
    assert not errors and len(acked) == RECORDS_PER_STEP, errors

    # 2. At min ISR a stopped replica just leaves the ISR; below it, it enters the ELR.
    c.nodes[r3].stop()
    state(a, {a, b}, set(), set(), f"{r3} out of the ISR, the ISR at min ISR: no ELR")
    more, errors = produce(c.bootstrap(), RECORDS_PER_STEP, RECORDS_PER_STEP)
    assert not errors and len(more) == RECORDS_PER_STEP, errors
    acked.update(more)
    c.nodes[b].stop()
    state(a, {a}, {b}, set(), f"{b} out of the ISR below min ISR: in the ELR")
    refused, errors = produce(c.bootstrap(), 2 * RECORDS_PER_STEP, 1, timeout_ms=5_000)
    assert not refused and errors, (refused, errors)
    print(f"acks=all below min ISR: {errors[0]}")

    # 3. The last ISR member, the leader, goes too.
    c.nodes[a].stop()
    state(-1, set(), {a, b}, {a}, "the ISR empty, both eligible, the lost leader remembered")

    # 4. A clean restart of an ELR member: it is elected from the ELR.
    t0 = time.monotonic()
    c.nodes[b].start()
    state(b, {b}, {a}, set(), f"{b} elected from the ELR")
    print(f"{b} leading {time.monotonic() - t0:.2f} s after its restart began")

    # 5. Back at min ISR: the ELR is cleared and nothing acknowledged is lost.
    c.nodes[r3].start()
    state(b, {b, r3}, set(), set(), f"{r3} back in the ISR, the ELR cleared")
    got = read_partitions(c.bootstrap(), TOPIC, 1)[0]
    lost = {o: v for o, v in acked.items() if o >= len(got) or got[o] != v}
    assert not lost, f"{len(lost)} acknowledged records lost or changed, e.g. {sorted(lost.items())[:3]}"
    print(f"{len(acked)} acknowledged records all read back from {b} (log of {len(got)})")
