"""Record-level admin calls through librdkafka: DeleteRecords (to an offset and to the high
watermark), ListOffsets by timestamp and MAX_TIMESTAMP, and what a consumer sees after the log
start moved. Runs unchanged against Apache Kafka (BROKER=kafka)."""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from harness.wait import wait_until

BASE_TS = 1_700_000_000_000


def test_delete_records_and_offsets_by_time(broker):
    bootstrap = broker.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = "records-admin"
    admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=30)[topic].result(60)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "batch.num.messages": 1})
    # One record per batch, timestamps 10 s apart, the largest at offset 7.
    stamps = [BASE_TS + 10_000 * i for i in range(10)]
    stamps[7] = BASE_TS + 1_000_000
    for i, ts in enumerate(stamps):
        producer.produce(topic, key=b"k", value=f"v{i}".encode(), timestamp=ts)
        producer.flush(30)
    assert producer.flush(30) == 0
    tp = TopicPartition(topic, 0)

    def offsets(spec):
        return admin.list_offsets({tp: spec}, request_timeout=30)[tp].result(60)

    at = offsets(OffsetSpec.for_timestamp(BASE_TS + 25_000))
    assert at.offset == 3, at
    assert at.timestamp == BASE_TS + 30_000, at
    newest = offsets(OffsetSpec.max_timestamp())
    assert (newest.offset, newest.timestamp) == (7, BASE_TS + 1_000_000), newest
    assert offsets(OffsetSpec.for_timestamp(BASE_TS + 2_000_000)).offset == -1, "no record that new"

    low = admin.delete_records([TopicPartition(topic, 0, 4)], request_timeout=30)[tp].result(60)
    assert low.low_watermark == 4, low
    assert offsets(OffsetSpec.earliest()).offset == 4
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "records-admin", "auto.offset.reset": "earliest"})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        seen = []

        def consumed():
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                seen.append(msg.offset())
            return len(seen) >= 6

        wait_until(consumed, 60, "records from the new log start")
        assert seen[:6] == [4, 5, 6, 7, 8, 9], seen
    finally:
        consumer.close()

    # Beyond the high watermark: OFFSET_OUT_OF_RANGE; to the high watermark (-1): all gone.
    try:
        admin.delete_records([TopicPartition(topic, 0, 11)], request_timeout=30)[tp].result(60)
        raise AssertionError("deleting beyond the high watermark must fail")
    except KafkaException as e:
        assert e.args[0].name() == "OFFSET_OUT_OF_RANGE", e
    low = admin.delete_records([TopicPartition(topic, 0, -1)], request_timeout=30)[tp].result(60)
    assert low.low_watermark == 10, low
    assert offsets(OffsetSpec.earliest()).offset == 10
    assert offsets(OffsetSpec.latest()).offset == 10
    admin.delete_topics([topic], operation_timeout=30)[topic].result(60)
