"""Committed offsets survive kill -9 of the broker: a confluent-kafka group member consumes and
commits part of a topic, consumes some more without committing, and leaves; the broker is
SIGKILLed and restarted on the same data dir; OffsetFetch returns the same offsets and a new
member of the group resumes exactly there (the uncommitted tail again, nothing committed again,
nothing lost)."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from harness.groups import PacedProducer
from harness.wait import wait_until
from tests.test_confluent_kafka import create_topic

PARTITIONS = 3
MESSAGES = 3000
COMMITTED_AT_LEAST = 1200
UNCOMMITTED_AT_LEAST = 600
DEADLINE_S = 120
OVERRIDES = {"group.initial.rebalance.delay.ms": "0"}


def group_consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})


def consume(c: Consumer, want: int, commit: bool) -> list[tuple[int, int]]:
    """Polls until `want` records arrived; with commit, commits each batch synchronously."""
    got: list[tuple[int, int]] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < want:
        assert time.monotonic() < deadline, f"consumed {len(got)} of {want} within {DEADLINE_S}s"
        batch = c.consume(num_messages=200, timeout=0.5)
        for m in batch:
            if m.error():
                raise KafkaException(m.error())
        pairs = [(m.partition(), m.offset()) for m in batch]
        got.extend(pairs)
        if commit and pairs:
            nxt: dict[int, int] = {}
            for p, o in pairs:
                nxt[p] = max(nxt.get(p, 0), o + 1)
            result = c.commit(offsets=[TopicPartition(m.topic(), p, o) for p, o in nxt.items()], asynchronous=False)
            assert all(r.error is None for r in result), f"commit failed: {result}"
    return got


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    c = group_consumer(bootstrap, group)
    try:
        result = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return {r.partition: r.offset for r in result}
    finally:
        c.close()


def test_committed_offsets_survive_kill9(broker_factory):
    broker = broker_factory.start(OVERRIDES)
    topic, group = "resume", "resume-g"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    produced = PacedProducer(broker.bootstrap, topic, PARTITIONS, MESSAGES, rate=1e9).start().join()
    ends = {p: sum(1 for q, _ in produced if q == p) for p in range(PARTITIONS)}

    c = group_consumer(broker.bootstrap, group)
    c.subscribe([topic])
    first = consume(c, COMMITTED_AT_LEAST, commit=True)
    committed = {}
    for p, o in first:
        committed[p] = max(committed.get(p, 0), o + 1)
    uncommitted = consume(c, UNCOMMITTED_AT_LEAST, commit=False)
    c.close()  # enable.auto.commit is off: leaving commits nothing more
    assert committed_offsets(broker.bootstrap, group, topic) == {p: committed.get(p, -1001) for p in range(PARTITIONS)}

    broker.kill9()
    broker.restart()
    broker.wait_metadata()
    want = {p: committed.get(p, -1001) for p in range(PARTITIONS)}  # -1001: librdkafka's "no offset"
    wait_until(lambda: committed_offsets(broker.bootstrap, group, topic) == want, 60,
               f"OffsetFetch after restart to return {want}")

    c = group_consumer(broker.bootstrap, group)
    c.subscribe([topic])
    try:
        remaining = sum(ends[p] - committed.get(p, 0) for p in range(PARTITIONS))
        resumed = consume(c, remaining, commit=False)
    finally:
        c.close()
    expected = {(p, o) for p in range(PARTITIONS) for o in range(committed.get(p, 0), ends[p])}
    assert len(resumed) == len(set(resumed)), "the resumed member read records twice"
    early = sorted(r for r in resumed if r[1] < committed.get(r[0], 0))
    assert not early, f"committed records delivered again after the restart, e.g. {early[:10]}"
    assert set(resumed) == expected, f"resumed set differs: missing {sorted(expected - set(resumed))[:10]}"
    redelivered = len(set(uncommitted) & set(resumed))
    print(f"committed {sum(committed.values())}, uncommitted and redelivered {redelivered}, resumed {len(resumed)}")
