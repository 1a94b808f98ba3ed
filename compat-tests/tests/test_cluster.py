"""A three-node cluster (issue 9): every node broker and controller on 127.0.0.1, driven only by
Kafka's own tools (kafka-metadata-quorum, kafka-topics, both on the Java AdminClient).

- the quorum reports one leader among three voters, an epoch and a high watermark, through a
  broker (`--bootstrap-server`) and through the controllers (`--bootstrap-controller`);
- a topic with 12 partitions and replication factor 3 is created and described;
- kill -9 of the active controller: a new leader is elected (the time is printed: against
  Blumfeld, polled every 20 ms from the survivors' `blumfeld_quorum_leader_id`; against Kafka,
  with kafka-metadata-quorum, about 1 s a call, so an upper bound), topic creation works again
  through a surviving broker; the killed node restarts, rejoins and
  catches up (the time is printed);
- the dedicated layout (3 controllers, or a sole one, + 2 brokers) forms a quorum and creates a topic;
- a broker stopped with SIGSTOP is fenced after the session timeout, not before, and is
  unfenced after SIGCONT; a broker killed -9 is fenced (Kafka: after the session timeout;
  Blumfeld: at once, its refused connections show the process is gone), as
  `kafka-cluster list-endpoints --include-fenced-brokers` shows; its leaderships move, and it
  is unfenced after a restart; SIGTERM on a broker is a controlled shutdown: its leaderships have moved by the
  time the process exits.

The same tests run against Apache Kafka (BROKER=kafka), which proves the harness and the
expectations on the reference.
"""

from __future__ import annotations

import re
import time

import pytest

from harness.broker import broker_kind
from harness import wire
from harness.cluster import Cluster
from harness.tools import CLUSTER, TOPICS, quorum_replication, quorum_status, run_tool
from harness.wait import wait_until


FAILOVER_TIMEOUT_S = 60
CATCH_UP_TIMEOUT_S = 120


@pytest.fixture
def cluster_factory(tmp_path):
    clusters: list[Cluster] = []

    def make(**kwargs) -> Cluster:
        c = Cluster(tmp_path / f"cluster{len(clusters)}", **kwargs)
        clusters.append(c)
        return c

    yield make
    for c in clusters:
        c.stop()


def voter_ids(status: dict[str, str]) -> list[int]:
    # CurrentVoters: [{"id": 1, "directoryId": ..., "endpoints": [...]}, ...] (4.x); [1,2,3] (older).
    text = status.get("CurrentVoters", "")
    ids = re.findall(r'"id":\s*(\d+)', text) or re.findall(r"\d+", text)
    return sorted(int(i) for i in ids)


def create_topic(bootstrap: str, name: str, partitions: int, rf: int) -> None:
    run_tool(TOPICS, "--bootstrap-server", bootstrap, "--create", "--topic", name,
             "--partitions", str(partitions), "--replication-factor", str(rf))


def broker_states(bootstrap: str) -> dict[int, str]:
    """kafka-cluster list-endpoints --include-fenced-brokers: broker id -> fenced/unfenced."""
    out = run_tool(CLUSTER, "list-endpoints", "--bootstrap-server", bootstrap, "--include-fenced-brokers")
    lines = [line.split() for line in out.splitlines() if line.strip()]
    header = next((cols for cols in lines if cols and cols[0] == "ID"), None)
    if header is None or "STATE" not in header:
        raise AssertionError(f"unexpected list-endpoints output:\n{out}")
    state = header.index("STATE")
    return {int(cols[0]): cols[state] for cols in lines if cols and cols[0].isdigit() and len(cols) > state}


def scrape(node) -> dict[str, float]:
    """A Blumfeld node's /metrics as series -> value."""
    from harness.prometheus import http_get, metrics_address
    host, port = metrics_address(node)
    status, body = http_get(f"http://{host}:{port}/metrics")
    assert status == 200, body
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


FAILOVER_POLL_S = 0.02


