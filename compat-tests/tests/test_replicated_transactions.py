"""Transactions across nodes (issue 11), on a three-node cluster whose internal topics have
replication factor 3 (`__transaction_state` with min.insync.replicas 2):

- a librdkafka transactional producer writes into 9 partitions led by all three brokers, so
  that most markers reach their partition through WriteTxnMarkers from the coordinator to
  another broker; committed transactions become visible to a read_committed consumer in every
  partition, aborted ones never, and a read_uncommitted consumer sees both;
- kill -9 of the transaction coordinator while a transaction is open (its records written, not
  yet committed): the producer commits through the new coordinator, which loaded the
  transaction from the replicated `__transaction_state`; the records become visible exactly
  once, and the next transaction works. The time from the kill to the acknowledged commit is
  printed;
- the killed node restarts and catches up; kill -9 of the new coordinator right after a commit
  was acknowledged (its markers perhaps not all written): the records of that transaction
  become visible exactly once, completed by the next coordinator.

A second scenario runs the Java client, which uses transactions version 2 (KIP-890 part 2) on
a cluster that finalizes it: its partitions are added to the transaction by their leaders (Produce
v12+ turns into AddPartitionsToTxn with verify_only false from the leader to the coordinator,
most of them on another broker), the group's offsets by the group coordinator (TxnOffsetCommit
v5), and every commit and abort bumps the producer epoch (the driver checks DescribeTransactions
and DescribeProducers after each).

The same tests run against Apache Kafka (BROKER=kafka), which proves the harness and the
expectations on the reference.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness.wait import wait_until
from harness.broker import broker_kind
from harness.clients import java_cmd, run_driver
from tests.test_cluster import cluster_factory, scrape  # noqa: F401  (the fixture)
from tests.test_replicated_groups import REPLICATED_INTERNALS

TOPICS = ("txa", "txb", "txc")
PARTITIONS = 3
TXN_PARTITIONS = int(REPLICATED_INTERNALS["transaction.state.log.num.partitions"])
TRANSACTIONAL_ID = "replicated-tx"
PER_PARTITION = 10
COMMIT_TIMEOUT_S = 120


def java_abs_hash(s: str) -> int:
    """Kafka's `Utils.abs(s.hashCode())` for an ASCII string."""
    h = 0
    for ch in s:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    if h >= 1 << 31:
        h -= 1 << 32
    return 0 if h == -(1 << 31) else abs(h)


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(topic, timeout=10).topics[topic]
    assert md.error is None, md.error
    return {p: m.leader for p, m in md.partitions.items()}


def coordinator(bootstrap: str) -> int | None:
    partition = java_abs_hash(TRANSACTIONAL_ID) % TXN_PARTITIONS
    try:
        leader = leaders(bootstrap, "__transaction_state").get(partition, -1)
    except (KafkaException, KeyError, AssertionError):
        return None
    return leader if leader >= 0 else None


