"""Raw-protocol probes the benchmark needs beyond compat-tests/harness/wire.py.

Metadata v4 for named topics (allow_auto_topic_creation=false, so a probe never creates the
topic it looks for: partitions with their leaders and ISRs) and ListOffsets v1 (latest offsets). Both versions are non-flexible and are
served by Blumfeld and Kafka 4.x alike. Every call opens its own connection and raises on any
failure, which is what a readiness poll wants.
"""

from __future__ import annotations

from harness import wire

API_LIST_OFFSETS = 2
LATEST = -1


def metadata_v4(correlation_id: int, topics: list[str]) -> bytes:
    body = wire.array([wire.string(t) for t in topics]) + wire.i8(0)  # allow_auto_topic_creation=false
    return wire.frame(wire.request_header_v1(wire.API_METADATA, 4, correlation_id, "blumfeld-bench") + body)


def partition_states(host: str, port: int, topic: str, timeout_s: float = 2.0) -> dict[int, tuple[int, list[int]]] | None:
    """partition -> (leader, ISR) of `topic`, or None while the topic is not served yet (topic
    error or no partition). A partition without a leader shows leader -1."""
    r = wire.request(host, port, metadata_v4(21, [topic]), 21, timeout_s)
    r.i32()  # throttle
    for _ in range(r.i32()):  # brokers
        r.i32(), r.string(), r.i32(), r.string()
    r.string()  # cluster id
    r.i32()  # controller
    found: dict[int, tuple[int, list[int]]] | None = None
    for _ in range(r.i32()):
        err, name = r.i16(), r.string()
        r.i8()  # is_internal
        states: dict[int, tuple[int, list[int]]] = {}
        for _ in range(r.i32()):
            perr, index, leader = r.i16(), r.i32(), r.i32()
            for _ in range(r.i32()):
                r.i32()  # replicas
            isr = sorted(r.i32() for _ in range(r.i32()))
            states[index] = (leader if perr == 0 else -1, isr)
        if name == topic and err == 0 and states:
            found = states
    return found


def topic_partitions(host: str, port: int, topic: str, timeout_s: float = 2.0) -> list[int] | None:
    """Partitions of `topic` that have a leader, or None while the topic or any partition is not
    served yet (topic error, partition error or no leader)."""
    states = partition_states(host, port, topic, timeout_s)
    if not states or any(leader < 0 for leader, _ in states.values()):
        return None
    return sorted(states)


def list_offsets_v1(correlation_id: int, topic: str, partitions: list[int], timestamp: int) -> bytes:
    parts = [wire.i32(p) + wire.i64(timestamp) for p in partitions]
    body = wire.i32(-1) + wire.array([wire.string(topic) + wire.array(parts)])
    return wire.frame(wire.request_header_v1(API_LIST_OFFSETS, 1, correlation_id, "blumfeld-bench") + body)


def end_offsets(host: str, port: int, topic: str, partitions: list[int], timeout_s: float = 5.0) -> dict[int, int] | None:
    """Latest offset of every partition, or None while any partition answers with an error."""
    r = wire.request(host, port, list_offsets_v1(22, topic, partitions, LATEST), 22, timeout_s)
    out: dict[int, int] = {}
    ok = True
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            index, err = r.i32(), r.i16()
            r.i64()  # timestamp
            offset = r.i64()
            ok = ok and err == 0
            out[index] = offset
    if not ok or sorted(out) != sorted(partitions):
        return None
    return out
