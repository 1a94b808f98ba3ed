"""Partition replication on a three-node cluster (issue 10), checked the way Jepsen's Kafka
workload checks it: every record a producer with `acks=all` had acknowledged is read back, at
the partition and offset it was acknowledged with, once, in order.

- two producers write at once: librdkafka (confluent-kafka) and the Java client;
- the replicas of a topic with replication factor 3 hold the same records;
- fault 1, kill -9 of the leader of a partition under load: producers (librdkafka, idempotent)
  see only retriable errors, nothing acknowledged is lost, duplicated, moved or reordered; the
  longest pause between acknowledgements is printed (Blumfeld detects the dead process by its
  refused connections; Kafka waits for the broker session timeout); the killed node restarts,
  catches up and every ISR is whole again (the catch-up time is printed);
- fault 2, SIGSTOP of a follower for longer than `replica.lag.time.max.ms`: the leaders shrink
  it out of their ISRs and writes go on; after SIGCONT it rejoins every ISR;
- fault 3, the leader cut off from the other nodes (each node in a network namespace of its
  own, nftables dropping every packet between the leader and the others) while the clients
  still reach it: it acknowledges nothing it cannot replicate, the others elect a new leader
  (after the broker session timeout: a partition is not a dead process; Blumfeld's cut-off
  leader then gives up on its held writes and stops naming itself), and after the heal
  the old leader truncates what was never committed and rejoins every ISR;
- fault 4, kill -9 of all three nodes at once under load, then a restart of all: everything
  acknowledged before is still there, and the producer carries on;
- fault 6, a seeded random schedule of the faults above (kill -9 of one node or all, SIGSTOP,
  network cut, controlled restart), one at a time, each held a random while, for
  COMPAT_FAULT_SECONDS (120 s in CI; longer runs are the soak); the seed is printed and
  COMPAT_FAULT_SEED replays a schedule;
- fault 5, a rolling restart with controlled shutdown (SIGTERM, wait for the exit, start,
  wait for whole ISRs) of every node in turn under load: no delivery fails.

Every fault runs the same workload and the same check (`Load`, `check`). Beside the two
producers, a librdkafka transactional producer (`TxnLoad`) commits transactions of
TXN_RECORDS records into a topic of its own; at the end a read_committed consumer must see
every committed transaction's records once, nothing of a transaction never committed, and a
transaction whose commit the fault left in doubt either whole or not at all. The clusters run
the internal topics replicated (`REPLICATED_INTERNALS`), so the coordinator fails over too.

The same tests run against Apache Kafka (BROKER=kafka).
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time

import pytest

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import netns
from harness.clients import java_cmd
from harness.cluster import Cluster
from harness.tools import TOPICS, quorum_status, run_tool
from harness.wait import wait_until
from tests.test_cluster import cluster_factory, scrape  # noqa: F401  (the fixture)
from tests.test_replicated_groups import REPLICATED_INTERNALS

PARTITIONS = 3
SESSION_TIMEOUT_S = 9  # broker.session.timeout.ms's default, on both brokers
KILL_AFTER_ACKS = 5_000
ACKS_AFTER_KILL = 20_000
PRODUCERS = ("v", "j")  # the first letter of each producer's values (see Load)
TXN_RECORDS = 50  # records per transaction of the transactional producer (TxnLoad)
TXN_DEADLINE_S = 180  # how long one transaction may take through faults before the test fails


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_replicated_topic(bootstrap: str, name: str, assignment: list[list[int]] | None = None) -> None:
    """RF=3, min.insync.replicas=2; `assignment` places the replicas (first = preferred leader)."""
    if assignment is not None:
        # (confluent-kafka's NewTopic refuses a replica assignment: Kafka's tool takes it.)
        run_tool(TOPICS, "--bootstrap-server", bootstrap, "--create", "--topic", name, "--config", "min.insync.replicas=2",
                 "--replica-assignment", ",".join(":".join(str(b) for b in replicas) for replicas in assignment))
        return
    client = admin(bootstrap)  # kept alive until the futures resolve
    futures = client.create_topics([NewTopic(name, PARTITIONS, 3, config={"min.insync.replicas": "2"})])
    for f in futures.values():
        f.result(30)


def partition_states(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int]]] | None:
    """partition -> (leader, ISR), from Metadata; None while the topic is not fully known."""
    try:
        md = admin(bootstrap).list_topics(topic, timeout=5).topics.get(topic)
    except KafkaException:
        return None
    if md is None or md.error is not None or len(md.partitions) != PARTITIONS:
        return None
    return {p.id: (p.leader, sorted(p.isrs)) for p in md.partitions.values()}


class Checker:
    """What the producer had acknowledged, and when."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: dict[str, tuple[int, int]] = {}
        self.ack_times: list[float] = []
        self.errors: list[str] = []

    def on_delivery(self, err, msg) -> None:
        if err is not None:
            self.record_error(str(err))
        else:
            self.record_ack(msg.value().decode(), msg.partition(), msg.offset())

    def record_ack(self, value: str, partition: int, offset: int) -> None:
        with self.lock:
            self.acked[value] = (partition, offset)
            self.ack_times.append((value[0], time.monotonic()))

    def record_error(self, error: str) -> None:
        with self.lock:
            self.errors.append(error)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def count_by_producer(self) -> dict[str, int]:
        """Acknowledgements so far by producer ("v": librdkafka, "j": Java)."""
        with self.lock:
            counts: dict[str, int] = {}
            for producer, _ in self.ack_times:
                counts[producer] = counts.get(producer, 0) + 1
            return counts

    def longest_pause_after(self, t: float) -> float:
        """The longest time after `t` that either producer went without an acknowledgement."""
        with self.lock:
            times = list(self.ack_times)
        longest = 0.0
        for producer in {p for p, _ in times}:
            mine = [x for p, x in times if p == producer and x >= t]
            if len(mine) < 2:
                return float("inf")
            longest = max(longest, max(b - a for a, b in zip([t, *mine], mine)))
        return longest