def quorum_leader_by_metrics(address: tuple[str, int]) -> tuple[int, int] | None:
    """(leader id, epoch) from one Blumfeld node's /metrics; None when it does not answer."""
    from harness.prometheus import http_get
    host, port = address
    try:
        status, body = http_get(f"http://{host}:{port}/metrics", timeout_s=1)
    except OSError:
        return None
    if status != 200:
        return None
    values = dict(line.rsplit(" ", 1) for line in body.splitlines()
                  if line.startswith(("blumfeld_quorum_leader_id ", "blumfeld_quorum_leader_epoch ")))
    if len(values) != 2:
        return None
    return int(float(values["blumfeld_quorum_leader_id"])), int(float(values["blumfeld_quorum_leader_epoch"]))


def measure_failover_by_metrics(c: Cluster, killed: int, epoch: int) -> tuple[float, int]:
    """kill -9 `killed`, then polls every survivor's metrics until one names a new leader in a
    later epoch; returns (seconds from the kill, the new leader)."""
    from harness.prometheus import metrics_address
    addresses = [metrics_address(c.nodes[i]) for i in c.controller_ids if i != killed]
    t0 = time.monotonic()
    c.nodes[killed].kill9()

    def elected():
        for address in addresses:
            seen = quorum_leader_by_metrics(address)
            if seen and seen[0] not in (-1, killed) and seen[1] > epoch:
                return seen[0]
        return None

    leader = wait_until(elected, FAILOVER_TIMEOUT_S, "a survivor's metrics naming a new quorum leader",
                        interval_s=FAILOVER_POLL_S)
    return time.monotonic() - t0, leader


def describe_topic(bootstrap: str, name: str) -> list[dict[str, str]]:
    """kafka-topics --describe: one dict per partition line (Partition, Leader, Replicas, Isr)."""
    out = run_tool(TOPICS, "--bootstrap-server", bootstrap, "--describe", "--topic", name)
    rows = []
    for line in out.splitlines():
        if "Partition:" not in line:
            continue
        fields = dict(re.findall(r"(\w+):\s*(\S*)", line))
        rows.append(fields)
    return rows


def test_three_combined_nodes_elect_create_fail_over_and_catch_up(cluster_factory):
    c = cluster_factory(layout="combined", controllers=3)
    c.start()
    status = wait_until(lambda: (s := quorum_status("--bootstrap-server", c.bootstrap()))
                        and s.get("LeaderId", "-1") != "-1" and s, 60, "a quorum leader")
    assert voter_ids(status) == [1, 2, 3], status
    leader = int(status["LeaderId"])
    assert leader in (1, 2, 3)
    epoch = int(status["LeaderEpoch"])
    assert int(status["HighWatermark"]) > 0
    via_controllers = quorum_status("--bootstrap-controller", c.bootstrap_controllers())
    assert int(via_controllers["LeaderId"]) == leader
    rows = quorum_replication("--bootstrap-server", c.bootstrap())
    voters = sorted(int(r["NodeId"]) for r in rows if r.get("Status") in ("Leader", "Follower"))
    assert voters == [1, 2, 3], rows

    create_topic(c.bootstrap(), "twelve", 12, 3)
    parts = wait_until(lambda: (p := describe_topic(c.bootstrap(), "twelve")) and len(p) == 12 and p, 30,
                       "12 described partitions")
    for p in parts:
        assert len(p["Replicas"].split(",")) == 3, p
    replica_leaders = {p["Leader"] for p in parts}
    assert len(replica_leaders) >= 2, f"leaders should spread over the brokers: {parts}"

    # kill -9 the active controller.
    survivors = c.bootstrap(exclude=(leader,))
    if broker_kind() == "blumfeld":
        failover_s, elected = measure_failover_by_metrics(c, leader, epoch)
        how = "by the survivors' blumfeld_quorum_leader_id, polled every 20 ms"
    else:
        # Kafka has no Prometheus endpoint here: the tool's answer, each call a JVM (~1 s), so
        # the time is an upper bound.
        t0 = time.monotonic()
        c.nodes[leader].kill9()
        elected = int(wait_until(
            lambda: (s := quorum_status("--bootstrap-server", survivors))
            and s.get("LeaderId") not in (None, "-1", str(leader)) and s,
            FAILOVER_TIMEOUT_S, "a new quorum leader")["LeaderId"])
        failover_s = time.monotonic() - t0
        how = "by kafka-metadata-quorum, an upper bound"
    # Kafka's own tool agrees on the outcome.
    new_status = wait_until(
        lambda: (s := quorum_status("--bootstrap-server", survivors))
        and s.get("LeaderId") not in (None, "-1", str(leader)) and s,
        FAILOVER_TIMEOUT_S, "a new quorum leader")
    assert int(new_status["LeaderEpoch"]) > epoch
    assert int(new_status["LeaderId"]) == elected, (new_status, elected)
    print(f"\nnew controller {elected} elected {failover_s:.2f} s after kill -9 of {leader} (measured {how})")
    create_topic(survivors, "after-failover", 3, 2)

    t1 = time.monotonic()
    c.nodes[leader].start()

    def caught_up():
        rows = quorum_replication("--bootstrap-server", c.bootstrap())
        row = next((r for r in rows if int(r["NodeId"]) == leader), None)
        return row is not None and row.get("Lag") == "0"

    wait_until(caught_up, CATCH_UP_TIMEOUT_S, f"node {leader} caught up")
    print(f"node {leader} restarted and caught up in {time.monotonic() - t1:.2f} s")
    final = quorum_status("--bootstrap-server", c.bootstrap())
    assert voter_ids(final) == [1, 2, 3]


