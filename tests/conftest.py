"""Shared fixtures: real nats-server processes on free ports with temporary directories, and
the rule that only tests marked `integration` start processes."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from stack_support import Launch, launcher_factory

from archive.eventstore.jetstream import JetStreamEventStore
from archive.natsserver import NatsServer

# `stack` (ingest + search on real NATS) for the integration tests; `archive`, `token`,
# `client`, `archive_env` (the real servicers on in-memory stores) for the SDK and CLI tests;
# `pki` (one development PKI) and `openssl_installed` for the seal and time-stamp tests.
pytest_plugins = ["ingest_stack", "archive_in_memory", "pki"]


@pytest.fixture(autouse=True)
def _processes_need_the_integration_marker(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pytest -m "not integration"` is the fast unit run, so a test without the marker may
    not start a process (nats-server, the launcher, openssl, ...): it fails, saying so.
    Every process goes through Popen._execute_child (subprocess.run and asyncio too)."""
    if request.node.get_closest_marker("integration") is not None:
        return

    def refuse(self: subprocess.Popen[bytes], args: object, *rest: object) -> None:
        pytest.fail(
            f"{request.node.nodeid} starts a process ({args!r}): mark this test integration",
            pytrace=False,
        )

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)


@pytest.fixture(scope="session")
def _session_nats_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[], NatsServer]]:
    """Starts the session's server on first use, from a test (so the guard above applies)."""
    started: list[NatsServer] = []

    def get() -> NatsServer:
        if not started:
            started.append(NatsServer(store_dir=tmp_path_factory.mktemp("nats")).start())
        return started[0]

    yield get
    for server in started:
        server.stop()


@pytest.fixture
def nats_server(_session_nats_server: Callable[[], NatsServer]) -> NatsServer:
    """One real server for the session; tests isolate themselves with unique stream names."""
    return _session_nats_server()


@pytest.fixture
def own_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A server of the test's own, for tests that kill or stop it."""
    server = NatsServer(store_dir=tmp_path / "nats").start()
    yield server
    server.stop()


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """umask 022, the common default, for tests of file modes: under it a file created without
    a mode of its own is readable by everyone. Request it before the fixture creating files."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


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
