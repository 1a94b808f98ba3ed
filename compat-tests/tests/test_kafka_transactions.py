"""Apache Kafka's own `kafka-transactions` (TransactionsCommand from kafka-tools) against an open
transaction of a Java producer and a hanging one (a transactional batch whose producer no
coordinator knows, written with verification off): `list`, `describe`, `describe-producers`,
`find-hanging` (finds only the hanging one) and `abort --start-offset` (its ABORT marker goes
through WriteTxnMarkers and the partition's LSO moves on)."""

from __future__ import annotations

import re
import subprocess
import time

from kafka.record.default_records import DefaultRecordBatchBuilder

from harness import wire
from harness.clients import java_cmd
from harness.tools import tool_process
from harness.wait import wait_until
from tests.test_confluent_kafka import create_topic
from tests.test_transactions import offsets

TOOL_MAIN = "org.apache.kafka.tools.TransactionsCommand"
# The hanging batch is written without the coordinator's blessing.
BROKER_OVERRIDES = {"transaction.partition.verification.enable": "false"}
GHOST_PRODUCER_ID = 987654
API_PRODUCE = 0


def transactions(bootstrap: str, *args: str) -> str:
    proc = tool_process(TOOL_MAIN, "--bootstrap-server", bootstrap, *args)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"kafka-transactions {' '.join(args)} exited {proc.returncode}:\n{out[-4000:]}"
    return proc.stdout


def table(out: str) -> list[dict[str, str]]:
    """The tool's tab-separated table as one dict per row."""
    lines = [line for line in out.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0].split()
    return [dict(zip(header, line.split())) for line in lines[1:]]


def produce_ghost(bootstrap: str, topic: str, timestamp_ms: int) -> None:
    """Produce v3 of one transactional batch from a producer id no coordinator handed out."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=1,
                                        producer_id=GHOST_PRODUCER_ID, producer_epoch=0, base_sequence=0,
                                        batch_size=1 << 20)
    for i in range(3):
        builder.append(i, timestamp=timestamp_ms, key=None, value=f"ghost-{i}".encode(), headers=[])
    batch = bytes(builder.build())
    partition = wire.i32(0) + wire.i32(len(batch)) + batch
    body = wire.string("ghost-tx") + wire.i16(-1) + wire.i32(30_000) + wire.array([wire.string(topic) + wire.array([partition])])
    host, port = bootstrap.rsplit(":", 1)
    r = wire.request(host, int(port), wire.frame(wire.request_header_v1(API_PRODUCE, 3, 5) + body), 5)
    assert r.i32() == 1 and r.string() == topic and r.i32() == 1
    index, error = r.i32(), r.i16()
    assert (index, error) == (0, 0), f"ghost produce answered error {error}"


def test_list_describe_find_hanging_and_abort(broker):
    bootstrap = broker.bootstrap
    host, port = bootstrap.rsplit(":", 1)
    broker_id = wire.metadata_brokers(host, int(port))[0].node_id
    create_topic(bootstrap, "kt-ghost", 1)
    proc = subprocess.Popen(java_cmd("txn-open", "--bootstrap", bootstrap, "--topic", "kt", "--timeout-ms", "600000"),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "OPEN":
                break
        else:
            raise AssertionError("txn-open ended without opening a transaction")
        produce_ghost(bootstrap, "kt-ghost", int(time.time() * 1000) - 3_600_000)
        assert offsets(bootstrap, "kt-ghost") == (0, 3), "the ghost's transaction holds the LSO"

        listed = {row["TransactionalId"]: row for row in table(transactions(bootstrap, "list"))}
        assert listed.get("kt-tx", {}).get("TransactionState") == "Ongoing", listed
        assert "ghost-tx" not in listed

        described = table(transactions(bootstrap, "describe", "--transactional-id", "kt-tx"))
        assert len(described) == 1, described
        row = described[0]
        assert (row["TransactionState"], row["TopicPartitions"]) == ("Ongoing", "kt-0"), row
        assert row["ProducerId"] == listed["kt-tx"]["ProducerId"], (row, listed)

        producers = table(transactions(bootstrap, "describe-producers", "--topic", "kt-ghost", "--partition", "0"))
        ghost = [p for p in producers if p["ProducerId"] == str(GHOST_PRODUCER_ID)]
        assert ghost and ghost[0]["CurrentTransactionStartOffset"] == "0", producers

        hanging = table(transactions(bootstrap, "find-hanging", "--broker-id", str(broker_id)))
        assert [(h["Topic"], h["Partition"], h["ProducerId"]) for h in hanging] == \
            [("kt-ghost", "0", str(GHOST_PRODUCER_ID))], hanging

        out = transactions(bootstrap, "abort", "--topic", "kt-ghost", "--partition", "0", "--start-offset", "0")
        print(out)
        lso, hw = wait_until(lambda: (lambda o: o if o[0] == o[1] else None)(offsets(bootstrap, "kt-ghost")),
                             60, "the aborted hanging transaction to release the LSO")
        assert (lso, hw) == (4, 4), (lso, hw)
        assert table(transactions(bootstrap, "find-hanging", "--broker-id", str(broker_id))) == []
    finally:
        proc.kill()
        proc.wait()
