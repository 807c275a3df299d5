"""Shared fixtures: real server processes on real sockets and files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from tests.support import ServerProcess


@pytest.fixture
def zmq_context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:{tmp_path / 'store' / 'events.db'}"


@pytest.fixture(params=["memory", "sqlite"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """A running server, once per storage backend."""
    storage = "memory:" if request.param == "memory" else f"sqlite:{tmp_path / 'events.db'}"
    with ServerProcess(storage) as process:
        yield process


@pytest.fixture
def sqlite_server(sqlite_url: str) -> Iterator[ServerProcess]:
    """A running server on an SQLite file (for restart and durability tests)."""
    with ServerProcess(sqlite_url) as process:
        yield process
