"""Reads whole partitions back with confluent-kafka (assign only) up to their high watermarks."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

READ_DEADLINE_S = 180


def read_partitions(bootstrap: str, topic: str, partitions: int) -> dict[int, list[bytes]]:
    """Returns partition -> values in offset order, from offset 0 to the high watermark."""
    # confluent-kafka-python insists on a group.id even for assign(); nothing is ever committed.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compat-readback", "enable.auto.commit": False,
                  "enable.auto.offset.store": False, "fetch.max.bytes": 16 << 20})
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(partitions)}
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
        deadline = time.monotonic() + READ_DEADLINE_S
        while any(len(out[p]) < ends[p] for p in out):
            if time.monotonic() > deadline:
                got = {p: len(v) for p, v in out.items()}
                raise AssertionError(f"read back {got}, high watermarks {ends}")
            for msg in c.consume(num_messages=5000, timeout=0.5):
                if msg.error():
                    raise KafkaException(msg.error())
                p = msg.partition()
                assert msg.offset() == len(out[p]), f"{topic}/{p}: offset {msg.offset()} after {len(out[p])} records"
                out[p].append(msg.value())
        return out
    finally:
        c.close()
