"""Transactions (exactly-once) with real clients: the Java client's transactional producer and
read_committed consumer (compat-java txn-*), confluent-kafka's (librdkafka) and franz-go's
GroupTransactSession (compat-go txn-ctp).

(a) a commit across 3 topics becomes visible atomically to read_committed (the LSO holds while
    the transaction is open), an abort hides it, read_uncommitted sees both and no markers;
(b) zombie fencing: a second producer with the same transactional.id fences the first, whose
    commit fails with ProducerFencedException, and nothing of its open transaction is visible;
(c) consume-transform-produce with sendOffsetsToTransaction, every fourth transaction aborted:
    the output holds each input's result once and the group's offsets are at the input's end;
(d) kill -9 of the broker while a transaction is open: after the restart the coordinator aborts
    it once transaction.timeout.ms has passed and the LSO moves on to the high watermark;
(e) kill -9 of the broker in the middle of (c): the run finishes exactly once;
(f) transactions version 2 (KIP-890 part 2), which a new cluster finalizes and the Java client
    then uses: the producer epoch goes up by one with every commit and abort, at the
    coordinator (DescribeTransactions) and in the partition (DescribeProducers: the marker's
    epoch); `kafka-features downgrade --feature transaction.version=1` makes new Java producers
    fall back to version 1 (the epoch stays), and (a), (b), (c) pass there too; upgraded back
    to 2, the epoch bumps again.

Every Java scenario here runs with whatever transaction.version the broker finalizes: 2 unless
(f) lowers it.
"""

from __future__ import annotations

import re
import subprocess
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from harness.clients import go_cmd, java_cmd, run_driver
from harness.wait import wait_until
from tests.test_confluent_kafka import create_topic
from tests.test_kafka_features import describe as describe_features
from tests.test_kafka_features import features

# Kafka's coordinator aborts timed-out transactions on this interval (default 10 s).
BROKER_OVERRIDES = {"transaction.abort.timed.out.transaction.cleanup.interval.ms": "500"}
# Long enough that Kafka, whose restart takes seconds, has its partitions' leaders back before
# the abort: a coordinator that aborts earlier finds no leader for the partition, skips the
# marker and leaves the transaction hanging (seen with Kafka 4.3 at 4 s).
OPEN_TXN_TIMEOUT_MS = 15000


def test_commit_across_three_topics_is_atomic_and_abort_hides(broker):
    out = run_driver(java_cmd("txn-visibility", "--bootstrap", broker.bootstrap, "--topic-prefix", "vis",
                              "--count", "300"), timeout_s=300)
    print(out[-2000:])
    assert "ok visibility" in out, out


def test_a_second_producer_fences_the_zombie(broker):
    out = run_driver(java_cmd("txn-fence", "--bootstrap", broker.bootstrap, "--topic", "fence"), timeout_s=300)
    print(out[-2000:])
    assert "zombie commit: ProducerFencedException" in out and "ok fence" in out, out


def test_consume_transform_produce_with_offsets_in_the_transaction(broker):
    out = run_driver(java_cmd("txn-ctp", "--bootstrap", broker.bootstrap, "--input", "ctp-in", "--output", "ctp-out",
                              "--group", "ctp", "--count", "3000", "--abort-every", "4", "--max-poll-records", "100"),
                     timeout_s=300)
    print(out[-2000:])
    assert "ok ctp" in out, out


def test_franz_go_group_transact_session(broker):
    """franz-go's GroupTransactSession: consume-transform-produce with aborts, exactly once."""
    out = run_driver(go_cmd("txn-ctp", "--bootstrap", broker.bootstrap, "--input", "go-ctp-in", "--output", "go-ctp-out",
                            "--group", "go-ctp", "--count", "3000", "--abort-every", "4"), timeout_s=300)
    print(out[-2000:])
    assert "ok ctp" in out, out


