"""kafka-python: admin create/delete, produce with each codec, assign-consume, ListOffsets."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from harness.scenario import CODECS, MESSAGES, PARTITIONS, Received, check_received, message, placement_from_acks
from harness.wait import wait_until

DEADLINE_S = 120


@pytest.mark.parametrize("codec", CODECS)
def test_roundtrip(broker, codec):
    topic = f"kafka-python-{codec}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30_000)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])

        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5,
                                 compression_type=None if codec == "none" else codec,
                                 enable_idempotence=True)
        futures = [producer.send(topic, key=m.key, value=m.value, headers=list(m.headers))
                   for m in map(message, range(MESSAGES))]
        producer.flush(DEADLINE_S)
        acks = {}
        for i, f in enumerate(futures):
            md = f.get(timeout=DEADLINE_S)
            acks[i] = (md.partition, md.offset)
        producer.close()
        placed = placement_from_acks(acks, MESSAGES)

        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                                 auto_offset_reset="earliest")
        try:
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            received: list[Received] = []
            deadline = time.monotonic() + DEADLINE_S
            while len(received) < MESSAGES and time.monotonic() < deadline:
                for tp, records in consumer.poll(timeout_ms=500, max_records=2000).items():
                    received.extend(Received(r.partition, r.offset, r.key, r.value, tuple(r.headers))
                                    for r in records)
            check_received(received, placed, MESSAGES)
            earliest = consumer.beginning_offsets(tps)
            latest = consumer.end_offsets(tps)
        finally:
            consumer.close()
        assert {tp.partition: o for tp, o in earliest.items()} == {p: 0 for p in range(PARTITIONS)}
        assert {tp.partition: o for tp, o in latest.items()} == {p: len(placed.get(p, [])) for p in range(PARTITIONS)}

        admin.delete_topics([topic])
        wait_until(lambda: topic not in admin.list_topics(), 60, f"{topic} to disappear")
    finally:
        admin.close()
