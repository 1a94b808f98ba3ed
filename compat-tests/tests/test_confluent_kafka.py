"""confluent-kafka (librdkafka): admin create/delete, produce with each codec, assign-consume,
ListOffsets, and a raw Fetch proving the batches on the broker really carry the codec (librdkafka
silently stops compressing when ApiVersions does not list Produce v0)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from harness import wire
from harness.scenario import CODECS, MESSAGES, PARTITIONS, Received, check_received, message, placement_from_acks
from harness.wait import wait_until

DEADLINE_S = 120


def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=30)[topic].result(60)


def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([topic], operation_timeout=30)[topic].result(60)
    wait_until(lambda: topic not in admin.list_topics(timeout=10).topics, 60, f"{topic} to disappear")


def produce(bootstrap: str, topic: str, codec: str, count: int) -> dict[int, tuple[int, int]]:
    acks: dict[int, tuple[int, int]] = {}
    errors = []

    def on_delivery(i):
        def cb(err, msg):
            if err is not None:
                errors.append((i, err))
            else:
                acks[i] = (msg.partition(), msg.offset())
        return cb

    # Idempotence: librdkafka keeps per-partition order across retries only with it (a retry of a
    # Produce that met a just-created partition's NOT_LEADER would otherwise land after later ones).
    p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 5, "acks": "all",
                  "enable.idempotence": True})
    for i in range(count):
        m = message(i)
        while True:
            try:
                p.produce(topic, key=m.key, value=m.value, headers=list(m.headers), on_delivery=on_delivery(i))
                break
            except BufferError:
                p.poll(0.1)  # local queue full: serve delivery reports, then retry
    remaining = p.flush(DEADLINE_S)
    assert remaining == 0, f"{remaining} messages still in flight after {DEADLINE_S}s"
    assert not errors, f"delivery errors: {errors[:5]}"
    return acks


def consume_all(bootstrap: str, topic: str, partitions: int, count: int) -> list[Received]:
    # confluent-kafka-python insists on a group.id even for assign(); nothing is ever committed.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compat-assign-only", "enable.auto.commit": False,
                  "enable.auto.offset.store": False})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out: list[Received] = []
        deadline = time.monotonic() + DEADLINE_S
        while len(out) < count and time.monotonic() < deadline:
            for msg in c.consume(num_messages=1000, timeout=0.5):
                if msg.error():
                    raise KafkaException(msg.error())
                out.append(Received(msg.partition(), msg.offset(), msg.key(), msg.value(),
                                    tuple(msg.headers() or ())))
        return out
    finally:
        c.close()


def list_offsets(bootstrap: str, topic: str, partitions: int) -> tuple[dict[int, int], dict[int, int]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    result = []
    for spec in (OffsetSpec.earliest(), OffsetSpec.latest()):
        futs = admin.list_offsets({TopicPartition(topic, p): spec for p in range(partitions)}, request_timeout=30)
        result.append({tp.partition: f.result(60).offset for tp, f in futs.items()})
    return result[0], result[1]


@pytest.mark.parametrize("codec", CODECS)
def test_roundtrip(broker, codec):
    topic = f"confluent-{codec}"
    create_topic(broker.bootstrap, topic)
    placed = placement_from_acks(produce(broker.bootstrap, topic, codec, MESSAGES), MESSAGES)
    check_received(consume_all(broker.bootstrap, topic, PARTITIONS, MESSAGES), placed, MESSAGES)
    earliest, latest = list_offsets(broker.bootstrap, topic, PARTITIONS)
    assert earliest == {p: 0 for p in range(PARTITIONS)}
    assert latest == {p: len(placed.get(p, [])) for p in range(PARTITIONS)}

    # The batches stored by the broker carry the codec the producer was asked for. librdkafka
    # sends a batch uncompressed when compressing does not shrink it (tiny batches), so the check
    # is on records: nearly all must sit in batches of the asked codec. The trap this guards
    # (compression silently off when ApiVersions lacks Produce v0) would make it 0%.
    total = in_codec = 0
    for p in range(PARTITIONS):
        err, batches = wire.fetch_batches(broker.host, broker.port, topic, p)
        assert err == 0, f"raw Fetch of {topic}/{p}: error {err}"
        assert batches, f"raw Fetch of {topic}/{p} returned no batch"
        assert all(b.magic == 2 for b in batches)
        assert {b.compression for b in batches} <= {codec, "none"}, f"{topic}/{p}: {batches}"
        total += sum(b.record_count for b in batches)
        in_codec += sum(b.record_count for b in batches if b.compression == codec)
    assert total == MESSAGES, f"raw Fetch saw {total} records, expected {MESSAGES}"
    assert in_codec >= 0.9 * total, f"only {in_codec} of {total} records stored {codec}-compressed"
    delete_topic(broker.bootstrap, topic)
