"""Apache Kafka's own `kafka-consumer-groups` (ConsumerGroupCommand from kafka-tools, the version
of the Java driver): --list, --describe with lag (100 produced, 60 consumed and committed: lag
40), --describe --state / --members, --reset-offsets --to-earliest --execute on the empty group
(OffsetFetch then returns 0), --delete-offsets (OffsetDelete), --delete."""

from __future__ import annotations

import re
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from harness.tools import TOOL_TIMEOUT_S, tool_process
from harness.groups import PacedProducer
from tests.test_confluent_kafka import create_topic

TOOL_MAIN = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
PARTITIONS = 4
MESSAGES = 100
CONSUMED = 60
BROKER_OVERRIDES = {"group.initial.rebalance.delay.ms": "0"}


def consumer_groups(bootstrap: str, *args: str) -> str:
    proc = tool_process(TOOL_MAIN, "--bootstrap-server", bootstrap, "--timeout", "30000", *args)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"kafka-consumer-groups {' '.join(args)} exited {proc.returncode}:\n{out[-4000:]}"
    # The tool reports some failures on stdout with exit 0.
    assert not re.search(r"^Error: ", out, re.M), f"kafka-consumer-groups {' '.join(args)}:\n{out[-4000:]}"
    return proc.stdout


def parse_table(out: str, first_column: str = "GROUP") -> list[dict[str, str]]:
    """Rows of the whitespace-aligned table whose header starts with `first_column`."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        header = line.split()
        if header and header[0] == first_column and len(header) > 2:
            rows = []
            for row in lines[i + 1:]:
                fields = row.split()
                if not fields:
                    continue
                if fields[0] == first_column:  # a second table (several groups) repeats the header
                    continue
                assert len(fields) == len(header), f"row {row!r} does not match header {header}:\n{out}"
                rows.append(dict(zip(header, fields)))
            return rows
    raise AssertionError(f"no table with a {first_column} header in:\n{out}")


def consume_and_commit(bootstrap: str, topic: str, group: str, client_id: str) -> tuple[Consumer, dict[int, int]]:
    """A live member that has processed and committed exactly CONSUMED records."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": client_id,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    taken: list[tuple[int, int]] = []
    deadline = time.monotonic() + TOOL_TIMEOUT_S
    while len(taken) < CONSUMED:
        assert time.monotonic() < deadline, f"consumed {len(taken)} of {CONSUMED}"
        for m in c.consume(num_messages=CONSUMED - len(taken), timeout=0.5):
            if m.error():
                raise KafkaException(m.error())
            taken.append((m.partition(), m.offset()))
    committed: dict[int, int] = {}
    for p, o in taken:
        committed[p] = max(committed.get(p, 0), o + 1)
    c.commit(offsets=[TopicPartition(topic, p, o) for p, o in committed.items()], asynchronous=False)
    return c, committed


def fetch_committed(bootstrap: str, topic: str, group: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return {r.partition: r.offset for r in c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)],
                                                           timeout=30)}
    finally:
        c.close()


def test_list_describe_reset_delete(broker):
    topic, group, client_id = "cgc-topic", "cgc-group", "cgc-member"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    PacedProducer(broker.bootstrap, topic, PARTITIONS, MESSAGES, rate=1e9).start().join()

    member, committed = consume_and_commit(broker.bootstrap, topic, group, client_id)
    try:
        assert group in consumer_groups(broker.bootstrap, "--list").split()

        rows = [r for r in parse_table(consumer_groups(broker.bootstrap, "--describe", "--group", group))
                if r["TOPIC"] == topic]
        assert sorted(int(r["PARTITION"]) for r in rows) == list(range(PARTITIONS)), rows
        for r in rows:
            p = int(r["PARTITION"])
            want_current = str(committed[p]) if p in committed else "-"
            assert r["CURRENT-OFFSET"] == want_current, f"partition {p}: {r}"
            assert r["LOG-END-OFFSET"] == str(MESSAGES // PARTITIONS), f"partition {p}: {r}"
            assert r["CLIENT-ID"] == client_id, f"partition {p} not shown as owned by the live member: {r}"
        lag = sum(int(r["LAG"]) for r in rows if r["LAG"] != "-")
        lag += sum(MESSAGES // PARTITIONS for r in rows if r["LAG"] == "-")  # nothing committed there
        assert lag == MESSAGES - CONSUMED, f"total lag {lag}, expected {MESSAGES - CONSUMED}: {rows}"
        assert re.search(r"\bStable\b", consumer_groups(broker.bootstrap, "--describe", "--group", group, "--state"))
        members = parse_table(consumer_groups(broker.bootstrap, "--describe", "--group", group, "--members"))
        assert [(m["CLIENT-ID"], m["#PARTITIONS"]) for m in members] == [(client_id, str(PARTITIONS))], members
    finally:
        member.close()

    state = consumer_groups(broker.bootstrap, "--describe", "--group", group, "--state")
    assert re.search(r"\bEmpty\b", state), f"group not Empty after its only member left:\n{state}"

    reset = parse_table(consumer_groups(broker.bootstrap, "--reset-offsets", "--to-earliest", "--execute",
                                        "--group", group, "--topic", topic))
    assert {(int(r["PARTITION"]), r["NEW-OFFSET"]) for r in reset} == {(p, "0") for p in range(PARTITIONS)}, reset
    assert fetch_committed(broker.bootstrap, topic, group) == {p: 0 for p in range(PARTITIONS)}

    deleted = parse_table(consumer_groups(broker.bootstrap, "--delete-offsets", "--group", group, "--topic", topic),
                          first_column="TOPIC")
    assert {(int(r["PARTITION"]), r["STATUS"]) for r in deleted} == {(p, "Successful") for p in range(PARTITIONS)}
    assert fetch_committed(broker.bootstrap, topic, group) == {p: -1001 for p in range(PARTITIONS)}  # none

    out = consumer_groups(broker.bootstrap, "--delete", "--group", group)
    assert "successful" in out, out
    assert group not in consumer_groups(broker.bootstrap, "--list").split()
