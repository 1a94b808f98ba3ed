"""The common round-trip scenario's data and checks, shared by the Python client tests.

Message i is deterministic (key, value with random and text bytes, three headers), so what a
consumer reads back can be compared byte for byte with what was produced.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PARTITIONS = 6
MESSAGES = 10_000


@dataclass(frozen=True)
class Message:
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def message(i: int) -> Message:
    rnd = random.Random(i)
    n = 20 + (i * 7919) % 300
    value = bytes(rnd.getrandbits(8) if j % 2 == 0 else 97 + (i + j) % 26 for j in range(n))
    headers = (("idx", str(i).encode()), ("bin", bytes([0, 255, i & 255, (i >> 8) & 255])), ("empty", b""))
    return Message(f"key-{i % 1009}-{i}".encode(), value, headers)


@dataclass(frozen=True)
class Received:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def placement_from_acks(acks: dict[int, tuple[int, int]], count: int) -> dict[int, list[int]]:
    """acks: message index -> (partition, offset). Returns partition -> indices in offset order.

    Checks every message was acknowledged once, offsets are contiguous from 0 per partition and
    follow the send order (one producer, so per-partition order must hold).
    """
    assert len(acks) == count, f"{count - len(acks)} messages were not acknowledged"
    by_offset: dict[int, dict[int, int]] = {}
    for i, (p, off) in acks.items():
        prev = by_offset.setdefault(p, {}).setdefault(off, i)
        assert prev == i, f"partition {p} offset {off} acknowledged for both {prev} and {i}"
    placed = {}
    for p, offs in by_offset.items():
        assert sorted(offs) == list(range(len(offs))), f"partition {p}: offsets not contiguous from 0"
        order = [offs[o] for o in range(len(offs))]
        assert order == sorted(order), f"partition {p}: offsets do not follow send order"
        placed[p] = order
    return placed


def check_received(received: list[Received], placed: dict[int, list[int]], count: int) -> None:
    """Every message back exactly once, byte-identical, in offset order per partition."""
    assert len(received) == count, f"received {len(received)} messages, expected {count}"
    next_offset: dict[int, int] = {}
    for r in received:
        want_off = next_offset.get(r.partition, 0)
        assert r.offset == want_off, f"partition {r.partition}: offset {r.offset}, expected {want_off}"
        next_offset[r.partition] = want_off + 1
        order = placed.get(r.partition, [])
        assert r.offset < len(order), f"partition {r.partition}: unexpected offset {r.offset}"
        want = message(order[r.offset])
        where = f"partition {r.partition} offset {r.offset}"
        assert r.key == want.key, f"{where}: key {r.key!r} != {want.key!r}"
        assert r.value == want.value, f"{where}: value differs"
        assert tuple((k, v or b"") for k, v in r.headers) == want.headers, \
            f"{where}: headers {r.headers!r} != {want.headers!r}"
    for p, order in placed.items():
        assert next_offset.get(p, 0) == len(order), f"partition {p}: read {next_offset.get(p, 0)} of {len(order)}"
