"""Consumer-group members as processes, a paced producer, and the checks of a group scenario.

Every member (Java/Go drivers' `group-consume`, harness.group_member for the Python clients)
reports on stdout, one line per event, flushed before it moves on:

    OWNED 0,3,5          partitions owned after each rebalance callback (full set, may be empty)
    R 3 117              record at partition 3, offset 117 was processed
    COMMITTED 3:118,5:40 a synchronous commit of these next-offsets succeeded
    COMMIT-RETRY why     a commit hit a rebalance; revocation commits those offsets again
    COMMIT-FAILED why    a commit failed (records may be delivered again elsewhere)
    LOST 0,3             partitions lost without a chance to commit
    CLOSED               left the group and closed cleanly

Closing a member's stdin asks it to commit, leave the group and exit 0. Records are printed
before they are committed, so after a SIGKILL everything a member printed past its last
COMMITTED for a partition may legitimately reach another member again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from confluent_kafka import Producer

from .clients import GO_BIN, JAVA_JAR, go_cmd, java_cmd
from .wait import Abort, wait_until

COMPAT_DIR = Path(__file__).resolve().parent.parent
SESSION_TIMEOUT_MS = 6000  # the broker's default group.min.session.timeout.ms


def member_cmd(client: str, bootstrap: str, topic: str, group: str, client_id: str,
               session_timeout_ms: int = SESSION_TIMEOUT_MS, instance_id: str | None = None) -> list[str]:
    common = ["--bootstrap", bootstrap, "--topic", topic, "--group", group, "--client-id", client_id]
    if client in ("java-classic", "java-consumer"):
        protocol = client.partition("-")[2]
        args = [*common, "--protocol", protocol, "--session-timeout-ms", str(session_timeout_ms)]
        if instance_id is not None:
            args += ["--instance-id", instance_id]
        return java_cmd("group-consume", *args)
    assert instance_id is None, "static membership is wired for the Java driver only"
    if client == "franz-go":
        return go_cmd("group-consume", *common, "--session-timeout-ms", str(session_timeout_ms))
    if client in ("confluent", "kafka-python"):
        return [sys.executable, "-m", "harness.group_member", client, *common,
                "--session-timeout-ms", str(session_timeout_ms)]
    raise ValueError(f"unknown client {client!r}")


class MemberFailed(Abort):
    pass


class Member:
    """One group member process and what it has reported so far."""

    def __init__(self, name: str, cmd: list[str], log_dir: Path):
        for path in (JAVA_JAR, GO_BIN):
            if str(path) in cmd and not path.exists():
                raise AssertionError(f"{path} is missing: build it with compat-tests/run-all")
        self.name = name
        self.stderr_path = log_dir / f"member-{name}.stderr"
        self.stdout_path = log_dir / f"member-{name}.stdout"
        self._lock = threading.Lock()
        self.records: list[tuple[int, int]] = []
        self.owned: frozenset[int] = frozenset()
        self.owned_reports = 0  # OWNED lines: one per rebalance callback
        self.committed: dict[int, int] = {}
        self.failures: list[str] = []
        self.closed = False
        self.killed = False
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                         cwd=COMPAT_DIR, start_new_session=True,
                                         env=dict(os.environ, PYTHONPATH=str(COMPAT_DIR)))
        self._reader = threading.Thread(target=self._read, name=f"member-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with open(self.stdout_path, "wb") as log:
            for raw in self.proc.stdout:
                log.write(raw)
                self._parse(raw.decode(errors="replace").rstrip("\n"))

    def _parse(self, line: str) -> None:
        kind, _, rest = line.partition(" ")
        with self._lock:
            if kind == "R":
                p, o = rest.split()
                self.records.append((int(p), int(o)))
            elif kind == "OWNED":
                self.owned = frozenset(int(p) for p in rest.split(",") if p)
                self.owned_reports += 1
            elif kind == "COMMITTED":
                for item in rest.split(","):
                    p, o = item.split(":")
                    self.committed[int(p)] = int(o)
            elif kind in ("COMMIT-FAILED", "FETCH-ERROR"):
                self.failures.append(line)
            elif kind == "CLOSED":
                self.closed = True

    # -- queries (safe from the test thread)

    def snapshot(self) -> tuple[frozenset[int], int]:
        """(partitions owned, records processed so far)."""
        with self._lock:
            return self.owned, len(self.records)

    def processed(self) -> list[tuple[int, int]]:
        with self._lock:
            return list(self.records)

    def commits(self) -> dict[int, int]:
        """Partition -> the highest next-offset this member committed successfully."""
        with self._lock:
            return dict(self.committed)

    def check_alive(self) -> None:
        if self.proc.poll() is not None and not self.killed and not self.closed:
            self._reader.join(5)
            raise MemberFailed(f"member {self.name} exited with {self.proc.returncode}:\n{self.stderr_tail()}")

    def stderr_tail(self, chars: int = 4000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no stderr)"

    # -- lifecycle

    def close(self, timeout_s: float = 60) -> None:
        """Clean leave: stdin EOF, the member commits, closes and exits 0."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"member {self.name} did not close within {timeout_s}s:\n{self.stderr_tail()}")
        self._reader.join(10)
        assert rc == 0 and self.closed, f"member {self.name} closed with exit {rc}:\n{self.stderr_tail()}"

    def kill9(self) -> None:
        self.killed = True
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._reader.join(10)

    def ensure_gone(self) -> None:
        if self.proc.poll() is None:
            self.kill9()


