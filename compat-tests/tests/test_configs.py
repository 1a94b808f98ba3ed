"""Configs through Kafka's own `kafka-configs` (kafka.admin.ConfigCommand from the tools classpath)
and confluent-kafka's AdminClient: topics described with --all and synonyms, altered and
reset; broker configs with their static and default sources; group configs validated against
the broker's bounds; broker loggers listed and changed live; the legacy AlterConfigs API
(librdkafka's alter_configs) replacing a topic's overrides. Runs against Apache Kafka too
(BROKER=kafka), so the assertions are Kafka's behaviour."""

from __future__ import annotations

import re

from confluent_kafka import Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewTopic)

from harness.broker import broker_kind
from harness.tools import tool_process
from harness.wait import wait_until

TOOL_MAIN = "kafka.admin.ConfigCommand"
STATIC_RETENTION_MS = "7200000"
BROKER_OVERRIDES = {"log.retention.ms": STATIC_RETENTION_MS, "group.initial.rebalance.delay.ms": "0"}
IS_KAFKA = broker_kind() == "kafka"


def kafka_configs(bootstrap: str, *args: str, ok: bool = True) -> str:
    proc = tool_process(TOOL_MAIN, "--bootstrap-server", bootstrap, *args, jar="kafka_2.13-*.jar")
    out = proc.stdout + proc.stderr
    if ok:
        assert proc.returncode == 0, f"kafka-configs {' '.join(args)} exited {proc.returncode}:\n{out[-4000:]}"
    else:
        assert proc.returncode != 0, f"kafka-configs {' '.join(args)} should have failed:\n{out[-4000:]}"
    return out


def entries(out: str) -> dict[str, tuple[str, str]]:
    """`  name=value sensitive=false synonyms={...}` lines: name → (value, synonyms)."""
    found = {}
    for m in re.finditer(r"^\s+(\S+?)=(.*?) sensitive=(?:true|false) synonyms=\{(.*)\}$", out, re.M):
        found[m.group(1)] = (m.group(2), m.group(3))
    return found


def create_topic(bootstrap: str, topic: str, config: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config=config or {})], operation_timeout=30)[topic].result(60)


def test_topic_describe_all_alter_and_delete(broker):
    topic = "configs-topic"
    create_topic(broker.bootstrap, topic, {"segment.bytes": "1048576"})
    every = entries(kafka_configs(broker.bootstrap, "--describe", "--entity-type", "topics", "--entity-name", topic,
                                  "--all"))
    assert every["retention.ms"] == (STATIC_RETENTION_MS, f"STATIC_BROKER_CONFIG:log.retention.ms={STATIC_RETENTION_MS}, "
                                                          "DEFAULT_CONFIG:log.retention.hours=168"), every["retention.ms"]
    assert every["segment.bytes"] == ("1048576", "DYNAMIC_TOPIC_CONFIG:segment.bytes=1048576, "
                                                 "DEFAULT_CONFIG:log.segment.bytes=1073741824"), every["segment.bytes"]
    assert every["cleanup.policy"] == ("delete", "DEFAULT_CONFIG:log.cleanup.policy=delete"), every["cleanup.policy"]
    assert every["segment.ms"] == ("604800000", ""), every["segment.ms"]

    kafka_configs(broker.bootstrap, "--alter", "--entity-type", "topics", "--entity-name", topic,
                  "--add-config", "retention.ms=1000,cleanup.policy=[compact,delete]")
    dynamic = entries(kafka_configs(broker.bootstrap, "--describe", "--entity-type", "topics", "--entity-name", topic))
    assert set(dynamic) == {"retention.ms", "cleanup.policy", "segment.bytes"}, dynamic
    assert dynamic["retention.ms"][1].startswith("DYNAMIC_TOPIC_CONFIG:retention.ms=1000, STATIC_BROKER_CONFIG:"), dynamic
    assert dynamic["cleanup.policy"][0] == "compact,delete", dynamic

    kafka_configs(broker.bootstrap, "--alter", "--entity-type", "topics", "--entity-name", topic,
                  "--delete-config", "retention.ms")
    dynamic = entries(kafka_configs(broker.bootstrap, "--describe", "--entity-type", "topics", "--entity-name", topic))
    assert set(dynamic) == {"cleanup.policy", "segment.bytes"}, dynamic
    bad = kafka_configs(broker.bootstrap, "--alter", "--entity-type", "topics", "--entity-name", topic,
                        "--add-config", "retention.ms=soon", ok=False)
    assert "InvalidConfigurationException" in bad, bad[-2000:]


