"""The gateway in front of real gRPC backends: a tenancy backend built with build_server (auth,
error table, rich details) and a small bytes-only test backend ("test.Relay") with methods of
every streaming kind. Everything runs on 127.0.0.1 with free ports."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_status import rpc_status
from tls_certs import TlsFiles, make_tls_files

from archive.config import Secret, Settings
from archive.eventstore.memory import InMemoryEventStore
from archive.grpcserver import ArchiveServer, build_server
from archive.natsserver import free_port
from archive.tenancy import TenantRegistry
from archive.v1 import tenancy_pb2, tenancy_pb2_grpc
from archive.v1.common_pb2 import TenantId
from services.gateway.main import Gateway, gateway_from_env, load_api_descriptors
from services.gateway.proxy import descriptor_kinds, forwarded_metadata
from services.gateway.routes import RouteError, parse_routes, route_table
from services.ingest.tenancy_servicer import tenancy_registrations

pytestmark = pytest.mark.integration

OPERATOR_TOKEN = "operator-secret-for-gateway-tests-0123"
RELAY = "test.Relay"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class Relay:
    """Bytes-only test methods; records what it saw so tests can look behind the gateway."""

    metadata: list[tuple[str, Any]] = field(default_factory=list)
    remaining: float | None = None
    deadline: float | None = None  # time.monotonic() of the deadline the last Echo saw
    first_chunk: asyncio.Event = field(default_factory=asyncio.Event)
    hang_cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    hang_entered: asyncio.Event = field(default_factory=asyncio.Event)

    async def echo(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        self.metadata = list(context.invocation_metadata() or ())
        self.remaining = context.time_remaining()
        self.deadline = None if self.remaining is None else time.monotonic() + self.remaining
        await context.send_initial_metadata((("x-initial", "hello"),))
        context.set_trailing_metadata((("x-trailing", "bye"), ("x-trailing-bin", b"\x00\xff")))
        return request

    async def upload(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        digest = hashlib.sha256()
        count = 0
        async for chunk in requests:
            self.first_chunk.set()
            digest.update(chunk)
            count += 1
        return json.dumps({"sha256": digest.hexdigest(), "chunks": count}).encode()

    async def count(
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        for i in range(int(request)):
            yield str(i).encode()

    async def count_then_fail(
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        yield b"0"
        yield b"1"
        await context.abort(
            grpc.StatusCode.FAILED_PRECONDITION,
            "stopped after two",
            (("x-why", "because"),),
        )

    async def chat(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        async for message in requests:
            yield message.upper()

    async def hang(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        self.hang_entered.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.hang_cancelled.set()
            raise
        return b"late"

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            RELAY,
            {
                "Echo": grpc.unary_unary_rpc_method_handler(self.echo),
                "Upload": grpc.stream_unary_rpc_method_handler(self.upload),
                "Count": grpc.unary_stream_rpc_method_handler(self.count),
                "CountThenFail": grpc.unary_stream_rpc_method_handler(self.count_then_fail),
                "Chat": grpc.stream_stream_rpc_method_handler(self.chat),
                "Hang": grpc.unary_unary_rpc_method_handler(self.hang),
            },
        )


class RelayBackend:
    """A plain grpc.aio server hosting Relay and health, restartable on the same port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.relay = Relay()
        self.server: grpc.aio.Server | None = None

    async def start(self) -> None:
        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers((self.relay.handler(),))
        health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, self.server)
        assert self.server.add_insecure_port(f"127.0.0.1:{self.port}") == self.port
        await self.server.start()
        await health.set(RELAY, SERVING)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
            self.server = None


@dataclass
class Stack:
    tenancy_backend: ArchiveServer
    relay_backend: RelayBackend
    gateway: Gateway
    channel: grpc.aio.Channel

    @property
    def relay(self) -> Relay:
        return self.relay_backend.relay

    @property
    def admin(self) -> tenancy_pb2_grpc.TenantAdminStub:
        return tenancy_pb2_grpc.TenantAdminStub(self.channel)

    @property
    def tenancy(self) -> tenancy_pb2_grpc.TenancyStub:
        return tenancy_pb2_grpc.TenancyStub(self.channel)

    @property
    def health(self) -> health_pb2_grpc.HealthStub:
        return health_pb2_grpc.HealthStub(self.channel)

    def method(self, name: str, kind: str = "unary_unary") -> Any:
        return getattr(self.channel, kind)(f"/{RELAY}/{name}")


