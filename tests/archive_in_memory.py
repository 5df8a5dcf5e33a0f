"""The archive in one process, for the SDK and CLI tests.

The real Ingest, TenantAdmin, Tenancy, Search and Sealing servicers (with a running sealer,
so evidence and checkpoints are real) on the in-memory event and blob stores, behind the real
auth and error interceptors (`build_server`), served over gRPC on a free loopback port from a
thread of its own: async tests and the CLI (which runs its own `asyncio.run`) both reach it.
Tenant `acme` exists, with a token, and a first checkpoint covers its setup.

Faults come from outside the servicers, as they do in production: the event store stops
answering appends of deposits and consultations (before or after they are committed: a lost
acknowledgement), the time-stamp authority goes down (nothing gets sealed), a stored copy
rots, the server restarts on its port. A test needing other deposit limits marks itself
`@pytest.mark.archive_settings(max_document_bytes=1000)`.
"""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final, TypeVar

import grpc
import grpc.aio
import pytest
from waiting import eventually

from archive.access import ACCESS_CATEGORY
from archive.blobstore.memory import InMemoryBlobStore
from archive.client import ArchiveClient, ClientConfig, is_local_endpoint
from archive.config import Secret, Settings
from archive.documents import DOCUMENT_CATEGORY, document_stream
from archive.eventstore import (
    AppendResult,
    ExpectedVersion,
    NewEvent,
    StoreUnavailable,
    StreamName,
    first_event,
)
from archive.eventstore.memory import InMemoryEventStore
from archive.grpcserver import ArchiveServer, Registration, build_server
from archive.projections import ProjectionRunner
from archive.sealing.cms import seal_detached
from archive.sealing.keys import DevelopmentPKI
from archive.tenancy.registry import TenantRegistry
from archive.v1 import (
    events_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    sealing_pb2,
    sealing_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)
from services.ingest.servicer import IngestServicer
from services.ingest.tenancy_servicer import tenancy_registrations
from services.sealing.main import (
    checkpoint_verifier,
    load_keys,
    timestamper,
    trust_material,
    tsa_client,
)
from services.sealing.sealer import Sealer, Stamp, TimestampFunction, TimestampUnavailable
from services.sealing.servicer import SealingServicer
from services.search.registry import DocumentRegistryProjection, RegistryQueries
from services.search.servicer import SearchServicer

T = TypeVar("T")

OPERATOR_TOKEN: Final = "operator-token-for-sdk-tests-0123456789"
ORIGIN: Final = "archive.test"
TENANT: Final = "acme"
INGESTED: Final = events_pb2.DocumentIngested.DESCRIPTOR.full_name
# Deposits and consultations: what a client's call appends (tenancy and sealing go on).
FAULTY_CATEGORIES: Final = frozenset({DOCUMENT_CATEGORY, ACCESS_CATEGORY})


class FaultyEventStore(InMemoryEventStore):
    """The in-memory store, whose appends of deposits and consultations can be made to fail
    as an unreachable JetStream does: StoreUnavailable, the append not made, or made with its
    acknowledgement lost."""

    def __init__(self) -> None:
        super().__init__()
        self._faults: collections.deque[bool] = collections.deque()  # True: after commit

    def fail_appends(self, count: int = 1, *, after_commit: bool = False) -> None:
        self._faults.extend([after_commit] * count)

    async def append(
        self,
        stream: StreamName | str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion,
    ) -> AppendResult:
        if self._faults and StreamName.of(stream).category in FAULTY_CATEGORIES:
            if self._faults.popleft():
                await super().append(stream, events, expected_version)
            raise StoreUnavailable("the event store did not answer (a test's fault)")
        return await super().append(stream, events, expected_version)


class RottingBlobStore(InMemoryBlobStore):
    """The in-memory blob store, whose stored copies can be damaged (bit rot)."""

    def rot(self, tenant: str, sha256: str) -> None:
        info, data = self._get(tenant, sha256)
        damaged = bytes([data[0] ^ 0x01]) + data[1:] if data else b"\x00"
        self._blobs[(tenant, sha256)] = (info, damaged)