def test_broker_describe_shows_static_and_default_sources(broker):
    every = entries(kafka_configs(broker.bootstrap, "--describe", "--entity-type", "brokers", "--entity-name", "1",
                                  "--all"))
    assert every["log.retention.ms"] == (STATIC_RETENTION_MS, f"STATIC_BROKER_CONFIG:log.retention.ms={STATIC_RETENTION_MS}, "
                                                              "DEFAULT_CONFIG:log.retention.hours=168"), every["log.retention.ms"]
    assert every["log.retention.hours"] == ("168", "DEFAULT_CONFIG:log.retention.hours=168"), every["log.retention.hours"]
    assert every["num.partitions"][0] == "1", every["num.partitions"]
    # One broker: __consumer_offsets can only have one replica, and that is the value in force
    # (the launcher sets 1 for Kafka, which otherwise could not create the topic).
    assert every["offsets.topic.replication.factor"][0] == "1", every["offsets.topic.replication.factor"]
    # Without --all only dynamic broker configs are listed: there are none.
    assert entries(kafka_configs(broker.bootstrap, "--describe", "--entity-type", "brokers", "--entity-name", "1")) == {}
    refused = kafka_configs(broker.bootstrap, "--alter", "--entity-type", "brokers", "--entity-name", "1",
                            "--add-config", "log.dirs=/elsewhere", ok=False)
    assert "Cannot update these configs dynamically: [log.dirs]" in refused, refused[-2000:]


def test_group_configs_are_validated_and_described(broker):
    group = "configs-group"
    kafka_configs(broker.bootstrap, "--alter", "--entity-type", "groups", "--entity-name", group,
                  "--add-config", "consumer.session.timeout.ms=50000,consumer.heartbeat.interval.ms=6000")
    dynamic = entries(kafka_configs(broker.bootstrap, "--describe", "--entity-type", "groups", "--entity-name", group))
    assert dynamic == {
        "consumer.session.timeout.ms": ("50000", "DYNAMIC_GROUP_CONFIG:consumer.session.timeout.ms=50000, "
                                                 "DEFAULT_CONFIG:group.consumer.session.timeout.ms=45000"),
        "consumer.heartbeat.interval.ms": ("6000", "DYNAMIC_GROUP_CONFIG:consumer.heartbeat.interval.ms=6000, "
                                                  "DEFAULT_CONFIG:group.consumer.heartbeat.interval.ms=5000"),
    }, dynamic
    every = entries(kafka_configs(broker.bootstrap, "--describe", "--entity-type", "groups", "--entity-name", "other",
                                  "--all"))
    assert every["consumer.session.timeout.ms"] == ("45000", "DEFAULT_CONFIG:group.consumer.session.timeout.ms=45000"), every
    assert every["share.session.timeout.ms"] == ("45000", "DEFAULT_CONFIG:group.share.session.timeout.ms=45000"), every
    low = kafka_configs(broker.bootstrap, "--alter", "--entity-type", "groups", "--entity-name", group,
                        "--add-config", "consumer.session.timeout.ms=1000", ok=False)
    assert "consumer.session.timeout.ms must be greater than or equal to group.consumer.min.session.timeout.ms" in low, \
        low[-2000:]
    kafka_configs(broker.bootstrap, "--alter", "--entity-type", "groups", "--entity-name", group,
                  "--delete-config", "consumer.session.timeout.ms,consumer.heartbeat.interval.ms")
    assert entries(kafka_configs(broker.bootstrap, "--describe", "--entity-type", "groups", "--entity-name", group)) == {}


