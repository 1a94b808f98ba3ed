"""Blumfeld vs Apache Kafka on this machine, one after the other, same load generators.

Run through `bench/run` (which builds and fetches everything). Workloads (BENCH_ONLY selects):
- ceilings: sequential file write and loopback TCP into a trivial sink, measured in the same run;
- startup:  spawn to a served Metadata request, empty log: new data dir and second start;
- produce:  1 KiB records, 6 partitions, acks=all, uncompressed and lz4, with Kafka's
            ProducerPerformance and with the librdkafka load generator (1 and 2 producers);
            broker CPU seconds per GB produced; broker RSS idle and peak under load;
- consume:  from a warm log, Kafka's ConsumerPerformance and the librdkafka load generator;
- e2e:      end-to-end latency at a fixed 50 MB/s (librdkafka load generator), plus Kafka's
            ping-pong EndToEndLatency tool (one record in flight, 1 partition) as a separate row;
- many:     1,000 partitions with 10 producers on a fresh broker: RSS and idle CPU before and
            after, MB/s;
- restart:  BENCH_RESTART_GB GiB of log, kill -9, time until Metadata and ListOffsets are served
            again on a fresh broker, and the records lost (acknowledged minus end offsets).
The broker is pinned to CPU 0 and the load generators to CPU 1 (`taskset`), so the figures show
what one core of broker does. Each broker's data dir is deleted as soon as its workload is done.

The "cluster" section (BENCH_SECTIONS) runs three combined nodes (controller + broker each,
harness.cluster.Cluster) of each broker, all three on CPU 0, with RF=3, min.insync.replicas=2
and acks=all (BENCH_CLUSTER_ONLY selects):
- produce:  the produce workload above into RF=3 topics; CPU summed over the three nodes;
- e2e:      end-to-end latency at a fixed rate (no ping-pong);
- failover: kill -9 of a partition leader (not the active controller) under a steady producer:
            the longest gap between acknowledgements of a partition;
- catchup:  kill -9 of a follower, BENCH_CATCHUP_MB MiB produced, restart: time until it is
            back in every ISR;
- idle:     on a fresh cluster, idle CPU and RSS per node before and after creating
            BENCH_MANY_PARTITIONS partitions with RF=3.
Writes bench/RESULTS.md (or $BENCH_OUT): a section that did not run keeps what the file had;
see bench/README.md for the BENCH_* variables.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
import re
import resource
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COMPAT = ROOT / "compat-tests"
sys.path.insert(0, str(COMPAT))

from harness import wire  # noqa: E402
from harness.broker import BrokerDied, BrokerProcess  # noqa: E402
from harness.cluster import Cluster  # noqa: E402
from harness.tools import quorum_status  # noqa: E402
from harness.wait import Abort, wait_until  # noqa: E402

import probe  # noqa: E402

TOOLS_LIB = COMPAT / "kafka-tools" / "target" / "lib"
LOADGEN = Path(os.environ.get("BENCH_LOADGEN", HERE / "loadgen" / "target" / "release" / "blumfeld-loadgen"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
RECORDS = int(os.environ.get("BENCH_RECORDS", "300000"))
RAW_RECORDS = int(os.environ.get("BENCH_RAW_RECORDS", "1000000"))
TXN_DURATION_MS = int(os.environ.get("BENCH_TXN_DURATION_MS", "100"))
WARM_GIB = float(os.environ.get("BENCH_WARM_GIB", "8"))
E2E_RATE_MB = float(os.environ.get("BENCH_E2E_RATE", "50"))
E2E_SECONDS = int(os.environ.get("BENCH_E2E_SECONDS", "20"))
PINGPONG_RECORDS = int(os.environ.get("BENCH_PINGPONG_RECORDS", "10000"))
MANY_PARTITIONS = int(os.environ.get("BENCH_MANY_PARTITIONS", "1000"))
MANY_PRODUCERS = int(os.environ.get("BENCH_MANY_PRODUCERS", "10"))
MANY_RECORDS = int(os.environ.get("BENCH_MANY_RECORDS", "200000"))
RESTART_GB = float(os.environ.get("BENCH_RESTART_GB", "10"))
CEILING = "loopback + file write (MB/s)"
OUT = Path(os.environ.get("BENCH_OUT", HERE / "RESULTS.md"))
WORKLOADS = ("ceilings", "startup", "produce", "consume", "e2e", "many", "restart")
ONLY = [w for w in os.environ.get("BENCH_ONLY", ",".join(WORKLOADS)).split(",") if w]
BROKERS = [b for b in os.environ.get("BENCH_BROKERS", "blumfeld,kafka").split(",") if b]
RECORD_BYTES = 1024
PARTITIONS = 6
BROKER_CPU = "0"
CLIENT_CPU = "1"
IDLE_WINDOW_S = 10.0
# The compat harness starts Kafka with group.initial.rebalance.delay.ms=0; Blumfeld gets the
# same, so "consume incl. group join" compares the same wait.
# Deleted topics lose their files at once on both (Kafka waits a minute by default), so the
# topics the produce runs delete stop taking page cache from the runs after them.
COMMON = {"num.partitions": str(PARTITIONS), "log.segment.bytes": str(1 << 30),
          "group.initial.rebalance.delay.ms": "0", "log.segment.delete.delay.ms": "0"}
MIB = 2**20

SECTIONS = [s for s in os.environ.get("BENCH_SECTIONS", "single,cluster").split(",") if s]
CLUSTER_WORKLOADS = ("produce", "e2e", "failover", "catchup", "idle")
CLUSTER_ONLY = [w for w in os.environ.get("BENCH_CLUSTER_ONLY", ",".join(CLUSTER_WORKLOADS)).split(",") if w]
CLUSTER_CODECS = [c for c in os.environ.get("BENCH_CLUSTER_CODECS", "none").split(",") if c]
# Three Kafka nodes on one core of this machine fall behind well below the single-node rate
# (50 MB/s): the latency comparison needs a rate both keep up with.
CLUSTER_E2E_RATE_MB = float(os.environ.get("BENCH_CLUSTER_E2E_RATE", "5"))
FAILOVER_RATE_MB = float(os.environ.get("BENCH_FAILOVER_RATE", "5"))
FAILOVER_SECONDS = int(os.environ.get("BENCH_FAILOVER_SECONDS", "30"))
FAILOVER_BEFORE_S = 5.0  # steady producing before the kill -9: part of the measured run
CATCHUP_MB = int(os.environ.get("BENCH_CATCHUP_MB", "1024"))
CLUSTER_IDLE_S = float(os.environ.get("BENCH_CLUSTER_IDLE_SECONDS", "20"))
CLUSTER_SETTLE_S = 10.0  # after creating the partitions, before the idle window: not their creation's cost
CLUSTER_NODES = 3
# Both brokers' defaults as well as each topic's config, so every topic (the internal ones too)
# is replicated the same way.
CLUSTER_OVERRIDES = {"default.replication.factor": "3", "min.insync.replicas": "2"}
CLUSTER_HEADING = "## 3 nodes, RF=3"
FAILOVER_ROW = f"kill -9 of a partition leader at {FAILOVER_RATE_MB:g} MB/s"
FAILOVER_GAP = "longest gap between acknowledgements of a partition, across or after the kill (ms)"

for name, given, known in (("BENCH_ONLY", ONLY, WORKLOADS), ("BENCH_SECTIONS", SECTIONS, ("single", "cluster")),
                           ("BENCH_CLUSTER_ONLY", CLUSTER_ONLY, CLUSTER_WORKLOADS),
                           ("BENCH_CLUSTER_CODECS", CLUSTER_CODECS, ("none", "lz4"))):
    for w in given:
        if w not in known:
            raise SystemExit(f"{name}: unknown value {w!r}; known: {', '.join(known)}")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ processes and /proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_pids(broker: BrokerProcess) -> list[int]:
    """A broker's processes: everything in its process group except, for Kafka, the Python
    launcher that leads the group (only the JVM is the broker)."""
    if broker.proc is None:
        return []
    pgid = broker.proc.pid
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and not (broker.kind == "kafka" and int(entry.name) == pgid):
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def rss_of(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def cpu_of(pids: list[int]) -> float:
    """User + system CPU seconds of the processes."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / ticks


