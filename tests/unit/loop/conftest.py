"""Fixtures of the collect/label tests: one real loopback upstream per module, reset
for each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.upstream_server import UpstreamServer


@pytest.fixture(scope="module")
def _server() -> Iterator[UpstreamServer]:
    with UpstreamServer(name="up") as server:
        yield server


@pytest.fixture
def upstream(_server: UpstreamServer) -> Iterator[UpstreamServer]:
    _server.state.reset()
    yield _server
    _server.state.reset()
