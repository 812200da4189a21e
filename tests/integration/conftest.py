import pytest

from gateway.broker import EmbeddedBroker
from tests.integration.harness import EmulatorProcess, Topics


@pytest.fixture(scope="session")
def broker():
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture(scope="session")
def emulator():
    emu = EmulatorProcess()
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
