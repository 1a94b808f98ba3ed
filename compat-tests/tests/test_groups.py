"""Consumer groups with real clients, each member its own process: three members share a
6-partition topic while a paced producer writes numbered messages. A and B start, C joins, B
leaves cleanly, then C is SIGKILLed and A must take over its partitions after the session
timeout. Every member commits synchronously after each poll batch and on revocation, so every
acknowledged message is processed exactly once, except what the killed member processed after
its last commit (at-least-once there, by construction).

Java runs twice: the classic protocol and KIP-848 (`group.protocol=consumer`) on a broker of its
own with short KIP-848 session and heartbeat settings. That test is a strict xfail when the
broker does not advertise ConsumerGroupHeartbeat in ApiVersions (Blumfeld before KIP-848)."""

from __future__ import annotations

import time

import pytest

from harness import wire
from harness.broker import BrokerDied, broker_kind
from harness.groups import (PacedProducer, Member, SESSION_TIMEOUT_MS, check_delivery, member_cmd, wait_balanced,
                            wait_consumed, wait_progress)
from tests.test_confluent_kafka import create_topic

PARTITIONS = 6
MESSAGES = 6000  # at least; the stream goes on until the last membership change has been seen
MESSAGES_MAX = 100_000
RATE_PER_S = 400  # membership changes happen while messages arrive
JOIN_DEADLINE_S = 60
TAKEOVER_DEADLINE_S = SESSION_TIMEOUT_MS / 1000 + 45

BROKER_OVERRIDES = {"group.initial.rebalance.delay.ms": "0"}

STATIC_SESSION_TIMEOUT_MS = 30_000

# KIP-848 groups: the broker owns session and heartbeat timing (defaults 45 s / 5 s).
KIP848_OVERRIDES = {"group.consumer.session.timeout.ms": str(SESSION_TIMEOUT_MS),
                    "group.consumer.heartbeat.interval.ms": "500"}
if broker_kind() == "kafka":
    KIP848_OVERRIDES |= {"group.consumer.min.session.timeout.ms": str(SESSION_TIMEOUT_MS),
                         "group.consumer.min.heartbeat.interval.ms": "500"}
CONSUMER_GROUP_HEARTBEAT = 68  # API key

CLIENTS = ["java-classic", "confluent", "kafka-python", "franz-go"]


# The broker must pick the one assignor all members list: "range" is the only one Java
# (range, cooperative-sticky), librdkafka (range, roundrobin) and kafka-python have in common.
MIXED = {"A": "java-classic", "B": "confluent", "C": "kafka-python"}


@pytest.mark.parametrize("client", CLIENTS)
def test_members_join_leave_and_die(broker, tmp_path, client):
    run_scenario(broker, tmp_path, client, {name: client for name in "ABC"})


def test_mixed_clients_one_group(broker, tmp_path):
    run_scenario(broker, tmp_path, "mixed", MIXED)


def test_kip848_members_join_leave_and_die(broker_factory, tmp_path, request):
    try:
        broker = broker_factory.start({**BROKER_OVERRIDES, **KIP848_OVERRIDES}, name="kip848")
    except BrokerDied as exc:
        if "group.consumer." not in str(exc):
            raise
        # A Blumfeld from before KIP-848 does not know the keys: run it without them.
        broker = broker_factory.start(BROKER_OVERRIDES, name="kip848-defaults")
    if CONSUMER_GROUP_HEARTBEAT not in wire.api_versions(broker.host, broker.port):
        request.applymarker(pytest.mark.xfail(strict=True, reason="the broker does not advertise "
                                              "ConsumerGroupHeartbeat: no KIP-848 (group.protocol=consumer)"))
    # Kafka 4.3 accepts a commit made with a member's previous epoch for partitions the member
    # still owns (KIP-1251, assignment epochs), so a careful KIP-848 member never sees a failed
    # commit there; a STALE_MEMBER_EPOCH answer risks processing records twice.
    run_scenario(broker, tmp_path, "java-consumer", {name: "java-consumer" for name in "ABC"},
                 commits_must_succeed=True)


