"""Kafka Streams with processing.guarantee=exactly_once_v2 against the broker (issue 11).

The application (compat-java streams-app) reads numbered records from a 3-partition input,
groups them by a new key (a repartition topic), aggregates count and sum per key into a
changelogged KTable and writes every update to the output topic. The test writes the input,
starts the application, kills it with -9 in the middle of the run and starts it again on the
same state directory, kills the broker with -9 in the middle of the second run and restarts it
on the same data; the application finishes once its committed offsets reach the input's end.
Then a read_committed consumer checks each input's effect is in the output exactly once (per
key the counts run 1, 2, 3, ... and the sums grow by each input once; the final totals match the
input), the committed offsets equal the input's end, the changelog is compacted and the
repartition topic was purged (DeleteRecords).

A second scenario runs two instances and freezes one (SIGSTOP) with a transaction open, past
its session timeout: the other takes over every task; the frozen one, resumed, still holds its
open transaction under the old group generation and must be fenced (its TxnOffsetCommit
rejected, the transaction aborted), not committed next to the new owner's (a transaction
timeout longer than the freeze leaves the generation as the only fence).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from harness.clients import JAVA_JAR, java_cmd, run_driver
from harness.wait import Abort, wait_until

# Kafka's coordinator aborts timed-out transactions on this interval (default 10 s).
BROKER_OVERRIDES = {"transaction.abort.timed.out.transaction.cleanup.interval.ms": "500"}
COUNT = 6000
# Inputs per second through the application: the run lasts long enough to be cut twice.
RATE = 600
RUN_DEADLINE_S = 150


class AppDied(Abort):
    pass


class StreamsApp:
    """One streams-app process and the progress it printed."""

    def __init__(self, name: str, args: list[str], log_dir: Path):
        assert JAVA_JAR.exists(), f"{JAVA_JAR} is missing: build it with compat-tests/run-all"
        self.name = name
        self.stdout_path = log_dir / f"{name}.stdout"
        self.stderr_path = log_dir / f"{name}.stderr"
        self.processed = 0
        self.running = 0
        self.caught_up = False
        self.tasks: frozenset[str] = frozenset()
        self.lines: list[str] = []
        self._lock = threading.Lock()
        cmd = java_cmd("streams-app", *args)
        # Streams' own log at INFO (to the stderr file): rebalances, restores, task migrations.
        cmd.insert(1, "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.streams=info")
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                         start_new_session=True)
        self._reader = threading.Thread(target=self._read, name=f"streams-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with open(self.stdout_path, "wb") as log:
            for raw in self.proc.stdout:
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace").rstrip("\n")
                with self._lock:
                    self.lines.append(line)
                    if line.startswith("PROCESSED "):
                        self.processed = int(line.split()[1])
                    elif line == "RUNNING":
                        self.running += 1
                    elif line.startswith("CAUGHT-UP"):
                        self.caught_up = True
                    elif line.startswith("TASKS"):
                        self.tasks = frozenset(t for t in line[len("TASKS"):].strip().split(",") if t)

    def progress(self, at_least: int) -> bool:
        if self.proc.poll() is not None:
            self._reader.join(5)
            raise AppDied(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
        with self._lock:
            return self.running > 0 and self.processed >= at_least

    def owns(self, tasks: frozenset[str]) -> bool:
        self.progress(0)
        with self._lock:
            return self.tasks == tasks

    def snapshot(self) -> tuple[frozenset[str], int]:
        with self._lock:
            return self.tasks, self.processed

    def pause(self) -> None:
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass

    def tail(self) -> str:
        with self._lock:
            out = "\n".join(self.lines[-30:])
        try:
            err = self.stderr_path.read_text(errors="replace")[-4000:]
        except OSError:
            err = "(no stderr)"
        return f"{out}\n--- stderr ---\n{err}"

    def kill9(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._reader.join(10)

    def wait_done(self, timeout_s: float) -> None:
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"{self.name} did not catch up within {timeout_s:.0f} s:\n{self.tail()}") from None
        self._reader.join(10)
        assert rc == 0 and self.caught_up, f"{self.name} exited with {rc}:\n{self.tail()}"


NAMES = ["--input", "st-in", "--output", "st-out", "--partitions", "3", "--groups", "7"]
# Subtopology 0 reads the input, 1 the repartition topic: 3 partitions each.
ALL_TASKS = frozenset(f"{s}_{p}" for s in range(2) for p in range(3))


def produce_input(bootstrap: str, count: int) -> None:
    out = run_driver(java_cmd("streams-setup", "--bootstrap", bootstrap, *NAMES, "--count", str(count)), timeout_s=120)
    assert f"produced {count}" in out, out


def verify(bootstrap: str, count: int) -> str:
    out = run_driver(java_cmd("streams-verify", "--bootstrap", bootstrap, "--app-id", "st-app", *NAMES,
                              "--count", str(count)), timeout_s=180)
    print(out[-3000:])
    assert f"ok streams records={count}" in out, out
    return out


def test_streams_exactly_once_survives_kill9_of_the_app_and_the_broker(broker_factory, tmp_path):
    broker = broker_factory.start(BROKER_OVERRIDES)
    t0 = time.monotonic()
    produce_input(broker.bootstrap, COUNT)
    app_args = ["--bootstrap", broker.bootstrap, "--app-id", "st-app", "--state-dir", str(tmp_path / "state"),
                "--rate", str(RATE), *NAMES]
    apps: list[StreamsApp] = []
    try:
        first = StreamsApp("app-1", app_args, tmp_path)
        apps.append(first)
        wait_until(lambda: first.progress(COUNT // 5), RUN_DEADLINE_S, "the first run to process a fifth of the input",
                   interval_s=0.02)
        first.kill9()
        t_app_killed = time.monotonic()

        second = StreamsApp("app-2", app_args, tmp_path)
        apps.append(second)
        wait_until(lambda: second.progress(COUNT // 5), RUN_DEADLINE_S, "the second run to process a fifth of the input",
                   interval_s=0.02)
        t_resumed = time.monotonic()
        broker.kill9()
        # Back on the same port: the running application only knows that address.
        broker.overrides["listeners"] = f"PLAINTEXT://127.0.0.1:{broker.port}"
        t_broker_killed = time.monotonic()
        broker.restart()
        broker.wait_metadata()
        t_broker_back = time.monotonic()
        second.wait_done(RUN_DEADLINE_S)
        t_done = time.monotonic()
    finally:
        for app in apps:
            if app.proc.poll() is None:
                app.kill9()
    verify(broker.bootstrap, COUNT)
    print(f"streams exactly_once_v2 ({broker.kind}): {COUNT} inputs in {t_done - t0:.1f} s; "
          f"after the app's kill -9 the second run processed {COUNT // 5} inputs {t_resumed - t_app_killed:.1f} s later; "
          f"broker down {t_broker_back - t_broker_killed:.1f} s; caught up {t_done - t_broker_back:.1f} s after its restart "
          f"(second run processed {second.processed} inputs); verified in {time.monotonic() - t_done:.1f} s")


def test_streams_a_frozen_instance_is_fenced_by_the_group_generation(broker_factory, tmp_path):
    broker = broker_factory.start(BROKER_OVERRIDES)
    count = 6000
    t0 = time.monotonic()
    produce_input(broker.bootstrap, count)

    def args(name: str) -> list[str]:
        return ["--bootstrap", broker.bootstrap, "--app-id", "st-app", "--state-dir", str(tmp_path / name),
                "--threads", "1", "--rate", "300", "--txn-timeout-ms", "60000", *NAMES]

    apps: list[StreamsApp] = []
    try:
        a = StreamsApp("inst-a", args("a"), tmp_path)
        apps.append(a)
        b = StreamsApp("inst-b", args("b"), tmp_path)
        apps.append(b)

        def both_working() -> bool:
            (ta, na), (tb, nb) = a.snapshot(), b.snapshot()
            return a.progress(400) and b.progress(400) and ta and tb and ta | tb == ALL_TASKS and not ta & tb

        wait_until(both_working, RUN_DEADLINE_S, "both instances to own tasks and process inputs", interval_s=0.02)
        frozen_tasks, frozen_at = a.snapshot()
        a.pause()
        t_paused = time.monotonic()
        wait_until(lambda: b.owns(ALL_TASKS), 60, "the live instance to take over every task", interval_s=0.02)
        t_taken = time.monotonic()
        a.resume()
        a.wait_done(RUN_DEADLINE_S)
        b.wait_done(RUN_DEADLINE_S)
        t_done = time.monotonic()
    finally:
        for app in apps:
            app.resume()
            if app.proc.poll() is None:
                app.kill9()
    verify(broker.bootstrap, count)
    fenced = sum(a.stderr_path.read_text(errors="replace").count(word)
                 for word in ("TaskMigratedException", "CommitFailedException"))
    print(f"streams exactly_once_v2 ({broker.kind}): froze an instance owning {sorted(frozen_tasks)} after "
          f"{frozen_at} inputs; the other owned every task {t_taken - t_paused:.1f} s later; {count} inputs in "
          f"{t_done - t0:.1f} s; the resumed instance logged {fenced} task-migrated/commit-failed exceptions")
