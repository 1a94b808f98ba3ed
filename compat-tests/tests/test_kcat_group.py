"""kcat's balanced consumer (`-G group topic`, librdkafka's classic group protocol with its
default auto-commit): a first run reads every message once and commits on exit; a second run of
the same group finds nothing new."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from harness.groups import PacedProducer
from tests.test_confluent_kafka import create_topic

PARTITIONS = 6
MESSAGES = 3000
KCAT_TIMEOUT_S = 120
BROKER_OVERRIDES = {"group.initial.rebalance.delay.ms": "0"}

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (apt-get install kcat)")


def kcat_group(bootstrap: str, group: str, topic: str) -> list[tuple[int, int, str]]:
    """One balanced-consumer run until every assigned partition is at its end (-e)."""
    cmd = ["kcat", "-b", bootstrap, "-G", group, "-e", "-q", "-f", "%p %o %s\\n",
           "-X", "auto.offset.reset=earliest", topic]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=KCAT_TIMEOUT_S)
    assert proc.returncode == 0, f"kcat -G exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    rows = []
    for line in proc.stdout.splitlines():
        p, o, v = line.split(" ")
        rows.append((int(p), int(o), v))
    return rows


def test_balanced_consumer_commits(broker):
    topic, group = "kcat-group", "kcat-g"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    # Unpaced in effect (a high rate): this test is about commits, not about timing.
    produced = PacedProducer(broker.bootstrap, topic, PARTITIONS, MESSAGES, rate=1e9).start().join()

    first = kcat_group(broker.bootstrap, group, topic)
    got = [(p, o) for p, o, _ in first]
    dups = len(got) - len(set(got))
    assert dups == 0, f"first run read {dups} records twice"
    missing = sorted(produced - set(got))
    assert not missing, f"first run missed {len(missing)} records, e.g. {missing[:10]}"
    assert sorted(int(v) for _, _, v in first) == list(range(MESSAGES)), "values differ from what was produced"

    second = kcat_group(broker.bootstrap, group, topic)
    assert second == [], f"second run of the committed group read {len(second)} records again, e.g. {second[:5]}"