def test_static_members_restart_without_rebalance(broker, tmp_path):
    """KIP-345: a SIGKILLed member that comes back with the same group.instance.id within the
    session timeout gets its partitions back without a rebalance (the other member's rebalance
    callbacks do not run). B joins first, so it is the leader; it restarts first, then A."""
    topic, group = "groups-static", "g-static"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    members: list[Member] = []

    def spawn(name: str, instance: str) -> Member:
        # The restart must land within the session: a JVM starting on a busy machine can take
        # longer than the 6 s the other tests use.
        cmd = member_cmd("java-classic", broker.bootstrap, topic, group, f"static-{name}", instance_id=instance,
                         session_timeout_ms=STATIC_SESSION_TIMEOUT_MS)
        members.append(Member(name, cmd, tmp_path))
        return members[-1]

    def restart(victim: Member, other: Member, name: str, instance: str) -> Member:
        other_reports, victim_owned = other.owned_reports, victim.owned
        victim.kill9()
        back = spawn(name, instance)
        wait_balanced([other, back], members, PARTITIONS, JOIN_DEADLINE_S, f"{instance} to come back")
        wait_progress([other, back], members, JOIN_DEADLINE_S, f"{other.name} and {name} to process records")
        assert back.owned == victim_owned, f"{instance} came back with {sorted(back.owned)}, had {sorted(victim_owned)}"
        assert other.owned_reports == other_reports, \
            f"{instance} coming back rebalanced the group ({other.name}'s rebalance callbacks ran)"
        return back

    try:
        producer = PacedProducer(broker.bootstrap, topic, PARTITIONS, MESSAGES_MAX, RATE_PER_S).start()
        b = spawn("B", "static-b")
        wait_balanced([b], members, PARTITIONS, JOIN_DEADLINE_S, "B to own every partition")
        a = spawn("A", "static-a")
        wait_balanced([a, b], members, PARTITIONS, JOIN_DEADLINE_S, "A and B to share the partitions")
        wait_progress([a, b], members, JOIN_DEADLINE_S, "A and B to process records")

        b2 = restart(b, a, "B2", "static-b")  # the leader
        a2 = restart(a, b2, "A2", "static-a")

        producer.stop_at(producer.sent + RATE_PER_S // 2)
        produced = producer.join()
        wait_consumed(members, produced, 120)
        summary = check_delivery(members, produced)
        a2.close()
        b2.close()
        print(f"static: {summary}")
    finally:
        for m in members:
            m.ensure_gone()


def run_scenario(broker, tmp_path, label: str, clients: dict[str, str], commits_must_succeed: bool = False) -> None:
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
        producer = PacedProducer(broker.bootstrap, topic, PARTITIONS, MESSAGES_MAX, RATE_PER_S).start()
        a, b = spawn("A"), spawn("B")
        wait_balanced([a, b], members, PARTITIONS, JOIN_DEADLINE_S, "A and B to share the partitions")
        wait_progress([a, b], members, JOIN_DEADLINE_S, "A and B to process records")

        producer.wait_sent(MESSAGES // 4)
        c = spawn("C")
        wait_balanced([a, b, c], members, PARTITIONS, JOIN_DEADLINE_S, "C to get a share")
        wait_progress([a, b, c], members, JOIN_DEADLINE_S, "A, B and C to process records")

        producer.wait_sent(MESSAGES // 2)
        b.close()
        wait_balanced([a, c], members, PARTITIONS, JOIN_DEADLINE_S, "A and C to take over B's partitions")
        wait_progress([a, c], members, JOIN_DEADLINE_S, "A and C to process records")

        producer.wait_sent(3 * MESSAGES // 4)
        c.kill9()
        t_kill = time.monotonic()
        wait_balanced([a], members, PARTITIONS, TAKEOVER_DEADLINE_S, "A to take over the killed C's partitions")
        takeover_s = time.monotonic() - t_kill
        wait_progress([a], members, JOIN_DEADLINE_S, "A to process records after the takeover")

        producer.stop_at(max(MESSAGES, producer.sent + RATE_PER_S // 2))
        produced = producer.join()
        wait_consumed(members, produced, 120)
        summary = check_delivery(members, produced)
        assert not (commits_must_succeed and summary["commit_failures"]), \
            f"commits of partitions the member owned failed: {summary['commit_failures']}"
        per_member = {m.name: m.snapshot()[1] for m in members}
        assert all(per_member.values()), f"a member processed nothing while it owned partitions: {per_member}"
        a.close()
        summary["per_member"] = per_member
        print(f"{label}: {summary}; takeover after SIGKILL {takeover_s:.1f}s; "
              f"total {time.monotonic() - t0:.1f}s")
    finally:
        for m in members:
            m.ensure_gone()