def test_broker_loggers_change_live(broker):
    def loggers() -> dict[str, str]:
        out = kafka_configs(broker.bootstrap, "--describe", "--entity-type", "broker-loggers", "--entity-name", "1")
        return {k: v for k, (v, _) in entries(out).items()}

    before = loggers()
    assert "root" in before, before
    logger = "blumfeld.log" if not IS_KAFKA else next(n for n in sorted(before) if n != "root")
    assert logger in before, before
    kafka_configs(broker.bootstrap, "--alter", "--entity-type", "broker-loggers", "--entity-name", "1",
                  "--add-config", f"{logger}=DEBUG")
    assert loggers()[logger] == "DEBUG"
    if not IS_KAFKA:
        # The new level is in force: the log module's debug events now reach the broker log.
        topic = "configs-rolls"
        create_topic(broker.bootstrap, topic, {"segment.bytes": "1024"})
        p = Producer({"bootstrap.servers": broker.bootstrap})
        for i in range(5):  # one batch each: every one after the first rolls the 1 KiB segment
            p.produce(topic, b"x" * 800, key=str(i).encode())
            assert p.flush(30) == 0
        wait_until(lambda: b"rolled segment" in broker.log_path.read_bytes(), 30, "a DEBUG 'rolled segment' line")
    refused = kafka_configs(broker.bootstrap, "--alter", "--entity-type", "broker-loggers", "--entity-name", "1",
                            "--add-config", f"{logger}=LOUD", ok=False)
    assert "not a supported log level" in refused, refused[-2000:]
    kafka_configs(broker.bootstrap, "--alter", "--entity-type", "broker-loggers", "--entity-name", "1",
                  "--delete-config", logger)
    if not IS_KAFKA:
        assert loggers()[logger] == before["root"]


def describe_topic(admin: AdminClient, topic: str) -> dict[str, ConfigEntry]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return admin.describe_configs([resource], request_timeout=30)[resource].result(60)


def test_confluent_alter_configs_replaces_the_overrides(broker):
    topic = "configs-legacy"
    create_topic(broker.bootstrap, topic)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})

    def alter(configs: dict[str, str], validate_only: bool = False) -> None:
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config=configs)
        admin.alter_configs([resource], validate_only=validate_only, request_timeout=30)[resource].result(60)

    alter({"retention.ms": "5000", "max.message.bytes": "2000000"})
    # Kafka's broker applies the controller's change a moment later: wait for it.
    got = wait_until(lambda: (d := describe_topic(admin, topic))["retention.ms"].value == "5000" and d, 30,
                     "retention.ms=5000")
    assert got["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    synonyms = [(s.name, s.value, s.source) for s in got["retention.ms"].synonyms.values()]
    assert synonyms[0] == ("retention.ms", "5000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value), synonyms
    assert ("log.retention.ms", STATIC_RETENTION_MS, ConfigSource.STATIC_BROKER_CONFIG.value) in synonyms, synonyms

    # A full replacement: retention.ms is not listed, so it reverts to the broker's value.
    alter({"max.message.bytes": "3000000"})
    got = wait_until(lambda: (d := describe_topic(admin, topic))["max.message.bytes"].value == "3000000" and d, 30,
                     "max.message.bytes=3000000")
    assert (got["retention.ms"].value, got["retention.ms"].source) == (STATIC_RETENTION_MS,
                                                                      ConfigSource.STATIC_BROKER_CONFIG.value)
    assert got["max.message.bytes"].value == "3000000"

    alter({"segment.bytes": "2097152"}, validate_only=True)
    assert describe_topic(admin, topic)["max.message.bytes"].value == "3000000"
    try:
        alter({"retention.ms": "soon"})
        raise AssertionError("an invalid value was accepted")
    except Exception as exc:  # KafkaException wrapping INVALID_CONFIG
        assert "INVALID_CONFIG" in str(exc) or "nvalid" in str(exc), exc


def test_confluent_empty_cleanup_policy_is_accepted(broker):
    topic = "configs-empty-policy"
    create_topic(broker.bootstrap, topic)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource], request_timeout=30)[resource].result(60)
    wait_until(lambda: describe_topic(admin, topic)["cleanup.policy"].value == "", 30, "an empty cleanup.policy")
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.APPEND)])
    admin.incremental_alter_configs([resource], request_timeout=30)[resource].result(60)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT)])
    admin.incremental_alter_configs([resource], request_timeout=30)[resource].result(60)
    wait_until(lambda: describe_topic(admin, topic)["cleanup.policy"].value == "", 30, "an empty cleanup.policy")


