"""A broker process under test: Blumfeld (default) or Apache Kafka (BROKER=kafka).

Both are driven through the same command line (`--override key=value`, port 0 on 127.0.0.1) and
the same readiness line `listening on HOST:PORT`; Kafka goes through harness.kafka_launcher.
Each start writes its own log file in the work dir, so a restart never matches an old line.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import wire
from .wait import Abort, wait_until

COMPAT_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = COMPAT_DIR.parent
LISTENING_RE = re.compile(rb"listening on (\S+):(\d+)")
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60


def broker_kind() -> str:
    kind = os.environ.get("BROKER", "blumfeld").lower()
    if kind not in ("blumfeld", "kafka"):
        raise RuntimeError(f"BROKER must be blumfeld or kafka, got {kind!r}")
    return kind


def blumfeld_bin() -> Path:
    return Path(os.environ.get("BLUMFELD_BIN", REPO_ROOT / "target" / "release" / "blumfeld"))


class BrokerProcess:
    """One broker on one data dir; can be stopped, killed and started again on the same dir."""

    def __init__(self, workdir: Path, overrides: dict[str, str] | None = None, kind: str | None = None):
        self.kind = kind or broker_kind()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.overrides = dict(overrides or {})
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.host = ""
        self.port = 0
        self.log_path: Path | None = None
        # Extra environment of the broker process (e.g. BLUMFELD_SINGLE_NODE_QUORUM).
        self.env: dict[str, str] = {}

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        props = {"log.dirs": str(self.data_dir), "listeners": "PLAINTEXT://127.0.0.1:0",
                 "metrics.listener": "127.0.0.1:0", **self.overrides}
        args = [a for k, v in props.items() for a in ("--override", f"{k}={v}")]
        if self.kind == "kafka":
            return [sys.executable, "-m", "harness.kafka_launcher", *args]
        return [str(blumfeld_bin()), *args]

    def spawn(self) -> None:
        """Starts the process without waiting for readiness (see wait_listening)."""
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        self.starts += 1
        self.log_path = self.workdir / f"broker-{self.starts}.log"
        log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONPATH=str(COMPAT_DIR), RUST_BACKTRACE="1", **self.env)
        # Own process group: kill -9 of the group also takes the Kafka JVM child down.
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.workdir, env=env, start_new_session=True)
        log.close()

    def wait_listening(self, timeout_s: float = START_TIMEOUT_S) -> tuple[str, int]:
        def listening():
            assert self.log_path is not None and self.proc is not None
            m = LISTENING_RE.search(self.log_path.read_bytes())
            if m:
                return m.group(1).decode(), int(m.group(2))
            if self.proc.poll() is not None:
                raise BrokerDied(f"broker exited with {self.proc.returncode} before listening:\n{self.log_tail()}")
            return None

        try:
            self.host, self.port = wait_until(listening, timeout_s, "the broker's 'listening on' line")
        except BrokerDied:
            raise
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None
        return self.host, self.port

    def start(self, timeout_s: float = START_TIMEOUT_S) -> str:
        self.spawn()
        self.wait_listening(timeout_s)
        return self.bootstrap

    def wait_metadata(self, timeout_s: float = 30) -> None:
        wait_until(lambda: wire.metadata_brokers(self.host, self.port, timeout_s=2), timeout_s, "a served Metadata")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait; SIGKILL the group after the deadline. Returns the exit code (None: killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill9()
                return None
        self._reap_group()
        return self.proc.returncode

    def kill9(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._reap_group()

    def pause(self) -> None:
        """SIGSTOP the whole process group (a Kafka JVM is the launcher's child)."""
        assert self.proc is not None and self.proc.poll() is None, "broker not running"
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def _reap_group(self) -> None:
        # Whatever is left in the group (a JVM whose launcher died) must not outlive the test.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def restart(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Starts again on the same data dir (after stop() or kill9())."""
        return self.start(timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_bytes().decode(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class BrokerDied(Abort):
    pass


def time_to_metadata(broker: BrokerProcess, timeout_s: float = START_TIMEOUT_S) -> float:
    """Spawns the broker and returns seconds from spawn to the first served Metadata request."""
    t0 = time.monotonic()
    broker.spawn()
    broker.wait_listening(timeout_s)
    wait_until(lambda: wire.metadata_brokers(broker.host, broker.port, timeout_s=2), timeout_s,
               "a served Metadata", interval_s=0.005)
    return time.monotonic() - t0
