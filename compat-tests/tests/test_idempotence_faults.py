"""Idempotent producers through a proxy that cuts connections at random moments: every number
arrives exactly once and in order per partition (Java default producer, franz-go default)."""

from __future__ import annotations

import os
import random

import pytest

from harness.clients import go_cmd, java_cmd, run_driver
from harness.proxy import ChaosProxy
from harness.readback import read_partitions

COUNT = int(os.environ.get("COMPAT_IDEMPOTENT_COUNT", "20000"))
PARTITIONS = 4
# Records per second: ~8 s of stream to cut into for Java. franz-go backs off after each cut
# before it reconnects, so it lives through fewer connections per second (9-18 cuts in 8 s):
# it gets ~16 s, so the proxy's cut count reliably clears the bar below.
RATE_PER_S = {"java": int(os.environ.get("COMPAT_IDEMPOTENT_RATE", "2500")),
              "franz-go": int(os.environ.get("COMPAT_IDEMPOTENT_RATE", "1250"))}

DRIVERS = {"java": java_cmd, "franz-go": go_cmd}


@pytest.mark.parametrize("client", sorted(DRIVERS))
def test_numbers_exactly_once_through_cutting_proxy(broker_factory, client):
    seed = int(os.environ.get("COMPAT_SEED", random.SystemRandom().randrange(1 << 31)))
    print(f"chaos proxy seed={seed} (rerun with COMPAT_SEED={seed})")
    proxy = ChaosProxy("127.0.0.1", 0, seed)
    proxy_port = proxy.start()
    try:
        broker = broker_factory.start({"advertised.listeners": f"PLAINTEXT://127.0.0.1:{proxy_port}"})
        proxy.set_upstream(broker.host, broker.port)
        via_proxy = f"127.0.0.1:{proxy_port}"
        topic = f"idem-{client}"
        cmd = DRIVERS[client]
        run_driver(cmd("create-topic", "--bootstrap", via_proxy, "--topic", topic, "--partitions", str(PARTITIONS)),
                   timeout_s=120)

        proxy.chaos = True
        out = run_driver(cmd("idempotent-produce", "--bootstrap", via_proxy, "--topic", topic,
                             "--partitions", str(PARTITIONS), "--count", str(COUNT), "--rate", str(RATE_PER_S[client])),
                         timeout_s=300)
        proxy.chaos = False
        print(out[-2000:])
        print(f"proxy: {proxy.connections} connections, {proxy.cuts} cut (seed={seed})")
        assert proxy.cuts >= 10, f"the proxy cut only {proxy.cuts} connections (seed={seed}): the test proved nothing"

        values = read_partitions(via_proxy, topic, PARTITIONS)
        seen: dict[int, int] = {}
        for p, vals in values.items():
            numbers = [int(v) for v in vals]
            for n in numbers:
                assert n % PARTITIONS == p, f"seed={seed}: {n} found in partition {p}"
                assert n not in seen, f"seed={seed}: {n} written twice (partition {p})"
                seen[n] = p
            assert numbers == sorted(numbers), f"seed={seed}: partition {p} out of order"
        missing = sorted(set(range(COUNT)) - set(seen))
        assert not missing, f"seed={seed}: {len(missing)} numbers missing, e.g. {missing[:10]}"
        assert len(seen) == COUNT
    finally:
        proxy.stop()
