"""kill -9 in the middle of an acks=all stream with log.flush.interval.messages=1: after a restart
on the same data dir every acknowledged message is there, at its acknowledged offset."""

from __future__ import annotations

import time

from confluent_kafka import Producer

from harness.readback import read_partitions
from harness.wait import wait_until
from tests.test_confluent_kafka import create_topic

PARTITIONS = 3
ACKED_BEFORE_KILL = 5000
MESSAGES_MAX = 200_000


def test_acknowledged_messages_survive_kill9(broker_factory):
    broker = broker_factory.start({"log.flush.interval.messages": "1"})
    topic = "crash"
    create_topic(broker.bootstrap, topic, PARTITIONS)

    acked: dict[int, tuple[int, int]] = {}
    failed = 0

    def on_delivery(err, msg):
        nonlocal failed
        if err is None:
            acked[int(msg.value())] = (msg.partition(), msg.offset())
        else:
            failed += 1

    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 2,
                         "message.timeout.ms": 8000, "queue.buffering.max.messages": 20000})
    killed_at = None
    for n in range(MESSAGES_MAX):
        while True:
            try:
                producer.produce(topic, value=str(n).encode(), partition=n % PARTITIONS, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        if killed_at is None and len(acked) >= ACKED_BEFORE_KILL:
            broker.kill9()  # requests are in flight: the stream is cut mid-way
            killed_at = n
        elif killed_at is not None and n >= killed_at + 2000:
            break
    assert killed_at is not None, f"only {len(acked)} acknowledgements for {MESSAGES_MAX} messages"
    producer.flush(30)  # the unacknowledged tail times out against the dead broker
    print(f"killed after {len(acked)} acks with {killed_at + 1} messages sent; {failed} failed")

    t0 = time.monotonic()
    broker.restart()
    broker.wait_metadata()
    print(f"restart after kill -9: {time.monotonic() - t0:.2f}s")
    values = wait_until(lambda: read_partitions(broker.bootstrap, topic, PARTITIONS), 120, "a full read-back")
    lost = []
    for n, (p, off) in acked.items():
        if off >= len(values[p]) or values[p][off] != str(n).encode():
            lost.append((n, p, off))
    assert not lost, f"{len(lost)} acknowledged messages lost or moved after kill -9, e.g. {sorted(lost)[:10]}"