def produce_until(bootstrap: str, topic: str, checker: Checker, stop: threading.Event) -> int:
    config = {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
              "linger.ms": 5, "message.timeout.ms": 120_000}
    if os.environ.get("COMPAT_RDKAFKA_DEBUG"):
        config["debug"] = os.environ["COMPAT_RDKAFKA_DEBUG"]  # e.g. "msg,metadata,eos,protocol"
    producer = Producer(config)
    sent = 0
    while not stop.is_set():
        producer.produce(topic, key=str(sent).encode(), value=f"v{sent}".encode(), on_delivery=checker.on_delivery)
        sent += 1
        producer.poll(0)
        if sent % 200 == 0:
            # Enough in flight to keep every partition busy without an unbounded queue.
            while len(producer) > 20_000 and not stop.is_set():
                producer.poll(0.05)
    assert producer.flush(120) == 0, "records still unacknowledged two minutes after the end"
    return sent


def read_back(bootstrap: str, topic: str, expected: int) -> list[tuple[int, int, str]]:
    """Every record of every partition up to its high watermark, as (partition, offset, value)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.time()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(PARTITIONS)}
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    out: list[tuple[int, int, str]] = []
    next_offset = {p: 0 for p in range(PARTITIONS)}
    deadline = time.monotonic() + 180
    while any(next_offset[p] < ends[p] for p in ends) and time.monotonic() < deadline:
        for m in consumer.consume(1000, 1.0):
            if m.error() is None:
                out.append((m.partition(), m.offset(), m.value().decode()))
                next_offset[m.partition()] = m.offset() + 1
    consumer.close()
    short = {p: (next_offset[p], ends[p]) for p in ends if next_offset[p] < ends[p]}
    assert not short, f"read back stopped short of the high watermarks (partition: (next, end)): {short}"
    print(f"read back {len(out)} records up to the high watermarks {ends} ({expected} acknowledged)")
    return out


def check(checker: Checker, records: list[tuple[int, int, str]]) -> dict[str, int]:
    seen: dict[str, tuple[int, int]] = {}
    duplicated = 0
    for partition, offset, value in records:
        if value in seen:
            duplicated += 1
        seen[value] = (partition, offset)
    lost = [v for v in checker.acked if v not in seen]
    if lost:
        by_partition: dict[int, list[int]] = {}
        for v in lost:
            by_partition.setdefault(checker.acked[v][0], []).append(checker.acked[v][1])
        print("lost (partition: count, first acknowledged offsets): "
              + str({p: (len(o), sorted(o)[:5]) for p, o in by_partition.items()}))
    moved = [v for v, at in checker.acked.items() if v in seen and seen[v] != at]
    # Each producer is idempotent with one key per record: within a partition, its values
    # come in the order it sent them.
    reordered = 0
    last: dict[tuple[int, str], int] = {}
    for partition, _, value in sorted(records):
        n = int(value[1:])
        if n < last.get((partition, value[0]), -1):
            reordered += 1
        last[(partition, value[0])] = n
    by_producer = {"librdkafka": sum(1 for v in checker.acked if v[0] == "v"),
                   "java": sum(1 for v in checker.acked if v[0] == "j")}
    return {"acknowledged": len(checker.acked), **by_producer, "lost": len(lost), "duplicated": duplicated,
            "moved": len(moved), "reordered": reordered}


class TxnLoad:
    """A librdkafka transactional producer in a thread: transactions of TXN_RECORDS records
    (values "t0", "t1", ...) spread over the partitions of its topic, each committed before
    the next begins. Each transaction ends up committed (commit_transaction returned),
    never committed (commit never called: it aborted, or the coordinator aborts it when the
    next producer fences it), or in doubt (the commit was called and the producer failed
    before it answered). On a fatal error a new producer with the same transactional id
    takes over (fencing the old one)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.committed: list[list[str]] = []
        self.never_committed: list[list[str]] = []
        self.in_doubt: list[list[str]] = []
        self.fatal: list[str] = []
        self.last_outcome = ""
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _producer(self) -> Producer:
        producer = Producer({"bootstrap.servers": self.bootstrap, "transactional.id": f"{self.topic}-txn",
                             "linger.ms": 5, "transaction.timeout.ms": 60_000})
        deadline = time.monotonic() + TXN_DEADLINE_S
        while True:
            try:
                producer.init_transactions(30)
                return producer
            except KafkaException as e:
                if not e.args[0].retriable() or time.monotonic() > deadline:
                    raise

    def _run(self) -> None:
        producer, n = self._producer(), 0
        while not self.stop_flag.is_set():
            values = [f"t{n + i}" for i in range(TXN_RECORDS)]
            n += TXN_RECORDS
            fatal_before = len(self.fatal)
            outcome = self._one(producer, values)
            {"committed": self.committed, "never": self.never_committed, "doubt": self.in_doubt}[outcome].append(values)
            self.last_outcome = outcome
            if len(self.fatal) > fatal_before:
                producer = self._producer()

    def _one(self, producer: Producer, values: list[str]) -> str:
        """One transaction; its outcome."""
        deadline = time.monotonic() + TXN_DEADLINE_S
        commit_called = False
        try:
            producer.begin_transaction()
            for v in values:
                while True:
                    try:
                        producer.produce(self.topic, key=v.encode(), value=v.encode())
                        break
                    except BufferError:
                        producer.poll(0.05)
            while True:
                try:
                    commit_called = True
                    producer.commit_transaction(30)
                    return "committed"
                except KafkaException as e:
                    if not e.args[0].retriable() or time.monotonic() > deadline:
                        raise
        except KafkaException as e:
            err = e.args[0]
            if err.txn_requires_abort():
                while time.monotonic() < deadline:
                    try:
                        producer.abort_transaction(30)
                        return "never"
                    except KafkaException as abort_error:
                        if not abort_error.args[0].retriable():
                            break
            self.fatal.append(str(err))
            return "doubt" if commit_called else "never"

    def __enter__(self) -> "TxnLoad":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(TXN_DEADLINE_S + 60)
        assert not self.thread.is_alive(), "the transactional producer did not finish its last transaction"

    def check(self) -> dict[str, int]:
        """Reads the topic read_committed to its end and checks each transaction's outcome."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"check-txn-{time.time()}",
                             "enable.auto.commit": False, "isolation.level": "read_committed"})
        try:
            tps = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
            # The high watermarks once every transaction is decided: the read_committed
            # position reaches them once the last markers are in.
            ends = {tp.partition: wait_until(lambda tp=tp: (consumer.get_watermark_offsets(tp, timeout=10)[1],), 60,
                                             f"the end of {self.topic}-{tp.partition}")[0] for tp in tps}
            consumer.assign([TopicPartition(self.topic, p, 0) for p in range(PARTITIONS)])
            seen: list[str] = []

            def at_end() -> bool:
                for m in consumer.consume(1000, 0.2):
                    if m.error() is None:
                        seen.append(m.value().decode())
                return all(tp.offset >= ends[tp.partition] for tp in consumer.position(tps))

            wait_until(at_end, 120, f"the read_committed consumer at the ends {ends} of {self.topic}")
        finally:
            consumer.close()
        counts: dict[str, int] = {}
        for v in seen:
            counts[v] = counts.get(v, 0) + 1
        committed = [v for t in self.committed for v in t]
        torn = sum(1 for t in self.in_doubt if 0 < sum(1 for v in t if v in counts) < len(t))
        return {"committed transactions": len(self.committed),
                "never committed": len(self.never_committed), "in doubt": len(self.in_doubt),
                "in doubt and visible": sum(1 for t in self.in_doubt if all(v in counts for v in t)),
                "lost": sum(1 for v in committed if v not in counts),
                "duplicated": sum(1 for n in counts.values() if n > 1),
                "visible but never committed": sum(1 for t in self.never_committed for v in t if v in counts),
                "torn": torn}


class Load:
    """Two idempotent producers with acks=all feeding one Checker: librdkafka in a thread of
    this process (values "v0", "v1", ...) and the Java client in a process of its own
    (`compat-java checked-produce`, values "j0", "j1", ...; it stops when its stdin closes)."""

    def __init__(self, bootstrap: str, topic: str, transactions: bool = True,
                 assignment: list[list[int]] | None = None) -> None:
        self.checker = Checker()
        # The transactional producer's topic, created now (the cluster is whole).
        self.txn: TxnLoad | None = None
        if transactions:
            create_replicated_topic(bootstrap, f"{topic}-txn", assignment)
            self.txn = TxnLoad(bootstrap, f"{topic}-txn")
        self.stop_flag = threading.Event()
        self.result: dict[str, int] = {}
        self.thread = threading.Thread(
            target=lambda: self.result.update(sent=produce_until(bootstrap, topic, self.checker, self.stop_flag)))
        self.java_cmd = java_cmd("checked-produce", "--bootstrap", bootstrap, "--topic", topic)
        self.java: subprocess.Popen | None = None
        self.java_reader: threading.Thread | None = None

    def __enter__(self) -> "Load":
        self.thread.start()
        if self.txn is not None:
            self.txn.__enter__()
        # The client's own log (retries, warnings) only with COMPAT_JAVA_LOG=1; failed
        # deliveries come as `err` lines either way.
        stderr = None if os.environ.get("COMPAT_JAVA_LOG") else subprocess.DEVNULL
        self.java = subprocess.Popen(self.java_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                     text=True, bufsize=1)
        self.java_reader = threading.Thread(target=self._read_java, args=(self.java,))
        self.java_reader.start()
        return self

    def _read_java(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "ack":
                value, partition, offset = rest.split(" ")
                self.checker.record_ack(value, int(partition), int(offset))
            elif kind == "err":
                self.checker.record_error(rest)
            elif kind == "done":
                self.result["java_sent"] = int(rest)

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_flag.set()
        if self.java is not None and self.java.poll() is None:
            assert self.java.stdin is not None
            self.java.stdin.close()
            try:
                self.java.wait(180)
            except subprocess.TimeoutExpired:
                self.java.kill()
                self.java.wait()
        if self.java_reader is not None:
            self.java_reader.join(30)
        if self.thread.is_alive():
            self.thread.join(180)
        if self.txn is not None:
            self.txn.stop()
        if self.java is not None:
            assert "java_sent" in self.result, f"the Java producer exited {self.java.returncode} without finishing"

    def wait_acks(self, more: int, timeout_s: float, what: str) -> None:
        """`more` acknowledgements in all, and at least one more from each producer (the
        JVM can start slowly enough that librdkafka alone would make up the count)."""
        target = self.checker.count() + more
        before = self.checker.count_by_producer()

        def done() -> bool:
            now = self.checker.count_by_producer()
            return self.checker.count() >= target and all(now.get(p, 0) > before.get(p, 0) for p in PRODUCERS)

        wait_until(done, timeout_s, f"{more} acknowledgements {what}, from both producers")


def whole_isrs(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int]]] | None:
    s = partition_states(bootstrap, topic)
    return s if s and all(len(isr) == 3 for _, isr in s.values()) else None


def assert_clean(load: Load, bootstrap: str, topic: str, at_least: int) -> dict[str, int]:
    report = check(load.checker, read_back(bootstrap, topic, load.checker.count()))
    print(f"checker: {report}, failed deliveries {len(load.checker.errors)}")
    assert report["acknowledged"] >= at_least, report
    assert report["librdkafka"] > 0 and report["java"] > 0, f"both producers must have written: {report}"
    assert report["lost"] == 0, report
    assert report["duplicated"] == 0, report
    assert report["moved"] == 0, report
    assert report["reordered"] == 0, report
    if load.txn is not None:
        txn = load.txn.check()
        print(f"transactions: {txn}; fatal errors {load.txn.fatal[:3]}")
        assert txn["committed transactions"] > 0, txn
        for key in ("lost", "duplicated", "visible but never committed", "torn"):
            assert txn[key] == 0, txn
        # The last transaction began after the last fault and was committed.
        assert load.txn.last_outcome == "committed", (load.txn.last_outcome, txn)
    return report


def active_controller(c) -> int:
    status = wait_until(lambda: (s := quorum_status("--bootstrap-server", c.bootstrap()))
                        and s.get("LeaderId", "-1") != "-1" and s, 60, "a quorum leader")
    return int(status["LeaderId"])


def test_acks_all_survives_kill9_of_a_leader_and_the_restarted_replica_rejoins(cluster_factory):  # noqa: F811
    c = cluster_factory(layout="combined", controllers=3, overrides=REPLICATED_INTERNALS)
    c.start()
    topic = "replicated"
    create_replicated_topic(c.bootstrap(), topic)
    states = wait_until(lambda: whole_isrs(c.bootstrap(), topic), 60, "three in-sync replicas")
    victim = states[0][0]

    with Load(c.bootstrap(), topic) as load:
        load.wait_acks(KILL_AFTER_ACKS, 60, "before the kill")
        t_kill = time.monotonic()
        c.nodes[victim].kill9()
        load.wait_acks(ACKS_AFTER_KILL, 120, f"after kill -9 of node {victim}")
    pause = load.checker.longest_pause_after(t_kill)
    print(f"\nlongest pause between acknowledgements after kill -9 of leader {victim}: {pause:.2f} s")
    assert not any("fatal" in e.lower() for e in load.checker.errors), load.checker.errors[:5]
    if c.kind == "blumfeld":
        # A dead process is detected by its refused connections, not the 9 s session
        # timeout (Kafka waits for the timeout); well under it proves the fast path ran.
        assert pause < 5, f"acknowledgements paused {pause:.2f} s: the dead leader was not detected early"

    t_restart = time.monotonic()
    c.nodes[victim].start()
    wait_until(lambda: whole_isrs(c.bootstrap(), topic), 120, f"node {victim} back in every ISR")
    print(f"node {victim} restarted and back in every ISR in {time.monotonic() - t_restart:.2f} s")
    assert_clean(load, c.bootstrap(), topic, KILL_AFTER_ACKS + ACKS_AFTER_KILL)


LAG_MS = 4_000  # replica.lag.time.max.ms for fault 2 (Kafka's default, 30 s, would make it slow)


def test_a_stopped_follower_is_shrunk_out_of_the_isr_writes_go_on_and_it_rejoins(cluster_factory):  # noqa: F811
    c = cluster_factory(layout="combined", controllers=3,
                        overrides={**REPLICATED_INTERNALS, "replica.lag.time.max.ms": str(LAG_MS)})
    c.start()
    controller = active_controller(c)
    # The follower stopped is neither the active controller nor a leader: only the ISR rule
    # is at work, not failover.
    victim, leader = [n for n in (1, 2, 3) if n != controller][:2]
    rest = [n for n in (1, 2, 3) if n not in (victim, leader)]
    topic = "follower-stop"
    create_replicated_topic(c.bootstrap(), topic, [[leader, victim, *rest]] * PARTITIONS)
    states = wait_until(lambda: whole_isrs(c.bootstrap(), topic), 60, "three in-sync replicas")
    assert all(lead == leader for lead, _ in states.values()), states
    survivors = c.bootstrap(exclude=(victim,))

    with Load(c.bootstrap(), topic, assignment=[[leader, victim, *rest]] * PARTITIONS) as load:
        load.wait_acks(KILL_AFTER_ACKS, 60, "before SIGSTOP")
        t_stop = time.monotonic()
        c.nodes[victim].pause()
        try:
            wait_until(lambda: (s := partition_states(survivors, topic))
                       and all(victim not in isr for _, isr in s.values()), 60, f"node {victim} out of every ISR")
            # (Seen through Metadata, which a client may ask of the stopped node and then
            # wait out its request timeout: the acknowledgements time the shrink better.)
            shrunk_s = time.monotonic() - t_stop
            load.wait_acks(ACKS_AFTER_KILL, 60, f"while node {victim} is stopped")
            pause = load.checker.longest_pause_after(t_stop)
            print(f"\nfollower {victim} stopped: acknowledgements paused {pause:.2f} s until the ISR shrank "
                  f"(replica.lag.time.max.ms {LAG_MS}); out of every ISR in Metadata after {shrunk_s:.2f} s")
            assert pause >= LAG_MS / 1000 / 2, "the ISR shrank before the follower could have lagged"
            if c.kind == "blumfeld":
                # The leader's replication metrics show the stopped follower.
                m = wait_until(lambda: (m := scrape(c.nodes[leader]))
                               and m["blumfeld_under_replicated_partitions"] >= PARTITIONS and m, 30,
                               "the leader's under-replicated partitions")
                print(f"leader {leader} metrics while {victim} is stopped: " + ", ".join(
                    f"{k}={m[k]:g}" for k in ("blumfeld_under_replicated_partitions", "blumfeld_replica_lag_max_records",
                                              "blumfeld_replica_lag_max_milliseconds", "blumfeld_isr_shrinks_total",
                                              "blumfeld_alter_partition_seconds_count", "blumfeld_alter_partition_seconds_sum",
                                              "blumfeld_follower_fetch_requests_total", "blumfeld_replication_bytes_out_total")))
                assert m["blumfeld_replica_lag_max_milliseconds"] >= LAG_MS, m
                assert m["blumfeld_replica_lag_max_records"] > 0, m
                assert m["blumfeld_isr_shrinks_total"] >= PARTITIONS, m
                assert m["blumfeld_alter_partition_seconds_count"] >= 1, m
                assert m["blumfeld_follower_fetch_requests_total"] > 0 and m["blumfeld_replication_bytes_out_total"] > 0, m
        finally:
            c.nodes[victim].resume()
        t_cont = time.monotonic()
        # Asked of the others: the resumed node still answers from its stale image.
        wait_until(lambda: whole_isrs(survivors, topic), 120, f"node {victim} back in every ISR")
        print(f"follower {victim} back in every ISR {time.monotonic() - t_cont:.2f} s after SIGCONT")
        load.wait_acks(1_000, 60, "after SIGCONT")
        if c.kind == "blumfeld":
            m = wait_until(lambda: (m := scrape(c.nodes[leader])) and m["blumfeld_under_replicated_partitions"] == 0 and m,
                           30, "no under-replicated partition on the leader")
            assert m["blumfeld_isr_expands_total"] >= PARTITIONS, m
            assert scrape(c.nodes[victim])["blumfeld_replication_bytes_in_total"] > 0
    assert not load.checker.errors, load.checker.errors[:5]
    assert_clean(load, c.bootstrap(), topic, KILL_AFTER_ACKS + ACKS_AFTER_KILL)


def test_kill9_of_every_node_at_once_loses_nothing_acknowledged(cluster_factory):  # noqa: F811
    c = cluster_factory(layout="combined", controllers=3, overrides=REPLICATED_INTERNALS)
    c.start()
    topic = "all-die"
    create_replicated_topic(c.bootstrap(), topic)
    wait_until(lambda: whole_isrs(c.bootstrap(), topic), 60, "three in-sync replicas")
    bootstrap = c.bootstrap()

    with Load(bootstrap, topic) as load:
        load.wait_acks(KILL_AFTER_ACKS, 60, "before the kill")
        for node in c.nodes.values():
            node.kill9()
        acked_before = load.checker.count()
        t_start = time.monotonic()
        c.start()
        wait_until(lambda: whole_isrs(c.bootstrap(), topic), 120, "every ISR whole after the restart")
        print(f"\nall three nodes killed with {acked_before} acknowledged; restarted, every ISR whole "
              f"in {time.monotonic() - t_start:.2f} s")
        load.wait_acks(KILL_AFTER_ACKS, 120, "after the restart")
        print(f"acknowledgements resumed {load.checker.longest_pause_after(t_start):.2f} s (longest pause) after the restart")
    assert not load.checker.errors, load.checker.errors[:5]
    assert_clean(load, c.bootstrap(), topic, acked_before + KILL_AFTER_ACKS)


def test_a_rolling_restart_with_controlled_shutdown_fails_no_delivery(cluster_factory):  # noqa: F811
    c = cluster_factory(layout="combined", controllers=3, overrides=REPLICATED_INTERNALS)
    c.start()
    topic = "rolling"
    create_replicated_topic(c.bootstrap(), topic)
    wait_until(lambda: whole_isrs(c.bootstrap(), topic), 60, "three in-sync replicas")

    with Load(c.bootstrap(), topic) as load:
        load.wait_acks(KILL_AFTER_ACKS, 60, "before the rolling restart")
        print()
        for node_id, node in c.nodes.items():
            t0 = time.monotonic()
            code = node.stop()
            assert code == 0, f"node {node_id} exited {code} on SIGTERM:\n{node.log_tail()}"
            stopped_s = time.monotonic() - t0
            node.start()
            wait_until(lambda: whole_isrs(c.bootstrap(), topic), 120, f"node {node_id} back in every ISR")
            print(f"node {node_id}: controlled shutdown {stopped_s:.2f} s, back in every ISR "
                  f"{time.monotonic() - t0:.2f} s after SIGTERM; longest pause {load.checker.longest_pause_after(t0):.2f} s")
            load.wait_acks(2_000, 60, f"after node {node_id} came back")
    assert not load.checker.errors, load.checker.errors[:5]
    assert_clean(load, c.bootstrap(), topic, KILL_AFTER_ACKS + 3 * 2_000)


@pytest.fixture
def isolated_cluster(tmp_path):
    """A three-node combined cluster, each node in a network namespace of its own."""
    why = netns.available()
    assert why is None, f"fault 3 needs a network it can make ({why}); .ci/run runs as root"
    network = netns.Network([1, 2, 3])
    clusters: list[Cluster] = []
    try:
        c = Cluster(tmp_path / "isolated", layout="combined", controllers=3, network=network,
                    overrides=REPLICATED_INTERNALS)
        clusters.append(c)
        yield c, network
    finally:
        for c in clusters:
            c.stop()
        network.close()


def test_a_leader_cut_off_from_the_other_nodes_acknowledges_nothing_and_truncates_after_the_heal(isolated_cluster):
    c, network = isolated_cluster
    c.start()
    controller = active_controller(c)
    # The leader cut off is not the active controller: the partition's failover is at work,
    # not the quorum's.
    leader = next(n for n in (1, 2, 3) if n != controller)
    rest = [n for n in (1, 2, 3) if n != leader]
    topic = "isolated-leader"
    create_replicated_topic(c.bootstrap(), topic, [[leader, *rest]] * PARTITIONS)
    states = wait_until(lambda: whole_isrs(c.bootstrap(), topic), 60, "three in-sync replicas")
    assert all(lead == leader for lead, _ in states.values()), states
    others = c.bootstrap(exclude=(leader,))

    with Load(c.bootstrap(), topic) as load:
        load.wait_acks(KILL_AFTER_ACKS, 60, "before the cut")
        t_cut = time.monotonic()
        network.cut(leader)
        acked_at_cut = load.checker.count()
        try:
            moved = wait_until(lambda: (s := partition_states(others, topic))
                               and all(lead not in (leader, -1) for lead, _ in s.values()) and s, 90,
                               f"new leaders for the partitions of cut-off node {leader}")
            moved_s = time.monotonic() - t_cut
            load.wait_acks(ACKS_AFTER_KILL, 120, f"while node {leader} is cut off")
            pause = load.checker.longest_pause_after(t_cut)
            print(f"\nleader {leader} cut off: new leaders {sorted({lead for lead, _ in moved.values()})} in Metadata "
                  f"after {moved_s:.2f} s; acknowledgements paused {pause:.2f} s "
                  f"({acked_at_cut} acknowledged at the cut)")
        finally:
            t_heal = time.monotonic()
            network.heal(leader)
        wait_until(lambda: whole_isrs(others, topic), 120, f"node {leader} back in every ISR after the heal")
        print(f"node {leader} healed, truncated and back in every ISR in {time.monotonic() - t_heal:.2f} s")
        load.wait_acks(1_000, 60, "after the heal")
    timed_out = [e for e in load.checker.errors if "_MSG_TIMED_OUT" in e]
    print(f"deliveries failed with message.timeout.ms reached: {len(timed_out)}")
    if c.kind == "blumfeld":
        assert not load.checker.errors, load.checker.errors[:5]
        # Once its controller session lapses the cut-off leader answers NOT_LEADER_OR_FOLLOWER
        # and stops naming itself leader, so the producer moves after about the session
        # timeout (Kafka holds it until its requests time out).
        assert pause < SESSION_TIMEOUT_S + 6, f"acknowledgements paused {pause:.2f} s"
    else:
        # Kafka keeps the producer on the cut-off leader until its requests time out, past
        # message.timeout.ms (120 s here): those records were never acknowledged.
        assert len(timed_out) == len(load.checker.errors), load.checker.errors[:5]
    # Anything the cut-off leader had acknowledged without its followers would be missing
    # or at another offset now: lost and moved are 0.
    assert_clean(load, c.bootstrap(), topic, KILL_AFTER_ACKS + ACKS_AFTER_KILL)


def whole_everywhere(c, topic: str) -> bool:
    """Every running node's own Metadata shows whole ISRs (a node back from a fault may
    still answer from a stale image for a moment)."""
    return all(whole_isrs(f"{c.spec(i).host}:{c.spec(i).broker_port}", topic) for i in c.broker_ids
               if c.nodes[i].alive())


def test_a_seeded_random_schedule_of_faults_loses_nothing(isolated_cluster):
    c, network = isolated_cluster
    seed = int(os.environ.get("COMPAT_FAULT_SEED", random.randrange(1 << 32)))
    seconds = float(os.environ.get("COMPAT_FAULT_SECONDS", "120"))
    rng = random.Random(seed)
    print(f"\nfault schedule seed {seed} ({seconds:.0f} s); replay with COMPAT_FAULT_SEED={seed}")
    c.start()
    topic = "random-faults"
    create_replicated_topic(c.bootstrap(), topic)
    wait_until(lambda: whole_everywhere(c, topic), 60, "three in-sync replicas")

    def hold() -> None:
        # The schedule itself, not synchronisation: how long the fault lasts.
        time.sleep(rng.uniform(1.0, 12.0))

    def kill9(n: int) -> None:
        c.nodes[n].kill9()
        hold()
        c.nodes[n].start()

    def pause(n: int) -> None:
        c.nodes[n].pause()
        try:
            hold()
        finally:
            c.nodes[n].resume()

    def cut(n: int) -> None:
        network.cut(n)
        try:
            hold()
        finally:
            network.heal(n)

    def restart(n: int) -> None:
        assert c.nodes[n].stop() == 0, c.nodes[n].log_tail()
        c.nodes[n].start()

    def kill_all(_: int) -> None:
        for node in c.nodes.values():
            node.kill9()
        hold()
        c.start()

    faults = [kill9, pause, cut, restart, kill_all]
    weights = [3, 3, 3, 2, 1]
    done: list[str] = []
    with Load(c.bootstrap(), topic) as load:
        load.wait_acks(2_000, 60, "before the first fault")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            fault = rng.choices(faults, weights)[0]
            node = rng.choice(c.broker_ids)
            t0 = time.monotonic()
            fault(node)
            wait_until(lambda: whole_everywhere(c, topic), 120, f"whole ISRs after {fault.__name__}({node})")
            load.wait_acks(500, 120, f"after {fault.__name__}({node})")
            done.append(f"{fault.__name__}({node}) {time.monotonic() - t0:.1f}s")
        print("faults: " + ", ".join(done))
    errors = load.checker.errors
    if c.kind == "blumfeld":
        assert not errors, errors[:5]
    else:
        # Kafka holds producers on a cut-off leader until message.timeout.ms (see fault 3).
        assert all("_MSG_TIMED_OUT" in e for e in errors), errors[:5]
    assert_clean(load, c.bootstrap(), topic, 2_000 + 500 * len(done))