class PinnedBroker(BrokerProcess):
    """A broker on CPU 0, on a port fixed up front so that start-up can be timed by polling the
    port itself (the log line is only read afterwards, never as the clock).

    The workloads see it through what they share with PinnedCluster: `bootstrap`,
    `leader_bootstrap` and `one_leader` (where raw-produce sends), `topic_args` (how topics are
    created), `cpu()`, `rss()`, `pids()` and the names of its CPU rows."""

    cpu_row = "broker CPU s per GB produced"
    core_row = "broker's core busy (%)"

    def __init__(self, workdir: Path, kind: str, overrides: dict[str, str] | None = None):
        port = free_port()
        super().__init__(workdir, {**COMMON, **(overrides or {}), "listeners": f"PLAINTEXT://127.0.0.1:{port}"},
                         kind=kind)
        self.host, self.port = "127.0.0.1", port

    @property
    def leader_bootstrap(self) -> str:
        return self.bootstrap

    def one_leader(self, partitions: int) -> list[list[int]] | None:
        return None

    def topic_args(self, assignment: list[list[int]] | None) -> list[str]:
        return []

    def await_topic(self, topic: str, partitions: int) -> None:
        """Nothing to wait for: `create` asked this broker."""

    def command(self) -> list[str]:
        return ["taskset", "-c", BROKER_CPU, *super().command()]

    def spawn_and_time(self, stages, timeout_s: float = 180) -> list:
        """Spawns, then waits for each stage in turn: `(what, ready)` where `ready(previous value)`
        is polled every 2 ms until truthy. Returns `[(seconds since spawn, value), ...]`."""
        t0 = time.monotonic()
        self.spawn()
        out, value = [], None
        for what, ready in stages:
            def check(ready=ready, previous=value):
                if not self.alive():
                    raise BrokerDied(f"{self.kind} exited with {self.proc.returncode}:\n{self.log_tail()}")
                return ready(previous)

            value = wait_until(check, timeout_s, what, interval_s=0.002)
            out.append((time.monotonic() - t0, value))
        self.wait_listening(30)
        return out

    def start_timed(self, timeout_s: float = 180) -> float:
        stage = ("a served Metadata", lambda _: wire.metadata_brokers(self.host, self.port, timeout_s=2))
        return self.spawn_and_time([stage], timeout_s)[0][0]

    def pids(self) -> list[int]:
        return process_pids(self)

    def rss(self, pids: list[int] | None = None) -> int:
        return rss_of(self.pids() if pids is None else pids)

    def cpu(self) -> float:
        return cpu_of(self.pids())


class PinnedCluster:
    """Three combined nodes (controller + broker each) of one broker kind, started by the compat
    harness's Cluster, all pinned to CPU 0 like the single broker. Offers the same view as
    PinnedBroker, summed over the nodes; topics are created with RF=3 and
    min.insync.replicas=2."""

    cpu_row = "CPU s of the 3 nodes per GB produced"
    core_row = "3 nodes' core busy (%)"

    def __init__(self, workdir: Path, kind: str):
        self.workdir = workdir
        self.cluster = Cluster(workdir, "combined", CLUSTER_NODES, overrides={**COMMON, **CLUSTER_OVERRIDES},
                               kind=kind, prefix=["taskset", "-c", BROKER_CPU])
        self.kind = kind

    @property
    def ids(self) -> list[int]:
        return self.cluster.broker_ids

    def node(self, node_id: int) -> BrokerProcess:
        return self.cluster.nodes[node_id]

    def address(self, node_id: int) -> tuple[str, int]:
        spec = self.cluster.spec(node_id)
        return spec.host, spec.broker_port

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap()

    @property
    def leader_bootstrap(self) -> str:
        """raw-produce speaks to one broker over one connection: node 1, which `one_leader`
        makes the leader of every partition."""
        host, port = self.address(self.ids[0])
        return f"{host}:{port}"

    def one_leader(self, partitions: int) -> list[list[int]]:
        return [list(self.ids)] * partitions

    def topic_args(self, assignment: list[list[int]] | None) -> list[str]:
        args = ["--replication-factor", str(CLUSTER_NODES), "--config", "min.insync.replicas=2"]
        if assignment is not None:
            args += ["--replica-assignment", ",".join(":".join(map(str, r)) for r in assignment)]
        return args

    def await_topic(self, topic: str, partitions: int) -> None:
        """Waits until every running node serves the topic with a leader for each partition:
        `create` asked one of them, and the others learn of it a moment later (a client sent
        to one of those would get UNKNOWN_TOPIC_OR_PARTITION)."""
        for i in self.ids:
            if self.node(i).alive():
                wait_until(lambda: (s := probe.partition_states(*self.address(i), topic)) and len(s) == partitions
                           and all(leader >= 0 for leader, _ in s.values()), 60,
                           f"node {i} serving topic {topic}", interval_s=0.01)

    def start_timed(self, timeout_s: float = 180) -> float:
        """Spawns every node, then waits until each serves a Metadata that lists all of them."""
        t0 = time.monotonic()
        self.cluster.start(timeout_s)
        for i in self.ids:
            host, port = self.address(i)
            wait_until(lambda: len(wire.metadata_brokers(host, port, timeout_s=2)) == CLUSTER_NODES, timeout_s,
                       f"node {i}'s Metadata listing {CLUSTER_NODES} brokers", interval_s=0.01)
        return time.monotonic() - t0

    def stop(self) -> None:
        self.cluster.stop()

    def pids(self) -> list[int]:
        return [pid for i in self.ids for pid in process_pids(self.node(i))]

    def rss(self, pids: list[int] | None = None) -> int:
        return rss_of(self.pids() if pids is None else pids)

    def cpu(self) -> float:
        return cpu_of(self.pids())

    def states(self, topic: str, exclude: tuple[int, ...] = ()) -> dict[int, tuple[int, list[int]]] | None:
        """partition -> (leader, ISR) from the first running node not excluded that answers."""
        for i in self.ids:
            if i in exclude or not self.node(i).alive():
                continue
            try:
                return probe.partition_states(*self.address(i), topic)
            except (OSError, wire.WireError):
                continue
        return None

    def whole(self, topic: str, exclude: tuple[int, ...] = ()) -> dict[int, tuple[int, list[int]]] | None:
        """The partition states once every partition has a leader and all nodes in its ISR."""
        s = self.states(topic, exclude)
        return s if s and all(leader >= 0 and len(isr) == CLUSTER_NODES for leader, isr in s.values()) else None

    def active_controller(self) -> int:
        status = wait_until(lambda: (s := quorum_status("--bootstrap-server", self.bootstrap))
                            and s.get("LeaderId", "-1") != "-1" and s, 60, "a quorum leader")
        return int(status["LeaderId"])


