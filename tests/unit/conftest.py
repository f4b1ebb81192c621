"""Fixtures shared by the unit tests."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from tests.emulator.target import free_port
from tests.support.raw_server import RawServer


@pytest.fixture
def dead_endpoint() -> str:
    """A loopback endpoint nothing listens on."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    """Start RawServers (on ports the kernel picks); all are closed afterwards."""
    servers: list[RawServer] = []

    def start(behaviour: Callable[[socket.socket], None], host: str = "127.0.0.1") -> RawServer:
        servers.append(RawServer(behaviour, host))
        return servers[-1]

    try:
        yield start
    finally:
        for server in servers:
            server.close()