def led_by(bootstrap: str, node: int) -> list[str]:
    """The partitions of the test's topics and `__transaction_state` that `node` leads."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=10)
    return [f"{t}-{p}" for t in list(TOPICS) + ["__transaction_state"]
            for p, m in md.topics[t].partitions.items() if m.leader == node]


def fully_replicated(bootstrap: str) -> bool:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        md = admin.list_topics(timeout=10)
    except KafkaException:
        return False
    names = list(TOPICS) + ["__transaction_state"]
    return all(t in md.topics and md.topics[t].partitions and all(len(p.isrs) == 3 for p in md.topics[t].partitions.values())
               for t in names)


def produce_transaction(producer: Producer, name: str) -> None:
    producer.begin_transaction()
    for topic in TOPICS:
        for p in range(PARTITIONS):
            for i in range(PER_PARTITION):
                producer.produce(topic, key=f"{p}-{i}".encode(), value=f"{name}:{topic}:{p}:{i}".encode(), partition=p)
    assert producer.flush(60) == 0, f"records of {name} unacknowledged after a minute"


def commit(producer: Producer) -> None:
    """commit_transaction, retried on the errors librdkafka marks retriable (a coordinator
    that moved)."""
    deadline = time.monotonic() + COMMIT_TIMEOUT_S
    while True:
        try:
            producer.commit_transaction(30)
            return
        except KafkaException as e:
            err = e.args[0]
            if not err.retriable() or time.monotonic() > deadline:
                raise


def read_all(bootstrap: str, isolation: str) -> list[str]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{isolation}-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "isolation.level": isolation})
    try:
        tps = [TopicPartition(t, p) for t in TOPICS for p in range(PARTITIONS)]
        def end_of(tp: TopicPartition):
            # Retried (wait_until takes an exception for "not yet"): right after a broker died,
            # a request in flight to it fails on the client (librdkafka drops a broker the
            # metadata no longer lists: _DESTROY_BROKER).
            return (c.get_watermark_offsets(tp, timeout=10)[1],)

        ends = {(tp.topic, tp.partition): wait_until(lambda: end_of(tp), 60, f"the end of {tp.topic}-{tp.partition}")[0]
                for tp in tps}
        c.assign([TopicPartition(t, p, 0) for t in TOPICS for p in range(PARTITIONS)])
        got: list[str] = []

        def at_end() -> bool:
            for m in c.consume(500, 0.2):
                if m.error() is None:
                    got.append(m.value().decode())
            return all(tp.offset >= ends[(tp.topic, tp.partition)] for tp in c.position(tps))

        wait_until(at_end, 60, f"{isolation} consumer at the end of every partition ({ends})")
        return got
    finally:
        c.close()


def expected(names: list[str]) -> list[str]:
    return sorted(f"{n}:{t}:{p}:{i}" for n in names for t in TOPICS for p in range(PARTITIONS) for i in range(PER_PARTITION))


def test_transactions_span_brokers_and_survive_kill9_of_the_coordinator(cluster_factory):  # noqa: F811
    c = cluster_factory(layout="combined", controllers=3, overrides=REPLICATED_INTERNALS)
    c.start()
    admin = AdminClient({"bootstrap.servers": c.bootstrap()})
    for f in admin.create_topics([NewTopic(t, PARTITIONS, 3, config={"min.insync.replicas": "2"}) for t in TOPICS]).values():
        f.result(30)
    producer = Producer({"bootstrap.servers": c.bootstrap(), "transactional.id": TRANSACTIONAL_ID,
                         "transaction.timeout.ms": 60_000, "linger.ms": 5})
    producer.init_transactions(60)

    txn_partition = java_abs_hash(TRANSACTIONAL_ID) % TXN_PARTITIONS
    txn_leaders = leaders(c.bootstrap(), "__transaction_state")
    assert len(txn_leaders) == TXN_PARTITIONS
    victim = wait_until(lambda: coordinator(c.bootstrap()), 30, "the transaction coordinator")
    data_leaders = {l for t in TOPICS for l in leaders(c.bootstrap(), t).values()}
    print(f"\ncoordinator {victim} (__transaction_state-{txn_partition}); data partitions led by {sorted(data_leaders)}")
    assert len(data_leaders - {victim}) >= 1, "every data partition led by the coordinator: no remote marker"

    committed: list[str] = []
    for n in range(6):
        name = f"t{n}"
        produce_transaction(producer, name)
        if n % 2 == 0:
            commit(producer)
            committed.append(name)
        else:
            producer.abort_transaction(60)

    assert sorted(read_all(c.bootstrap(), "read_committed")) == expected(committed)
    assert len(read_all(c.bootstrap(), "read_uncommitted")) == 6 * len(TOPICS) * PARTITIONS * PER_PARTITION
    if broker_kind() == "blumfeld":
        # Every data partition got one marker per transaction, wherever it is led.
        written = {r: sum(scrape(c.nodes[n]).get(f'blumfeld_transaction_markers_written_total{{result="{r}"}}', 0)
                          for n in c.broker_ids) for r in ("commit", "abort")}
        per_txn = len(TOPICS) * PARTITIONS
        assert written == {"commit": 3 * per_txn, "abort": 3 * per_txn}, written

    # The coordinator dies with a transaction open; the producer commits through its successor.
    produce_transaction(producer, "open")
    t_kill = time.monotonic()
    c.nodes[victim].kill9()
    commit(producer)
    took = time.monotonic() - t_kill
    new = wait_until(lambda: coordinator(c.bootstrap(exclude=(victim,))), 60, "the new coordinator")
    print(f"coordinator {victim} killed with a transaction open: committed through coordinator {new} after {took:.2f} s")
    assert new != victim
    committed.append("open")

    produce_transaction(producer, "after")
    commit(producer)
    committed.append("after")
    producer.flush(10)

    bootstrap = c.bootstrap(exclude=(victim,))
    assert sorted(read_all(bootstrap, "read_committed")) == expected(committed), "each committed record exactly once"

    # The killed node comes back and catches up; then the coordinator dies right after a
    # commit was acknowledged, markers perhaps still on their way: its successor finishes them.
    c.nodes[victim].restart()
    wait_until(lambda: fully_replicated(c.bootstrap()), 120, "every partition's ISR back to 3 replicas")
    second = wait_until(lambda: coordinator(c.bootstrap()), 30, "the transaction coordinator")
    produce_transaction(producer, "last")
    commit(producer)
    c.nodes[second].kill9()
    committed.append("last")
    bootstrap = c.bootstrap(exclude=(second,))
    # Kafka names the dead broker as leader until its session expires, and a consumer made
    # meanwhile keeps asking it: read once the metadata shows the failover.
    wait_until(lambda: not led_by(bootstrap, second), 120, f"every partition moved off broker {second}")
    # Acknowledged means decided: the markers may still be on their way (Kafka answers EndTxn
    # before writing them), so the records become visible once the successor completes them.
    want = expected(committed)
    seen: list[list[str]] = []

    def all_visible() -> bool:
        seen.append(sorted(read_all(bootstrap, "read_committed")))
        return seen[-1] == want

    try:
        wait_until(all_visible, 120, f"the transaction committed just before coordinator {second} died, exactly once")
    finally:
        if seen and seen[-1] != want:
            got = seen[-1]
            print(f"last read: {len(got)} records, {len(want)} expected; duplicates {len(got) - len(set(got))};"
                  f" missing {sorted(set(want) - set(got))[:5]}")
    print(f"coordinator {second} killed right after a commit: its records all visible")


def test_java_transactions_version_2_across_brokers(cluster_factory):  # noqa: F811
    c = cluster_factory(layout="combined", controllers=3, overrides=REPLICATED_INTERNALS)
    c.start()
    bootstrap = c.bootstrap()
    out = run_driver(java_cmd("txn-visibility", "--bootstrap", bootstrap, "--topic-prefix", "xvis", "--count", "200"),
                     timeout_s=300)
    assert "ok visibility" in out, out[-4000:]
    coordinator_node = leaders(bootstrap, "__transaction_state")[java_abs_hash("xvis-tx") % TXN_PARTITIONS]
    data_leaders = {l for t in ("xvis-a", "xvis-b", "xvis-c") for l in leaders(bootstrap, t).values()}
    print(f"\ncoordinator {coordinator_node}; data partitions led by {sorted(data_leaders)}")
    assert data_leaders - {coordinator_node}, "every data partition led by the coordinator: nothing added across brokers"
    out = run_driver(java_cmd("txn-ctp", "--bootstrap", bootstrap, "--input", "xctp-in", "--output", "xctp-out",
                              "--group", "xctp", "--count", "2000", "--abort-every", "4", "--max-poll-records", "100"),
                     timeout_s=300)
    assert "ok ctp" in out, out[-4000:]
    for topic in ("xep-1", "xep-2", "xep-3"):
        out = run_driver(java_cmd("txn-epochs", "--bootstrap", bootstrap, "--topic", topic, "--expect-version", "2",
                                  "--rounds", "4"), timeout_s=300)
        assert "ok epochs version=2" in out, out[-4000:]
        txn_leader = leaders(bootstrap, "__transaction_state")[java_abs_hash(f"{topic}-tx") % TXN_PARTITIONS]
        print(f"{topic}: coordinator {txn_leader}, partition led by {leaders(bootstrap, topic)[0]}: epochs bumped")