@pytest.mark.parametrize("controllers", [3, 1])
def test_dedicated_controllers_and_brokers(cluster_factory, controllers):
    """3 controllers, and a sole controller (a one-voter quorum the brokers observe)."""
    c = cluster_factory(layout="dedicated", controllers=controllers, brokers=2)
    c.start()
    status = wait_until(lambda: (s := quorum_status("--bootstrap-controller", c.bootstrap_controllers()))
                        and s.get("LeaderId", "-1") != "-1" and s, 60, "a quorum leader")
    assert voter_ids(status) == c.controller_ids
    rows = quorum_replication("--bootstrap-server", c.bootstrap())
    observers = sorted(int(r["NodeId"]) for r in rows if r.get("Status") == "Observer")
    assert observers == c.broker_ids, rows
    create_topic(c.bootstrap(), "on-brokers", 4, 2)
    parts = wait_until(lambda: (p := describe_topic(c.bootstrap(), "on-brokers")) and len(p) == 4 and p, 30,
                       "4 described partitions")
    for p in parts:
        assert set(p["Replicas"].split(",")) <= {str(i) for i in c.broker_ids}, p


SESSION_TIMEOUT_S = 9  # broker.session.timeout.ms's default, on both brokers


def test_broker_fencing_and_controlled_shutdown(cluster_factory):
    c = cluster_factory(layout="combined", controllers=3)
    c.start()
    status = wait_until(lambda: (s := quorum_status("--bootstrap-server", c.bootstrap()))
                        and s.get("LeaderId", "-1") != "-1" and s, 60, "a quorum leader")
    controller = int(status["LeaderId"])
    wait_until(lambda: broker_states(c.bootstrap()) == {1: "unfenced", 2: "unfenced", 3: "unfenced"}, 60,
               "three unfenced brokers")
    create_topic(c.bootstrap(), "moves", 6, 3)
    wait_until(lambda: len(describe_topic(c.bootstrap(), "moves")) == 6, 30, "6 described partitions")

    victim, other = [n for n in (1, 2, 3) if n != controller]
    survivors = c.bootstrap(exclude=(victim,))
    # kill -9 a broker that is not the active controller: Kafka fences it once its session
    # expires; Blumfeld sees its connections refused and fences it at once.
    t0 = time.monotonic()
    c.nodes[victim].kill9()
    wait_until(lambda: broker_states(survivors).get(victim) == "fenced", 60, f"broker {victim} fenced")
    fenced_s = time.monotonic() - t0
    print(f"\nbroker {victim} fenced {fenced_s:.2f} s after kill -9 (session timeout {SESSION_TIMEOUT_S} s)")
    if broker_kind() == "blumfeld":
        assert fenced_s < SESSION_TIMEOUT_S, "a dead broker should be fenced before its session expires"
    else:
        assert fenced_s >= SESSION_TIMEOUT_S / 2, "fenced before its session could have expired"
    parts = describe_topic(survivors, "moves")
    assert all(p["Leader"] != str(victim) for p in parts), parts
    if broker_kind() == "blumfeld":
        m = wait_until(lambda: (m := scrape(c.nodes[controller])) and m.get("blumfeld_fenced_brokers") == 1 and m, 30,
                       "the fenced broker in the controller's metrics")
        assert m["blumfeld_active_controller_count"] == 1
        assert m["blumfeld_registered_brokers"] == 3
        assert m["blumfeld_quorum_leader_id"] == controller
        assert m["blumfeld_quorum_elections_total"] >= 1
        assert f'blumfeld_quorum_replica_lag_records{{node="{victim}",role="voter"}}' in m, m
        assert scrape(c.nodes[other])["blumfeld_active_controller_count"] == 0

    t1 = time.monotonic()
    c.nodes[victim].start()
    wait_until(lambda: broker_states(c.bootstrap()).get(victim) == "unfenced", 60, f"broker {victim} unfenced")
    print(f"broker {victim} restarted and unfenced in {time.monotonic() - t1:.2f} s")

    # SIGSTOP: the process is alive and its connections open, only silent: fenced once its
    # session expires, never earlier; SIGCONT and it heartbeats its way back to unfenced.
    t0 = time.monotonic()
    c.nodes[victim].pause()
    try:
        if broker_kind() == "blumfeld":
            # The tool's AdminClient waits its request timeout on the stopped broker (its
            # socket still accepts); the controller's own gauge shows the fencing at once.
            wait_until(lambda: scrape(c.nodes[controller]).get("blumfeld_fenced_brokers") == 1, 60,
                       f"stopped broker {victim} fenced")
        else:
            wait_until(lambda: broker_states(survivors).get(victim) == "fenced", 60, f"stopped broker {victim} fenced")
        stopped_s = time.monotonic() - t0
    finally:
        c.nodes[victim].resume()
    print(f"broker {victim} fenced {stopped_s:.2f} s after SIGSTOP (session timeout {SESSION_TIMEOUT_S} s)")
    assert stopped_s >= SESSION_TIMEOUT_S / 2, "a silent broker was fenced before its session could have expired"
    wait_until(lambda: broker_states(c.bootstrap()).get(victim) == "unfenced", 60, f"broker {victim} unfenced after SIGCONT")

    # SIGTERM: a controlled shutdown moves the broker's leaderships before it exits.
    led = [p for p in describe_topic(c.bootstrap(), "moves") if p["Leader"] == str(other)]
    assert led, f"broker {other} should lead some partitions"
    t2 = time.monotonic()
    code = c.nodes[other].stop()
    stop_s = time.monotonic() - t2
    assert code == 0, f"broker {other} exited {code}"
    print(f"broker {other} shut down in {stop_s:.2f} s, leading {len(led)} partitions before")
    parts = describe_topic(c.bootstrap(exclude=(other,)), "moves")
    assert all(p["Leader"] != str(other) for p in parts), f"leaderships left on the stopped broker: {parts}"
    # It wrote every hosted partition's high watermark to replication-offset-checkpoint
    # (Kafka's layout: version, count, `topic partition offset` lines), where a restart starts.
    lines = (c.nodes[other].data_dir / "replication-offset-checkpoint").read_text().splitlines()
    assert lines[0] == "0" and int(lines[1]) == len(lines) - 2, lines
    marks = {int(f[1]): int(f[2]) for f in (line.split() for line in lines[2:]) if f[0] == "moves"}
    assert sorted(marks) == list(range(6)), lines


