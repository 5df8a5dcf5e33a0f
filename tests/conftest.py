"""Shared fixtures: real nats-server processes on free ports with temporary directories."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from stack_support import Launch, launcher_factory

from archive.eventstore.jetstream import JetStreamEventStore
from archive.natsserver import NatsServer

# `stack` (ingest + search on real NATS) for the integration tests; `server`, `archive`,
# `token`, `client` (the in-memory archive over gRPC) for the SDK and CLI tests.
pytest_plugins = ["ingest_stack", "fake_archive_fixtures"]


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One real server for the session; tests isolate themselves with unique stream names."""
    server = NatsServer(store_dir=tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()


@pytest.fixture
def own_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A server of the test's own, for tests that kill or stop it."""
    server = NatsServer(store_dir=tmp_path / "nats").start()
    yield server
    server.stop()


def unique_names() -> dict[str, str]:
    suffix = uuid.uuid4().hex[:12]
    return {"stream_name": f"EV_{suffix}", "subject_prefix": f"ev{suffix}"}


@pytest.fixture
async def jetstream_store(nats_server: NatsServer) -> AsyncIterator[JetStreamEventStore]:
    store = await JetStreamEventStore.connect(nats_server.url, **unique_names())
    yield store
    await store.close()


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Callable[..., Launch]]:
    """Starts `archive up` (see stack_support); kills what is left at teardown."""
    yield from launcher_factory(tmp_path)
