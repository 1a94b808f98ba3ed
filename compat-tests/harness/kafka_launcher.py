"""Runs Apache Kafka 4.x (KRaft, combined broker+controller, one node) behind Blumfeld's CLI.

    python -m harness.kafka_launcher --override log.dirs=DIR \
        --override listeners=PLAINTEXT://127.0.0.1:0 [--override key=value ...] [--config FILE]

It accepts the same arguments as `blumfeld`, formats the storage on first use, starts the JVM,
waits until a Metadata request is served, then prints `... listening on HOST:PORT` like Blumfeld
does.

Cluster mode: when the properties name `controller.quorum.voters`, they describe one node of a
multi-node cluster (harness.cluster writes them) and are used as given: `listeners` may list a
PLAINTEXT and a CONTROLLER listener, `compat.cluster.id` (removed before Kafka sees it) is the
cluster id every node is formatted with, and a controller-only node is ready once its
controller listener answers ApiVersions (it serves no Metadata). SIGTERM is forwarded to the JVM (clean shutdown, exit 0). Run it in its own process group:
SIGKILL on the group takes the JVM down with it, which is how the harness "kill -9"s it.

The jars come from `mvn dependency:copy-dependencies` in compat-tests/kafka-broker (target/lib),
or from $KAFKA_LIB_DIR. $KAFKA_HEAP_OPTS overrides the heap (default -Xms256m -Xmx1g).
This module is meant to be reused by benchmarks that put Kafka and Blumfeld side by side.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from . import wire

COMPAT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_LIB_DIR = COMPAT_DIR / "kafka-broker" / "target" / "lib"
READY_TIMEOUT_S = 120
PORTS_FILE = "compat-launcher-ports.json"  # Kafka ignores plain files in a log dir

LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def parse_properties(path: Path) -> dict[str, str]:
    props = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, _, value = line.partition("=")
        props[key.strip()] = value.strip()
    return props


def parse_listener(spec: str) -> tuple[str, str, int]:
    """'PLAINTEXT://127.0.0.1:0' -> ('PLAINTEXT', '127.0.0.1', 0). Only one listener is supported."""
    if "," in spec:
        raise SystemExit(f"kafka_launcher: only one listener is supported, got {spec!r}")
    name, _, rest = spec.partition("://")
    host, _, port = rest.rpartition(":")
    return name, host or "127.0.0.1", int(port)


def parse_named_listener(spec: str) -> tuple[str, tuple[str, int]]:
    """'CONTROLLER://127.0.0.1:9093' -> ('CONTROLLER', ('127.0.0.1', 9093))."""
    name, _, rest = spec.strip().partition("://")
    host, _, port = rest.rpartition(":")
    return name, (host or "127.0.0.1", int(port))


class KafkaLauncher:
    """One Kafka node on one log dir. `start()` returns once Metadata is served."""

    def __init__(self, props: dict[str, str], lib_dir: Path = DEFAULT_LIB_DIR):
        if "log.dirs" not in props:
            raise SystemExit("kafka_launcher: log.dirs is required")
        self.user_props = dict(props)
        self.log_dir = Path(props["log.dirs"]).resolve()
        self.lib_dir = Path(os.environ.get("KAFKA_LIB_DIR", lib_dir))
        if not any(self.lib_dir.glob("kafka_2.13-*.jar")):
            raise SystemExit(f"kafka_launcher: no kafka_2.13 jar in {self.lib_dir}; run "
                             "mvn -q -f compat-tests/kafka-broker/pom.xml dependency:copy-dependencies")
        self.proc: subprocess.Popen | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.controller_only = False

    # -- configuration

    def _ports(self, wanted_port: int) -> tuple[int, int]:
        """Broker and controller ports; reused across restarts of the same log dir when free."""
        saved_path = self.log_dir / PORTS_FILE
        saved = json.loads(saved_path.read_text()) if saved_path.exists() else {}
        broker = wanted_port
        if broker == 0:
            broker = saved.get("broker", 0)
            if not broker or not port_is_free(broker):
                broker = free_port()
        controller = saved.get("controller", 0)
        if not controller or not port_is_free(controller):
            controller = free_port()
            while controller == broker:
                controller = free_port()
        saved_path.write_text(json.dumps({"broker": broker, "controller": controller}))
        return broker, controller

    def _cluster_properties(self) -> dict[str, str]:
        props = dict(self.user_props)
        props.pop("compat.cluster.id", None)
        listeners = dict(parse_named_listener(x) for x in props["listeners"].split(","))
        roles = props.get("process.roles", "broker,controller")
        ready = listeners.get("PLAINTEXT") if "broker" in roles else listeners.get("CONTROLLER")
        if ready is None:
            raise SystemExit(f"kafka_launcher: no listener to probe in {props['listeners']!r}")
        self.host, self.port = ready
        self.controller_only = "broker" not in roles
        base = {
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "group.initial.rebalance.delay.ms": "0",
        }
        if "broker" in roles:
            base["inter.broker.listener.name"] = "PLAINTEXT"
        base.update(props)
        return base

    def _server_properties(self) -> dict[str, str]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if "controller.quorum.voters" in self.user_props:
            return self._cluster_properties()
        props = dict(self.user_props)
        _, host, wanted = parse_listener(props.pop("listeners", "PLAINTEXT://127.0.0.1:0"))
        self.host = host
        self.port, controller = self._ports(wanted)
        node_id = props.setdefault("node.id", "1")
        base = {
            "process.roles": "broker,controller",
            "controller.quorum.voters": f"{node_id}@{host}:{controller}",
            "controller.listener.names": "CONTROLLER",
            "listeners": f"PLAINTEXT://{host}:{self.port},CONTROLLER://{host}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{host}:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.log_dir),
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        base.update(props)
        return base

    def _java(self, main_class: str, *args: str, heap: str = "-Xms256m -Xmx1g") -> list[str]:
        log4j = self.log_dir.parent / f"{self.log_dir.name}.log4j2.properties"
        log4j.write_text(LOG4J2)
        return ["java", *heap.split(), "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{self.lib_dir}/*", main_class, *args]

    # -- lifecycle

    def start(self) -> tuple[str, int]:
        props = self._server_properties()
        props_path = self.log_dir.parent / f"{self.log_dir.name}.server.properties"
        props_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        if not (self.log_dir / "meta.properties").exists():
            cluster_id = self.user_props.get("compat.cluster.id") or \
                base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            # --cluster-id=ID: a random id may start with "-", which the tool's parser would
            # take for an option.
            subprocess.run(self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                                      "-c", str(props_path), "--ignore-formatted", heap="-Xmx256m"),
                           check=True, stdout=sys.stderr)
        heap = os.environ.get("KAFKA_HEAP_OPTS", "-Xms256m -Xmx1g")
        self.proc = subprocess.Popen(self._java("kafka.Kafka", str(props_path), heap=heap))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"kafka_launcher: Kafka exited with {self.proc.returncode} before ready")
            try:
                if self.controller_only:
                    if wire.api_versions(self.host, self.port, timeout_s=2):
                        return self.host, self.port
                elif wire.metadata_brokers(self.host, self.port, timeout_s=2):
                    return self.host, self.port
            except (OSError, wire.WireError):
                pass
            if time.monotonic() > deadline:
                self.proc.kill()
                raise SystemExit(f"kafka_launcher: not ready within {READY_TIMEOUT_S}s")
            time.sleep(0.1)  # polling interval of the readiness probe

    def stop(self, timeout_s: float = 60) -> int:
        """Clean shutdown (SIGTERM); returns 0 when the JVM shut down normally."""
        if self.proc is None or self.proc.poll() is not None:
            return 0 if self.proc is None else normalise_exit(self.proc.returncode)
        self.proc.send_signal(signal.SIGTERM)
        try:
            return normalise_exit(self.proc.wait(timeout_s))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return normalise_exit(self.proc.wait())


def normalise_exit(code: int) -> int:
    # The JVM reports death-by-SIGTERM after running its shutdown hooks as 143 (or -15).
    return 0 if code in (0, 143, -signal.SIGTERM) else code


def parse_args(argv: list[str]) -> dict[str, str]:
    ap = argparse.ArgumentParser(prog="kafka_launcher", description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path)
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    props = parse_properties(args.config) if args.config else {}
    for item in args.override:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--override needs KEY=VALUE, got {item!r}")
        props[key] = value
    return props


def main(argv: list[str] | None = None) -> int:
    launcher = KafkaLauncher(parse_args(sys.argv[1:] if argv is None else argv))
    stopping = False

    def on_term(signum, _frame):
        nonlocal stopping
        stopping = True
        if launcher.proc is not None and launcher.proc.poll() is None:
            launcher.proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    host, port = launcher.start()
    print(f"kafka (compat launcher) listening on {host}:{port}", flush=True)
    assert launcher.proc is not None
    code = launcher.proc.wait()
    return normalise_exit(code) if stopping else (code or 1)


if __name__ == "__main__":
    sys.exit(main())