def settings(port: int = 0) -> Settings:
    return Settings(
        grpc_host="127.0.0.1",
        grpc_port=port,
        event_store="memory",
        operator_token=Secret(OPERATOR_TOKEN),
        shutdown_grace_seconds=1.0,
    )


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


RELAY_KINDS = {
    f"/{RELAY}/Echo": (False, False),
    f"/{RELAY}/Upload": (True, False),
    f"/{RELAY}/Count": (False, True),
    f"/{RELAY}/CountThenFail": (False, True),
    f"/{RELAY}/Chat": (True, True),
    f"/{RELAY}/Hang": (False, False),
}


def typed_kinds(method: str) -> tuple[bool, bool] | None:
    return RELAY_KINDS.get(method) or descriptor_kinds(method)


# "generic": every call forwarded as stream-stream (what happens to methods the gateway has
# no descriptor for); "typed": each method forwarded with its own kind.
@pytest.fixture(params=["generic", "typed"])
async def stack(request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    store = InMemoryEventStore()
    tenancy_backend = build_server(
        settings(), tenancy_registrations(store), event_store=store, registry=TenantRegistry(store)
    )
    await tenancy_backend.start()
    relay_backend = RelayBackend(free_port())
    await relay_backend.start()
    gateway = Gateway(
        settings(),
        {
            "archive.v1.TenantAdmin": tenancy_backend.address,
            "archive.v1.Tenancy": tenancy_backend.address,
            RELAY: f"127.0.0.1:{relay_backend.port}",
        },
        health_interval=0.1,
        method_kinds=typed_kinds if request.param == "typed" else None,
    )
    await gateway.start()
    channel = grpc.aio.insecure_channel(gateway.address)
    try:
        yield Stack(tenancy_backend, relay_backend, gateway, channel)
    finally:
        await channel.close()
        await gateway.stop(0)
        await relay_backend.stop()
        await tenancy_backend.stop(0)


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def details_of(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert isinstance(status, status_pb2.Status)
    found: dict[str, Any] = {}
    for any_detail in status.details:
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
            if any_detail.Is(cls.DESCRIPTOR):
                message = cls()
                any_detail.Unpack(message)
                found[cls.DESCRIPTOR.name] = message
    return found


async def wait_for_health(stack: Stack, service: str, status: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        response = await stack.health.Check(health_pb2.HealthCheckRequest(service=service))
        last = response.status
        if last == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"health of {service!r} stayed {last}, expected {status}")


# ---- routing and pass-through ----


async def test_unary_calls_are_routed_with_their_credentials(stack: Stack) -> None:
    created = await stack.admin.CreateTenant(
        tenancy_pb2.CreateTenantRequest(tenant=TenantId(value="acme"), display_name="ACME"),
        metadata=bearer(OPERATOR_TOKEN),
    )
    me = await stack.tenancy.WhoAmI(
        tenancy_pb2.WhoAmIRequest(), metadata=bearer(created.token.token)
    )
    assert (me.tenant.value, me.token_id) == ("acme", created.token.token_id)


async def test_rich_error_details_arrive_intact(stack: Stack) -> None:
    error = await rpc_error(
        stack.admin.CreateTenant(
            tenancy_pb2.CreateTenantRequest(tenant=TenantId(value="Not Valid!")),
            metadata=(*bearer(OPERATOR_TOKEN), ("x-correlation-id", "gateway-test-0001")),
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Not Valid!" in (error.details() or "")
    details = details_of(error)
    violations = details["BadRequest"].field_violations
    assert [v.field for v in violations] == ["tenant.value"]
    info = details["ErrorInfo"]
    assert info.reason == "INVALID_ARGUMENT"
    # x-correlation-id went through the gateway and came back in the details.
    assert info.metadata["correlation_id"] == "gateway-test-0001"


async def test_unauthenticated_passes_through(stack: Stack) -> None:
    error = await rpc_error(stack.tenancy.WhoAmI(tenancy_pb2.WhoAmIRequest()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization" in (error.details() or "")
    assert details_of(error)["ErrorInfo"].reason == "UNAUTHENTICATED"

    wrong = await rpc_error(
        stack.admin.CreateTenant(
            tenancy_pb2.CreateTenantRequest(tenant=TenantId(value="acme")),
            metadata=bearer("x" * 40),
        )
    )
    assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_unknown_service_is_unimplemented_and_lists_known_ones(stack: Stack) -> None:
    error = await rpc_error(stack.channel.unary_unary("/archive.v1.Nope/Do")(b""))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    message = error.details() or ""
    assert "archive.v1.Nope" in message
    for known in ("archive.v1.TenantAdmin", "archive.v1.Tenancy", RELAY):
        assert known in message


async def test_unknown_method_of_a_known_service_is_the_backends_answer(stack: Stack) -> None:
    error = await rpc_error(stack.method("NoSuchMethod")(b""))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_metadata_both_ways(stack: Stack) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    call = stack.method("Echo")(
        b"ping",
        metadata=(
            ("x-correlation-id", "gateway-meta-0001"),
            ("traceparent", traceparent),
            ("x-blob-bin", b"\x01\x02\x00"),
        ),
    )
    assert await call == b"ping"
    seen = dict(stack.relay.metadata)
    assert seen["x-correlation-id"] == "gateway-meta-0001"
    assert seen["traceparent"] == traceparent
    assert seen["x-blob-bin"] == b"\x01\x02\x00"
    assert ("x-initial", "hello") in tuple(await call.initial_metadata())
    trailing = tuple(await call.trailing_metadata())
    assert ("x-trailing", "bye") in trailing
    assert ("x-trailing-bin", b"\x00\xff") in trailing


def test_hop_headers_are_not_forwarded() -> None:
    kept = forwarded_metadata(
        (
            ("user-agent", "grpc-python/1"),
            ("grpc-accept-encoding", "gzip"),
            (":authority", "x"),
            ("authorization", "Bearer t"),
        )
    )
    assert kept == (("authorization", "Bearer t"),)


# ---- streaming kinds ----


async def test_client_streaming_upload_is_streamed_not_buffered(stack: Stack) -> None:
    chunk = bytes(range(256)) * 120  # 30 KiB
    total = 200
    expected = hashlib.sha256(chunk * total).hexdigest()

    async def chunks() -> AsyncIterator[bytes]:
        yield chunk
        # The backend must see the first chunk while the client is still sending: a gateway
        # that buffered the upload would deadlock here (and time out).
        await asyncio.wait_for(stack.relay.first_chunk.wait(), 5)
        for _ in range(total - 1):
            yield chunk

    answer = await stack.method("Upload", "stream_unary")(chunks(), timeout=20)
    assert json.loads(answer) == {"sha256": expected, "chunks": total}


async def test_server_streaming(stack: Stack) -> None:
    got = [m async for m in stack.method("Count", "unary_stream")(b"50")]
    assert got == [str(i).encode() for i in range(50)]


async def test_error_after_streamed_messages_keeps_messages_status_and_trailers(
    stack: Stack,
) -> None:
    call = stack.method("CountThenFail", "unary_stream")(b"")
    got = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for message in call:
            got.append(message)
    assert got == [b"0", b"1"]
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details() == "stopped after two"
    assert ("x-why", "because") in tuple(caught.value.trailing_metadata() or ())


async def test_bidirectional_streaming_interleaves(stack: Stack) -> None:
    call = stack.method("Chat", "stream_stream")()
    for word in (b"a", b"bc", b"def"):
        await call.write(word)
        # Each answer arrives before the next request is sent: nothing waits for the end.
        assert await asyncio.wait_for(call.read(), 5) == word.upper()
    await call.done_writing()
    assert await call.read() == grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


# ---- deadlines and cancellation ----


async def test_deadline_reaches_the_backend(stack: Stack) -> None:
    # Without a deadline the backend sees none: the gateway invents none of its own.
    await stack.method("Echo")(b"x")
    assert stack.relay.remaining is None or stack.relay.remaining > 365 * 24 * 3600
    # With one, the backend's is no later than the client's. gRPC sends the time left, so
    # each hop may push it later by its transit time: the call's end bounds that, whatever the
    # machine's speed. 0.1 s covers grpc-timeout's rounding up on the wire.
    await stack.method("Echo")(b"x", timeout=5)
    client_deadline_at_the_latest = time.monotonic() + 5
    assert stack.relay.deadline is not None
    assert stack.relay.deadline <= client_deadline_at_the_latest + 0.1


async def test_deadline_expiry_cancels_the_backend_call(stack: Stack) -> None:
    error = await rpc_error(stack.method("Hang")(b"", timeout=0.5))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(stack.relay.hang_cancelled.wait(), 5)


async def test_client_cancellation_reaches_the_backend(stack: Stack) -> None:
    call = stack.method("Hang")(b"")
    await asyncio.wait_for(stack.relay.hang_entered.wait(), 5)
    call.cancel()
    await asyncio.wait_for(stack.relay.hang_cancelled.wait(), 5)


# ---- backends down, health ----


async def test_backend_down_is_unavailable_and_health_follows(stack: Stack) -> None:
    await wait_for_health(stack, "", SERVING)
    await stack.relay_backend.stop()

    error = await rpc_error(stack.method("Echo")(b"x", timeout=5))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert RELAY in (error.details() or "")

    await wait_for_health(stack, "", NOT_SERVING)
    await wait_for_health(stack, RELAY, NOT_SERVING)
    await wait_for_health(stack, "archive.v1.Tenancy", SERVING)

    # The backend comes back on the same port: the long-lived channel reconnects quickly.
    await stack.relay_backend.start()
    await wait_for_health(stack, "", SERVING)
    assert await stack.method("Echo")(b"back", timeout=5) == b"back"


async def test_backend_never_started_is_unavailable() -> None:
    # A port held bound but not listening: connections are refused, and the kernel cannot
    # hand it out meanwhile (not even as the source port of a connection to itself).
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{held.getsockname()[1]}"
        gateway = Gateway(settings(), {"test.Dead": dead}, health_interval=0.1)
        await gateway.start()
        channel = grpc.aio.insecure_channel(gateway.address)
        try:
            error = await rpc_error(channel.unary_unary("/test.Dead/Do")(b"", timeout=5))
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error
            assert "test.Dead" in (error.details() or "")
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest()
            )
            assert health.status == NOT_SERVING
        finally:
            await channel.close()
            await gateway.stop(0)


# ---- configuration ----


def test_method_kinds_come_from_descriptors() -> None:
    assert descriptor_kinds("/archive.v1.Tenancy/WhoAmI") == (False, False)
    assert descriptor_kinds("/grpc.health.v1.Health/Watch") == (False, True)
    assert descriptor_kinds("/archive.v1.Tenancy/Nope") is None
    assert descriptor_kinds("/no.such.Service/Do") is None


def test_gateway_knows_the_kinds_of_every_archive_method() -> None:
    load_api_descriptors()
    assert descriptor_kinds("/archive.v1.Ingest/Upload") == (True, False)
    assert descriptor_kinds("/archive.v1.Search/Download") == (False, True)


def test_routes_parse() -> None:
    assert parse_routes(" archive.v1.Ingest=127.0.0.1:50061, archive.v1.Search=h:2 ,") == {
        "archive.v1.Ingest": "127.0.0.1:50061",
        "archive.v1.Search": "h:2",
    }
    for bad in ("archive.v1.Ingest", "archive.v1.Ingest=host", "/x/y=h:1", "a..b=h:1", "a=h:0"):
        with pytest.raises(RouteError):
            parse_routes(bad)


def test_backends_get_the_grpc_services_the_catalog_lists() -> None:
    table = route_table({"ARCHIVE_GATEWAY_BACKENDS": "ingest=h:1, search=h:2"})
    assert table == {
        "archive.v1.Ingest": "h:1",
        "archive.v1.TenantAdmin": "h:1",
        "archive.v1.Tenancy": "h:1",
        "archive.v1.Search": "h:2",
    }
    both = route_table(
        {"ARCHIVE_GATEWAY_BACKENDS": "search=h:2", "ARCHIVE_GATEWAY_ROUTES": "x.Y=h:3"}
    )
    assert both == {"archive.v1.Search": "h:2", "x.Y": "h:3"}
    with pytest.raises(RouteError, match="unknown service 'nope'; known: ingest, search"):
        route_table({"ARCHIVE_GATEWAY_BACKENDS": "nope=h:1"})
    with pytest.raises(RouteError, match=r"archive\.v1\.Search is routed to h:9"):
        route_table(
            {
                "ARCHIVE_GATEWAY_BACKENDS": "search=h:2",
                "ARCHIVE_GATEWAY_ROUTES": "archive.v1.Search=h:9",
            }
        )


def test_gateway_needs_routes() -> None:
    from archive.config import ConfigError

    with pytest.raises(ConfigError, match="ARCHIVE_GATEWAY_ROUTES"):
        gateway_from_env(settings(), {})
    with pytest.raises(ConfigError, match="ARCHIVE_GATEWAY_ROUTES"):
        gateway_from_env(settings(), {"ARCHIVE_GATEWAY_ROUTES": "nonsense"})


# ---- TLS to the backends ----


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA, a backend certificate it issued, and an unrelated CA."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def tls_backend(tls_files: TlsFiles) -> AsyncIterator[ArchiveServer]:
    """The tenancy services served over TLS only, by the scaffolding every service uses."""
    store = InMemoryEventStore()
    backend_settings = replace(
        settings(), grpc_tls_cert_file=tls_files.cert, grpc_tls_key_file=tls_files.key
    )
    server = build_server(
        backend_settings,
        tenancy_registrations(store),
        event_store=store,
        registry=TenantRegistry(store),
    )
    await server.start()
    yield server
    await server.stop(0)


@contextlib.asynccontextmanager
async def gateway_to(
    backend: ArchiveServer, **environ: str
) -> AsyncIterator[tuple[Gateway, grpc.aio.Channel]]:
    """A gateway configured from the environment as `archive serve gateway` is, routing the
    tenancy services to `backend`, and a (plaintext) client channel to it."""
    gateway_settings = Settings.from_env({"ARCHIVE_GRPC_PORT": "0", **environ})
    address = backend.address
    routes = f"archive.v1.TenantAdmin={address},archive.v1.Tenancy={address}"
    gateway = gateway_from_env(gateway_settings, {"ARCHIVE_GATEWAY_ROUTES": routes})
    await gateway.start()
    channel = grpc.aio.insecure_channel(gateway.address)
    try:
        yield gateway, channel
    finally:
        await channel.close()
        await gateway.stop(0)


async def test_gateway_reaches_a_tls_backend_through_its_ca(
    tls_backend: ArchiveServer, tls_files: TlsFiles
) -> None:
    async with gateway_to(
        tls_backend, ARCHIVE_BACKEND_TLS="1", ARCHIVE_BACKEND_CA_FILE=str(tls_files.ca)
    ) as (gateway, channel):
        assert all(backend.tls for backend in gateway.proxy.backends.values())
        created = await tenancy_pb2_grpc.TenantAdminStub(channel).CreateTenant(
            tenancy_pb2.CreateTenantRequest(tenant=TenantId(value="acme")),
            metadata=bearer(OPERATOR_TOKEN),
        )
        me = await tenancy_pb2_grpc.TenancyStub(channel).WhoAmI(
            tenancy_pb2.WhoAmIRequest(), metadata=bearer(created.token.token)
        )
        assert me.tenant.value == "acme"
        await gateway.check_backends()
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == SERVING


async def test_a_plaintext_gateway_cannot_reach_a_tls_backend(tls_backend: ArchiveServer) -> None:
    async with gateway_to(tls_backend) as (_, channel):
        error = await rpc_error(
            tenancy_pb2_grpc.TenancyStub(channel).WhoAmI(tenancy_pb2.WhoAmIRequest(), timeout=5)
        )
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "archive.v1.Tenancy is unavailable" in (error.details() or "")


async def test_a_backend_certificate_from_another_ca_fails_clearly(
    tls_backend: ArchiveServer, tls_files: TlsFiles
) -> None:
    wrong_ca = str(tls_files.other_ca)
    async with gateway_to(tls_backend, ARCHIVE_BACKEND_CA_FILE=wrong_ca) as (gateway, channel):
        error = await rpc_error(
            tenancy_pb2_grpc.TenancyStub(channel).WhoAmI(tenancy_pb2.WhoAmIRequest(), timeout=5)
        )
        await gateway.check_backends()
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    details = error.details() or ""
    assert "archive.v1.Tenancy is unavailable" in details
    assert "TLS certificate the gateway trusts (ARCHIVE_BACKEND_CA_FILE)" in details
    assert "CERTIFICATE_VERIFY_FAILED" in details, details  # gRPC's own reason, kept
    assert health.status == NOT_SERVING


def test_backend_tls_settings(tls_files: TlsFiles) -> None:
    from archive.config import ConfigError

    assert Settings.from_env({}).backend_tls is False
    with_ca = Settings.from_env({"ARCHIVE_BACKEND_CA_FILE": str(tls_files.ca)})
    assert (with_ca.backend_tls, with_ca.backend_ca_file) == (True, tls_files.ca)
    assert Settings.from_env({"ARCHIVE_BACKEND_TLS": "true"}).backend_ca_file is None
    with pytest.raises(ConfigError, match="ARCHIVE_BACKEND_TLS"):
        Settings.from_env({"ARCHIVE_BACKEND_TLS": "perhaps"})
    with pytest.raises(ConfigError, match="ARCHIVE_BACKEND_TLS"):
        Settings.from_env(
            {"ARCHIVE_BACKEND_TLS": "0", "ARCHIVE_BACKEND_CA_FILE": str(tls_files.ca)}
        )
    with pytest.raises(ConfigError, match="ARCHIVE_BACKEND_CA_FILE"):
        Settings.from_env({"ARCHIVE_BACKEND_CA_FILE": str(tls_files.ca) + ".missing"})
