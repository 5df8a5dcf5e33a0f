"""gRPC servicers for tenancy: TenantAdmin (operator token) and Tenancy (tenant token).

Errors are raised as typed exceptions and turned into statuses by the error interceptor.
"""

from __future__ import annotations

from typing import Any

import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from archive.eventstore import EventStore
from archive.grpcserver.auth import current_principal
from archive.grpcserver.errors import current_correlation_id
from archive.grpcserver.server import Registration
from archive.tenancy import commands
from archive.tenancy.errors import InvalidTenancyArgument
from archive.v1 import tenancy_pb2, tenancy_pb2_grpc
from archive.v1.common_pb2 import TenantId

Context = grpc.aio.ServicerContext[Any, Any]


class TenantAdminServicer(tenancy_pb2_grpc.TenantAdminServicer):
    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def CreateTenant(
        self, request: tenancy_pb2.CreateTenantRequest, context: Context
    ) -> tenancy_pb2.CreateTenantResponse:
        created = await commands.create_tenant(
            self._store,
            _tenant_of(request),
            request.display_name,
            actor=_actor(),
            correlation_id=current_correlation_id(),
        )
        return tenancy_pb2.CreateTenantResponse(
            tenant=TenantId(value=created.tenant), token=_issued(created.token)
        )

    async def IssueToken(
        self, request: tenancy_pb2.IssueTokenRequest, context: Context
    ) -> tenancy_pb2.IssueTokenResponse:
        issued = await commands.issue_token(
            self._store,
            _tenant_of(request),
            request.description,
            roles=request.roles,
            actor=_actor(),
            correlation_id=current_correlation_id(),
        )
        return tenancy_pb2.IssueTokenResponse(token=_issued(issued))

    async def RevokeToken(
        self, request: tenancy_pb2.RevokeTokenRequest, context: Context
    ) -> tenancy_pb2.RevokeTokenResponse:
        if not request.token_id:
            raise InvalidTenancyArgument("token_id", "required")
        await commands.revoke_token(
            self._store,
            _tenant_of(request),
            request.token_id,
            actor=_actor(),
            correlation_id=current_correlation_id(),
        )
        return tenancy_pb2.RevokeTokenResponse()


class TenancyServicer(tenancy_pb2_grpc.TenancyServicer):
    async def WhoAmI(
        self, request: tenancy_pb2.WhoAmIRequest, context: Context
    ) -> tenancy_pb2.WhoAmIResponse:
        principal = current_principal()
        return tenancy_pb2.WhoAmIResponse(
            tenant=TenantId(value=principal.tenant),
            token_id=principal.token_id,
            roles=sorted(principal.roles),
        )


def tenancy_registrations(store: EventStore) -> list[Registration]:
    """Both tenancy services, ready for build_server."""
    services = tenancy_pb2.DESCRIPTOR.services_by_name
    return [
        Registration.of(
            services["TenantAdmin"],
            tenancy_pb2_grpc.add_TenantAdminServicer_to_server,
            TenantAdminServicer(store),
        ),
        Registration.of(
            services["Tenancy"], tenancy_pb2_grpc.add_TenancyServicer_to_server, TenancyServicer()
        ),
    ]


def _tenant_of(request: Any) -> str:
    if not request.HasField("tenant") or not request.tenant.value:
        raise InvalidTenancyArgument("tenant.value", "required")
    return str(request.tenant.value)


def _actor() -> str:
    principal = current_principal()
    return "operator" if principal.is_operator else f"{principal.tenant}/{principal.token_id}"


def _issued(issued: commands.IssuedToken) -> tenancy_pb2.IssuedToken:
    issued_at = Timestamp()
    issued_at.FromDatetime(issued.issued_at)
    # The one place the secret leaves the process: in the response to the operator.
    return tenancy_pb2.IssuedToken(
        token_id=issued.token_id,
        token=issued.token.reveal(),
        issued_at=issued_at,
        roles=sorted(issued.roles),
    )
