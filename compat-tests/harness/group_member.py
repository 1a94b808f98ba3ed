"""A consumer-group member on a Python client, run as its own process (so a test can SIGKILL it):

    python -m harness.group_member confluent|kafka-python --bootstrap H:P --topic T --group G \
        [--client-id ID] [--session-timeout-ms 6000]

It speaks the line protocol of harness.groups on stdout (OWNED / R / COMMITTED / COMMIT-FAILED /
LOST / CLOSED) and leaves the group cleanly when its stdin closes. After each poll batch the
records are printed, then committed synchronously; revocation commits what was processed before
the partitions go.
"""

from __future__ import annotations

import argparse
import sys
import threading

POLL_TIMEOUT_S = 0.2
POLL_RECORDS_MAX = 200


class Transcript:
    def __init__(self):
        self.owned: set[int] = set()
        self.pending: dict[int, int] = {}  # partition -> next offset processed, not yet committed

    @staticmethod
    def emit(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def records(self, pairs: list[tuple[int, int]]) -> None:
        if pairs:
            sys.stdout.write("".join(f"R {p} {o}\n" for p, o in pairs))
            sys.stdout.flush()
        for p, o in pairs:
            self.pending[p] = max(self.pending.get(p, 0), o + 1)

    def set_owned(self, add: list[int] = (), remove: list[int] = ()) -> None:
        self.owned |= set(add)
        self.owned -= set(remove)
        self.emit("OWNED " + ",".join(map(str, sorted(self.owned))))

    def lost(self, parts: list[int]) -> None:
        for p in parts:
            self.pending.pop(p, None)
        self.emit("LOST " + ",".join(map(str, sorted(parts))))
        self.set_owned(remove=parts)

    def committed(self, offsets: dict[int, int]) -> None:
        self.emit("COMMITTED " + ",".join(f"{p}:{o}" for p, o in sorted(offsets.items())))


def stdin_closed() -> threading.Event:
    done = threading.Event()

    def drain():
        while sys.stdin.buffer.read1(256):
            pass
        done.set()

    threading.Thread(target=drain, daemon=True).start()
    return done


def run_confluent(args, stop: threading.Event) -> None:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    t = Transcript()
    c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group, "client.id": args.client_id,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "session.timeout.ms": args.session_timeout_ms,
                  "heartbeat.interval.ms": max(100, args.session_timeout_ms // 12)})

    def commit_pending() -> None:
        if not t.pending:
            return
        offsets = dict(t.pending)
        try:
            result = c.commit(offsets=[TopicPartition(args.topic, p, o) for p, o in offsets.items()],
                              asynchronous=False)
        except KafkaException as exc:
            t.emit(f"COMMIT-FAILED {exc}")
            return
        bad = [f"{r.partition}:{r.error}" for r in result if r.error is not None]
        if bad:
            t.emit("COMMIT-FAILED " + ",".join(bad))
        t.pending.clear()
        t.committed({r.partition: r.offset for r in result if r.error is None})

    def on_revoke(_c, parts):
        commit_pending()
        t.set_owned(remove=[tp.partition for tp in parts])

    c.subscribe([args.topic], on_assign=lambda _c, parts: t.set_owned(add=[tp.partition for tp in parts]),
                on_revoke=on_revoke, on_lost=lambda _c, parts: t.lost([tp.partition for tp in parts]))
    while not stop.is_set():
        msgs = c.consume(num_messages=POLL_RECORDS_MAX, timeout=POLL_TIMEOUT_S)
        for m in msgs:
            if m.error():
                t.emit(f"FETCH-ERROR {m.error()}")
        batch = [(m.partition(), m.offset()) for m in msgs if not m.error()]
        if batch:
            t.records(batch)
            commit_pending()
    commit_pending()
    c.close()
    t.emit("CLOSED")


def run_kafka_python(args, stop: threading.Event) -> None:
    from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
    from kafka.errors import CommitFailedError, KafkaError, RebalanceInProgressError
    from kafka.structs import OffsetAndMetadata

    t = Transcript()
    c = KafkaConsumer(bootstrap_servers=args.bootstrap, group_id=args.group, client_id=args.client_id,
                      enable_auto_commit=False, auto_offset_reset="earliest",
                      session_timeout_ms=args.session_timeout_ms,
                      heartbeat_interval_ms=max(100, args.session_timeout_ms // 12))

    def commit_pending() -> None:
        if not t.pending:
            return
        offsets = dict(t.pending)
        try:
            c.commit({TopicPartition(args.topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})
        except RebalanceInProgressError as exc:
            t.emit(f"COMMIT-RETRY {exc}")  # still ours until revocation, which commits again
            return
        except (CommitFailedError, KafkaError) as exc:
            t.emit(f"COMMIT-FAILED {exc!r}")
            t.pending.clear()
            return
        t.pending.clear()
        t.committed(offsets)

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            commit_pending()
            t.set_owned(remove=[tp.partition for tp in revoked])

        def on_partitions_assigned(self, assigned):
            t.set_owned(add=[tp.partition for tp in assigned])

        def on_partitions_lost(self, lost):
            t.lost([tp.partition for tp in lost])

    c.subscribe([args.topic], listener=Listener())
    while not stop.is_set():
        polled = c.poll(timeout_ms=int(POLL_TIMEOUT_S * 1000), max_records=POLL_RECORDS_MAX)
        batch = [(r.partition, r.offset) for records in polled.values() for r in records]
        if batch:
            t.records(batch)
            commit_pending()
    commit_pending()
    c.close(autocommit=False)
    t.emit("CLOSED")


def main() -> None:
    ap = argparse.ArgumentParser(prog="group_member")
    ap.add_argument("client", choices=["confluent", "kafka-python"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--client-id", default="compat-py-group")
    ap.add_argument("--session-timeout-ms", type=int, default=6000)
    args = ap.parse_args()
    stop = stdin_closed()
    {"confluent": run_confluent, "kafka-python": run_kafka_python}[args.client](args, stop)


if __name__ == "__main__":
    main()
