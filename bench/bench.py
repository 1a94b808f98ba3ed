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
Writes bench/RESULTS.md (or $BENCH_OUT); see bench/README.md for the BENCH_* variables.
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
from harness.wait import wait_until  # noqa: E402

import probe  # noqa: E402

TOOLS_LIB = COMPAT / "kafka-tools" / "target" / "lib"
LOADGEN = Path(os.environ.get("BENCH_LOADGEN", HERE / "loadgen" / "target" / "release" / "blumfeld-loadgen"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
RECORDS = int(os.environ.get("BENCH_RECORDS", "300000"))
RAW_RECORDS = int(os.environ.get("BENCH_RAW_RECORDS", "1000000"))
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

for w in ONLY:
    if w not in WORKLOADS:
        raise SystemExit(f"BENCH_ONLY: unknown workload {w!r}; known: {', '.join(WORKLOADS)}")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ processes and /proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PinnedBroker(BrokerProcess):
    """A broker on CPU 0, on a port fixed up front so that start-up can be timed by polling the
    port itself (the log line is only read afterwards, never as the clock)."""

    def __init__(self, workdir: Path, kind: str, overrides: dict[str, str] | None = None):
        port = free_port()
        super().__init__(workdir, {**COMMON, **(overrides or {}), "listeners": f"PLAINTEXT://127.0.0.1:{port}"},
                         kind=kind)
        self.host, self.port = "127.0.0.1", port

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
        """The broker's processes: everything in its process group except, for Kafka, the Python
        launcher that leads the group (only the JVM is the broker)."""
        assert self.proc is not None
        pgid = self.proc.pid
        out = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if int(fields[2]) == pgid and not (self.kind == "kafka" and int(entry.name) == pgid):
                        out.append(int(entry.name))
                except (OSError, IndexError, ValueError):
                    pass
        return out

    def rss(self, pids: list[int] | None = None) -> int:
        total = 0
        for pid in self.pids() if pids is None else pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def cpu(self) -> float:
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                pass
        return total / ticks


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


def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> float:
    """Creates a topic (returns when every partition has a leader); returns the seconds it took."""
    t0 = time.monotonic()
    loadgen("create", "--bootstrap", bootstrap, "--topic", topic, "--partitions", str(partitions), timeout_s=300)
    return time.monotonic() - t0


# ------------------------------------------------------------------ load generators


def pp_produce(bootstrap: str, topic: str, codec: str) -> float:
    out = tool("org.apache.kafka.tools.ProducerPerformance", "--topic", topic, "--num-records", str(RECORDS),
               "--record-size", str(RECORD_BYTES), "--throughput", "-1", "--producer-props",
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


def workload(kind: str, name: str, fn, *args) -> None:
    """Runs one workload; a failure is logged and reported in RESULTS.md, the others still run."""
    if name not in ONLY:
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


def produce(broker: PinnedBroker, f: Figures) -> None:
    gb = RECORDS * RECORD_BYTES / 1e9
    for codec in ("none", "lz4"):
        runs, cpu = [], 0.0
        for i in range(RUNS):
            topic = f"bench-{codec}-{i}"
            create_topic(broker.bootstrap, topic)
            before = broker.cpu()
            runs.append(pp_produce(broker.bootstrap, topic, codec))
            cpu += broker.cpu() - before
        f.add(f"produce {codec}, ProducerPerformance (MB/s)", statistics.median(runs), "produce")
        f.add(f"broker CPU s per GB produced ({codec}, ProducerPerformance)", cpu / (RUNS * gb))
    for codec in ("none", "lz4"):
        for producers in (1, 2):
            label = f"librdkafka, {producers} producer{'s' if producers > 1 else ''}"
            loadgen_produce_runs(broker, f, codec, label, f"lg-{codec}-p{producers}",
                                 lambda topic: lg_produce(broker.bootstrap, topic, RECORDS, codec, producers))
    # Not a client: the same pre-built Produce requests sent again and again, so the broker's
    # core is the limit, not the load generator's (one librdkafka producer saturates its core
    # first against Blumfeld).
    for codec in ("none", "lz4"):
        loadgen_produce_runs(
            broker, f, codec, "raw protocol, pre-built batches", f"raw-{codec}",
            lambda topic: loadgen("raw-produce", "--bootstrap", broker.bootstrap, "--topic", topic, "--records",
                                  str(RAW_RECORDS), "--record-size", str(RECORD_BYTES), "--compression", codec,
                                  "--batch-bytes", "262144", "--in-flight", "4"))


def loadgen_produce_runs(broker: PinnedBroker, f: "Figures", codec: str, label: str, topic_prefix: str,
                         produce_into) -> None:
    """RUNS runs of `produce_into(topic)` (a load generator call returning its JSON), each into a
    new topic deleted afterwards: median MB/s, broker CPU per GB and the busy rows."""
    runs, cpu, total, busy = [], 0.0, 0, []
    for i in range(RUNS):
        topic = f"{topic_prefix}-{i}"
        create_topic(broker.bootstrap, topic)
        before, t0 = broker.cpu(), time.monotonic()
        res = produce_into(topic)
        run_cpu, wall = broker.cpu() - before, time.monotonic() - t0
        cpu += run_cpu
        busy.append((res["client_cpu_s"] / wall, run_cpu / wall))
        runs.append(res["mb_per_s"])
        total += res["bytes"]
        delete_topic(broker.bootstrap, topic)
    f.add(f"produce {codec}, {label} (MB/s)", statistics.median(runs), "produce")
    f.add(f"broker CPU s per GB produced ({codec}, {label})", cpu / (total / 1e9))
    add_busy(f, f"produce {codec}, {label}", busy)


def add_busy(f: "Figures", label: str, busy: list[tuple[float, float]]) -> None:
    """Rows saying which core was the limit: each side's CPU time over the run's wall time
    (process start to exit for the load generator, so a little start-up is included)."""
    f.add(f"{label}: load generator's core busy (%)", 100 * statistics.median(b[0] for b in busy))
    f.add(f"{label}: broker's core busy (%)", 100 * statistics.median(b[1] for b in busy))


def ensure_warm_topics(broker: PinnedBroker) -> None:
    """The consume workload reads the ProducerPerformance topics; writes them if produce was skipped."""
    if "produce" in ONLY:
        return
    for i in range(RUNS):
        create_topic(broker.bootstrap, f"bench-none-{i}")
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


def e2e(broker: PinnedBroker, f: Figures) -> None:
    runs = []
    for i in range(RUNS):
        topic = f"e2e-{i}"
        create_topic(broker.bootstrap, topic)
        res = loadgen("e2e", "--bootstrap", broker.bootstrap, "--topic", topic, "--rate-mb-per-s", f"{E2E_RATE_MB:g}",
                      "--seconds", str(E2E_SECONDS), "--record-size", str(RECORD_BYTES), "--warmup-seconds", "3",
                      "--linger-ms", "1", "--acks", "all", timeout_s=E2E_SECONDS + 120)
        log(f"  e2e run {i}: {res}")
        runs.append(res)
    rate = f"{E2E_RATE_MB:g} MB/s"
    f.add(f"e2e at {rate}: achieved rate (MB/s)", statistics.median(r["achieved_mb_per_s"] for r in runs))
    f.add(f"e2e at {rate}: p50 (ms)", statistics.median(r["p50_ms"] for r in runs))
    f.add(f"e2e at {rate}: p99 (ms)", statistics.median(r["p99_ms"] for r in runs))
    f.add(f"e2e at {rate}: p99.9 (ms)", statistics.median(r["p999_ms"] for r in runs))
    f.add(f"e2e at {rate}: max over all runs (ms)", max(r["max_ms"] for r in runs))
    f.extra["e2e p99.9 worst run (ms)"] = max(r["p999_ms"] for r in runs)
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
        create_topic(broker.bootstrap, "warm-up")  # one 6-partition topic and a produce first, so that
        lg_produce(broker.bootstrap, "warm-up", 10000)  # the delta below is the partitions, not first use
        idle_before = idle_cpu_percent(broker)
        rss_before = broker.rss()
        created_s = create_topic(broker.bootstrap, "many", n)
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
        create_topic(broker.bootstrap, "restart")
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


def report(figures: dict[str, Figures], machine: dict[str, float]) -> str:
    b, k = figures.get("blumfeld", Figures()), figures.get("kafka", Figures())
    keys = list(dict.fromkeys([*b.values, *k.values]))
    ceil = {"produce": machine.get(CEILING), "consume": machine.get("loopback TCP (MB/s)")}
    lines = [
        "# Blumfeld vs Apache Kafka",
        "",
        f"Command: `bench/run` on {platform.node()} ({os.cpu_count()} cores, {platform.machine()}, "
        f"{cpu_model()}, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f}"
        f" GiB RAM, Linux {platform.release()}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
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
    if FAILURES:
        lines += ["", "## Workloads that failed in this run", ""] + [f"- {x}" for x in FAILURES]
    return "\n".join(lines) + "\n"


LOAD_AT_START = os.getloadavg()


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="blumfeld-bench-"))
    try:
        machine = ceilings() if "ceilings" in ONLY else {}
        figures = {}
        for kind in BROKERS:
            started = time.monotonic()
            figures[kind] = bench(kind, workdir)
            log(f"[{kind}] done in {time.monotonic() - started:.0f}s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = report(figures, machine)
    OUT.write_text(text)
    print(text)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["file-write"]:
        print(json.dumps(file_write_mb_per_s()))
        sys.exit(0)
    sys.exit(main())
