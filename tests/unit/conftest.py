"""Fixtures shared by the unit tests."""

import pytest

from tests.emulator.target import free_port


@pytest.fixture
def dead_endpoint() -> str:
    """A loopback endpoint nothing listens on."""
    return f"127.0.0.1:{free_port()}"
