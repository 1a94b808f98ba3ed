"""Log compaction seen through real clients: a compacted topic with 100,000 updates over
1,000 keys shrinks to about 1,000 records, and a consumer reading it from the beginning sees
the latest value for every key."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness.wait import wait_until

UPDATES = 100_000
KEYS = 1_000
DEADLINE_S = 180

# Clean promptly: no start-up delay for background tasks, a short pause between passes.
OVERRIDES = {"log.initial.task.delay.ms": "0", "log.cleaner.backoff.ms": "500"}
TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.bytes": str(256 * 1024),
    "min.cleanable.dirty.ratio": "0.01",
    # Forces the active segment to roll and be cleaned once it is this old.
    "max.compaction.lag.ms": "2000",
}


def read_all(bootstrap: str, topic: str) -> dict[bytes, tuple[int, bytes]]:
    """Every record from the start: key -> (count seen, last value)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compaction-reader", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        seen: dict[bytes, tuple[int, bytes]] = {}
        position = 0
        deadline = time.monotonic() + 60
        while position < high and time.monotonic() < deadline:
            for m in c.consume(10_000, 0.5):
                assert m.error() is None, m.error()
                n, _ = seen.get(m.key(), (0, b""))
                seen[m.key()] = (n + 1, m.value())
                position = m.offset() + 1
        return seen
    finally:
        c.close()


def test_compacted_topic_keeps_latest_value_per_key(broker_factory):
    broker = broker_factory.start(OVERRIDES)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("compacted", 1, 1, config=TOPIC_CONFIG)])["compacted"].result(30)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20, "compression.type": "lz4"})
    latest: dict[bytes, bytes] = {}
    for i in range(UPDATES):
        key = b"key-%04d" % (i % KEYS)
        value = b"value-%06d" % i
        latest[key] = value
        while True:
            try:
                p.produce("compacted", key=key, value=value)
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(60) == 0

    marker_key = b"key-0000"

    def compacted() -> bool:
        # As in Kafka, the active segment is never cleaned and rolls only on an append once
        # max.compaction.lag.ms has passed: keep rewriting one key's latest value so it does.
        p.produce("compacted", key=marker_key, value=latest[marker_key])
        p.flush(10)
        seen = read_all(broker.bootstrap, "compacted")
        records = sum(n for n, _ in seen.values())
        return records <= KEYS * 1.1

    wait_until(compacted, DEADLINE_S, "the topic to compact to about one record per key", interval_s=1.0)
    seen = read_all(broker.bootstrap, "compacted")
    assert set(seen) == set(latest), "a key disappeared"
    wrong = [k for k, (_, v) in seen.items() if v != latest[k]]
    assert not wrong, f"{len(wrong)} keys do not show their latest value, e.g. {wrong[:3]}"
    records = sum(n for n, _ in seen.values())
    print(f"{UPDATES} updates over {KEYS} keys compacted to {records} records")