class PacedProducer:
    """Produces values "0", "1", ... from a thread, message i to partition i % partitions, at
    about `rate` messages per second, until `limit` messages (see stop_at); records (partition,
    offset) of every acknowledgement."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, limit: int, rate: float):
        self.topic, self.partitions, self.limit, self.rate = topic, partitions, limit, rate
        self.acked: set[tuple[int, int]] = set()
        self.errors: list[str] = []
        self.sent = 0
        self._producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                                   "enable.idempotence": True})
        self._thread = threading.Thread(target=self._run, name="paced-producer", daemon=True)

    def start(self) -> PacedProducer:
        self._thread.start()
        return self

    def stop_at(self, n: int) -> None:
        """Ends the stream after n messages (or right away if n were already sent)."""
        self.limit = n

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.errors.append(str(err))
        else:
            self.acked.add((msg.partition(), msg.offset()))

    def _run(self) -> None:
        t0 = time.monotonic()
        i = 0
        while i < self.limit:
            # Pacing the stream is the point here, not synchronisation: membership changes are
            # meant to happen while messages keep arriving.
            ahead_s = t0 + i / self.rate - time.monotonic()
            if ahead_s > 0:
                time.sleep(ahead_s)
            while True:
                try:
                    self._producer.produce(self.topic, value=str(i).encode(), partition=i % self.partitions,
                                           on_delivery=self._on_delivery)
                    break
                except BufferError:
                    self._producer.poll(0.05)
            i += 1
            self.sent = i
            self._producer.poll(0)
        self._producer.flush(60)
        self._producer = None  # librdkafka's threads go with the last reference

    def wait_sent(self, n: int, timeout_s: float = 120) -> None:
        wait_until(lambda: self.sent >= n, timeout_s, f"{n} messages sent")

    def join(self, timeout_s: float = 120) -> set[tuple[int, int]]:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"producer still running after {timeout_s}s"
        assert not self.errors, f"delivery errors: {self.errors[:5]}"
        assert len(self.acked) == self.sent, f"{len(self.acked)} of {self.sent} acknowledged"
        return set(self.acked)


def check_members(members: list[Member]) -> None:
    for m in members:
        m.check_alive()


def balanced(members: list[Member], partitions: int) -> bool:
    """Every member owns something, no partition twice, every partition once."""
    owned = [m.snapshot()[0] for m in members]
    union = frozenset().union(*owned)
    return all(owned) and sum(map(len, owned)) == partitions and union == frozenset(range(partitions))


def wait_balanced(live: list[Member], everyone: list[Member], partitions: int, timeout_s: float, what: str) -> None:
    def condition():
        check_members(everyone)
        return balanced(live, partitions)

    try:
        wait_until(condition, timeout_s, what)
    except MemberFailed:
        raise
    except AssertionError as exc:
        owned = {m.name: sorted(m.snapshot()[0]) for m in everyone}
        raise AssertionError(f"{exc}; owned now: {owned}") from None


def wait_progress(live: list[Member], everyone: list[Member], timeout_s: float, what: str) -> None:
    """Every live member processes at least one more record than it had processed so far."""
    before = {m.name: m.snapshot()[1] for m in live}

    def condition():
        check_members(everyone)
        return all(m.snapshot()[1] > before[m.name] for m in live)

    try:
        wait_until(condition, timeout_s, what)
    except MemberFailed:
        raise
    except AssertionError as exc:
        now = {m.name: (sorted(m.snapshot()[0]), m.snapshot()[1]) for m in everyone}
        raise AssertionError(f"{exc}; (owned, processed) now: {now}") from None


def wait_consumed(members: list[Member], expected: set[tuple[int, int]], timeout_s: float) -> None:
    def condition():
        check_members(members)
        seen = set()
        for m in members:
            seen.update(m.processed())
        return expected <= seen

    try:
        wait_until(condition, timeout_s, f"all {len(expected)} messages consumed")
    except MemberFailed:
        raise
    except AssertionError as exc:
        seen = set().union(*(m.processed() for m in members))
        missing = sorted(expected - seen)
        raise AssertionError(f"{exc}: {len(missing)} missing, e.g. {missing[:10]}; "
                             f"owned: {({m.name: sorted(m.snapshot()[0]) for m in members})}") from None


def check_delivery(members: list[Member], produced: set[tuple[int, int]]) -> dict:
    """No loss, nothing foreign, and no record processed twice, except records a SIGKILLed member
    processed after its last commit on that partition (the at-least-once window of a crash)."""
    records = {m.name: m.processed() for m in members}
    counts: Counter[tuple[int, int]] = Counter()
    for recs in records.values():
        counts.update(recs)
    consumed = set(counts)
    missing = sorted(produced - consumed)
    assert not missing, f"{len(missing)} produced messages never consumed, e.g. {missing[:10]}"
    foreign = sorted(consumed - produced)
    assert not foreign, f"consumed records that were never acknowledged, e.g. {foreign[:10]}"
    # A killed member's transcript ends with the kill, so its `committed` is what it had committed.
    uncommitted: Counter[tuple[int, int]] = Counter()
    for m in members:
        if m.killed:
            committed = m.commits()
            uncommitted.update({(p, o) for p, o in records[m.name] if o >= committed.get(p, 0)})
    dups = {rec: n for rec, n in counts.items() if n > 1}
    bad = sorted(rec for rec, n in dups.items() if n - uncommitted[rec] > 1)
    if bad:
        who = {rec: [name for name, recs in records.items() if rec in recs] for rec in bad[:10]}
        raise AssertionError(f"{len(bad)} records processed more than once outside a killed member's "
                             f"uncommitted window, e.g. {who}")
    failures = {m.name: m.failures[:3] for m in members if m.failures}
    return {"records": len(produced), "processed_twice": len(dups), "commit_failures": failures}
