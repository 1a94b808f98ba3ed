"""kcat (librdkafka via the Debian package): produce to a new topic relying on auto-creation
(broker num.partitions=6) with -K key delimiter, -H headers and -z codec; consume with -C -e -f;
earliest/latest offsets with -Q (ListOffsets). kcat cannot delete topics: confluent-kafka does."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from harness.scenario import CODECS, MESSAGES, PARTITIONS
from tests.test_confluent_kafka import delete_topic  # kcat has no topic deletion

BROKER_OVERRIDES = {"num.partitions": str(PARTITIONS), "auto.create.topics.enable": "true"}
KCAT_TIMEOUT_S = 180
FORMAT = "%p\\t%o\\t%k\\t%s\\t%h\\n"

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (apt-get install kcat)")


def kcat(*args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(["kcat", *args], input=stdin, capture_output=True, text=True, timeout=KCAT_TIMEOUT_S)
    assert proc.returncode == 0, f"kcat {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


def kcat_message(i: int) -> tuple[str, str]:
    # Printable, without the tab (key delimiter) and newline (message delimiter).
    return f"k{i % 1009}-{i}", f"value {i} " + "".join(chr(33 + (i * 7 + j) % 90) for j in range(i % 200))


def query_offsets(bootstrap: str, topic: str, timestamp: int) -> dict[int, int]:
    out = kcat("-b", bootstrap, "-Q", *[a for p in range(PARTITIONS) for a in ("-t", f"{topic}:{p}:{timestamp}")])
    found = {int(m.group(1)): int(m.group(2)) for m in re.finditer(rf"^{re.escape(topic)} \[(\d+)\] offset (-?\d+)$",
                                                                    out, re.M)}
    assert set(found) == set(range(PARTITIONS)), f"kcat -Q output:\n{out}"
    return found


@pytest.mark.parametrize("codec", CODECS)
def test_roundtrip(broker, codec):
    topic = f"kcat-{codec}"
    lines = "".join(f"{k}\t{v}\n" for k, v in map(kcat_message, range(MESSAGES)))
    # Idempotence keeps per-partition order even when the first Produce to the freshly
    # auto-created topic is retried.
    kcat("-b", broker.bootstrap, "-t", topic, "-P", "-K", "\t", "-z", codec, "-H", f"codec={codec}",
         "-H", "run=compat", "-X", "enable.idempotence=true", stdin=lines)

    out = kcat("-b", broker.bootstrap, "-t", topic, "-C", "-e", "-o", "beginning", "-f", FORMAT, "-q")
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == MESSAGES, f"consumed {len(rows)} of {MESSAGES}"
    seen: set[int] = set()
    last: dict[int, tuple[int, int]] = {}  # partition -> (offset, index)
    partitions_used: set[int] = set()
    for row in rows:
        assert len(row) == 5, f"bad kcat line {row!r}"
        p, off, key, value, headers = int(row[0]), int(row[1]), row[2], row[3], row[4]
        i = int(key.rpartition("-")[2])
        assert (key, value) == kcat_message(i), f"partition {p} offset {off}: message {i} differs"
        assert headers == f"codec={codec},run=compat", f"partition {p} offset {off}: headers {headers!r}"
        assert i not in seen, f"message {i} read twice"
        seen.add(i)
        prev_off, prev_i = last.get(p, (-1, -1))
        assert off == prev_off + 1, f"partition {p}: offset {off} after {prev_off}"
        assert i > prev_i, f"partition {p}: message {i} after {prev_i} (order broken)"
        last[p] = (off, i)
        partitions_used.add(p)
    assert seen == set(range(MESSAGES))
    assert partitions_used == set(range(PARTITIONS)), f"auto-created topic used partitions {partitions_used}"

    assert query_offsets(broker.bootstrap, topic, -2) == {p: 0 for p in range(PARTITIONS)}
    assert query_offsets(broker.bootstrap, topic, -1) == {p: last[p][0] + 1 for p in range(PARTITIONS)}

    delete_topic(broker.bootstrap, topic)