class PeakRss:
    """Samples the broker's RSS every 200 ms in the background; `peak` is the largest seen."""

    def __init__(self, broker: PinnedBroker):
        self.broker, self.peak = broker, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        # Scanning /proc for the broker's processes costs the load generators' core more than
        # reading their status: the list is refreshed every 5 s only, so the sampler does not
        # disturb the latency runs.
        pids: list[int] = []
        for sample in itertools.count():
            if self.stop.is_set():
                break
            if sample % 25 == 0 or not pids:
                pids = self.broker.pids()
            self.peak = max(self.peak, self.broker.rss(pids))
            self.stop.wait(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def idle_cpu_percent(broker: PinnedBroker) -> float:
    """Broker CPU over a fixed IDLE_WINDOW_S window with no client load, as % of one core."""
    before = broker.cpu()
    time.sleep(IDLE_WINDOW_S)  # the measurement window itself, not a synchronisation
    return (broker.cpu() - before) / IDLE_WINDOW_S * 100


def run(cmd: list[str], timeout_s: float, what: str) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{what} did not finish within {timeout_s:.0f}s") from exc
    if out.returncode != 0:
        raise RuntimeError(f"{what} exited with {out.returncode}:\n{out.stderr[-2000:]}\n{out.stdout[-1000:]}")
    return out.stdout


def tool(main_class: str, *args: str, timeout_s: float = 900) -> str:
    cmd = ["taskset", "-c", CLIENT_CPU, "java", "-Xmx1g", "-cp", f"{TOOLS_LIB}/*", main_class, *args]
    return run(cmd, timeout_s, main_class.rsplit(".", 1)[-1])


def loadgen(*args: str, timeout_s: float = 900, cpu: str = CLIENT_CPU) -> dict:
    """Runs the librdkafka load generator; its last stdout line is one JSON object."""
    if not LOADGEN.exists():
        raise RuntimeError(f"{LOADGEN} is not built (cargo build --release --manifest-path bench/loadgen/Cargo.toml)")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = run(["taskset", "-c", cpu, str(LOADGEN), *args], timeout_s, f"blumfeld-loadgen {args[0]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in out.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"blumfeld-loadgen {args[0]} printed nothing")
    res = json.loads(lines[-1])
    # CPU the load generator used (user + system), for the "which core is the limit" rows.
    res["client_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return res


def delete_topic(bootstrap: str, topic: str) -> None:
    """Deletes a topic no later workload reads, so its pages stop weighing on the page cache
    (the runs after it would otherwise pay for reclaim: 11 GB go through the produce runs)."""
    loadgen("delete", "--bootstrap", bootstrap, "--topic", topic, timeout_s=120)


def create_topic(target, topic: str, partitions: int = PARTITIONS, assignment: list[list[int]] | None = None) -> float:
    """Creates a topic on a PinnedBroker or PinnedCluster (returns when every partition has a
    leader and a whole ISR, and every node serves it); returns the seconds it took."""
    t0 = time.monotonic()
    loadgen("create", "--bootstrap", target.bootstrap, "--topic", topic, "--partitions", str(partitions),
            *target.topic_args(assignment), timeout_s=300)
    target.await_topic(topic, partitions)
    return time.monotonic() - t0


# ------------------------------------------------------------------ load generators


def pp_produce(bootstrap: str, topic: str, codec: str, transactional_id: str | None = None) -> float:
    """MB/s of one ProducerPerformance run; with a transactional id, in transactions committed
    every TXN_DURATION_MS."""
    txn = ["--transactional-id", transactional_id, "--transaction-duration-ms", str(TXN_DURATION_MS)] \
        if transactional_id else []
    out = tool("org.apache.kafka.tools.ProducerPerformance", "--topic", topic, "--num-records", str(RECORDS),
               "--record-size", str(RECORD_BYTES), "--throughput", "-1", *txn, "--producer-props",
               f"bootstrap.servers={bootstrap}", "acks=all", f"compression.type={codec}", "linger.ms=5",
               "batch.size=262144")
    m = re.findall(r"records sent, [\d.]+ records/sec \(([\d.]+) MB/sec\)", out)
    if not m:
        raise RuntimeError(f"no summary in ProducerPerformance output:\n{out[-1000:]}")
    return float(m[-1])


def lg_produce(bootstrap: str, topic: str, records: int, codec: str = "none", producers: int = 1,
               timeout_s: float = 900) -> dict:
    res = loadgen("produce", "--bootstrap", bootstrap, "--topic", topic, "--records", str(records),
                  "--record-size", str(RECORD_BYTES), "--compression", codec, "--acks", "all",
                  "--producers", str(producers), "--linger-ms", "5", "--batch-bytes", "262144", timeout_s=timeout_s)
    if res.get("errors"):
        raise RuntimeError(f"loadgen produce reported {res['errors']} errors: {res}")
    return res


def pp_consume(bootstrap: str, topic: str) -> tuple[float, float]:
    """(MB/s over the whole run including the group join, MB/s while fetching)."""
    out = tool("org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", bootstrap, "--topic", topic,
               "--messages", str(RECORDS), "--timeout", "60000")
    rows = [line.split(",") for line in out.splitlines() if line and line[0].isdigit()]
    if not rows:
        raise RuntimeError(f"no result row in ConsumerPerformance output:\n{out[-1000:]}")
    return float(rows[-1][3]), float(rows[-1][8])


def pingpong(bootstrap: str, topic: str) -> tuple[float, float, float]:
    """Kafka's EndToEndLatency: sends one record, waits to consume it, repeats. It prints whole
    milliseconds (p50, p99, p99.9)."""
    out = tool("org.apache.kafka.tools.EndToEndLatency", "--bootstrap-server", bootstrap, "--topic", topic,
               "--num-records", str(PINGPONG_RECORDS), "--producer-acks", "all", "--record-size",
               str(RECORD_BYTES), timeout_s=600)
    m = re.search(r"Percentiles: 50th = (\d+), 99th = (\d+), 99\.9th = (\d+)", out)
    if not m:
        raise RuntimeError(f"no percentiles in EndToEndLatency output:\n{out[-1000:]}")
    return float(m.group(1)), float(m.group(2)), float(m.group(3))


# ------------------------------------------------------------------ machine ceilings


def file_write_mb_per_s() -> tuple[float, float]:
    """1 GiB written sequentially in 1 MiB blocks into the temp dir the brokers' data dirs live in.
    Returns (MB/s of the write calls alone, i.e. into the page cache as the brokers write without
    fsync; MB/s including an fsync at the end, i.e. down to the device)."""
    with tempfile.NamedTemporaryFile(dir=tempfile.gettempdir()) as f:
        block = os.urandom(1 << 20)
        t0 = time.monotonic()
        for _ in range(1024):
            f.write(block)
        f.flush()
        written = time.monotonic() - t0
        os.fsync(f.fileno())
        synced = time.monotonic() - t0
    return 1024 / written, 1024 / synced


def loopback_mb_per_s(seconds: int = 5) -> float:
    """Loopback TCP: `blast` on CPU 1 into a trivial `sink` on CPU 0 (the broker's core)."""
    if not LOADGEN.exists():
        raise RuntimeError(f"{LOADGEN} is not built (cargo build --release --manifest-path bench/loadgen/Cargo.toml)")
    sink = subprocess.Popen(["taskset", "-c", BROKER_CPU, str(LOADGEN), "sink", "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([sink.stdout], [], [], 10)
        first = sink.stdout.readline() if ready else ""
        m = re.match(r"listening (\S+):(\d+)", first)
        if not m:
            raise RuntimeError(f"sink did not announce its port: {first!r}")
        loadgen("blast", "--to", f"{m.group(1)}:{m.group(2)}", "--seconds", str(seconds), timeout_s=seconds + 60)
        out, err = sink.communicate(timeout=30)
        if sink.returncode != 0:
            raise RuntimeError(f"sink exited with {sink.returncode}: {err[-1000:]}")
        return float(json.loads([line for line in out.splitlines() if line.strip()][-1])["mb_per_s"])
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()


def ceilings() -> dict[str, float]:
    out: dict[str, float] = {}
    # In a child pinned to the broker's CPU, like the sink: the cost the broker's core would pay.
    disk = [json.loads(run(["taskset", "-c", BROKER_CPU, sys.executable, __file__, "file-write"], 300, "file write"))
            for _ in range(RUNS)]
    log(f"ceiling file write (page cache, with fsync): {disk}")
    out["file write, page cache (MB/s)"] = statistics.median(d[0] for d in disk)
    out["file write incl. fsync (MB/s)"] = statistics.median(d[1] for d in disk)
    try:
        loop = [loopback_mb_per_s() for _ in range(RUNS)]
        log(f"ceiling loopback: {loop}")
        out["loopback TCP (MB/s)"] = statistics.median(loop)
        out[CEILING] = 1 / (1 / out["loopback TCP (MB/s)"] + 1 / out["file write, page cache (MB/s)"])
    except Exception as exc:  # noqa: BLE001 - reported in the results, the rest still runs
        log(f"loopback ceiling failed: {exc}")
        FAILURES.append(f"ceilings / loopback: {exc}")
    return out


# ------------------------------------------------------------------ per-broker workloads

FAILURES: list[str] = []


class Figures:
    """One broker's figures in insertion order, with the ceiling each throughput row is compared to."""

    def __init__(self):
        self.values: dict[str, float] = {}
        self.ceiling: dict[str, str] = {}
        self.extra: dict[str, float] = {}

    def add(self, key: str, value: float, ceiling: str | None = None) -> None:
        self.values[key] = value
        if ceiling:
            self.ceiling[key] = ceiling
        log(f"  {key}: {value:.3f}")


def workload(kind: str, name: str, fn, *args, only: list[str] | None = None) -> None:
    """Runs one workload if `only` (default BENCH_ONLY) names it; a failure is logged and
    reported in RESULTS.md, the others still run."""
    if name not in (ONLY if only is None else only):
        return
    log(f"[{kind}] {name}")
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc()
        FAILURES.append(f"{kind} / {name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


def startup(kind: str, workdir: Path, f: Figures) -> None:
    """Each run: a new empty data dir (Kafka formats it first), then a second start on the same
    still-empty dir after a clean stop (no format step)."""
    fresh, again = [], []
    for i in range(RUNS):
        broker = PinnedBroker(workdir / f"startup-{i}", kind)
        try:
            fresh.append(broker.start_timed() * 1000)
            broker.stop()
            again.append(broker.start_timed() * 1000)
        finally:
            broker.stop()
            shutil.rmtree(broker.workdir, ignore_errors=True)
    log(f"  start-up runs (ms): new dir {[round(t, 1) for t in fresh]}, again {[round(t, 1) for t in again]}")
    f.add("start-up to Metadata, empty log, new data dir (ms)", statistics.median(fresh))
    f.add("start-up to Metadata, empty log, second start (ms)", statistics.median(again))


def produce(broker: PinnedBroker | PinnedCluster, f: Figures, codecs: tuple[str, ...] = ("none", "lz4")) -> None:
    gb = RECORDS * RECORD_BYTES / 1e9
    for codec in codecs:
        runs, cpu = [], 0.0
        for i in range(RUNS):
            topic = f"bench-{codec}-{i}"
            create_topic(broker, topic)
            before = broker.cpu()
            runs.append(pp_produce(broker.bootstrap, topic, codec))
            cpu += broker.cpu() - before
        f.add(f"produce {codec}, ProducerPerformance (MB/s)", statistics.median(runs), "produce")
        f.add(f"{broker.cpu_row} ({codec}, ProducerPerformance)", cpu / (RUNS * gb))
    # Transactions (exactly-once producers, Streams, Connect): the same producer committing a
    # transaction every TXN_DURATION_MS. Its own rows, not among the produce targets.
    codec = codecs[0]
    runs, cpu = [], 0.0
    for i in range(RUNS):
        topic = f"bench-txn-{codec}-{i}"
        create_topic(broker, topic)
        before = broker.cpu()
        runs.append(pp_produce(broker.bootstrap, topic, codec, transactional_id=f"bench-txn-{i}"))
        cpu += broker.cpu() - before
    label = f"ProducerPerformance, {TXN_DURATION_MS} ms transactions"
    f.add(f"transactional produce {codec}, {label} (MB/s)", statistics.median(runs), "produce")
    f.add(f"{broker.cpu_row} (transactional {codec}, {label})", cpu / (RUNS * gb))
    for codec in codecs:
        for producers in (1, 2):
            label = f"librdkafka, {producers} producer{'s' if producers > 1 else ''}"
            loadgen_produce_runs(broker, f, codec, label, f"lg-{codec}-p{producers}",
                                 lambda topic: lg_produce(broker.bootstrap, topic, RECORDS, codec, producers))
    # Not a client: the same pre-built Produce requests sent again and again, so the broker's
    # core is the limit, not the load generator's (one librdkafka producer saturates its core
    # first against Blumfeld). On a cluster one node leads every partition of these topics, as
    # the requests go to one broker.
    for codec in codecs:
        loadgen_produce_runs(
            broker, f, codec, "raw protocol, pre-built batches", f"raw-{codec}",
            lambda topic: loadgen("raw-produce", "--bootstrap", broker.leader_bootstrap, "--topic", topic, "--records",
                                  str(RAW_RECORDS), "--record-size", str(RECORD_BYTES), "--compression", codec,
                                  "--batch-bytes", "262144", "--in-flight", "4"),
            broker.one_leader(PARTITIONS))


def loadgen_produce_runs(broker: PinnedBroker | PinnedCluster, f: "Figures", codec: str, label: str,
                         topic_prefix: str, produce_into, assignment: list[list[int]] | None = None) -> None:
    """RUNS runs of `produce_into(topic)` (a load generator call returning its JSON), each into a
    new topic deleted afterwards: median MB/s, broker CPU per GB and the busy rows."""
    runs, cpu, total, busy = [], 0.0, 0, []
    for i in range(RUNS):
        topic = f"{topic_prefix}-{i}"
        create_topic(broker, topic, assignment=assignment)
        before, t0 = broker.cpu(), time.monotonic()
        res = produce_into(topic)
        run_cpu, wall = broker.cpu() - before, time.monotonic() - t0
        cpu += run_cpu
        busy.append((res["client_cpu_s"] / wall, run_cpu / wall))
        runs.append(res["mb_per_s"])
        total += res["bytes"]
        delete_topic(broker.bootstrap, topic)
    f.add(f"produce {codec}, {label} (MB/s)", statistics.median(runs), "produce")
    f.add(f"{broker.cpu_row} ({codec}, {label})", cpu / (total / 1e9))
    add_busy(f, f"produce {codec}, {label}", busy, broker.core_row)


def add_busy(f: "Figures", label: str, busy: list[tuple[float, float]], core_row: str) -> None:
    """Rows saying which core was the limit: each side's CPU time over the run's wall time
    (process start to exit for the load generator, so a little start-up is included)."""
    f.add(f"{label}: load generator's core busy (%)", 100 * statistics.median(b[0] for b in busy))
    f.add(f"{label}: {core_row}", 100 * statistics.median(b[1] for b in busy))


def ensure_warm_topics(broker: PinnedBroker) -> None:
    """The consume workload reads the ProducerPerformance topics; writes them if produce was skipped."""
    if "produce" in ONLY:
        return
    for i in range(RUNS):
        create_topic(broker, f"bench-none-{i}")
        lg_produce(broker.bootstrap, f"bench-none-{i}", RECORDS)


def consume(broker: PinnedBroker, f: Figures) -> None:
    ensure_warm_topics(broker)
    consumed = [pp_consume(broker.bootstrap, f"bench-none-{i}") for i in range(RUNS)]
    f.add("consume warm, ConsumerPerformance incl. group join (MB/s)", statistics.median(c[0] for c in consumed),
          "consume")
    f.add("consume warm, ConsumerPerformance fetching only (MB/s)", statistics.median(c[1] for c in consumed),
          "consume")
    runs = []
    for i in range(RUNS):
        res = loadgen("consume", "--bootstrap", broker.bootstrap, "--topic", f"bench-none-{i}", "--records",
                      str(RECORDS))
        if res["records"] < RECORDS:
            raise RuntimeError(f"loadgen consume read {res['records']} of {RECORDS}")
        runs.append(res["mb_per_s"])
    f.add("consume warm, librdkafka (MB/s)", statistics.median(runs), "consume")


def e2e(broker: PinnedBroker | PinnedCluster, f: Figures, rate_mb: float = E2E_RATE_MB, pingpong_too: bool = True) -> None:
    runs = []
    for i in range(RUNS):
        topic = f"e2e-{i}"
        create_topic(broker, topic)
        res = loadgen("e2e", "--bootstrap", broker.bootstrap, "--topic", topic, "--rate-mb-per-s", f"{rate_mb:g}",
                      "--seconds", str(E2E_SECONDS), "--record-size", str(RECORD_BYTES), "--warmup-seconds", "3",
                      "--linger-ms", "1", "--acks", "all", timeout_s=E2E_SECONDS + 120)
        log(f"  e2e run {i}: {res}")
        runs.append(res)
    rate = f"{rate_mb:g} MB/s"
    f.add(f"e2e at {rate}: achieved rate (MB/s)", statistics.median(r["achieved_mb_per_s"] for r in runs))
    f.add(f"e2e at {rate}: p50 (ms)", statistics.median(r["p50_ms"] for r in runs))
    f.add(f"e2e at {rate}: p99 (ms)", statistics.median(r["p99_ms"] for r in runs))
    f.add(f"e2e at {rate}: p99.9 (ms)", statistics.median(r["p999_ms"] for r in runs))
    f.add(f"e2e at {rate}: max over all runs (ms)", max(r["max_ms"] for r in runs))
    f.extra["e2e p99.9 worst run (ms)"] = max(r["p999_ms"] for r in runs)
    if not pingpong_too:
        return
    pp = [pingpong(broker.bootstrap, f"pingpong-{i}") for i in range(RUNS)]
    log(f"  ping-pong runs: {pp}")
    for idx, name in enumerate(("p50", "p99", "p99.9")):
        f.add(f"e2e ping-pong, EndToEndLatency, 1 record in flight: {name} (ms)", statistics.median(p[idx] for p in pp))
    f.extra["ping-pong p99.9 worst run (ms)"] = max(p[2] for p in pp)


def many(kind: str, workdir: Path, f: Figures) -> None:
    """On a fresh broker, so that memory freed by earlier workloads cannot hide the cost."""
    n = MANY_PARTITIONS
    p = f"{n} partitions"
    broker = PinnedBroker(workdir / f"{kind}-many", kind)
    try:
        broker.start_timed()
        create_topic(broker, "warm-up")  # one 6-partition topic and a produce first, so that
        lg_produce(broker.bootstrap, "warm-up", 10000)  # the delta below is the partitions, not first use
        idle_before = idle_cpu_percent(broker)
        rss_before = broker.rss()
        created_s = create_topic(broker, "many", n)
        rss_created = broker.rss()
        with PeakRss(broker) as peak:
            before = broker.cpu()
            res = lg_produce(broker.bootstrap, "many", MANY_RECORDS, "none", MANY_PRODUCERS)
            cpu = broker.cpu() - before
        rss_loaded = broker.rss()
        idle_after = idle_cpu_percent(broker)
        f.add(f"{p}: create the topic (s)", created_s)
        f.add(f"{p}: RSS before creating (MiB)", rss_before / MIB)
        f.add(f"{p}: RSS after creating (MiB)", rss_created / MIB)
        f.add(f"{p}: RSS added by creating (MiB)", (rss_created - rss_before) / MIB)
        f.add(f"{p}: produce, librdkafka, {MANY_PRODUCERS} producers (MB/s)", res["mb_per_s"], "produce")
        f.add(f"{p}: broker CPU s per GB produced", cpu / (res["bytes"] / 1e9))
        f.add(f"{p}: RSS peak under the load (MiB)", peak.peak / MIB)
        f.add(f"{p}: RSS after the load (MiB)", rss_loaded / MIB)
        f.add(f"{p}: RSS added, creating + load (MiB)", (rss_loaded - rss_before) / MIB)
        f.add(f"idle CPU before creating {n} partitions (% of a core)", idle_before)
        f.add(f"idle CPU with {n} partitions, after the load (% of a core)", idle_after)
        timed_stop(broker, f, f"{p}: clean shutdown, SIGTERM to exit (s)")
    finally:
        broker.stop()
        shutil.rmtree(broker.workdir, ignore_errors=True)


def timed_stop(broker: PinnedBroker, f: Figures, key: str) -> None:
    t0 = time.monotonic()
    code = broker.stop(300)
    f.add(key, time.monotonic() - t0 if code == 0 else float("nan"))


def main_broker(kind: str, workdir: Path, f: Figures) -> None:
    """One broker for produce, consume and e2e; its data dir is deleted afterwards."""
    broker = PinnedBroker(workdir / kind, kind)
    try:
        broker.start_timed()
        time.sleep(2)  # settle before the idle reading (a measurement, not synchronisation)
        f.add("RSS idle (MiB)", broker.rss() / MIB)
        with PeakRss(broker) as peak:
            workload(kind, "produce", produce, broker, f)
            workload(kind, "consume", consume, broker, f)
            workload(kind, "e2e", e2e, broker, f)
        f.add("RSS peak under load, 6 partitions (MiB)", peak.peak / MIB)
        timed_stop(broker, f, "clean shutdown after produce / consume / e2e, SIGTERM to exit (s)")
    finally:
        broker.stop()
        shutil.rmtree(broker.workdir, ignore_errors=True)


def restart(kind: str, workdir: Path, f: Figures) -> None:
    """RESTART_GB GiB into a 6-partition topic on a fresh broker, kill -9, restart on the same dir."""
    free = shutil.disk_usage(workdir).free
    if free < RESTART_GB * 2**30 * 1.2 + 2**31:
        raise RuntimeError(f"only {free / 2**30:.1f} GiB free in {workdir}; the restart workload needs "
                           f"{RESTART_GB:g} GiB plus headroom")
    broker = PinnedBroker(workdir / f"{kind}-restart", kind)
    gib = f"{RESTART_GB:g} GiB"
    try:
        broker.start_timed()
        create_topic(broker, "restart")
        records = int(RESTART_GB * 2**30) // RECORD_BYTES
        res = lg_produce(broker.bootstrap, "restart", records, "none", 2, timeout_s=max(900, RESTART_GB * 180))
        acked = res.get("delivered", res["records"])  # successful delivery reports
        log(f"  wrote {res}")
        broker.kill9()
        (t_meta, _), (t_offsets, ends) = broker.spawn_and_time([
            ("Metadata with the topic", lambda _: probe.topic_partitions(broker.host, broker.port, "restart")),
            ("ListOffsets of every partition",
             lambda parts: probe.end_offsets(broker.host, broker.port, "restart", parts)),
        ], timeout_s=600)
        f.add(f"restart after kill -9, {gib}: write the log (MB/s)", res["mb_per_s"])
        f.add(f"restart after kill -9, {gib}: spawn to Metadata with the topic (ms)", t_meta * 1000)
        f.add(f"restart after kill -9, {gib}: spawn to ListOffsets of all partitions (ms)", t_offsets * 1000)
        f.add(f"restart after kill -9, {gib}: records lost (acknowledged - end offsets)", acked - sum(ends.values()))
        f.extra["restart acknowledged"] = acked
    finally:
        broker.stop()
        shutil.rmtree(broker.workdir, ignore_errors=True)


def bench(kind: str, workdir: Path) -> Figures:
    f = Figures()
    workload(kind, "startup", startup, kind, workdir, f)
    if {"produce", "consume", "e2e"} & set(ONLY):
        try:
            main_broker(kind, workdir, f)
        except Exception as exc:  # noqa: BLE001 - start-up failure of the main broker
            traceback.print_exc()
            FAILURES.append(f"{kind} / main broker: {exc}")
    workload(kind, "many", many, kind, workdir, f)
    workload(kind, "restart", restart, kind, workdir, f)
    return f


# ------------------------------------------------------------------ 3 nodes, RF=3


def cluster_kind(kind: str) -> str:
    """The name cluster workloads report under (their failures go into the cluster section)."""
    return f"{kind} 3-node"


def steady_producer(cl: PinnedCluster, topic: str, fault) -> dict:
    """Runs `blumfeld-loadgen steady` on CPU 1 for FAILOVER_SECONDS; once it has its first
    acknowledgement and FAILOVER_BEFORE_S of steady producing, calls `fault()` (which returns the
    fault's time.time()). Returns the load generator's JSON with `fault_unix_s` added."""
    cmd = ["taskset", "-c", CLIENT_CPU, str(LOADGEN), "steady", "--bootstrap", cl.bootstrap, "--topic", topic,
           "--rate-mb-per-s", f"{FAILOVER_RATE_MB:g}", "--seconds", str(FAILOVER_SECONDS), "--record-size",
           str(RECORD_BYTES), "--acks", "all", "--linger-ms", "5", "--record-gaps-over-ms", "20"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    def read_stderr():
        for line in proc.stderr:
            lines.append(line)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        def acknowledged():
            if any("first acknowledgement" in line for line in lines):
                return True
            if proc.poll() is not None:
                raise Abort(f"blumfeld-loadgen steady exited with {proc.returncode}:\n{''.join(lines[-20:])}")
            return False

        wait_until(acknowledged, 60, "the steady producer's first acknowledgement")
        time.sleep(FAILOVER_BEFORE_S)  # steady producing before the fault: part of the measured run
        fault_at = fault()
        out = proc.stdout.read()
        proc.wait(FAILOVER_SECONDS + 400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    results = [line for line in out.splitlines() if line.strip()]
    if proc.returncode != 0 or not results:
        raise RuntimeError(f"blumfeld-loadgen steady exited with {proc.returncode}:\n{''.join(lines[-20:])}")
    res = json.loads(results[-1])
    res["fault_unix_s"] = fault_at
    return res


def failover(cl: PinnedCluster, f: Figures) -> None:
    """kill -9 of the leader of some partitions (not the active controller, so that the quorum
    keeps its leader and only the partitions fail over) under a steady acks=all producer."""
    topic = "failover"
    create_topic(cl, topic)
    states = wait_until(lambda: cl.whole(topic), 60, "three in-sync replicas")
    controller = cl.active_controller()
    leaders = sorted({leader for leader, _ in states.values()} - {controller})
    if not leaders:
        raise RuntimeError(f"every partition is led by the active controller {controller}: {states}")
    victim = leaders[0]
    log(f"  failover: killing node {victim} (leads {sorted(p for p, (l, _) in states.items() if l == victim)}, "
        f"active controller {controller})")

    def kill() -> float:
        at = time.time()
        cl.node(victim).kill9()
        return at

    res = steady_producer(cl, topic, kill)
    log(f"  failover: {({k: v for k, v in res.items() if k != 'gaps'})}")
    kill_ms = res["fault_unix_s"] * 1000
    # [partition (-1: the whole producer), start (Unix ms), length (ms)] of every gap over 20 ms.
    # The fault's gaps are those that end after the kill; the ones before it are the noise floor.
    gaps = [(p, start, ms) for p, start, ms in res["gaps"]]
    after = [(ms, start, p) for p, start, ms in gaps if p >= 0 and start + ms >= kill_ms]
    before = [ms for p, start, ms in gaps if p >= 0 and start + ms < kill_ms]
    any_after = [ms for p, start, ms in gaps if p < 0 and start + ms >= kill_ms]
    if after:
        ms, start, p = max(after)
        log(f"  failover: partition {p} went {ms:.0f} ms without an acknowledgement, from "
            f"{(start - kill_ms) / 1000:+.3f} s after the kill")
    f.add(f"{FAILOVER_ROW}: {FAILOVER_GAP}", max(after)[0] if after else float("nan"))
    f.add(f"{FAILOVER_ROW}: longest gap between any two acknowledgements, across or after the kill (ms)",
          max(any_after, default=float("nan")))
    f.add(f"{FAILOVER_ROW}: longest gap of a partition before the kill (ms, — if none over 20 ms)",
          max(before, default=float("nan")))
    f.add(f"{FAILOVER_ROW}: failed deliveries", res["errors"])
    t0 = time.monotonic()
    cl.node(victim).start()
    wait_until(lambda: cl.whole(topic), 300, f"node {victim} back in every ISR", interval_s=0.02)
    log(f"  failover: node {victim} restarted and back in every ISR in {time.monotonic() - t0:.2f} s")
    delete_topic(cl.bootstrap, topic)


def catch_up(cl: PinnedCluster, f: Figures) -> None:
    """kill -9 of a follower of every partition (not the active controller), CATCHUP_MB MiB
    produced without it, restart: time until it is back in every ISR."""
    topic = "catch-up"
    controller = cl.active_controller()
    victim = max(i for i in cl.ids if i != controller)
    a, b = [i for i in cl.ids if i != victim]
    create_topic(cl, topic, assignment=[[a, b, victim] if p % 2 == 0 else [b, a, victim] for p in range(PARTITIONS)])
    node = cl.node(victim)
    node.kill9()
    rest = (victim,)
    wait_until(lambda: (s := cl.states(topic, rest)) and all(victim not in isr for _, isr in s.values()), 120,
               f"node {victim} out of every ISR")
    records = CATCHUP_MB * MIB // RECORD_BYTES
    res = lg_produce(cl.cluster.bootstrap(exclude=rest), topic, records, "none", 2)
    mib = f"{CATCHUP_MB} MiB"
    f.add(f"follower catch-up, {mib}: produce with the follower down (MB/s)", res["mb_per_s"])
    t0 = time.monotonic()
    node.spawn()
    node.wait_listening(300)
    listening = time.monotonic() - t0
    wait_until(lambda: cl.whole(topic, rest), 600, f"node {victim} back in every ISR", interval_s=0.02)
    in_sync = time.monotonic() - t0
    f.add(f"follower catch-up, {mib}: restart to listening (s)", listening)
    f.add(f"follower catch-up, {mib}: restart to back in every ISR (s)", in_sync)
    f.add(f"follower catch-up, {mib}: rate, restart to back in every ISR (MB/s)", CATCHUP_MB / in_sync)
    f.add(f"follower catch-up, {mib}: rate, listening to back in every ISR (MB/s)",
          CATCHUP_MB / (in_sync - listening) if in_sync > listening else float("nan"))
    delete_topic(cl.bootstrap, topic)


def idle_cpu_per_node(cl: PinnedCluster) -> dict[int, float]:
    """CPU of each node over CLUSTER_IDLE_S with no client load, as % of one core."""
    pids = {i: process_pids(cl.node(i)) for i in cl.ids}
    before = {i: cpu_of(p) for i, p in pids.items()}
    time.sleep(CLUSTER_IDLE_S)  # the measurement window itself, not a synchronisation
    return {i: (cpu_of(p) - before[i]) / CLUSTER_IDLE_S * 100 for i, p in pids.items()}


def idle_partitions(kind: str, workdir: Path, f: Figures) -> None:
    """On a fresh cluster: idle CPU and RSS of each node before and after creating
    MANY_PARTITIONS partitions with RF=3."""
    n = MANY_PARTITIONS
    cl = PinnedCluster(workdir / f"{kind}-cluster-idle", kind)
    try:
        cl.start_timed()
        create_topic(cl, "warm-up")  # as in `many`: the delta below is the partitions, not first use
        lg_produce(cl.bootstrap, "warm-up", 10000)
        cpu_before = idle_cpu_per_node(cl)
        rss_before = {i: rss_of(process_pids(cl.node(i))) for i in cl.ids}
        f.add(f"{n} partitions × RF 3: create the topic, to every ISR whole (s)", create_topic(cl, "many", n))
        time.sleep(CLUSTER_SETTLE_S)  # a measurement choice: the window is the steady idle state
        cpu_after = idle_cpu_per_node(cl)
        rss_after = {i: rss_of(process_pids(cl.node(i))) for i in cl.ids}
        w = f"{CLUSTER_IDLE_S:g} s"
        for i in cl.ids:
            f.add(f"node {i}: idle CPU over {w} before creating (% of a core)", cpu_before[i])
            f.add(f"node {i}: idle CPU over {w} with {n} partitions × RF 3 (% of a core)", cpu_after[i])
            f.add(f"node {i}: RSS before creating (MiB)", rss_before[i] / MIB)
            f.add(f"node {i}: RSS with {n} partitions × RF 3 (MiB)", rss_after[i] / MIB)
        f.add(f"3 nodes: idle CPU over {w} with {n} partitions × RF 3, sum (% of a core)", sum(cpu_after.values()))
        f.add(f"3 nodes: idle CPU added by {n} partitions × RF 3, sum (% of a core)",
              sum(cpu_after.values()) - sum(cpu_before.values()))
        f.add(f"3 nodes: RSS added by {n} partitions × RF 3, sum (MiB)",
              (sum(rss_after.values()) - sum(rss_before.values())) / MIB)
    finally:
        cl.stop()
        shutil.rmtree(cl.workdir, ignore_errors=True)


def cluster_main(kind: str, workdir: Path, f: Figures) -> None:
    """One cluster for produce, e2e, failover and catch-up; its data dirs are deleted afterwards."""
    ck = cluster_kind(kind)
    cl = PinnedCluster(workdir / f"{kind}-cluster", kind)
    try:
        f.add("start-up: spawn to all 3 nodes serving Metadata with 3 brokers (s)", cl.start_timed())
        time.sleep(2)  # settle before the idle reading (a measurement, not synchronisation)
        f.add("RSS idle, sum of the 3 nodes (MiB)", cl.rss() / MIB)
        with PeakRss(cl) as peak:
            workload(ck, "produce", produce, cl, f, tuple(CLUSTER_CODECS), only=CLUSTER_ONLY)
            workload(ck, "e2e", e2e, cl, f, CLUSTER_E2E_RATE_MB, False, only=CLUSTER_ONLY)
        if {"produce", "e2e"} & set(CLUSTER_ONLY):
            f.add("RSS peak under produce / e2e, sum of the 3 nodes (MiB)", peak.peak / MIB)
        workload(ck, "failover", failover, cl, f, only=CLUSTER_ONLY)
        workload(ck, "catchup", catch_up, cl, f, only=CLUSTER_ONLY)
    finally:
        cl.stop()
        shutil.rmtree(cl.workdir, ignore_errors=True)


def bench_cluster(kind: str, workdir: Path) -> Figures:
    f = Figures()
    if set(CLUSTER_ONLY) - {"idle"}:
        try:
            cluster_main(kind, workdir, f)
        except Exception as exc:  # noqa: BLE001 - start-up failure of the cluster
            traceback.print_exc()
            FAILURES.append(f"{cluster_kind(kind)} / cluster: {exc}")
    workload(cluster_kind(kind), "idle", idle_partitions, kind, workdir, f, only=CLUSTER_ONLY)
    return f


# ------------------------------------------------------------------ report


def fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, int):
        return str(v)
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio(b: float | None, k: float | None) -> float | None:
    if b is None or k is None or k == 0:
        return None
    return b / k


def pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.0%}"


def targets(b: Figures, k: Figures, machine: dict[str, float]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for each target of issue #5; verdicts computed from the figures."""
    bv, kv = b.values, k.values
    out: list[tuple[str, str, str]] = []

    def verdict(ok: bool | None) -> str:
        return "not measured" if ok is None else ("met" if ok else "not met")

    def produce_keys(codec: str) -> list[str]:
        return [key for key in bv if key.startswith(f"produce {codec},") and key.endswith("(MB/s)")]

    for codec in ("none", "lz4"):
        pairs = [(key, ratio(bv[key], kv.get(key))) for key in produce_keys(codec)]
        pairs = [(key, r) for key, r in pairs if r is not None]
        measured = "; ".join(f"{key.split(', ', 1)[1].replace(' (MB/s)', '')}: {r:.2f}×" for key, r in pairs)
        out.append((f"produce {codec} ≥ 2× Kafka (every load generator)", measured or "—",
                    verdict(all(r >= 2 for _, r in pairs) if pairs else None)))
    ceiling = machine.get(CEILING)
    best = max((bv[key] for key in produce_keys("none")), default=None)
    share = best / ceiling if best is not None and ceiling else None
    out.append(("produce ≥ 60% of the loopback + file-write ceiling (best uncompressed figure)",
                f"{fmt(best)} of {fmt(ceiling)} MB/s = {pct(share)}" if share is not None else "—",
                verdict(None if share is None else share >= 0.6)))
    rate = f"{E2E_RATE_MB:g} MB/s"
    p99 = ratio(bv.get(f"e2e at {rate}: p99 (ms)"), kv.get(f"e2e at {rate}: p99 (ms)"))
    out.append((f"p99 end-to-end latency ≤ 0.5× Kafka's at {rate}",
                f"{fmt(bv.get(f'e2e at {rate}: p99 (ms)'))} vs {fmt(kv.get(f'e2e at {rate}: p99 (ms)'))} ms = "
                f"{p99:.2f}×" if p99 is not None else "—", verdict(None if p99 is None else p99 <= 0.5)))
    worst = [v for v in (b.extra.get("e2e p99.9 worst run (ms)"), b.extra.get("ping-pong p99.9 worst run (ms)"))
             if v is not None]
    out.append(("p99.9 end-to-end latency never above 20 ms (worst run, fixed rate and ping-pong)",
                " / ".join(f"{fmt(v)} ms" for v in worst) or "—",
                verdict(max(worst) <= 20 if worst else None)))
    key = "RSS peak under load, 6 partitions (MiB)"
    r = ratio(bv.get(key), kv.get(key))
    out.append(("RSS ≤ 0.1× Kafka's under the same load",
                f"{fmt(bv.get(key))} vs {fmt(kv.get(key))} MiB = {r:.2f}×" if r is not None else "—",
                verdict(None if r is None else r <= 0.1)))
    keys = ["start-up to Metadata, empty log, new data dir (ms)", "start-up to Metadata, empty log, second start (ms)"]
    got = [bv[key] for key in keys if key in bv]
    out.append(("start-up under 50 ms with an empty log (new data dir / second start)",
                " / ".join(f"{fmt(v)} ms" for v in got) or "—", verdict(max(got) < 50 if got else None)))
    gib = f"{RESTART_GB:g} GiB"
    key = f"restart after kill -9, {gib}: spawn to ListOffsets of all partitions (ms)"
    lost = bv.get(f"restart after kill -9, {gib}: records lost (acknowledged - end offsets)")
    note = "" if RESTART_GB >= 10 else f" (measured with {gib}, not 10 GB)"
    out.append(("restart after kill -9 with 10 GB under 2 s, nothing lost",
                f"{fmt(bv[key])} ms to ListOffsets, {fmt(lost)} records lost{note}" if key in bv else "—",
                verdict(None if key not in bv else bv[key] < 2000 and lost == 0)))
    n = MANY_PARTITIONS
    added = [bv.get(f"{n} partitions: RSS added by creating (MiB)"),
             bv.get(f"{n} partitions: RSS added, creating + load (MiB)")]
    idle = bv.get(f"idle CPU with {n} partitions, after the load (% of a core)")
    if None in added or idle is None:
        out.append((f"{n} partitions cost under 100 MB of RSS and no idle CPU", "—", verdict(None)))
    else:
        cost_mb = max(added) * MIB / 1e6
        out.append((f"{n} partitions cost under 100 MB of RSS and no idle CPU (taken as < 1% of a core)",
                    f"{cost_mb:.1f} MB (the larger of: added by creating, added by creating + load), "
                    f"idle CPU {idle:.2f}% of a core", verdict(cost_mb < 100 and idle < 1)))
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    return (f"{platform.node()} ({os.cpu_count()} cores, {platform.machine()}, {cpu_model()}, "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, Linux "
            f"{platform.release()}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def is_cluster_failure(failure: str) -> bool:
    return any(failure.startswith(cluster_kind(k) + " /") for k in ("blumfeld", "kafka"))


def report(figures: dict[str, Figures], machine: dict[str, float]) -> str:
    b, k = figures.get("blumfeld", Figures()), figures.get("kafka", Figures())
    keys = list(dict.fromkeys([*b.values, *k.values]))
    ceil = {"produce": machine.get(CEILING), "consume": machine.get("loopback TCP (MB/s)")}
    lines = [
        "# Blumfeld vs Apache Kafka",
        "",
        f"Command: `bench/run` on {machine_line()}, load average "
        f"{LOAD_AT_START[0]:.1f} at the start"
        + (f", BENCH_ONLY={','.join(ONLY)}" if set(ONLY) != set(WORKLOADS) else "") + ".",
        "",
        f"Broker pinned to CPU {BROKER_CPU}, load generators to CPU {CLIENT_CPU} (`taskset`). Load generators: "
        "Kafka's own ProducerPerformance / ConsumerPerformance / EndToEndLatency (kafka-tools 4.3.1, Java) and "
        "`blumfeld-loadgen` (bench/loadgen, librdkafka; its `raw-produce` is not a client but pre-built Produce "
        "requests replayed over one connection, to find the broker's own limit). "
        f"{RECORDS} records of {RECORD_BYTES} B per produce/consume run, {PARTITIONS} partitions, acks=all, "
        f"medians of {RUNS} runs; end-to-end latency at {E2E_RATE_MB:g} MB/s for {E2E_SECONDS} s per run; "
        f"{MANY_PARTITIONS} partitions with {MANY_PRODUCERS} producers and {MANY_RECORDS} records; restart with "
        f"{RESTART_GB:g} GiB of log (one run, warm page cache). Kafka 4.3.1 in KRaft combined mode from Maven "
        "Central jars (heap -Xms256m -Xmx1g); both with num.partitions=6, log.segment.bytes=1 GiB, "
        "group.initial.rebalance.delay.ms=0, log.segment.delete.delay.ms=0 and no fsync per message; the "
        "librdkafka and raw-produce topics are deleted after each run. MB = 2^20 bytes in throughput figures.",
        "",
        "| figure | Blumfeld | Kafka | Blumfeld / Kafka | share of ceiling (Blumfeld / Kafka) |",
        "|---|---:|---:|---:|---:|",
    ]
    for key in keys:
        bv, kv = b.values.get(key), k.values.get(key)
        r = ratio(bv, kv)
        c = ceil.get(b.ceiling.get(key) or k.ceiling.get(key) or "")
        share = f"{pct(bv / c if c and bv is not None else None)} / {pct(kv / c if c and kv is not None else None)}" \
            if c else ""
        lines.append(f"| {key} | {fmt(bv)} | {fmt(kv)} | {fmt(r)} | {share} |")
    lines += ["", "Share of ceiling: produce rows against the loopback + file-write ceiling, consume rows against "
              "loopback TCP. Lower is better for latency, RSS, CPU and time rows; higher for MB/s rows.", "",
              "## Machine ceilings (same run)", ""]
    lines += [f"- {key}: {v:.0f}" for key, v in machine.items()]
    if CEILING in machine:
        lines += ["", "Loopback: `blumfeld-loadgen blast` on CPU 1 into `blumfeld-loadgen sink` on CPU 0, 5 s. File "
                  "write: 1 GiB in 1 MiB blocks into the brokers' temp dir; the page-cache figure times the write "
                  "calls alone (the brokers run without fsync per message, so this is what they pay), the other "
                  "adds an fsync at the end (the device). Loopback + file write: both paid serially for the same "
                  "bytes, 1 / (1/loopback + 1/page-cache write); produce rows are shown as a share of it."]
    lines += ["", "## Targets (issue #5)", "", "| target | measured (Blumfeld) | verdict |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {v} |" for t, m, v in targets(b, k, machine)]
    failures = [x for x in FAILURES if not is_cluster_failure(x)]
    if failures:
        lines += ["", "## Workloads that failed in this run", ""] + [f"- {x}" for x in failures]
    return "\n".join(lines) + "\n"


def cluster_targets(b: Figures, k: Figures) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for the 3-node targets; verdicts computed from the figures."""
    bv, kv = b.values, k.values
    out: list[tuple[str, str, str]] = []

    def verdict(ok: bool | None) -> str:
        return "not measured" if ok is None else ("met" if ok else "not met")

    def ratios(prefix: str, suffix: str = "") -> list[tuple[str, float]]:
        pairs = [(key, ratio(bv[key], kv.get(key))) for key in bv if key.startswith(prefix) and key.endswith(suffix)
                 and "core busy" not in key]
        return [(key, r) for key, r in pairs if r is not None]

    def label(key: str) -> str:
        return key.split(", ", 1)[1].rstrip(")").replace(" (MB/s", "")

    for codec in CLUSTER_CODECS:
        pairs = ratios(f"produce {codec},", "(MB/s)")
        out.append((f"produce {codec} ≥ 2× Kafka's (every load generator)",
                    "; ".join(f"{label(key)}: {r:.2f}×" for key, r in pairs) or "—",
                    verdict(all(r >= 2 for _, r in pairs) if pairs else None)))
        pairs = ratios(f"{PinnedCluster.cpu_row} ({codec},")
        out.append((f"CPU of the 3 nodes per GB produced ≤ 0.25× Kafka's ({codec}, every load generator)",
                    "; ".join(f"{label(key)}: {r:.2f}×" for key, r in pairs) or "—",
                    verdict(all(r <= 0.25 for _, r in pairs) if pairs else None)))
    key = f"e2e at {CLUSTER_E2E_RATE_MB:g} MB/s: p99 (ms)"
    r = ratio(bv.get(key), kv.get(key))
    out.append((f"p99 end-to-end latency ≤ 0.5× Kafka's at {CLUSTER_E2E_RATE_MB:g} MB/s",
                f"{fmt(bv.get(key))} vs {fmt(kv.get(key))} ms = {r:.2f}×" if r is not None else "—",
                verdict(None if r is None else r <= 0.5)))
    key = f"{FAILOVER_ROW}: {FAILOVER_GAP}"
    gap, kafka_gap = bv.get(key), kv.get(key)
    gap = None if gap is not None and math.isnan(gap) else gap
    out.append(("unavailability after kill -9 of a partition leader ≤ 2 s (longest gap between acknowledgements "
                "of a partition)", f"{fmt(gap)} ms (Kafka: {fmt(kafka_gap)} ms)" if gap is not None else "—",
                verdict(None if gap is None else gap <= 2000)))
    key = next((x for x in bv if x.startswith("follower catch-up") and "rate, restart" in x), None)
    out.append(("catch-up rate of a restarted follower (no target: reported)",
                f"{fmt(bv.get(key))} MB/s (Kafka: {fmt(kv.get(key))} MB/s)" if key else "—", "reported"))
    key = next((x for x in bv if "idle CPU over" in x and x.startswith("3 nodes")), None)
    rss = next((x for x in bv if x.startswith("3 nodes: RSS added")), None)
    out.append((f"idle cost of {MANY_PARTITIONS} partitions × RF 3 (no target: reported)",
                f"{fmt(bv.get(key))}% of a core, +{fmt(bv.get(rss))} MiB over the 3 nodes (Kafka: "
                f"{fmt(kv.get(key))}%, +{fmt(kv.get(rss))} MiB)" if key and rss else "—", "reported"))
    return out


def cluster_report(figures: dict[str, Figures], load: tuple[float, float], seconds: float) -> str:
    b, k = figures.get("blumfeld", Figures()), figures.get("kafka", Figures())
    keys = list(dict.fromkeys([*b.values, *k.values]))
    codecs = " and ".join(CLUSTER_CODECS)
    only = f", BENCH_CLUSTER_ONLY={','.join(CLUSTER_ONLY)}" if set(CLUSTER_ONLY) != set(CLUSTER_WORKLOADS) else ""
    command = "bench/run" if "single" in SECTIONS else "BENCH_SECTIONS=cluster bench/run"
    lines = [
        CLUSTER_HEADING,
        "",
        f"Command: `{command}` on {machine_line()}{only}; load average {load[0]:.1f} at the start of the section "
        f"and {load[1]:.1f} at its end (the machine is shared); the section took {seconds / 60:.0f} min.",
        "",
        f"**Three nodes per broker, all three pinned to CPU {BROKER_CPU}; load generators and the driver on CPU "
        f"{CLIENT_CPU}** (`taskset`), the same two cores as the single-node section, so the three brokers share one "
        "core. Each node is controller + broker (`process.roles=broker,controller`, started as compat-tests/harness/"
        "cluster.py starts a combined cluster; Kafka 4.3.1 the same way through its launcher). Topics: replication "
        "factor 3, min.insync.replicas=2 (also both brokers' defaults), acks=all, 1 KiB records, "
        f"{PARTITIONS} partitions unless said otherwise; same settings as the single-node section otherwise.",
        "",
        f"- produce ({codecs}): the single-node produce workload into RF=3 topics, {RECORDS} records per run "
        f"({RAW_RECORDS} for raw-produce, whose topic has all {PARTITIONS} partitions led by node 1 as it speaks to "
        f"one broker), medians of {RUNS} runs. `CPU s of the 3 nodes per GB produced`: user + system CPU of the "
        "three nodes summed, over the GB (10^9 B) the client produced (each stored three times); `3 nodes' core "
        "busy`: that CPU over the run's wall time.",
        f"- e2e: librdkafka end-to-end latency at {CLUSTER_E2E_RATE_MB:g} MB/s, 3 s warm-up then {E2E_SECONDS} s, "
        f"medians of {RUNS} runs (no ping-pong rows here).",
        f"- kill -9 of a partition leader: `blumfeld-loadgen steady` at {FAILOVER_RATE_MB:g} MB/s, acks=all, writing "
        f"the {PARTITIONS} partitions round-robin; {FAILOVER_BEFORE_S:g} s after its first acknowledgement a node "
        "that leads some partitions and is not the active controller gets kill -9 (the quorum keeps its leader: "
        "only the partitions fail over); "
        f"{FAILOVER_SECONDS} s of producing in all. The figure is the longest time any one partition went without "
        "an acknowledgement, of the gaps that end after the kill (the longest gap between any two acknowledgements "
        "of the producer is shown too, as the partitions the node did not lead may keep acknowledging, and the "
        "longest partition gap before the kill, the noise floor). Measured the same way for both.",
        f"- follower catch-up: kill -9 of a node that follows every partition of a topic (and is not the active "
        f"controller), wait until it is out of every ISR, produce {CATCHUP_MB} MiB (2 librdkafka producers), "
        "restart it: time from the spawn to back in every ISR (Metadata polled every 20 ms), and the MiB over "
        "that time (also over the time from its `listening` line).",
        f"- idle: a fresh cluster, a 6-partition warm-up topic with 10,000 records, then each node's CPU over "
        f"{CLUSTER_IDLE_S:g} s idle and RSS, before and after creating {MANY_PARTITIONS} partitions × RF 3 (that "
        f"window starts {CLUSTER_SETTLE_S:g} s after every ISR is whole).",
        "",
        "| figure | Blumfeld | Kafka | Blumfeld / Kafka |",
        "|---|---:|---:|---:|",
    ]
    for key in keys:
        bv, kv = b.values.get(key), k.values.get(key)
        lines.append(f"| {key} | {fmt(bv)} | {fmt(kv)} | {fmt(ratio(bv, kv))} |")
    lines += ["", "### Targets (3 nodes, RF=3)", "", "| target | measured (Blumfeld) | verdict |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {v} |" for t, m, v in cluster_targets(b, k)]
    failures = [x for x in FAILURES if is_cluster_failure(x)]
    if failures:
        lines += ["", "### Workloads that failed in this run", ""] + [f"- {x}" for x in failures]
    return "\n".join(lines) + "\n"


def merge(old: str, single: str | None, cluster: str | None) -> str:
    """The new RESULTS.md: each section that ran replaces its part of `old`; one that did not
    keeps what `old` had (the single-node part is everything before CLUSTER_HEADING)."""
    at = old.find("\n" + CLUSTER_HEADING + "\n")
    old_single, old_cluster = (old, "") if at < 0 else (old[:at + 1], old[at + 1:])
    single = single if single is not None else (old_single or "# Blumfeld vs Apache Kafka\n")
    cluster = cluster if cluster is not None else old_cluster
    return single.rstrip("\n") + "\n" + (f"\n{cluster}" if cluster else "")


LOAD_AT_START = os.getloadavg()


def warm_page_cache(workdir: Path, gib: float) -> None:
    """Writes `gib` GiB into a file in the brokers' temp dir and deletes it. On a VM whose host
    backs guest memory only when first touched (and takes idle memory back), the first writes
    into the page cache cost several times more CPU than later ones: without this, whichever
    broker runs first pays for touching the memory both then use (measured with dd: 2 GiB took
    5.2 s of system time the first time, 0.8-1.1 s after)."""
    if gib <= 0:
        return
    t0 = time.monotonic()
    path = workdir / "warm-page-cache"
    block = b"\0" * (1 << 20)
    with open(path, "wb") as f:
        for _ in range(int(gib * 1024)):
            f.write(block)
    path.unlink()
    log(f"page cache warmed with {gib:g} GiB in {time.monotonic() - t0:.1f} s")


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="blumfeld-bench-"))
    single = cluster = None
    try:
        warm_page_cache(workdir, WARM_GIB)
        if "single" in SECTIONS:
            machine = ceilings() if "ceilings" in ONLY else {}
            figures = {}
            for kind in BROKERS:
                started = time.monotonic()
                figures[kind] = bench(kind, workdir)
                log(f"[{kind}] done in {time.monotonic() - started:.0f}s")
            single = report(figures, machine)
        if "cluster" in SECTIONS:
            load, started = os.getloadavg()[0], time.monotonic()
            figures = {}
            for kind in BROKERS:
                t0 = time.monotonic()
                figures[kind] = bench_cluster(kind, workdir)
                log(f"[{cluster_kind(kind)}] done in {time.monotonic() - t0:.0f}s")
            cluster = cluster_report(figures, (load, os.getloadavg()[0]), time.monotonic() - started)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = merge(OUT.read_text() if OUT.exists() else "", single, cluster)
    OUT.write_text(text)
    print(text)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["file-write"]:
        print(json.dumps(file_write_mb_per_s()))
        sys.exit(0)
    sys.exit(main())
