"""Prometheus for the metrics tests: promtool checks and a real server scraping a broker.

The Debian package `prometheus` provides both `promtool` and the server. `ensure_prometheus()`
installs it when missing and running as root (as run-all does for kcat); tests skip only when
it is still missing afterwards.

The server runs on 127.0.0.1 with an ephemeral port, its own config (scraping one broker's
metrics listener every second, loading metrics/alerts.yml) and its own data dir, and is
stopped at the end of the test. Queries go through its HTTP API.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .broker import REPO_ROOT, BrokerProcess
from .wait import wait_until

METRICS_DIR = REPO_ROOT / "metrics"
ALERTS_YML = METRICS_DIR / "alerts.yml"
PROMETHEUS_YML = METRICS_DIR / "prometheus.yml"
METRICS_LISTENING_RE = re.compile(rb"metrics listening on (\S+):(\d+)")
APT_INSTALL_TIMEOUT_S = 600
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
HTTP_TIMEOUT_S = 5

_install_tried = False


def ensure_prometheus() -> str | None:
    """Returns None when promtool and prometheus are usable, else why not (after one apt try)."""
    global _install_tried
    missing = [b for b in ("promtool", "prometheus") if shutil.which(b) is None]
    if missing and not _install_tried and os.geteuid() == 0 and shutil.which("apt-get"):
        _install_tried = True
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        try:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=APT_INSTALL_TIMEOUT_S)
            subprocess.run(["apt-get", "install", "-y", "-qq", "prometheus"], env=env, capture_output=True,
                           timeout=APT_INSTALL_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            pass
        missing = [b for b in ("promtool", "prometheus") if shutil.which(b) is None]
    if missing:
        return f"{' and '.join(missing)} not installed and not installable (apt-get install prometheus)"
    return None


def promtool(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=timeout_s)


def metrics_address(broker: BrokerProcess, timeout_s: float = 30) -> tuple[str, int]:
    """The broker's metrics listener, from its `metrics listening on HOST:PORT` line."""
    def line():
        assert broker.log_path is not None
        m = METRICS_LISTENING_RE.search(broker.log_path.read_bytes())
        return (m.group(1).decode(), int(m.group(2))) if m else None

    try:
        return wait_until(line, timeout_s, "the broker's 'metrics listening on HOST:PORT' line")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\nThe broker must start its metrics listener from `metrics.listener` and print "
            f"'metrics listening on HOST:PORT' on stdout (after its 'blumfeld listening on' line).\n"
            f"{broker.log_tail()}") from None


def http_get(url: str, timeout_s: float = HTTP_TIMEOUT_S) -> tuple[int, str]:
    """(status, body), for error statuses too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrometheusServer:
    """A Prometheus server scraping `targets` every second, with metrics/alerts.yml loaded."""

    def __init__(self, workdir: Path, targets: list[str], scrape_interval_s: int = 1):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.targets = targets
        self.scrape_interval_s = scrape_interval_s
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        # JSON is YAML: no YAML library needed to write the config.
        interval = f"{self.scrape_interval_s}s"
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "rule_files": [str(ALERTS_YML)],
            "scrape_configs": [{"job_name": "blumfeld", "static_configs": [{"targets": self.targets}]}],
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(json.dumps(config, indent=2))
        return path

    def start(self) -> "PrometheusServer":
        config = self.write_config()
        self.port = free_port()
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir, start_new_session=True)
        log.close()

        def ready():
            if self.proc.poll() is not None:
                raise PrometheusDied(f"prometheus exited with {self.proc.returncode}:\n{self.log_tail()}")
            return http_get(f"{self.url}/-/ready", timeout_s=1)[0] == 200

        try:
            wait_until(ready, START_TIMEOUT_S, "Prometheus to be ready")
        except PrometheusDied:
            raise
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> "PrometheusServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_bytes().decode(errors="replace").splitlines()[-lines:])

    def api(self, path: str, **params: str) -> dict | list:
        query = urllib.parse.urlencode(params)
        status, body = http_get(f"{self.url}/api/v1/{path}" + (f"?{query}" if query else ""))
        reply = json.loads(body)
        if status != 200 or reply.get("status") != "success":
            raise AssertionError(f"Prometheus {path} {params}: HTTP {status}: {body[:2000]}")
        return reply["data"]

    def query(self, expr: str) -> dict[tuple, float]:
        """An instant query: {sorted label pairs (without __name__): value}."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return {tuple(sorted((k, v) for k, v in r["metric"].items() if k != "__name__")): float(r["value"][1])
                for r in data["result"]}

    def value(self, expr: str) -> float | None:
        """The single value of a query that aggregates to one series (None: no series)."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr} returned {len(result)} series: {result}"
        return next(iter(result.values()), None)

    def wait_value(self, expr: str, check, timeout_s: float, what: str) -> float:
        def probe():
            v = self.value(expr)
            # A tuple, so that a value of 0 still counts as found.
            return (v,) if v is not None and check(v) else None

        try:
            return wait_until(probe, timeout_s, what, interval_s=0.5)[0]
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast value of {expr}: {self.value(expr)}\ntargets: "
                                 f"{self.targets_health()}") from None

    def targets_health(self) -> list[tuple[str, str, str]]:
        data = self.api("targets")
        return [(t["scrapeUrl"], t["health"], t.get("lastError", "")) for t in data["activeTargets"]]

    def alert_rules(self) -> dict[str, dict]:
        """Alerting rules by name, with their `state` and `health`."""
        data = self.api("rules", type="alert")
        return {r["name"]: r for g in data["groups"] for r in g["rules"]}


class PrometheusDied(AssertionError):
    pass


def parse_exposition(text: str) -> dict[str, float]:
    """The text exposition as {`name{labels}` as printed: value}."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        try:
            samples[series] = float(value)
        except ValueError:
            continue
    return samples
