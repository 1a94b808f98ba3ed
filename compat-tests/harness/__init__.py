"""Harness for Blumfeld's real-client compatibility tests.

Modules:
- wait: condition waits with deadlines (the only way tests synchronise).
- broker: start/stop/kill -9/restart a broker process (Blumfeld or Apache Kafka) on a data dir.
- kafka_launcher: runs Apache Kafka 4.x in KRaft combined mode behind Blumfeld's command line.
- wire: a minimal raw Kafka protocol client (probes, raw Fetch, malformed frames).
- proxy: a seeded, connection-cutting TCP proxy for fault tests.
- clients: paths to the Java and Go drivers and a helper to run them.
"""
