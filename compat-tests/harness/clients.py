"""The compiled client drivers (Java kafka-clients, franz-go) and a helper to run them."""

from __future__ import annotations

import subprocess
from pathlib import Path

COMPAT_DIR = Path(__file__).resolve().parent.parent
JAVA_JAR = COMPAT_DIR / "java" / "target" / "compat-java.jar"
GO_BIN = COMPAT_DIR / "go" / "compat-go"


def java_cmd(*args: str) -> list[str]:
    return ["java", "-Xmx512m", "-jar", str(JAVA_JAR), *args]


def go_cmd(*args: str) -> list[str]:
    return [str(GO_BIN), *args]


def run_driver(cmd: list[str], timeout_s: float) -> str:
    """Runs a driver to completion; fails the test with its output on a non-zero exit."""
    for path in (JAVA_JAR, GO_BIN):
        if str(path) in cmd and not path.exists():
            raise AssertionError(f"{path} is missing: build it with compat-tests/run-all (or .ci/run)")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[:4])}... exited {proc.returncode}:\n{out[-6000:]}")
    return out