def test_consume_transform_produce_survives_a_broker_kill9(broker_factory):
    """kill -9 of the broker in the middle of a consume-transform-produce run, then a restart
    on the same data: the run finishes, each input's result is in the output exactly once and
    the group's offsets are at the input's end (the driver checks both)."""
    broker = broker_factory.start(BROKER_OVERRIDES)
    proc = subprocess.Popen(java_cmd("txn-ctp", "--bootstrap", broker.bootstrap, "--input", "kill-in", "--output", "kill-out",
                                     "--group", "kill", "--count", "20000", "--abort-every", "7", "--max-poll-records", "50"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        committed = 0
        for line in proc.stdout:
            lines.append(line)
            committed += line.startswith("COMMITTED ")
            if committed >= 30:
                break
        assert committed >= 30, "".join(lines[-40:])
        broker.kill9()
        # Back on the same port: the running clients only know that address.
        broker.overrides["listeners"] = f"PLAINTEXT://127.0.0.1:{broker.port}"
        broker.restart()
        broker.wait_metadata()
        lines.extend(proc.stdout)
        rc = proc.wait(timeout=300)
    finally:
        proc.kill()
    out = "".join(lines)
    print("".join(l for l in lines if not l.startswith("COMMITTED"))[-3000:])
    assert rc == 0 and "ok ctp records=20000" in out, out[-6000:]


def offsets(bootstrap: str, topic: str) -> tuple[int, int]:
    out = run_driver(java_cmd("txn-offsets", "--bootstrap", bootstrap, "--topic", topic), timeout_s=120)
    m = re.search(r"^0 lso=(-?\d+) hw=(-?\d+)$", out, re.M)
    assert m, out
    return int(m.group(1)), int(m.group(2))


def java_count(bootstrap: str, topic: str, isolation: str) -> int:
    out = run_driver(java_cmd("txn-count", "--bootstrap", bootstrap, "--topic", topic, "--isolation", isolation),
                     timeout_s=120)
    m = re.search(r"^count=(\d+)$", out, re.M)
    assert m, out
    return int(m.group(1))


def test_an_open_transaction_survives_kill9_and_is_aborted_after_its_timeout(broker_factory):
    broker = broker_factory.start(BROKER_OVERRIDES)
    topic = "open-txn"
    proc = subprocess.Popen(java_cmd("txn-open", "--bootstrap", broker.bootstrap, "--topic", topic,
                                     "--timeout-ms", str(OPEN_TXN_TIMEOUT_MS)),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == "OPEN":
                break
        assert lines and lines[-1].strip() == "OPEN", "".join(lines[-50:])
        lso, hw = offsets(broker.bootstrap, topic)
        assert (lso, hw) == (0, 20), f"open transaction: LSO {lso}, HW {hw}"
        broker.kill9()
        proc.kill()
    finally:
        proc.kill()
        proc.wait()
    t_killed = time.monotonic()
    broker.restart()
    broker.wait_metadata()
    lso, hw = offsets(broker.bootstrap, topic)
    assert lso == 0 and hw == 20, f"after the restart the transaction must still hold the LSO: {lso}/{hw}"
    lso, hw = wait_until(lambda: (lambda o: o if o[0] == o[1] else None)(offsets(broker.bootstrap, topic)),
                         60, "the coordinator to abort the timed-out transaction")
    delay = time.monotonic() - t_killed
    print(f"open transaction aborted {delay:.1f} s after the kill (transaction.timeout.ms={OPEN_TXN_TIMEOUT_MS}); "
          f"LSO = HW = {lso}")
    assert hw == 21, f"one ABORT marker after the 20 records, HW {hw}"
    assert java_count(broker.bootstrap, topic, "read_committed") == 0
    assert java_count(broker.bootstrap, topic, "read_uncommitted") == 20


def test_librdkafka_commit_and_abort(broker):
    """confluent-kafka (librdkafka): a committed and an aborted transaction, read back by a
    read_committed and a read_uncommitted consumer."""
    topic = "rdkafka-txn"
    create_topic(broker.bootstrap, topic, 2)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "rdkafka-tx",
                         "transaction.timeout.ms": 60000, "linger.ms": 5})
    producer.init_transactions(60)
    for name, commit in (("c1", True), ("a2", False), ("c3", True)):
        producer.begin_transaction()
        for i in range(200):
            producer.produce(topic, key=str(i).encode(), value=f"{name}-{i}".encode(), partition=i % 2)
        producer.flush(60)
        if commit:
            producer.commit_transaction(60)
        else:
            producer.abort_transaction(60)

    def read(isolation: str) -> list[str]:
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"rd-{isolation}", "enable.auto.commit": False,
                      "isolation.level": isolation, "auto.offset.reset": "earliest"})
        try:
            ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in (0, 1)}
            c.assign([TopicPartition(topic, p, 0) for p in (0, 1)])
            got: list[str] = []

            def at_end():
                positions = c.position([TopicPartition(topic, p) for p in (0, 1)])
                return all(tp.offset >= ends[tp.partition] for tp in positions)

            deadline = time.monotonic() + 60
            while not at_end():
                assert time.monotonic() < deadline, f"{isolation} read stuck at {c.position([TopicPartition(topic, 0), TopicPartition(topic, 1)])}, ends {ends}"
                msg = c.poll(0.2)
                if msg is not None and msg.error() is None:
                    got.append(msg.value().decode())
            return got
        finally:
            c.close()

    committed = read("read_committed")
    assert sorted(committed) == sorted([f"c1-{i}" for i in range(200)] + [f"c3-{i}" for i in range(200)]), \
        f"read_committed saw {len(committed)} records"
    everything = read("read_uncommitted")
    assert len(everything) == 600, f"read_uncommitted saw {len(everything)} records"
    try:
        producer.begin_transaction()
        producer.abort_transaction(10)
    except KafkaException as e:
        raise AssertionError(f"an empty abort failed: {e}") from e


