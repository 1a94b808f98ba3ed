"""Per-record produce errors (KIP-467) through librdkafka: a batch of 100 messages into a
compacted topic, 10 of them without a key. The broker names each keyless record in the Produce
response's record_errors, so librdkafka fails exactly those 10 with INVALID_RECORD and the 90
others with its "different record" error; produced again, the 90 are delivered. Without
record_errors librdkafka would fail all 100 with INVALID_RECORD."""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TOPIC = "compacted-record-errors"
MESSAGES = 100
DEADLINE_S = 60


def keyless(i: int) -> bool:
    return i % 10 == 3


def produce(bootstrap: str, indexes: list[int]) -> dict[int, KafkaError | None]:
    """Produces the messages `indexes` as one batch; the delivery outcome of each."""
    outcome: dict[int, KafkaError | None] = {}

    def on_delivery(i):
        def cb(err, _msg):
            outcome[i] = err
        return cb

    # One batch: linger long enough to gather them all, flush sends it at once.
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5000, "batch.num.messages": 1000,
                  "acks": "all", "retries": 0})
    for i in indexes:
        key = None if keyless(i) else b"key-%03d" % i
        p.produce(TOPIC, partition=0, key=key, value=b"value-%03d" % i, on_delivery=on_delivery(i))
    assert p.flush(DEADLINE_S) == 0, "messages still in flight"
    return outcome


def test_keyless_records_fail_alone_and_the_others_go_in_on_retry(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(TOPIC, 1, 1, config={"cleanup.policy": "compact"})])[TOPIC].result(30)

    outcome = produce(broker.bootstrap, list(range(MESSAGES)))
    assert sorted(outcome) == list(range(MESSAGES))
    invalid = sorted(i for i, e in outcome.items() if e is not None and e.code() == KafkaError.INVALID_RECORD)
    assert invalid == [i for i in range(MESSAGES) if keyless(i)], outcome
    others = sorted(i for i in outcome if i not in invalid)
    assert all(outcome[i] is not None and outcome[i].code() == KafkaError._INVALID_DIFFERENT_RECORD for i in others), \
        {i: outcome[i] for i in others[:5]}

    retried = produce(broker.bootstrap, others)
    assert all(e is None for e in retried.values()), {i: e for i, e in retried.items() if e is not None}

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "record-errors", "enable.auto.commit": False})
    try:
        tp = TopicPartition(TOPIC, 0)
        low, high = c.get_watermark_offsets(tp, timeout=10)
        assert (low, high) == (0, len(others)), "only the retried batch went in"
    finally:
        c.close()