def test_dynamic_broker_configs_apply_live(broker):
    """`kafka-configs --entity-type brokers` on the default entity and on broker 1: stored,
    described with Kafka's sources, in force at once (a record over the static
    message.max.bytes is accepted once the dynamic value allows it; a topic without overrides
    shows the dynamic default), refused for bad values, and deleted back to the static value."""
    topic = "configs-dynamic-broker"
    create_topic(broker.bootstrap, topic)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    big = b"x" * 1_500_000

    def produce_big() -> str | None:
        errors = []
        p = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 4_000_000,
                      "compression.type": "none", "retries": 0})
        p.produce(topic, big, on_delivery=lambda err, _msg: errors.append(err))
        assert p.flush(30) == 0
        return None if errors[0] is None else errors[0].name()

    assert produce_big() == "MSG_SIZE_TOO_LARGE"
    try:
        kafka_configs(broker.bootstrap, "--alter", "--entity-type", "brokers", "--entity-default",
                      "--add-config", "log.retention.ms=3600000")
        kafka_configs(broker.bootstrap, "--alter", "--entity-type", "brokers", "--entity-name", "1",
                      "--add-config", "message.max.bytes=2000000")
        default = entries(kafka_configs(broker.bootstrap, "--describe", "--entity-type", "brokers", "--entity-default"))
        assert default["log.retention.ms"] == ("3600000", "DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=3600000"), default
        own = wait_until(lambda: (e := entries(kafka_configs(broker.bootstrap, "--describe", "--entity-type", "brokers",
                                                             "--entity-name", "1"))).get("message.max.bytes") and e,
                         30, "broker 1's dynamic message.max.bytes")
        value, synonyms = own["message.max.bytes"]
        assert value == "2000000" and synonyms.startswith("DYNAMIC_BROKER_CONFIG:message.max.bytes=2000000"), own
        # In force: the topic's defaults follow, and the big record now fits.
        got = wait_until(lambda: (d := describe_topic(admin, topic))["retention.ms"].value == "3600000" and d, 30,
                         "retention.ms from the dynamic default")
        assert got["retention.ms"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value, got["retention.ms"]
        wait_until(lambda: describe_topic(admin, topic)["max.message.bytes"].value == "2000000", 30,
                   "max.message.bytes from broker 1's dynamic message.max.bytes")
        assert wait_until(lambda: produce_big() is None, 30, "a 1.5 MB record accepted")

        bad = kafka_configs(broker.bootstrap, "--alter", "--entity-type", "brokers", "--entity-name", "1",
                            "--add-config", "message.max.bytes=huge", ok=False)
        assert "Invalid value huge for configuration message.max.bytes" in bad, bad[-2000:]
    finally:
        kafka_configs(broker.bootstrap, "--alter", "--entity-type", "brokers", "--entity-default",
                      "--delete-config", "log.retention.ms")
        kafka_configs(broker.bootstrap, "--alter", "--entity-type", "brokers", "--entity-name", "1",
                      "--delete-config", "message.max.bytes")
    got = wait_until(lambda: (d := describe_topic(admin, topic))["retention.ms"].value == STATIC_RETENTION_MS and d, 30,
                     "retention.ms back to the static value")
    assert got["retention.ms"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert wait_until(lambda: produce_big() == "MSG_SIZE_TOO_LARGE", 30, "the big record refused again")
