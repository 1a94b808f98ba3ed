"""Blumfeld vs Apache Kafka on this machine, one after the other, same load generator.

Run through `bench/run` (which sets things up). Workloads in this first slice:
- start-up: spawn to a served Metadata request, empty log;
- produce throughput: Kafka's ProducerPerformance, 1 KiB records, 6 partitions, acks=all,
  uncompressed and lz4, medians of RUNS;
- consume throughput from a warm log: Kafka's ConsumerPerformance, medians of RUNS;
- broker RSS idle and peak under the produce load, and broker CPU seconds per GB produced.
The broker is pinned to CPU 0 and the load generator to CPU 1 (`taskset`), so the figures
show what one core of broker does. Writes bench/RESULTS.md.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COMPAT = ROOT / "compat-tests"
sys.path.insert(0, str(COMPAT))

from harness.broker import BrokerProcess, time_to_metadata  # noqa: E402

TOOLS_LIB = COMPAT / "kafka-tools" / "target" / "lib"
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
RECORDS = int(os.environ.get("BENCH_RECORDS", "300000"))
RECORD_BYTES = 1024
PARTITIONS = 6
BROKER_CPU = "0"
CLIENT_CPU = "1"
COMMON = {"num.partitions": str(PARTITIONS), "log.segment.bytes": str(1 << 30)}


class PinnedBroker(BrokerProcess):
    def command(self) -> list[str]:
        return ["taskset", "-c", BROKER_CPU, *super().command()]


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid:
                    pids.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def rss_bytes(pgid: int) -> int:
    total = 0
    for pid in group_pids(pgid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def cpu_seconds(pgid: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in group_pids(pgid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / ticks


def tool(main_class: str, *args: str) -> str:
    cmd = ["taskset", "-c", CLIENT_CPU, "java", "-Xmx1g", "-cp", f"{TOOLS_LIB}/*", main_class, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{main_class} failed: {out.stderr[-2000:]}")
    return out.stdout


def produce(bootstrap: str, topic: str, codec: str) -> float:
    out = tool("org.apache.kafka.tools.ProducerPerformance", "--topic", topic, "--num-records", str(RECORDS),
               "--record-size", str(RECORD_BYTES), "--throughput", "-1", "--producer-props",
               f"bootstrap.servers={bootstrap}", "acks=all", f"compression.type={codec}", "linger.ms=5",
               "batch.size=262144")
    m = re.findall(r"records sent, [\d.]+ records/sec \(([\d.]+) MB/sec\)", out)
    if not m:
        raise RuntimeError(f"no summary in ProducerPerformance output:\n{out[-1000:]}")
    return float(m[-1])


def consume(bootstrap: str, topic: str) -> tuple[float, float]:
    """(MB/s over the whole run including the group join, MB/s while fetching)."""
    out = tool("org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", bootstrap, "--topic", topic,
               "--messages", str(RECORDS), "--timeout", "60000")
    rows = [line.split(",") for line in out.splitlines() if line and line[0].isdigit()]
    if not rows:
        raise RuntimeError(f"no result row in ConsumerPerformance output:\n{out[-1000:]}")
    return float(rows[-1][3]), float(rows[-1][8])


def ceilings() -> dict[str, float]:
    """Sequential file write (fsync at the end) in MB/s, as the machine's disk ceiling."""
    with tempfile.NamedTemporaryFile(dir=HERE) as f:
        block = os.urandom(1 << 20)
        t0 = time.monotonic()
        for _ in range(1024):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
        disk = 1024 / (time.monotonic() - t0)
    return {"file write MB/s": disk}


def bench(kind: str, workdir: Path) -> dict[str, float]:
    broker = PinnedBroker(workdir / kind, COMMON, kind=kind)
    results: dict[str, float] = {}
    results["start-up to Metadata (ms)"] = time_to_metadata(broker, 120) * 1000
    assert broker.proc is not None
    pgid = os.getpgid(broker.proc.pid)
    time.sleep(2)  # settle before the idle reading (a measurement, not synchronisation)
    results["RSS idle (MiB)"] = rss_bytes(pgid) / 2**20
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes(pgid))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        for codec in ("none", "lz4"):
            runs = []
            cpu_before = cpu_seconds(pgid)
            for i in range(RUNS):
                runs.append(produce(broker.bootstrap, f"bench-{codec}-{i}", codec))
            cpu = cpu_seconds(pgid) - cpu_before
            results[f"produce {codec} (MB/s)"] = statistics.median(runs)
            gb = RUNS * RECORDS * RECORD_BYTES / 1e9
            results[f"broker CPU s per GB produced ({codec})"] = cpu / gb
        consumed = [consume(broker.bootstrap, f"bench-none-{i}") for i in range(RUNS)]
        results["consume warm, incl. group join (MB/s)"] = statistics.median(c[0] for c in consumed)
        results["consume warm, fetching only (MB/s)"] = statistics.median(c[1] for c in consumed)
    finally:
        stop.set()
        sampler.join()
        results["RSS peak under load (MiB)"] = peak[0] / 2**20
        broker.stop()
    return results


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="blumfeld-bench-"))
    machine = ceilings()
    figures = {kind: bench(kind, workdir) for kind in ("blumfeld", "kafka")}
    lines = [
        "# Blumfeld vs Apache Kafka",
        "",
        f"Command: `bench/run` on {platform.node()} ({os.cpu_count()} cores, {platform.machine()}), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Broker pinned to CPU {BROKER_CPU}, "
        f"load generator (Kafka's ProducerPerformance / ConsumerPerformance from kafka-tools) to CPU "
        f"{CLIENT_CPU}. {RECORDS} records of {RECORD_BYTES} B per run, {PARTITIONS} partitions, acks=all, "
        f"medians of {RUNS} runs. Kafka 4.3.1 in KRaft combined mode from Maven Central jars; both with "
        "num.partitions=6, log.segment.bytes=1 GiB and no fsync per message.",
        "",
        "| figure | Blumfeld | Kafka | Blumfeld / Kafka |",
        "|---|---:|---:|---:|",
    ]
    for key in figures["blumfeld"]:
        b, k = figures["blumfeld"][key], figures["kafka"].get(key, float("nan"))
        ratio = b / k if k else float("nan")
        lines.append(f"| {key} | {b:.1f} | {k:.1f} | {ratio:.2f} |")
    lines += ["", "Machine ceilings measured in the same run:", ""]
    lines += [f"- {k}: {v:.0f}" for k, v in machine.items()]
    produce_none = figures["blumfeld"]["produce none (MB/s)"]
    lines += [f"- Blumfeld uncompressed produce as a fraction of the file-write ceiling: "
              f"{produce_none / machine['file write MB/s']:.0%}", ""]
    lines += ["Not measured yet: end-to-end latency at a fixed rate, 1,000 partitions, restart after kill -9 "
              "with 10 GB, a librdkafka-based load generator, the loopback ceiling.", ""]
    text = "\n".join(lines)
    (HERE / "RESULTS.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