def test_kafka_python_commit_and_abort(broker):
    """kafka-python's transactional producer and read_committed consumer."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTopicPartition

    topic = "kpy-txn"
    create_topic(broker.bootstrap, topic, 1)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="kpy-tx")
    producer.init_transactions()
    for name, commit in (("c1", True), ("a2", False), ("c3", True)):
        producer.begin_transaction()
        for i in range(100):
            producer.send(topic, value=f"{name}-{i}".encode(), partition=0)
        producer.flush()
        if commit:
            producer.commit_transaction()
        else:
            producer.abort_transaction()
    producer.close()

    def read(isolation: str) -> list[str]:
        c = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level=isolation, enable_auto_commit=False,
                          auto_offset_reset="earliest")
        try:
            tp = KTopicPartition(topic, 0)
            c.assign([tp])
            c.seek_to_beginning(tp)
            end = c.end_offsets([tp])[tp]
            got: list[str] = []
            deadline = time.monotonic() + 60
            while c.position(tp) < end:
                assert time.monotonic() < deadline, f"{isolation} read stuck at {c.position(tp)} of {end}"
                for records in c.poll(timeout_ms=200).values():
                    got.extend(r.value.decode() for r in records)
            return got
        finally:
            c.close()

    committed = read("read_committed")
    assert committed == [f"c1-{i}" for i in range(100)] + [f"c3-{i}" for i in range(100)], len(committed)
    assert len(read("read_uncommitted")) == 300


def set_transaction_version(bootstrap: str, level: int) -> None:
    """kafka-features upgrade/downgrade of transaction.version, then waits until the broker's
    ApiVersions finalizes it (new clients read it there)."""
    current = int(describe_features(bootstrap)["transaction.version"]["level"])
    verb = "upgrade" if level > current else "downgrade"
    out = features(bootstrap, verb, "--feature", f"transaction.version={level}")
    assert f"transaction.version was {verb}d to {level}." in out, out
    wait_until(lambda: describe_features(bootstrap)["transaction.version"]["level"] == str(level), 30,
               f"transaction.version {level} in ApiVersions")


def epochs(bootstrap: str, topic: str, version: int) -> None:
    out = run_driver(java_cmd("txn-epochs", "--bootstrap", bootstrap, "--topic", topic, "--expect-version", str(version),
                              "--rounds", "6"), timeout_s=300)
    print("\n".join(line for line in out.splitlines() if line.startswith(("finalized", "initialised", "round", "ok"))))
    assert f"ok epochs version={version}" in out, out[-4000:]


def test_transaction_version_2_bumps_the_epoch_and_level_1_falls_back(broker_factory):
    broker = broker_factory.start(BROKER_OVERRIDES)
    bootstrap = broker.bootstrap
    assert describe_features(bootstrap)["transaction.version"]["level"] == "2", "a new cluster finalizes version 2"
    epochs(bootstrap, "tv2-epochs", 2)

    set_transaction_version(bootstrap, 1)
    epochs(bootstrap, "tv1-epochs", 1)
    out = run_driver(java_cmd("txn-visibility", "--bootstrap", bootstrap, "--topic-prefix", "tv1vis", "--count", "100"),
                     timeout_s=300)
    assert "ok visibility" in out, out[-4000:]
    out = run_driver(java_cmd("txn-fence", "--bootstrap", bootstrap, "--topic", "tv1fence"), timeout_s=300)
    assert "zombie commit: ProducerFencedException" in out and "ok fence" in out, out[-4000:]
    out = run_driver(java_cmd("txn-ctp", "--bootstrap", bootstrap, "--input", "tv1-in", "--output", "tv1-out",
                              "--group", "tv1-ctp", "--count", "1000", "--abort-every", "4", "--max-poll-records", "100"),
                     timeout_s=300)
    assert "ok ctp" in out, out[-4000:]

    set_transaction_version(bootstrap, 2)
    epochs(bootstrap, "tv2-again", 2)
    out = run_driver(java_cmd("txn-fence", "--bootstrap", bootstrap, "--topic", "tv2fence"), timeout_s=300)
    assert "zombie commit: ProducerFencedException" in out and "ok fence" in out, out[-4000:]