class CallRecorder(grpc.aio.ServerInterceptor):
    """Which methods were called (short names) and the correlation id each call sent."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.correlation_ids: list[str] = []

    async def intercept_service(
        self,
        continuation: Any,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        self.calls.append(handler_call_details.method.rsplit("/", 1)[-1])
        metadata = dict(handler_call_details.invocation_metadata or ())
        self.correlation_ids.append(str(metadata.get("x-correlation-id", "")))
        return await continuation(handler_call_details)


class InMemoryArchive:
    """One archive, started by `start()` in a thread of its own, stopped by `close()`."""

    def __init__(
        self,
        pki: DevelopmentPKI,
        data_dir: Path,
        *,
        tls: tuple[Path, Path, Path] | None = None,  # certificate, key, CA that issued it
        **settings: Any,
    ) -> None:
        # The same keys in every archive of a run (a copy, as each service has its own).
        shutil.copytree(pki.directory, data_dir / "pki")
        fields: dict[str, Any] = {
            "profile": "development",
            "data_dir": data_dir,
            "grpc_host": "127.0.0.1",
            "grpc_port": 0,
            "operator_token": Secret(OPERATOR_TOKEN),
            "provider_origin": ORIGIN,
            "shutdown_grace_seconds": 0.0,
            "grpc_tls_cert_file": tls[0] if tls else None,
            "grpc_tls_key_file": tls[1] if tls else None,
        }
        self.settings = Settings(**{**fields, **settings})
        self.ca_file = tls[2] if tls else None
        self.operator_token = OPERATOR_TOKEN
        self.tokens: dict[str, str] = {}
        self.recorder = CallRecorder()
        self.tsa_up = True  # False: every time stamp fails, so nothing gets sealed
        self.evidence_wait = 3.0  # how long GetEvidence waits for a seal before NOT_READY_YET
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: ArchiveServer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ---- what tests look at ----

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.port

    @property
    def endpoint(self) -> str:
        return f"{self.settings.grpc_host}:{self.port}"

    @property
    def calls(self) -> list[str]:
        return self.recorder.calls

    @property
    def correlation_ids(self) -> list[str]:
        return self.recorder.correlation_ids

    def config(self, token: str | None = None, **overrides: Any) -> ClientConfig:
        """A client configuration with short deadlines and backoffs (TLS when served so)."""
        settings: dict[str, Any] = {
            "token": token,
            "operator_token": self.operator_token,
            "timeout": 10.0,
            "transfer_timeout": 20.0,
            "initial_backoff": 0.001,
            "max_backoff": 0.01,
            # Served off loopback on purpose (a TLS test): this client may send in clear.
            "insecure": not is_local_endpoint(self.endpoint),
        }
        if self.ca_file is not None:
            settings["ca_file"] = self.ca_file
        settings.update(overrides)
        return ClientConfig(self.endpoint, **settings)

    def deposits(self, tenant: str = TENANT) -> list[events_pb2.DocumentIngested]:
        """Every DocumentIngested of the tenant, as the event store holds them."""

        async def read() -> list[events_pb2.DocumentIngested]:
            return [
                events_pb2.DocumentIngested.FromString(e.data)
                async for e in self.store.read_all()
                if e.type == INGESTED and e.stream.tenant == tenant
            ]

        return self.run(read())

    def wait_sealed(self, document_id: str, tenant: str = TENANT) -> None:
        """Until a checkpoint covers the deposit of `document_id`."""

        async def wait() -> None:
            deposit = await first_event(self.store, document_stream(tenant, document_id))
            assert deposit is not None, f"no deposit {document_id}"
            sealed = await self.sealer.wait_sealed(tenant, deposit.event_id, 20)
            assert sealed, f"deposit {document_id} still not sealed after 20 s"

        self.run(wait())

    def rot(self, document_id: str, tenant: str = TENANT) -> None:
        """Damage the stored copy of a document."""
        deposit = next(d for d in self.deposits(tenant) if d.document_id.value == document_id)
        self.blobs.rot(tenant, deposit.sha256.value.hex())

    # ---- running ----

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the archive's event loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=60)

    def start(self) -> InMemoryArchive:
        self._thread.start()
        self.run(self._start())
        return self

    def restart(self) -> None:
        """Stop serving (calls in flight are cut), then serve again on the same port, with
        the same stores: what a redeployed ingest looks like to its clients."""
        self.run(self._restart())

    def close(self) -> None:
        try:
            self.run(self._stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()

    async def _start(self) -> None:
        self.store = FaultyEventStore()
        self.blobs = RottingBlobStore()
        registry_db = self.settings.data_dir / "document-registry.sqlite"
        registry_db.parent.mkdir(parents=True, exist_ok=True)
        self.runner = ProjectionRunner(self.store, DocumentRegistryProjection(), registry_db)
        await self.runner.catch_up()
        # The sealing service's own keys, TSA client and checks (services/sealing/main.py),
        # with the built-in TSA in process.
        keys = load_keys(self.settings)
        self._tsa = tsa_client(self.settings, keys)
        self.sealer = Sealer(
            self.store,
            origin=ORIGIN,
            seal=lambda text: seal_detached(text, keys.seal),
            timestamp=self._unless_tsa_down(timestamper(self._tsa)),
            max_delay=0.05,
            retry_delay=0.05,
        )
        self._registrations = [
            Registration.of(
                ingest_pb2.DESCRIPTOR.services_by_name["Ingest"],
                ingest_pb2_grpc.add_IngestServicer_to_server,
                IngestServicer(self.store, self.blobs, self.settings),
            ),
            *tenancy_registrations(self.store),
            Registration.of(
                search_pb2.DESCRIPTOR.services_by_name["Search"],
                search_pb2_grpc.add_SearchServicer_to_server,
                SearchServicer(self.store, self.blobs, self.runner, RegistryQueries(registry_db)),
            ),
            Registration.of(
                sealing_pb2.DESCRIPTOR.services_by_name["Sealing"],
                sealing_pb2_grpc.add_SealingServicer_to_server,
                SealingServicer(
                    self.store,
                    self.blobs,
                    self.sealer,
                    trust_material(keys),
                    checkpoint_verifier(keys),
                    evidence_wait=lambda: self.evidence_wait,
                ),
            ),
        ]
        await self._serve(self.settings)
        # The tenant before the sealer: its first checkpoint then covers all of its setup,
        # the same number of leaves in every archive started this way.
        async with ArchiveClient(self.config()) as admin:
            created = await admin.create_tenant(TENANT, "ACME Corp")
        self.tokens[TENANT] = created.token
        self.recorder.calls.clear()  # tests see their own calls only
        self.recorder.correlation_ids.clear()
        self._tasks = [
            asyncio.create_task(self.runner.run(), name="document-registry"),
            asyncio.create_task(self.sealer.run(tick=0.01), name="sealer"),
        ]
        await eventually(  # ready once the tenant's setup is sealed
            lambda: TENANT in self.sealer.logs and bool(self.sealer.logs[TENANT].latest_checkpoint),
            what="the tenant's first checkpoint",
        )

    async def _serve(self, settings: Settings) -> None:
        self._server = build_server(
            settings,
            self._registrations,
            event_store=self.store,
            registry=TenantRegistry(self.store),
            extra_interceptors=[self.recorder],
        )
        await self._server.start()

    async def _restart(self) -> None:
        assert self._server is not None
        port = self._server.port
        await self._server.stop(0)
        await self._serve(replace(self.settings, grpc_port=port))

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.stop(0)
        if hasattr(self, "runner"):
            self.runner.close()
            await self._tsa.aclose()

    def _unless_tsa_down(self, timestamp: TimestampFunction) -> TimestampFunction:
        async def stamp(data: bytes) -> Stamp:
            if not self.tsa_up:
                raise TimestampUnavailable("the time-stamp authority is down (a test's fault)")
            return await timestamp(data)

        return stamp


# ---- fixtures ----


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "archive_settings(**fields): Settings fields of the in-memory archive"
    )


@pytest.fixture(scope="session")
def archive_pki(tmp_path_factory: pytest.TempPathFactory) -> DevelopmentPKI:
    """One development PKI for every in-memory archive (generating keys is the slow part)."""
    return DevelopmentPKI.ensure(tmp_path_factory.mktemp("archive-pki"))


@pytest.fixture
def start_archive(
    archive_pki: DevelopmentPKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """`start_archive(**settings)`: another in-memory archive (same PKI and origin), closed
    at the end of the test."""
    started: list[InMemoryArchive] = []

    def start(**settings: Any) -> InMemoryArchive:
        directory = tmp_path_factory.mktemp("archive")
        started.append(InMemoryArchive(archive_pki, directory, **settings).start())
        return started[-1]

    yield start
    for running in started:
        running.close()


@pytest.fixture
def archive(request: pytest.FixtureRequest, start_archive: Any) -> InMemoryArchive:
    marker = request.node.get_closest_marker("archive_settings")
    started: InMemoryArchive = start_archive(**(marker.kwargs if marker else {}))
    return started


@pytest.fixture
def token(archive: InMemoryArchive) -> str:
    """A token of tenant `acme`."""
    return archive.tokens[TENANT]


@pytest.fixture
async def client(archive: InMemoryArchive, token: str) -> AsyncIterator[ArchiveClient]:
    async with ArchiveClient(archive.config(token)) as connected:
        yield connected


@pytest.fixture
def archive_env(archive: InMemoryArchive, token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment archivectl reads, pointing at the archive, with `acme`'s token and
    the operator token; nothing else ARCHIVE_* from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("ARCHIVE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ARCHIVE_ENDPOINT", archive.endpoint)
    monkeypatch.setenv("ARCHIVE_TOKEN", token)
    monkeypatch.setenv("ARCHIVE_OPERATOR_TOKEN", archive.operator_token)
