"""Fixtures for the SDK and CLI tests: the in-memory archive served over real gRPC
(tests/fake_archive.py), tenant `acme` with a token, and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from fake_archive import OPERATOR_TOKEN, FakeArchive, FakeArchiveServer

from archive.client import ArchiveClient, ClientConfig


@pytest.fixture
def server() -> Iterator[FakeArchiveServer]:
    with FakeArchiveServer() as running:
        yield running


@pytest.fixture
def archive(server: FakeArchiveServer) -> FakeArchive:
    return server.archive


@pytest.fixture
def token(archive: FakeArchive) -> str:
    return archive.add_tenant("acme", "ACME Corp")


def make_config(server: FakeArchiveServer, token: str | None, **overrides: object) -> ClientConfig:
    settings: dict[str, object] = {
        "token": token,
        "operator_token": OPERATOR_TOKEN,
        "timeout": 5.0,
        "transfer_timeout": 10.0,
        "initial_backoff": 0.001,
        "max_backoff": 0.01,
    }
    settings.update(overrides)
    return ClientConfig(server.endpoint, **settings)  # type: ignore[arg-type]


@pytest.fixture
async def client(server: FakeArchiveServer, token: str) -> AsyncIterator[ArchiveClient]:
    async with ArchiveClient(make_config(server, token)) as connected:
        yield connected
