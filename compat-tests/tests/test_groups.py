"""Consumer groups with real clients, each member its own process: three members share a
6-partition topic while a paced producer writes numbered messages. A and B start, C joins, B
leaves cleanly, then C is SIGKILLed and A must take over its partitions after the session
timeout. Every member commits synchronously after each poll batch and on revocation, so every
acknowledged message is processed exactly once, except what the killed member processed after
its last commit (at-least-once there, by construction).

Java runs twice: the classic protocol and KIP-848 (`group.protocol=consumer`, which Blumfeld does
not serve yet: strict xfail there)."""

from __future__ import annotations

import time

import pytest

from harness.broker import broker_kind
from harness.groups import (PacedProducer, Member, SESSION_TIMEOUT_MS, check_delivery, member_cmd, wait_balanced,
                            wait_consumed)
from tests.test_confluent_kafka import create_topic

PARTITIONS = 6
MESSAGES = 6000
RATE_PER_S = 400  # ~15 s of production: membership changes happen while messages arrive
JOIN_DEADLINE_S = 60
TAKEOVER_DEADLINE_S = SESSION_TIMEOUT_MS / 1000 + 45

BROKER_OVERRIDES = {"group.initial.rebalance.delay.ms": "0"}
if broker_kind() == "kafka":
    # KIP-848 groups: the broker owns session and heartbeat timing (defaults 45 s / 5 s).
    BROKER_OVERRIDES |= {"group.consumer.min.session.timeout.ms": str(SESSION_TIMEOUT_MS),
                         "group.consumer.session.timeout.ms": str(SESSION_TIMEOUT_MS),
                         "group.consumer.min.heartbeat.interval.ms": "500",
                         "group.consumer.heartbeat.interval.ms": "500"}

KIP848_XFAIL = pytest.mark.xfail(broker_kind() == "blumfeld", strict=True,
                                 reason="Blumfeld does not serve the KIP-848 protocol (ConsumerGroupHeartbeat) yet")
CLIENTS = ["java-classic", pytest.param("java-consumer", marks=KIP848_XFAIL), "confluent", "kafka-python",
           "franz-go"]


# The broker must pick the one assignor all members list: "range" is the only one Java
# (range, cooperative-sticky), librdkafka (range, roundrobin) and kafka-python have in common.
MIXED = {"A": "java-classic", "B": "confluent", "C": "kafka-python"}


@pytest.mark.parametrize("client", CLIENTS)
def test_members_join_leave_and_die(broker, tmp_path, client):
    run_scenario(broker, tmp_path, client, {name: client for name in "ABC"})


def test_mixed_clients_one_group(broker, tmp_path):
    run_scenario(broker, tmp_path, "mixed", MIXED)


def run_scenario(broker, tmp_path, label: str, clients: dict[str, str]) -> None:
    topic, group = f"groups-{label}", f"g-{label}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    members: list[Member] = []

    def spawn(name: str) -> Member:
        cmd = member_cmd(clients[name], broker.bootstrap, topic, group, f"{label}-{name}")
        m = Member(name, cmd, tmp_path)
        members.append(m)
        return m

    t0 = time.monotonic()
    try:
        producer = PacedProducer(broker.bootstrap, topic, PARTITIONS, MESSAGES, RATE_PER_S).start()
        a, b = spawn("A"), spawn("B")
        wait_balanced([a, b], members, PARTITIONS, JOIN_DEADLINE_S, "A and B to share the partitions")

        producer.wait_sent(MESSAGES // 4)
        c = spawn("C")
        wait_balanced([a, b, c], members, PARTITIONS, JOIN_DEADLINE_S, "C to get a share")

        producer.wait_sent(MESSAGES // 2)
        b.close()
        wait_balanced([a, c], members, PARTITIONS, JOIN_DEADLINE_S, "A and C to take over B's partitions")

        producer.wait_sent(3 * MESSAGES // 4)
        c.kill9()
        killed_committed = dict(c.committed)
        t_kill = time.monotonic()
        wait_balanced([a], members, PARTITIONS, TAKEOVER_DEADLINE_S, "A to take over the killed C's partitions")
        takeover_s = time.monotonic() - t_kill

        produced = producer.join()
        wait_consumed(members, produced, 120)
        summary = check_delivery(members, produced, killed=c, killed_committed=killed_committed)
        per_member = {m.name: len(m.records) for m in members}
        assert all(per_member.values()), f"a member processed nothing while it owned partitions: {per_member}"
        a.close()
        summary["per_member"] = per_member
        print(f"{label}: {summary}; takeover after SIGKILL {takeover_s:.1f}s; total {time.monotonic() - t0:.1f}s")
    finally:
        for m in members:
            m.ensure_gone()
