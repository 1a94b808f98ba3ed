"""Groups across kill -9 of the broker.

1. A confluent-kafka member consumes and commits part of a topic, consumes some more without
   committing, and leaves; the broker is SIGKILLed and restarted on the same data dir; OffsetFetch
   returns the same offsets and a new member resumes exactly there (the uncommitted tail again,
   nothing committed again, nothing lost).
2. Two live Java members ride through the crash (the broker comes back on the same port)."""

from __future__ import annotations

import time
from collections import Counter

from confluent_kafka import Consumer, KafkaException, TopicPartition

from harness.groups import Member, PacedProducer, member_cmd, wait_balanced, wait_consumed
from harness.kafka_launcher import free_port
from harness.wait import wait_until
from tests.test_confluent_kafka import create_topic

PARTITIONS = 3
LIVE_PARTITIONS = 6
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


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int = PARTITIONS) -> dict[int, int]:
    c = group_consumer(bootstrap, group)
    try:
        result = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
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


LIVE_MESSAGES_PER_PHASE = 2000
LIVE_RATE_PER_S = 500
LIVE_DEADLINE_S = 180


def test_live_group_rides_through_broker_kill9(broker_factory, tmp_path):
    """Two Java members stay up while the broker is SIGKILLed and restarted on the same port:
    they reconnect, the group forms again, consumption goes on with nothing lost and nothing
    that was committed before the crash processed again."""
    broker = broker_factory.start({**OVERRIDES, "listeners": f"PLAINTEXT://127.0.0.1:{free_port()}"})
    topic, group = "live-restart", "live-restart-g"
    create_topic(broker.bootstrap, topic, LIVE_PARTITIONS)
    members: list[Member] = []
    try:
        phase1 = PacedProducer(broker.bootstrap, topic, LIVE_PARTITIONS, LIVE_MESSAGES_PER_PHASE,
                               LIVE_RATE_PER_S).start()
        for name in "AB":
            members.append(Member(name, member_cmd("java-classic", broker.bootstrap, topic, group, f"live-{name}"),
                                  tmp_path))
        wait_balanced(members, members, LIVE_PARTITIONS, LIVE_DEADLINE_S, "A and B to share the partitions")
        produced = phase1.join()
        wait_consumed(members, produced, LIVE_DEADLINE_S)

        broker.kill9()
        committed_at_kill: dict[int, int] = {}
        for m in members:
            for p, o in m.commits().items():
                committed_at_kill[p] = max(committed_at_kill.get(p, 0), o)
        broker.restart()
        broker.wait_metadata()

        produced |= PacedProducer(broker.bootstrap, topic, LIVE_PARTITIONS, LIVE_MESSAGES_PER_PHASE,
                                  LIVE_RATE_PER_S).start().join()
        wait_consumed(members, produced, LIVE_DEADLINE_S)
        wait_balanced(members, members, LIVE_PARTITIONS, LIVE_DEADLINE_S, "the group to form again after restart")

        counts = Counter(r for m in members for r in m.processed())
        again = sorted(r for r, n in counts.items() if n > 1 and r[1] < committed_at_kill.get(r[0], 0))
        assert not again, f"records committed before the crash processed again after it, e.g. {again[:10]}"
        foreign = sorted(set(counts) - produced)
        assert not foreign, f"consumed records that were never acknowledged, e.g. {foreign[:10]}"
        ends = {p: max(o for q, o in produced if q == p) + 1 for p in range(LIVE_PARTITIONS)}
        wait_until(lambda: committed_offsets(broker.bootstrap, group, topic, LIVE_PARTITIONS) == ends, 60,
                   f"the members' commits after the restart to reach the log ends {ends}")
        for m in members:
            m.close()
        dups = sum(n - 1 for n in counts.values())
        print(f"live restart: {len(produced)} records, {dups} processed twice (uncommitted at the crash)")
    finally:
        for m in members:
            m.ensure_gone()