SNAPSHOT_TOPICS = 1000
SNAPSHOT_ROUNDS = 98  # 1000 topics x (2 creation records + 98 config changes) = 100,000 records


def metadata_dir(c: Cluster, node: int):
    return c.nodes[node].data_dir / "__cluster_metadata-0"


def snapshot_ends(c: Cluster, node: int) -> list[int]:
    """End offsets of the metadata snapshots (`<offset>-<epoch>.checkpoint`) on a node."""
    return sorted(int(p.name.split("-")[0]) for p in metadata_dir(c, node).glob("*.checkpoint"))


def dir_bytes(path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_a_hundred_thousand_records_end_in_a_snapshot_that_a_restarted_node_loads(cluster_factory):
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

    overrides = {"metadata.log.max.record.bytes.between.snapshots": str(1 << 20)}
    if broker_kind() == "blumfeld":
        # Small segments so that the log behind a snapshot is deleted (Kafka's minimum is
        # 8 MiB, and Kafka keeps the log behind snapshots for metadata.max.retention.ms).
        overrides["metadata.log.segment.bytes"] = str(1 << 20)
    c = cluster_factory(layout="combined", controllers=3, overrides=overrides)
    c.start()
    status = wait_until(lambda: (s := quorum_status("--bootstrap-server", c.bootstrap()))
                        and s.get("LeaderId", "-1") != "-1" and s, 60, "a quorum leader")
    leader = int(status["LeaderId"])
    down = next(n for n in (1, 2, 3) if n != leader)
    c.nodes[down].kill9()
    survivors = c.bootstrap(exclude=(down,))
    # Until it is fenced, Kafka may still name the dead broker as the controller to talk to.
    wait_until(lambda: broker_states(survivors).get(down) == "fenced", 60, f"broker {down} fenced")
    admin = AdminClient({"bootstrap.servers": survivors})
    names = [f"s{i:04d}" for i in range(SNAPSHOT_TOPICS)]
    t0 = time.monotonic()
    futures = admin.create_topics([NewTopic(n, num_partitions=1, replication_factor=1) for n in names],
                                  operation_timeout=60, request_timeout=120)
    for f in futures.values():
        f.result(timeout=120)
    def set_all(r: int) -> None:
        resources = [ConfigResource("topic", n, incremental_configs=[
            ConfigEntry("retention.ms", str(1_000_000 + r), incremental_operation=AlterConfigOpType.SET)])
            for n in names]
        for f in admin.incremental_alter_configs(resources, request_timeout=120).values():
            f.result(timeout=120)

    for r in range(SNAPSHOT_ROUNDS):
        set_all(r)
    written_s = time.monotonic() - t0
    print(f"\n{SNAPSHOT_TOPICS * (2 + SNAPSHOT_ROUNDS)} metadata records written in {written_s:.1f} s")
    # A snapshot is taken per metadata.log.max.record.bytes.between.snapshots of records, so
    # the last records may wait for more: write rounds until one covers all 100,000.
    # The log offset the 100,000 records end at (Kafka gives every record an offset, Blumfeld
    # every change: either way the high watermark once they are committed).
    written_end = int(quorum_status("--bootstrap-server", survivors)["HighWatermark"])
    last = SNAPSHOT_ROUNDS - 1

    def snapshot_past_the_records() -> bool:
        nonlocal last
        if (s := snapshot_ends(c, leader)) and s[-1] >= written_end:
            return True
        last += 1
        set_all(last)
        return False

    wait_until(snapshot_past_the_records, 120, f"a snapshot past the 100,000 records (offset {written_end})")
    if broker_kind() == "blumfeld":
        segments = sorted(int(p.stem) for p in metadata_dir(c, leader).glob("*.log"))
        assert segments and segments[0] > 0, f"the log behind the snapshot is still there: {segments}"
    print(f"leader {leader}: snapshot at offset {snapshot_ends(c, leader)[-1]} (records end at {written_end}), "
          f"metadata on disk {dir_bytes(metadata_dir(c, leader)) / 1e6:.1f} MB")

    t1 = time.monotonic()
    c.nodes[down].start()

    def caught_up():
        rows = quorum_replication("--bootstrap-server", c.bootstrap())
        row = next((r for r in rows if int(r["NodeId"]) == down), None)
        return row is not None and row.get("Lag") == "0"

    wait_until(caught_up, CATCH_UP_TIMEOUT_S, f"node {down} caught up")
    print(f"node {down} restarted from the snapshot and caught up in {time.monotonic() - t1:.2f} s; "
          f"its metadata on disk {dir_bytes(metadata_dir(c, down)) / 1e6:.1f} MB")
    if broker_kind() == "blumfeld":
        # The leader's log starts at its snapshot, so the node could only catch up by fetching
        # the snapshot. (Kafka keeps its log for metadata.max.retention.ms and replays it.)
        assert snapshot_ends(c, down), "the restarted node holds no snapshot"
    # The restarted node serves what the records made.
    own = AdminClient({"bootstrap.servers": f"127.0.0.1:{c.spec(down).broker_port}"})
    res = ConfigResource("topic", names[-1])
    configs = own.describe_configs([res])[res].result(timeout=60)
    assert configs["retention.ms"].value == str(1_000_000 + last)


def test_a_consumer_group_commits_through_its_coordinator(cluster_factory):
    """Produce to a 6-partition topic on 3 nodes, consume it in a group, commit; the group's
    coordinator is the leader of its __consumer_offsets partition, and the committed offsets
    are the partitions' ends."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    c = cluster_factory(layout="combined", controllers=3)
    c.start()
    bootstrap = c.bootstrap()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic("grouped", num_partitions=6, replication_factor=3)]).values():
        f.result(timeout=60)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(300):
        producer.produce("grouped", key=str(i).encode(), value=f"v{i}".encode())
    assert producer.flush(60) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "g", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe(["grouped"])
    seen = set()

    def consumed_all():
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            seen.add(msg.value())
        return len(seen) == 300

    wait_until(consumed_all, 120, "300 records consumed in the group")
    consumer.commit(asynchronous=False)
    ends = {p: consumer.get_watermark_offsets(TopicPartition("grouped", p), timeout=10)[1] for p in range(6)}
    consumer.close()
    committed = admin.list_consumer_group_offsets(
        [__import__("confluent_kafka").ConsumerGroupTopicPartitions("g")])["g"].result(timeout=60)
    got = {tp.partition: tp.offset for tp in committed.topic_partitions if tp.topic == "grouped"}
    assert got == ends, (got, ends)
    # A v11+ consumer fetch is served by the leader and, below the high watermark it has
    # learnt, by a follower too (KIP-392, as Kafka does even without a replica selector).
    p0 = next(p for p in describe_topic(bootstrap, "grouped") if p["Partition"] == "0")
    leader = int(p0["Leader"])
    follower = next(int(r) for r in p0["Replicas"].split(",") if int(r) != leader)
    err, batches = wire.fetch_batches("127.0.0.1", c.spec(leader).broker_port, "grouped", 0)
    assert err == 0 and batches
    leader_records = sum(b.record_count for b in batches)

    def follower_serves_all():
        err, batches = wire.fetch_batches("127.0.0.1", c.spec(follower).broker_port, "grouped", 0)
        return err == 0 and sum(b.record_count for b in batches) == leader_records

    wait_until(follower_serves_all, 30, "the follower serves partition 0's committed records")
