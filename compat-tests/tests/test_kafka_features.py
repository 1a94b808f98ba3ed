"""Apache Kafka's own `kafka-features` (FeatureCommand from kafka-tools, the version of the Java
driver): `describe` lists every feature with its supported range, finalized level and epoch
(ApiVersions v3+); `downgrade`/`upgrade` of group.version round-trips through UpdateFeatures,
bumps the epoch and survives a restart; `--dry-run` changes nothing; refusals carry Kafka's
messages (metadata.version downgrade across a metadata change, a level out of range, an unknown
feature).

Blumfeld and Kafka 4.3 legitimately differ in levels (metadata.version 4.0-IV3 vs 4.3-IV0;
share/streams are 0..0 on Blumfeld), so the assertions check what both must do; both serve
transaction.version 0..2 finalized 2 on a new cluster (test_transactions checks what the levels
do to Java producers)."""

from __future__ import annotations

import re

from harness.tools import tool_process

TOOL_MAIN = "org.apache.kafka.tools.FeatureCommand"
LINE = re.compile(r"^Feature: (\S+)\s+SupportedMinVersion: (\S+)\s+SupportedMaxVersion: (\S+)\s+"
                  r"FinalizedVersionLevel: (\S+)\s+Epoch: (\S+)\s*$")


def features(bootstrap: str, *args: str, expect_rc: int = 0) -> str:
    proc = tool_process(TOOL_MAIN, "--bootstrap-server", bootstrap, *args)
    out = proc.stdout + proc.stderr
    assert proc.returncode == expect_rc, f"kafka-features {' '.join(args)} exited {proc.returncode}:\n{out[-4000:]}"
    return out


def describe(bootstrap: str) -> dict[str, dict[str, str]]:
    rows = {}
    for line in features(bootstrap, "describe").splitlines():
        m = LINE.match(line)
        if m:
            name, smin, smax, level, epoch = m.groups()
            rows[name] = {"min": smin, "max": smax, "level": level, "epoch": epoch}
    assert rows, "describe printed no feature"
    return rows


def test_describe_lists_the_features_of_a_4x_node(broker):
    rows = describe(broker.bootstrap)
    for name in ("metadata.version", "kraft.version", "group.version", "transaction.version", "share.version",
                 "eligible.leader.replicas.version", "streams.version"):
        assert name in rows, f"{name} missing from describe: {rows}"
    mv = rows["metadata.version"]
    assert mv["min"] == "3.3-IV3", mv
    assert re.fullmatch(r"4\.\d+-IV\d+", mv["level"]), mv
    assert mv["level"] >= "4.0-IV3" and mv["max"] >= mv["level"], mv
    assert rows["group.version"] == {**rows["group.version"], "min": "0", "level": "1"}
    assert int(rows["group.version"]["max"]) >= 1
    assert rows["kraft.version"]["level"] == "0", "a static-voter node finalizes kraft.version 0"
    assert rows["transaction.version"] == {**rows["transaction.version"], "min": "0", "max": "2", "level": "2"}, \
        rows["transaction.version"]
    epochs = {r["epoch"] for r in rows.values()}
    assert len(epochs) == 1 and int(epochs.pop()) > 0, rows


def test_group_version_round_trip_persists_and_bumps_the_epoch(broker):
    before = describe(broker.bootstrap)
    dry = features(broker.bootstrap, "downgrade", "--feature", "group.version=0", "--dry-run")
    assert "group.version can be downgraded to 0." in dry, dry
    assert describe(broker.bootstrap)["group.version"]["level"] == "1"

    out = features(broker.bootstrap, "downgrade", "--feature", "group.version=0")
    assert "group.version was downgraded to 0." in out, out
    down = describe(broker.bootstrap)
    assert down["group.version"]["level"] == "0", down
    assert int(down["group.version"]["epoch"]) > int(before["group.version"]["epoch"])

    assert broker.stop() == 0, "unclean shutdown"
    broker.restart()
    assert describe(broker.bootstrap)["group.version"]["level"] == "0", "the downgrade did not survive a restart"

    out = features(broker.bootstrap, "upgrade", "--feature", "group.version=1")
    assert "group.version was upgraded to 1." in out, out
    assert describe(broker.bootstrap)["group.version"]["level"] == "1"


def test_refusals_carry_kafkas_messages(broker):
    out = features(broker.bootstrap, "downgrade", "--feature", "metadata.version=22", expect_rc=1)
    assert "Could not downgrade metadata.version to 22." in out, out
    assert re.search(r"Unsupported metadata.version downgrade from \d+ to 22. Refusing to perform the requested "
                     r"downgrade because it might delete metadata information.", out), out

    out = features(broker.bootstrap, "upgrade", "--feature", "group.version=5", expect_rc=1)
    assert re.search(r"Invalid update version 5 for feature group.version. Local controller \d+ only supports "
                     r"versions 0-1", out), out

    out = features(broker.bootstrap, "upgrade", "--feature", "transaction.version=3", expect_rc=1)
    assert re.search(r"Invalid update version 3 for feature transaction.version. Local controller \d+ only supports "
                     r"versions 0-2", out), out

    out = features(broker.bootstrap, "upgrade", "--feature", "foo.bar=1", expect_rc=1)
    assert re.search(r"Invalid update version 1 for feature foo.bar. Local controller \d+ does not support this "
                     r"feature.", out), out

    out = features(broker.bootstrap, "disable", "--feature", "share.version")
    assert "share.version was disabled." in out, out
    assert describe(broker.bootstrap)["share.version"]["level"] == "0"
