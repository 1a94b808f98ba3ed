"""Group coordinators move with the leadership of `__consumer_offsets` (issue 10), on a
three-node cluster whose internal topics have replication factor 3:

- a consumer group (librdkafka, manual synchronous commits) consumes and commits; kill -9 of
  the broker that coordinates the group: the group carries on with a new coordinator, no
  acknowledged commit is lost (the offsets read back are equal or later), and no record is
  consumed twice unless it lay past the last acknowledged commit. The failover time, from the
  kill to the first acknowledged commit on the new coordinator, is printed.

The same test runs against Apache Kafka (BROKER=kafka), which proves the harness and the
expectations on the reference (Kafka notices the dead broker only after its session timeout).
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness.wait import wait_until
from tests.test_cluster import cluster_factory  # noqa: F401  (the fixture)

TOPIC = "orders"
GROUP = "replicated-group"
PARTITIONS = 3
RECORDS = 6_000
COMMIT_EVERY = 50
KILL_AFTER_CONSUMED = 1_500
# Internal topics as a production cluster has them (the harness lowers them for one node).
REPLICATED_INTERNALS = {
    "offsets.topic.replication.factor": "3",
    "offsets.topic.num.partitions": "10",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "transaction.state.log.num.partitions": "10",
    "group.initial.rebalance.delay.ms": "0",
}
FAILOVER_TIMEOUT_S = 90


def produce_all(bootstrap: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    for i in range(RECORDS):
        producer.produce(TOPIC, key=str(i).encode(), value=f"v{i}".encode(), partition=i % PARTITIONS)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0, "records unacknowledged after a minute"


def coordinator_of(bootstrap: str, group: str) -> int | None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the future resolves
    try:
        futures = admin.describe_consumer_groups([group], request_timeout=5)
        return futures[group].result(10).coordinator.id
    except KafkaException:
        return None


def internal_topic_replicas(bootstrap: str, topic: str) -> list[int] | None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(topic, timeout=10).topics.get(topic)
    if md is None or md.error is not None or not md.partitions:
        return None
    return sorted({len(p.replicas) for p in md.partitions.values()})


class GroupRun:
    """One consumer of the group; what it consumed and which commits were acknowledged."""

    def __init__(self, bootstrap: str):
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": 10_000, "heartbeat.interval.ms": 1_000,
        })
        self.consumer.subscribe([TOPIC])
        self.acked: dict[int, int] = {}
        self.seen: set[tuple[int, int]] = set()
        self.redelivered_below_commit: list[tuple[int, int, int]] = []
        self.redelivered = 0
        self.since_commit = 0
        self.commit_times: list[float] = []
        self.commit_errors: list[str] = []

    def step(self) -> None:
        for m in self.consumer.consume(200, 0.5):
            if m.error() is not None:
                continue
            at = (m.partition(), m.offset())
            if at in self.seen:
                self.redelivered += 1
                if m.offset() < self.acked.get(m.partition(), 0):
                    # Delivered again below an acknowledged commit: that commit was lost.
                    self.redelivered_below_commit.append((*at, self.acked[m.partition()]))
            self.seen.add(at)
            self.since_commit += 1
        if self.since_commit >= COMMIT_EVERY:
            self.commit()

    def commit(self) -> None:
        try:
            committed = self.consumer.commit(asynchronous=False)
        except KafkaException as e:
            self.commit_errors.append(str(e))
            return
        for tp in committed or []:
            if tp.error is None and tp.offset >= 0:
                self.acked[tp.partition] = max(self.acked.get(tp.partition, 0), tp.offset)
        self.since_commit = 0
        self.commit_times.append(time.monotonic())

    def consumed(self) -> int:
        return len(self.seen)


def read_committed(bootstrap: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=30)
    finally:
        c.close()
    return {tp.partition: tp.offset for tp in got}


def test_a_group_survives_kill9_of_its_coordinator_without_losing_a_commit(cluster_factory):  # noqa: F811
    c = cluster_factory(layout="combined", controllers=3, overrides=REPLICATED_INTERNALS)
    c.start()
    admin = AdminClient({"bootstrap.servers": c.bootstrap()})
    for f in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3, config={"min.insync.replicas": "2"})]).values():
        f.result(30)
    produce_all(c.bootstrap())

    run = GroupRun(c.bootstrap())
    try:
        wait_until(lambda: run.step() or run.consumed() >= KILL_AFTER_CONSUMED, 120, f"{KILL_AFTER_CONSUMED} records consumed")
        run.commit()
        assert run.acked, f"no commit acknowledged before the kill: {run.commit_errors[-3:]}"
        assert internal_topic_replicas(c.bootstrap(), "__consumer_offsets") == [3]
        victim = wait_until(lambda: coordinator_of(c.bootstrap(), GROUP), 30, "the group's coordinator")
        acked_before = dict(run.acked)
        commits_before = len(run.commit_times)

        t_kill = time.monotonic()
        c.nodes[victim].kill9()
        wait_until(lambda: run.step() or len(run.commit_times) > commits_before, FAILOVER_TIMEOUT_S,
                   f"a commit acknowledged after kill -9 of coordinator {victim}")
        failover_s = run.commit_times[commits_before] - t_kill
        new = wait_until(lambda: coordinator_of(c.bootstrap(), GROUP), 30, "the new coordinator")
        print(f"\ncoordinator {victim} killed: first commit acknowledged by coordinator {new} after {failover_s:.2f} s"
              f" (commit errors meanwhile: {len(run.commit_errors)})")
        assert new != victim

        wait_until(lambda: run.step() or run.consumed() >= RECORDS, 120, "every record consumed")
        run.commit()
    finally:
        run.consumer.close()

    committed = read_committed(c.bootstrap())
    print(f"acknowledged before the kill {acked_before}, at the end {run.acked}, read back {committed};"
          f" redelivered {run.redelivered}")
    for p, offset in acked_before.items():
        assert committed[p] >= offset, f"partition {p}: commit {offset} acknowledged before the kill, read back {committed[p]}"
    for p, offset in run.acked.items():
        assert committed[p] == offset, f"partition {p}: last acknowledged commit {offset}, read back {committed[p]}"
    assert sum(committed.values()) == RECORDS, committed
    assert not run.redelivered_below_commit, run.redelivered_below_commit[:5]
