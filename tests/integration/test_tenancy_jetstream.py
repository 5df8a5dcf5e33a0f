"""Tenant tokens over the real JetStream store: one connection writes (as another process
would), a registry on a second connection authenticates with read-your-writes, revocations
reach it, and a fresh registry rebuilds everything from the events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from conftest import unique_names
from waiting import eventually

from archive.config import Secret, Settings
from archive.eventstore.jetstream import JetStreamEventStore
from archive.grpcserver import build_server
from archive.natsserver import NatsServer
from archive.tenancy import (
    Principal,
    TenantRegistry,
    TokenCheck,
    create_tenant,
    issue_token,
    revoke_token,
)
from archive.tenancy.roles import FIRST_TOKEN_ROLES, LEGACY_ROLES
from archive.v1 import tenancy_pb2, tenancy_pb2_grpc
from archive.v1.common_pb2 import TenantId
from services.ingest.tenancy_servicer import tenancy_registrations

pytestmark = pytest.mark.integration

OPERATOR_TOKEN = "operator-secret-for-tests-0123456789"


@pytest.fixture
async def two_connections(
    nats_server: NatsServer,
) -> AsyncIterator[tuple[JetStreamEventStore, JetStreamEventStore]]:
    """Two independent connections to the same event stream, like two processes."""
    names = unique_names()
    writer = await JetStreamEventStore.connect(nats_server.url, **names)
    reader = await JetStreamEventStore.connect(nats_server.url, **names)
    try:
        yield writer, reader
    finally:
        await writer.close()
        await reader.close()


async def test_token_issued_elsewhere_authenticates_immediately(
    two_connections: tuple[JetStreamEventStore, JetStreamEventStore],
) -> None:
    writer, reader = two_connections
    registry = TenantRegistry(reader)
    await registry.start()
    try:
        created = await create_tenant(writer, "acme")
        # No sleep: a miss makes the registry catch up with the store before answering.
        principal = (await registry.verify(created.token.token.reveal())).principal
        assert principal == Principal("acme", created.token.token_id, FIRST_TOKEN_ROLES)

        second = await issue_token(writer, "acme", "second")
        assert (await registry.verify(second.token.reveal())).principal == Principal(
            "acme", second.token_id, LEGACY_ROLES
        )
    finally:
        await registry.stop()


async def test_revocation_reaches_a_following_registry(
    two_connections: tuple[JetStreamEventStore, JetStreamEventStore],
) -> None:
    writer, reader = two_connections
    registry = TenantRegistry(reader)
    await registry.start()
    try:
        created = await create_tenant(writer, "acme")
        token = created.token.token.reveal()
        assert (await registry.verify(token)).principal is not None

        await revoke_token(writer, "acme", created.token.token_id)

        async def revoked() -> bool:
            return (await registry.verify(token)).check is TokenCheck.REVOKED

        # The follower applies it in the background.
        await eventually(revoked, what="the revocation to arrive")
    finally:
        await registry.stop()


async def test_restarted_registry_rebuilds_from_events(
    two_connections: tuple[JetStreamEventStore, JetStreamEventStore],
) -> None:
    writer, reader = two_connections
    acme = await create_tenant(writer, "acme")
    globex = await create_tenant(writer, "globex")
    extra = await issue_token(writer, "acme", "extra")
    await revoke_token(writer, "acme", acme.token.token_id)

    registry = TenantRegistry(reader)
    await registry.start()
    try:
        assert registry.position == await reader.last_position()
        assert (await registry.verify(acme.token.token.reveal())).check is TokenCheck.REVOKED
        assert (await registry.verify(extra.token.reveal())).principal == Principal(
            "acme", extra.token_id, LEGACY_ROLES
        )
        assert (await registry.verify(globex.token.token.reveal())).principal == Principal(
            "globex", globex.token.token_id, FIRST_TOKEN_ROLES
        )
    finally:
        await registry.stop()


async def test_grpc_token_from_one_server_works_on_another(
    two_connections: tuple[JetStreamEventStore, JetStreamEventStore],
) -> None:
    """Two servers (two processes in production) over one JetStream stream: the tenant is
    created through the first, and its token is accepted by the second at once."""
    servers = []
    for store in two_connections:
        settings = Settings(
            grpc_host="127.0.0.1",
            grpc_port=0,
            operator_token=Secret(OPERATOR_TOKEN),
            shutdown_grace_seconds=1.0,
        )
        server = build_server(
            settings,
            tenancy_registrations(store),
            event_store=store,
            registry=TenantRegistry(store),
        )
        await server.start()
        servers.append(server)
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{servers[0].port}") as first,
            grpc.aio.insecure_channel(f"127.0.0.1:{servers[1].port}") as second,
        ):
            created = await tenancy_pb2_grpc.TenantAdminStub(first).CreateTenant(
                tenancy_pb2.CreateTenantRequest(tenant=TenantId(value="acme")),
                metadata=(("authorization", f"Bearer {OPERATOR_TOKEN}"),),
            )
            me = await tenancy_pb2_grpc.TenancyStub(second).WhoAmI(
                tenancy_pb2.WhoAmIRequest(),
                metadata=(("authorization", f"Bearer {created.token.token}"),),
            )
            assert me.tenant.value == "acme"

            duplicate = tenancy_pb2_grpc.TenantAdminStub(second).CreateTenant(
                tenancy_pb2.CreateTenantRequest(tenant=TenantId(value="acme")),
                metadata=(("authorization", f"Bearer {OPERATOR_TOKEN}"),),
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await duplicate
            assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    finally:
        for server in servers:
            await server.stop(0)
