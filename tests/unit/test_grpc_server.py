"""The gRPC server scaffolding end to end: a real grpc.aio server on 127.0.0.1 (free port),
real client channels, the in-memory event store."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from waiting import eventually

from archive.blobstore.errors import BlobNotFound, BlobTooLarge
from archive.config import Secret, Settings
from archive.eventstore import (
    EventTooLarge,
    InvalidStreamName,
    StoreUnavailable,
    StreamNotFound,
    WrongExpectedVersion,
)
from archive.eventstore.memory import InMemoryEventStore
from archive.grpcserver import (
    ERROR_TABLE,
    ArchiveServer,
    InvalidArgument,
    Registration,
    build_server,
    current_principal,
    serve,
    status_for,
)
from archive.telemetry import in_memory_tracer_provider
from archive.tenancy import TenantRegistry
from archive.tenancy.tokens import hash_token
from archive.v1 import tenancy_pb2, tenancy_pb2_grpc
from archive.v1.common_pb2 import TenantId
from services.ingest.tenancy_servicer import tenancy_registrations

OPERATOR_TOKEN = "operator-secret-for-tests-0123456789"
SECRET_IN_EXCEPTION = "db-password-hunter2"


class Probe:
    """Test-only methods of every streaming kind (raw bytes, no protobuf)."""

    SERVICE = "test.Probe"

    def __init__(self) -> None:
        self.slow_entered = asyncio.Event()
        self.slow_release = asyncio.Event()

    async def whoami(self, request: bytes, context: Any) -> bytes:
        return current_principal().tenant.encode()

    async def boom(self, request: bytes, context: Any) -> bytes:
        raise RuntimeError(f"cannot connect with {SECRET_IN_EXCEPTION}")

    async def unavailable(self, request: bytes, context: Any) -> bytes:
        raise StoreUnavailable("nats://10.0.0.7:4222 refused: internal detail")

    async def invalid(self, request: bytes, context: Any) -> bytes:
        raise InvalidArgument("document_id.value", "not a UUID")

    async def slow(self, request: bytes, context: Any) -> bytes:
        self.slow_entered.set()
        await self.slow_release.wait()
        return b"done"

    async def count(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        tenant = current_principal().tenant
        for i in range(int(request or b"3")):
            yield f"{tenant}:{i}".encode()

    async def boom_stream(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        yield b"first"
        raise RuntimeError(SECRET_IN_EXCEPTION)

    async def upload(self, requests: AsyncIterator[bytes], context: Any) -> bytes:
        return b"".join([chunk async for chunk in requests])

    async def echo(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        tenant = current_principal().tenant.encode()
        async for chunk in requests:
            yield tenant + b":" + chunk

    def registration(self) -> Registration:
        handler = grpc.method_handlers_generic_handler(
            self.SERVICE,
            {
                "WhoAmI": grpc.unary_unary_rpc_method_handler(self.whoami),
                "Boom": grpc.unary_unary_rpc_method_handler(self.boom),
                "Unavailable": grpc.unary_unary_rpc_method_handler(self.unavailable),
                "Invalid": grpc.unary_unary_rpc_method_handler(self.invalid),
                "Slow": grpc.unary_unary_rpc_method_handler(self.slow),
                "Count": grpc.unary_stream_rpc_method_handler(self.count),
                "BoomStream": grpc.unary_stream_rpc_method_handler(self.boom_stream),
                "Upload": grpc.stream_unary_rpc_method_handler(self.upload),
                "Echo": grpc.stream_stream_rpc_method_handler(self.echo),
            },
        )
        return Registration(
            self.SERVICE, lambda server: server.add_generic_rpc_handlers((handler,))
        )


@dataclass
class Harness:
    store: InMemoryEventStore
    server: ArchiveServer
    channel: grpc.aio.Channel
    spans: InMemorySpanExporter
    probe: Probe

    @property
    def admin(self) -> tenancy_pb2_grpc.TenantAdminStub:
        return tenancy_pb2_grpc.TenantAdminStub(self.channel)

    @property
    def tenancy(self) -> tenancy_pb2_grpc.TenancyStub:
        return tenancy_pb2_grpc.TenancyStub(self.channel)

    def method(self, name: str, kind: str = "unary_unary") -> Any:
        return getattr(self.channel, kind)(f"/{Probe.SERVICE}/{name}")

    async def create_tenant(self, tenant: str = "acme") -> tenancy_pb2.CreateTenantResponse:
        return await self.admin.CreateTenant(
            tenancy_pb2.CreateTenantRequest(tenant=TenantId(value=tenant), display_name="ACME"),
            metadata=bearer(OPERATOR_TOKEN),
        )


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    store = InMemoryEventStore()
    registry = TenantRegistry(store)
    provider, spans = in_memory_tracer_provider()
    settings = Settings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        event_store="memory",
        operator_token=Secret(OPERATOR_TOKEN),
        shutdown_grace_seconds=1.0,
    )
    probe = Probe()
    server = build_server(
        settings,
        [*tenancy_registrations(store), probe.registration()],
        event_store=store,
        registry=registry,
        tracer_provider=provider,
    )
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Harness(store, server, channel, spans, probe)
    finally:
        await channel.close()
        await server.stop(0)


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def details_of(error: grpc.aio.AioRpcError) -> dict[str, Message]:
    """The google.rpc details of a failed call, by message name."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert isinstance(status, status_pb2.Status)
    found: dict[str, Message] = {}
    for any_detail in status.details:
        for cls in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RetryInfo,
        ):
            if any_detail.Is(cls.DESCRIPTOR):
                message = cls()
                any_detail.Unpack(message)
                found[cls.DESCRIPTOR.name] = message
    return found


