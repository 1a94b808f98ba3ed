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

    def progress(self, at_least: int) -> bool:
        if self.proc.poll() is not None:
            self._reader.join(5)
            raise AppDied(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
        with self._lock:
            return self.running > 0 and self.processed >= at_least

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


def test_streams_exactly_once_survives_kill9_of_the_app_and_the_broker(broker_factory, tmp_path):
    broker = broker_factory.start(BROKER_OVERRIDES)
    names = ["--input", "st-in", "--output", "st-out", "--partitions", "3", "--groups", "7"]
    t0 = time.monotonic()
    out = run_driver(java_cmd("streams-setup", "--bootstrap", broker.bootstrap, *names, "--count", str(COUNT)),
                     timeout_s=120)
    assert f"produced {COUNT}" in out, out
    app_args = ["--bootstrap", broker.bootstrap, "--app-id", "st-app", "--state-dir", str(tmp_path / "state"),
                "--rate", str(RATE), *names]
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
    out = run_driver(java_cmd("streams-verify", "--bootstrap", broker.bootstrap, "--app-id", "st-app", *names,
                              "--count", str(COUNT)), timeout_s=180)
    print(out[-3000:])
    assert f"ok streams records={COUNT}" in out, out
    print(f"streams exactly_once_v2 ({broker.kind}): {COUNT} inputs in {t_done - t0:.1f} s; "
          f"after the app's kill -9 the second run processed {COUNT // 5} inputs {t_resumed - t_app_killed:.1f} s later; "
          f"broker down {t_broker_back - t_broker_killed:.1f} s; caught up {t_done - t_broker_back:.1f} s after its restart "
          f"(second run processed {second.processed} inputs); verified in {time.monotonic() - t_done:.1f} s")
