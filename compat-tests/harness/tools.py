"""Apache Kafka's command-line tools (the kafka-tools jar fetched into compat-tests/kafka-tools),
run the way `bin/kafka-*.sh` runs them: `java -cp <jars> <main class> args...`."""

from __future__ import annotations

import functools
import re
import subprocess
import tempfile

from .clients import COMPAT_DIR

TOOL_LIB = COMPAT_DIR / "kafka-tools" / "target" / "lib"
TOOL_TIMEOUT_S = 120

METADATA_QUORUM = "org.apache.kafka.tools.MetadataQuorumCommand"
TOPICS = "org.apache.kafka.tools.TopicCommand"
CLUSTER = "org.apache.kafka.tools.ClusterTool"


def tool_process(main_class: str, *args: str, timeout_s: float = TOOL_TIMEOUT_S,
                 jar: str = "kafka-tools-*.jar") -> subprocess.CompletedProcess:
    """Runs one tool to completion and returns the finished process (text output captured).
    `jar` names the jar the main class lives in (kafka-configs' is in Kafka's core jar)."""
    if not any(TOOL_LIB.glob(jar)):
        raise AssertionError(f"no {jar} in {TOOL_LIB}: run compat-tests/run-all (or mvn -q -f "
                             "compat-tests/kafka-tools/pom.xml dependency:copy-dependencies)")
    cmd = ["java", "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", f"{TOOL_LIB}/*",
           main_class, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)


def run_tool(main_class: str, *args: str, timeout_s: float = TOOL_TIMEOUT_S, check: bool = True) -> str:
    """Runs one tool to completion; returns stdout. With `check`, a non-zero exit or an
    `Error` line (some tools report failures on stdout with exit 0) fails the test."""
    proc = tool_process(main_class, *args, timeout_s=timeout_s)
    out = proc.stdout + proc.stderr
    name = main_class.rsplit(".", 1)[-1]
    if check:
        assert proc.returncode == 0, f"{name} {' '.join(args)} exited {proc.returncode}:\n{out[-4000:]}"
        assert not re.search(r"^Error", proc.stdout, re.M), f"{name} {' '.join(args)}:\n{out[-4000:]}"
    return proc.stdout


@functools.cache
def admin_config(api_timeout_ms: int) -> str:
    """A `--command-config` file bounding the tool's AdminClient calls: a call made before the
    quorum has a leader then fails fast instead of waiting out the 60 s default."""
    f = tempfile.NamedTemporaryFile("w", suffix=".properties", delete=False)
    f.write(f"default.api.timeout.ms={api_timeout_ms}\nrequest.timeout.ms={min(api_timeout_ms, 30000)}\n")
    f.close()
    return f.name


def quorum_status(*bootstrap_args: str, api_timeout_ms: int = 10_000) -> dict[str, str]:
    """`kafka-metadata-quorum describe --status` as a dict of its `Key: value` lines."""
    out = run_tool(METADATA_QUORUM, *bootstrap_args, "--command-config", admin_config(api_timeout_ms),
                   "describe", "--status")
    status = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and " " not in key.strip():
            status[key.strip()] = value.strip()
    return status


def quorum_replication(*bootstrap_args: str, api_timeout_ms: int = 10_000) -> list[dict[str, str]]:
    """`kafka-metadata-quorum describe --replication` as one dict per row, keyed by the header."""
    out = run_tool(METADATA_QUORUM, *bootstrap_args, "--command-config", admin_config(api_timeout_ms),
                   "describe", "--replication")
    lines = [line for line in out.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0].split()
    return [dict(zip(header, line.split())) for line in lines[1:]]


def describe_partitions(bootstrap: str, topic: str, api_timeout_ms: int = 10_000) -> dict[int, dict]:
    """`kafka-topics --describe --topic T` (Kafka 4.x asks DescribeTopicPartitions first) as
    partition -> {"leader": id or -1, "isr": [...], "elr": [...] or None, "last_known_elr":
    [...] or None}; None stands for the tool's `N/A` (a broker that answered with Metadata)."""
    out = run_tool(TOPICS, "--bootstrap-server", bootstrap, "--command-config", admin_config(api_timeout_ms),
                   "--describe", "--topic", topic)

    def ids(text: str | None) -> list[int] | None:
        if text is None or text.strip() == "N/A":
            return None
        return [int(x) for x in text.split(",") if x.strip()]

    partitions = {}
    for line in out.splitlines():
        fields = {}
        for cell in line.strip().split("\t"):
            key, sep, value = cell.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if "Partition" not in fields:
            continue
        leader = fields.get("Leader", "none")
        partitions[int(fields["Partition"])] = {
            "leader": -1 if leader == "none" else int(leader),
            "isr": ids(fields.get("Isr", "")) or [],
            "elr": ids(fields.get("Elr")),
            "last_known_elr": ids(fields.get("LastKnownElr")),
        }
    return partitions