# ---- tenancy over gRPC ----


async def test_create_tenant_then_whoami_with_its_token(harness: Harness) -> None:
    created = await harness.create_tenant("acme")
    assert created.tenant.value == "acme"
    assert created.token.token.startswith(f"arc_{created.token.token_id}_")
    assert created.token.issued_at.seconds > 0

    me = await harness.tenancy.WhoAmI(
        tenancy_pb2.WhoAmIRequest(), metadata=bearer(created.token.token)
    )
    assert (me.tenant.value, me.token_id) == ("acme", created.token.token_id)


async def test_issue_and_revoke_tokens(harness: Harness) -> None:
    await harness.create_tenant("acme")
    issued = await harness.admin.IssueToken(
        tenancy_pb2.IssueTokenRequest(tenant=TenantId(value="acme"), description="ci"),
        metadata=bearer(OPERATOR_TOKEN),
    )
    token = issued.token.token
    assert await harness.tenancy.WhoAmI(tenancy_pb2.WhoAmIRequest(), metadata=bearer(token))

    await harness.admin.RevokeToken(
        tenancy_pb2.RevokeTokenRequest(
            tenant=TenantId(value="acme"), token_id=issued.token.token_id
        ),
        metadata=bearer(OPERATOR_TOKEN),
    )
    error = await rpc_error(
        harness.tenancy.WhoAmI(tenancy_pb2.WhoAmIRequest(), metadata=bearer(token))
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in error.details() and "IssueToken" in error.details()

    error = await rpc_error(
        harness.admin.RevokeToken(
            tenancy_pb2.RevokeTokenRequest(tenant=TenantId(value="acme"), token_id="nosuchtoken0"),
            metadata=bearer(OPERATOR_TOKEN),
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert details_of(error)["ErrorInfo"].reason == "TOKEN_NOT_FOUND"  # type: ignore[attr-defined]

    error = await rpc_error(
        harness.admin.IssueToken(
            tenancy_pb2.IssueTokenRequest(tenant=TenantId(value="ghost")),
            metadata=bearer(OPERATOR_TOKEN),
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "ghost" in error.details()


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ((), "authorization: Bearer"),
        (bearer("arc_zzzzzzzzzzzz_" + "a" * 43), "unknown token"),
        (bearer("not-an-archive-token"), "arc_<token id>_<secret>"),
        ((("authorization", "Basic dXNlcjpwYXNz"),), "authorization: Bearer"),
    ],
)
async def test_missing_or_unknown_token_is_unauthenticated_with_advice(
    harness: Harness, metadata: tuple[tuple[str, str], ...], expected: str
) -> None:
    error = await rpc_error(harness.tenancy.WhoAmI(tenancy_pb2.WhoAmIRequest(), metadata=metadata))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert expected in error.details()
    assert details_of(error)["ErrorInfo"].reason == "UNAUTHENTICATED"  # type: ignore[attr-defined]


async def test_tenant_token_on_admin_is_permission_denied(harness: Harness) -> None:
    created = await harness.create_tenant("acme")
    error = await rpc_error(
        harness.admin.CreateTenant(
            tenancy_pb2.CreateTenantRequest(tenant=TenantId(value="other")),
            metadata=bearer(created.token.token),
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "operator token" in error.details()


async def test_operator_token_on_a_tenant_method_is_permission_denied(harness: Harness) -> None:
    error = await rpc_error(
        harness.tenancy.WhoAmI(tenancy_pb2.WhoAmIRequest(), metadata=bearer(OPERATOR_TOKEN))
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_wrong_operator_token_is_unauthenticated(harness: Harness) -> None:
    error = await rpc_error(
        harness.admin.CreateTenant(
            tenancy_pb2.CreateTenantRequest(tenant=TenantId(value="acme")),
            metadata=bearer(OPERATOR_TOKEN + "-guess"),
        )
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await harness.store.last_position() == 0


@pytest.mark.parametrize("name", ["Bad Name", "../x"])
async def test_invalid_tenant_name_is_invalid_argument_with_field_violation(
    harness: Harness, name: str
) -> None:
    before = await harness.store.last_position()
    error = await rpc_error(harness.create_tenant(name))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = details_of(error)
    violations = details["BadRequest"].field_violations  # type: ignore[attr-defined]
    assert [v.field for v in violations] == ["tenant.value"]
    assert "lower-case" in violations[0].description
    assert details["ErrorInfo"].reason == "INVALID_ARGUMENT"  # type: ignore[attr-defined]
    assert await harness.store.last_position() == before


async def test_second_create_is_already_exists(harness: Harness) -> None:
    await harness.create_tenant("acme")
    error = await rpc_error(harness.create_tenant("acme"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    info = details_of(error)["ErrorInfo"]
    assert info.reason == "TENANT_ALREADY_EXISTS"  # type: ignore[attr-defined]
    assert info.metadata["tenant"] == "acme"  # type: ignore[attr-defined]
    assert info.metadata["correlation_id"]  # type: ignore[attr-defined]


# ---- health, reflection, telemetry ----


async def test_health_is_serving_without_a_token(harness: Harness) -> None:
    health = health_pb2_grpc.HealthStub(harness.channel)
    for service in ("", "archive.v1.TenantAdmin", "archive.v1.Tenancy"):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_health_watch_streams_through_the_interceptors(harness: Harness) -> None:
    health = health_pb2_grpc.HealthStub(harness.channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
    first = await asyncio.wait_for(watch.read(), 5)
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()


async def test_reflection_lists_the_services(harness: Harness) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(harness.channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {
        service.name
        async for response in call
        for service in response.list_services_response.service
    }
    assert {"archive.v1.TenantAdmin", "archive.v1.Tenancy", "grpc.health.v1.Health"} <= names


async def test_a_span_is_recorded_for_a_call(harness: Harness) -> None:
    created = await harness.create_tenant("acme")
    await harness.tenancy.WhoAmI(tenancy_pb2.WhoAmIRequest(), metadata=bearer(created.token.token))
    spans = {s.name: s for s in harness.spans.get_finished_spans()}
    assert "/archive.v1.TenantAdmin/CreateTenant" in spans
    whoami = spans["/archive.v1.Tenancy/WhoAmI"]
    assert whoami.attributes is not None
    assert whoami.attributes["archive.tenant"] == "acme"
    assert not any(name.startswith("/grpc.health") for name in spans)


# ---- secrets stay secret ----


async def test_secret_token_never_stored_nor_logged(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await harness.create_tenant("acme")
    issued = await harness.admin.IssueToken(
        tenancy_pb2.IssueTokenRequest(tenant=TenantId(value="acme")),
        metadata=bearer(OPERATOR_TOKEN),
    )
    tokens = [created.token.token, issued.token.token]
    for token in tokens:
        await harness.tenancy.WhoAmI(tenancy_pb2.WhoAmIRequest(), metadata=bearer(token))
        # A refused variant of it must not be logged either.
        await rpc_error(
            harness.tenancy.WhoAmI(tenancy_pb2.WhoAmIRequest(), metadata=bearer(token + "x"))
        )
    await harness.admin.RevokeToken(
        tenancy_pb2.RevokeTokenRequest(
            tenant=TenantId(value="acme"), token_id=issued.token.token_id
        ),
        metadata=bearer(OPERATOR_TOKEN),
    )

    stored = [event async for event in harness.store.read_all()]
    assert len(stored) == 4
    hashes_seen = 0
    for token in tokens:
        secret_part = token.split("_", 2)[2].encode()  # "arc_<id>_<secret>"
        for event in stored:
            assert token.encode() not in event.data and secret_part not in event.data
            assert token not in repr(event)
            hashes_seen += hash_token(token) in event.data
    assert hashes_seen == 2  # what is stored is the SHA-256
    for secret in (*tokens, OPERATOR_TOKEN):
        assert secret not in caplog.text
        assert secret not in repr(harness.server.settings)
    assert any("acme" in record.getMessage() for record in caplog.records)


# ---- the error table ----


async def test_unexpected_exception_is_internal_without_leaking(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    token = (await harness.create_tenant("acme")).token.token
    with caplog.at_level(logging.ERROR, logger="archive.grpcserver.errors"):
        error = await rpc_error(harness.method("Boom")(b"", metadata=bearer(token)))
    assert error.code() == grpc.StatusCode.INTERNAL
    assert SECRET_IN_EXCEPTION not in error.details() and "RuntimeError" not in error.details()
    correlation_id = details_of(error)["ErrorInfo"].metadata["correlation_id"]  # type: ignore[attr-defined]
    assert correlation_id in error.details()
    # The operators get the whole story under the same id.
    logged = [r for r in caplog.records if correlation_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None


async def test_caller_correlation_id_is_kept(harness: Harness) -> None:
    token = (await harness.create_tenant("acme")).token.token
    metadata = (*bearer(token), ("x-correlation-id", "req-0123456789"))
    error = await rpc_error(harness.method("Boom")(b"", metadata=metadata))
    assert "req-0123456789" in error.details()


async def test_store_unavailable_is_unavailable_with_retry_info(harness: Harness) -> None:
    token = (await harness.create_tenant("acme")).token.token
    error = await rpc_error(harness.method("Unavailable")(b"", metadata=bearer(token)))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "10.0.0.7" not in error.details()
    retry = details_of(error)["RetryInfo"]
    assert retry.retry_delay.seconds == 1  # type: ignore[attr-defined]


async def test_generic_invalid_argument_names_the_field(harness: Harness) -> None:
    token = (await harness.create_tenant("acme")).token.token
    error = await rpc_error(harness.method("Invalid")(b"", metadata=bearer(token)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = details_of(error)["BadRequest"].field_violations  # type: ignore[attr-defined]
    assert violations[0].field == "document_id.value"


def test_every_error_reason_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "errors.md").read_text()
    for rule in ERROR_TABLE:
        assert f"`{rule.reason}`" in doc, rule.reason
        assert f"`{rule.code.name}`" in doc, rule.code


def test_status_for_maps_store_and_blob_errors() -> None:
    cases = [
        (WrongExpectedVersion("_system.tenant.acme", 3, 4), grpc.StatusCode.ABORTED),
        (StreamNotFound("acme.document.x"), grpc.StatusCode.NOT_FOUND),
        (EventTooLarge("too big"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (BlobTooLarge(1024), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (BlobNotFound("acme", "ab" * 32), grpc.StatusCode.NOT_FOUND),
        (InvalidStreamName("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (KeyError("secret"), grpc.StatusCode.INTERNAL),
    ]
    for exc, code in cases:
        status = status_for(exc, "corr-1234")
        assert status.code == code, exc
        rich = status_pb2.Status.FromString(
            dict(status.trailing_metadata)["grpc-status-details-bin"]
        )
        info = error_details_pb2.ErrorInfo()
        assert rich.details[0].Unpack(info)
        assert info.metadata["correlation_id"] == "corr-1234"
    blob = status_pb2.Status.FromString(
        dict(status_for(BlobTooLarge(1024), "c").trailing_metadata)["grpc-status-details-bin"]
    )
    info = error_details_pb2.ErrorInfo()
    blob.details[0].Unpack(info)
    assert info.metadata["limit_bytes"] == "1024"


# ---- every streaming kind, authenticated and refused ----


async def test_streaming_methods_see_the_principal(harness: Harness) -> None:
    token = (await harness.create_tenant("acme")).token.token
    md = bearer(token)
    assert await harness.method("WhoAmI")(b"", metadata=md) == b"acme"
    count = harness.method("Count", "unary_stream")(b"2", metadata=md)
    assert [r async for r in count] == [b"acme:0", b"acme:1"]
    assert await harness.method("Upload", "stream_unary")(iter([b"a", b"b"]), metadata=md) == b"ab"
    echo = harness.method("Echo", "stream_stream")(iter([b"x", b"y"]), metadata=md)
    assert [r async for r in echo] == [b"acme:x", b"acme:y"]


async def test_streaming_methods_refuse_without_a_token(harness: Harness) -> None:
    async def consume(call: Any) -> None:
        async for _ in call:
            pass

    calls = [
        harness.method("WhoAmI")(b""),
        consume(harness.method("Count", "unary_stream")(b"2")),
        harness.method("Upload", "stream_unary")(iter([b"a"])),
        consume(harness.method("Echo", "stream_stream")(iter([b"x"]))),
    ]
    for call in calls:
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "authorization: Bearer" in error.details()


async def test_error_in_a_stream_after_responses_is_internal(harness: Harness) -> None:
    token = (await harness.create_tenant("acme")).token.token
    call = harness.method("BoomStream", "unary_stream")(b"", metadata=bearer(token))
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for response in call:
            received.append(response)
    assert received == [b"first"]
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert SECRET_IN_EXCEPTION not in caught.value.details()


async def test_unknown_method_is_unimplemented(harness: Harness) -> None:
    error = await rpc_error(harness.channel.unary_unary("/test.Probe/Nope")(b""))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


# ---- shutdown ----


async def test_graceful_stop_lets_an_in_flight_call_finish(harness: Harness) -> None:
    token = (await harness.create_tenant("acme")).token.token
    call = asyncio.ensure_future(harness.method("Slow")(b"", metadata=bearer(token)))
    await asyncio.wait_for(harness.probe.slow_entered.wait(), 5)

    stopping = asyncio.create_task(harness.server.stop(grace=5))

    async def not_serving() -> bool:
        health = await harness.server.health.Check(health_pb2.HealthCheckRequest(), None)
        return health.status == health_pb2.HealthCheckResponse.NOT_SERVING

    await eventually(not_serving, what="health to turn NOT_SERVING")
    # The call is held, so the stop cannot be over, however long that took.
    assert not stopping.done()

    harness.probe.slow_release.set()
    assert await call == b"done"
    await asyncio.wait_for(stopping, 5)


async def test_serve_stops_gracefully_on_sigterm() -> None:
    store = InMemoryEventStore()
    server = build_server(
        Settings(grpc_host="127.0.0.1", grpc_port=0, event_store="memory"),
        tenancy_registrations(store),
        event_store=store,
        registry=TenantRegistry(store),
    )
    serving = asyncio.create_task(serve(server, grace=1.0))
    await asyncio.wait_for(server.ready.wait(), 5)
    # serve() must have taken over SIGTERM, or this would end the test run.
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(serving, 5)
    health = await server.health.Check(health_pb2.HealthCheckRequest(), None)
    assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_admin_refused_when_no_operator_token_is_configured() -> None:
    store = InMemoryEventStore()
    server = build_server(
        Settings(grpc_host="127.0.0.1", grpc_port=0, event_store="memory"),
        tenancy_registrations(store),
        event_store=store,
        registry=TenantRegistry(store),
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            error = await rpc_error(
                tenancy_pb2_grpc.TenantAdminStub(channel).CreateTenant(
                    tenancy_pb2.CreateTenantRequest(tenant=TenantId(value="acme")),
                    metadata=bearer("a-guess-at-an-operator-token-0123456789"),
                )
            )
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "ARCHIVE_OPERATOR_TOKEN" in error.details()
    finally:
        await server.stop(0)
    assert await store.last_position() == 0
