import pytest

from testkit.brokers.choice import BROKER, make_broker, start_broker
from testkit.processes import EmulatorProcess
from testkit.topics import Topics


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Apache Kafka-only tests (real SASL/SSL, the three-broker cluster, exact lag) skip on tansu."""
    if BROKER != "tansu":
        return
    skip = pytest.mark.skip(reason="needs Apache Kafka (SG_TEST_BROKER=tansu)")
    for item in items:
        if item.get_closest_marker("kafka_only") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def broker():
    """One broker for the session: Apache Kafka (KRaft, one node) or tansu, by SG_TEST_BROKER."""
    b = make_broker(BROKER)
    start_broker(b)
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def emulator():
    emu = EmulatorProcess().start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def emu(emulator):
    """The shared emulator, healed before and after each test."""
    emulator.reset()
    yield emulator
    emulator.reset()


@pytest.fixture
async def topics(broker):
    t = Topics(broker.bootstrap)
    await t.create()
    return t
