"""Thousands of malformed frames over many connections; afterwards the broker is alive and a real
client still produces and consumes correctly."""

from __future__ import annotations

import asyncio
import os
import random

from harness import wire
from harness.readback import read_partitions
from tests.test_confluent_kafka import create_topic, produce

CONNECTIONS = 600
FRAMES_MIN = 3000
CONCURRENCY = 32
READ_TIMEOUT_S = 0.3
REQUEST_MAX_BYTES = 100 * 1024 * 1024  # socket.request.max.bytes default


def header(api_key: int, version: int, corr: int) -> bytes:
    return wire.request_header_v1(api_key, version, corr)


def malformed_frames(rng: random.Random, corr: int) -> list[tuple[str, bytes]]:
    """All the kinds of bad input; the caller picks some per connection."""
    garbage = rng.randbytes(rng.randrange(1, 300))
    metadata = wire.metadata_v1(corr, [])
    return [
        ("garbage", garbage),
        ("garbage-framed", wire.frame(garbage)),
        ("huge-length", wire.i32(REQUEST_MAX_BYTES + rng.randrange(1, 1 << 30)) + garbage[:16]),
        ("max-length", wire.i32(0x7FFFFFFF) + garbage[:8]),
        ("negative-length", wire.i32(-rng.randrange(1, 1 << 31)) + garbage[:8]),
        ("zero-length", wire.i32(0)),
        ("header-only-truncated", wire.i32(2) + wire.i16(3)),
        ("truncated-request", wire.i32(len(metadata) + 50) + metadata[4:]),
        ("half-frame-then-close", metadata[: rng.randrange(1, len(metadata))]),
        ("unknown-api-key", wire.frame(header(rng.choice([99, 1000, 32767, -1, -32768]), 0, corr))),
        ("unsupported-api-versions", wire.frame(header(wire.API_API_VERSIONS, rng.choice([5, 99, 32767, -1]), corr))),
        ("unsupported-metadata", wire.frame(header(wire.API_METADATA, rng.choice([14, 99, 32767, -1]), corr))),
        ("unsupported-produce", wire.frame(header(wire.API_PRODUCE, rng.choice([1, 2, 99]), corr) + garbage)),
        ("metadata-garbage-body", wire.frame(header(wire.API_METADATA, rng.randrange(0, 13), corr) + garbage)),
        ("produce-garbage-body", wire.frame(header(wire.API_PRODUCE, rng.randrange(3, 12), corr) + garbage)),
        ("fetch-garbage-body", wire.frame(header(wire.API_FETCH, rng.randrange(4, 17), corr) + garbage)),
        ("createtopics-garbage-body", wire.frame(header(19, rng.randrange(2, 7), corr) + garbage)),
        ("client-id-overrun", wire.frame(wire.i16(3) + wire.i16(1) + wire.i32(corr) + wire.i16(30000) + b"x")),
        ("array-length-overrun", wire.frame(header(wire.API_METADATA, 1, corr) + wire.i32(0x7FFFFFF0))),
        ("negative-array-length", wire.frame(header(wire.API_METADATA, 1, corr) + wire.i32(-7))),
        ("flexible-bad-varint", wire.frame(header(wire.API_METADATA, 12, corr)[:-2] + b"\xff" * 12)),
    ]


async def abuse_connection(host: str, port: int, rng: random.Random, counts: dict[str, int]) -> int:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        counts["connect-refused"] = counts.get("connect-refused", 0) + 1
        return 0
    sent = 0
    try:
        # Sometimes start with a valid request, so the bad frame comes mid-conversation.
        if rng.random() < 0.3:
            writer.write(wire.api_versions_v0(1))
        for _ in range(rng.randrange(1, 12)):
            name, data = rng.choice(malformed_frames(rng, rng.randrange(1 << 31)))
            counts[name] = counts.get(name, 0) + 1
            writer.write(data)
            sent += 1
            if rng.random() < 0.2:
                break  # disconnect right after a (possibly partial) frame
        await writer.drain()
        try:
            await asyncio.wait_for(reader.read(1 << 16), READ_TIMEOUT_S)
        except (asyncio.TimeoutError, ConnectionError):
            pass
    except ConnectionError:
        pass  # the broker hung up on us: fine
    finally:
        writer.transport.abort()
    return sent


async def abuse(host: str, port: int, seed: int) -> tuple[int, dict[str, int]]:
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> int:
        async with slots:
            return await abuse_connection(host, port, random.Random(rng.randrange(1 << 62) + i), counts)

    sent = sum(await asyncio.gather(*(one(i) for i in range(CONNECTIONS))))
    while sent < FRAMES_MIN:
        sent += await one(sent)
    return sent, counts


def test_broker_survives_malformed_frames(broker):
    seed = int(os.environ.get("COMPAT_SEED", random.SystemRandom().randrange(1 << 31)))
    print(f"malformed frames seed={seed} (rerun with COMPAT_SEED={seed})")
    sent, counts = asyncio.run(abuse(broker.host, broker.port, seed))
    print(f"sent {sent} malformed frames over {CONNECTIONS}+ connections: {dict(sorted(counts.items()))}")
    assert sent >= FRAMES_MIN

    assert broker.alive(), f"broker died (seed={seed}):\n{broker.log_tail()}"
    assert wire.api_versions(broker.host, broker.port), "ApiVersions no longer answered"
    assert wire.metadata_brokers(broker.host, broker.port), "Metadata no longer answered"

    topic = "after-malformed"
    create_topic(broker.bootstrap, topic, 3)
    acks = produce(broker.bootstrap, topic, "lz4", 1000)
    assert len(acks) == 1000
    values = read_partitions(broker.bootstrap, topic, 3)
    assert sum(len(v) for v in values.values()) == 1000
    assert broker.alive()
