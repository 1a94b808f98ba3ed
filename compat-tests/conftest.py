"""Fixtures: a broker per test module (or per test), each with its own data dir and port."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.broker import BrokerProcess, broker_kind


def pytest_report_header(config):
    return f"broker under test: {broker_kind()}"


class BrokerFactory:
    """Starts brokers in a work dir and guarantees they are all gone at teardown."""

    def __init__(self, base: Path):
        self.base = base
        self.brokers: list[BrokerProcess] = []

    def create(self, overrides: dict[str, str] | None = None, name: str | None = None) -> BrokerProcess:
        broker = BrokerProcess(self.base / (name or f"broker{len(self.brokers)}"), overrides)
        self.brokers.append(broker)
        return broker

    def start(self, overrides: dict[str, str] | None = None, name: str | None = None) -> BrokerProcess:
        broker = self.create(overrides, name)
        broker.start()
        return broker

    def close(self, failed: bool) -> None:
        for broker in self.brokers:
            broker.stop()
        if failed:
            for broker in self.brokers:
                print(f"--- {broker.workdir} (log tail) ---\n{broker.log_tail()}")
        else:
            shutil.rmtree(self.base, ignore_errors=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.failed:
        item.session.compat_failed = True
    return rep


@pytest.fixture
def broker_factory(tmp_path, request):
    factory = BrokerFactory(tmp_path / "brokers")
    yield factory
    factory.close(getattr(request.session, "compat_failed", False))


@pytest.fixture(scope="module")
def module_broker_factory(tmp_path_factory, request):
    factory = BrokerFactory(tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2]))
    yield factory
    factory.close(getattr(request.session, "compat_failed", False))


@pytest.fixture(scope="module")
def broker(module_broker_factory, request) -> BrokerProcess:
    """A running broker shared by one test module; a module sets BROKER_OVERRIDES to tune it."""
    overrides = getattr(request.module, "BROKER_OVERRIDES", {})
    return module_broker_factory.start(overrides, name="broker")
