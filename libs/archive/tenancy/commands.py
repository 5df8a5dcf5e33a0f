"""Tenant administration commands: each validates, checks the tenant's stream, and appends
events with optimistic concurrency. Stream: StreamName("_system", "tenant", <tenant>).

Only the SHA-256 of a token goes into an event; the token itself is returned once, wrapped in a
`Secret` so that it cannot end up in a log line by accident.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import propagate

from archive.config import Secret
from archive.eventstore import (
    NO_STREAM,
    SYSTEM_TENANT,
    EventStore,
    NewEvent,
    StreamName,
    StreamNotFound,
    WrongExpectedVersion,
)
from archive.eventstore.streams import is_valid_tenant
from archive.tenancy.errors import (
    InvalidTenancyArgument,
    InvalidTenantName,
    TenantAlreadyExists,
    TenantNotFound,
    TokenNotFound,
)
from archive.tenancy.roles import FIRST_TOKEN_ROLES, parse_roles
from archive.tenancy.tokens import generate_token, is_valid_token_id
from archive.v1.common_pb2 import TenantId
from archive.v1.events_pb2 import TenantCreated, TenantTokenIssued, TenantTokenRevoked

log = logging.getLogger(__name__)

TENANT_CATEGORY: Final = "tenant"
MAX_TEXT_LENGTH: Final = 200
# Concurrent token issues on one tenant only conflict on the stream version; re-reading and
# trying again is always right for them, a few times is plenty.
_CONFLICT_RETRIES: Final = 5

OPERATOR_ACTOR: Final = "operator"


def tenant_stream(tenant: str) -> StreamName:
    return StreamName(SYSTEM_TENANT, TENANT_CATEGORY, tenant)


@dataclass(frozen=True)
class IssuedToken:
    tenant: str
    token_id: str
    token: Secret  # the bearer token, shown to the caller once
    issued_at: datetime
    roles: frozenset[str]


@dataclass(frozen=True)
class CreatedTenant:
    tenant: str
    display_name: str
    token: IssuedToken


@dataclass
class TenantState:
    """What the commands need to know about a tenant, folded from its stream."""

    version: int
    display_name: str = ""
    # token id -> revoked?
    tokens: dict[str, bool] = field(default_factory=dict)


async def create_tenant(
    store: EventStore,
    tenant: str,
    display_name: str = "",
    *,
    token_description: str = "initial token",
    actor: str = OPERATOR_ACTOR,
    correlation_id: str = "",
) -> CreatedTenant:
    """Create the tenant and its first token in one atomic append. Raises InvalidTenantName,
    InvalidTenancyArgument, TenantAlreadyExists."""
    _check_tenant(tenant)
    _check_text("display_name", display_name)
    _check_text("description", token_description)
    now = datetime.now(UTC)
    generated = generate_token()
    created = TenantCreated(
        tenant=TenantId(value=tenant), display_name=display_name, created_at=_timestamp(now)
    )
    issued = _token_issued(
        tenant, generated.token_id, generated.sha256, token_description, now, FIRST_TOKEN_ROLES
    )
    try:
        await store.append(
            tenant_stream(tenant),
            [_event(created, actor, correlation_id), _event(issued, actor, correlation_id)],
            NO_STREAM,
        )
    except WrongExpectedVersion:
        raise TenantAlreadyExists(tenant) from None
    log.info("tenant %s created by %s (first token %s)", tenant, actor, generated.token_id)
    token = IssuedToken(tenant, generated.token_id, generated.token, now, FIRST_TOKEN_ROLES)
    return CreatedTenant(tenant=tenant, display_name=display_name, token=token)


async def issue_token(
    store: EventStore,
    tenant: str,
    description: str = "",
    *,
    roles: Iterable[str] = (),
    actor: str = OPERATOR_ACTOR,
    correlation_id: str = "",
) -> IssuedToken:
    """Issue one more token for an existing tenant, with `roles` (none: LEGACY_ROLES).
    Raises InvalidTenantName, InvalidTenancyArgument (an unknown role too), TenantNotFound."""
    _check_tenant(tenant)
    _check_text("description", description)
    granted = parse_roles(roles)
    generated = generate_token()
    for attempt in range(_CONFLICT_RETRIES):
        state = await load_tenant(store, tenant)
        now = datetime.now(UTC)
        issued = _token_issued(
            tenant, generated.token_id, generated.sha256, description, now, granted
        )
        try:
            await store.append(
                tenant_stream(tenant), [_event(issued, actor, correlation_id)], state.version
            )
        except WrongExpectedVersion:
            if attempt == _CONFLICT_RETRIES - 1:
                raise
            continue
        log.info("token %s issued for tenant %s by %s", generated.token_id, tenant, actor)
        return IssuedToken(tenant, generated.token_id, generated.token, now, granted)
    raise AssertionError("unreachable")


async def revoke_token(
    store: EventStore,
    tenant: str,
    token_id: str,
    *,
    actor: str = OPERATOR_ACTOR,
    correlation_id: str = "",
) -> bool:
    """Revoke a token. Idempotent: revoking a revoked token appends nothing and returns False.
    Raises InvalidTenantName, TenantNotFound, TokenNotFound."""
    _check_tenant(tenant)
    if not is_valid_token_id(token_id):
        raise TokenNotFound(tenant, token_id)
    for attempt in range(_CONFLICT_RETRIES):
        state = await load_tenant(store, tenant)
        if token_id not in state.tokens:
            raise TokenNotFound(tenant, token_id)
        if state.tokens[token_id]:
            return False
        revoked = TenantTokenRevoked(
            tenant=TenantId(value=tenant),
            token_id=token_id,
            revoked_at=_timestamp(datetime.now(UTC)),
        )
        try:
            await store.append(
                tenant_stream(tenant), [_event(revoked, actor, correlation_id)], state.version
            )
        except WrongExpectedVersion:
            if attempt == _CONFLICT_RETRIES - 1:
                raise
            continue
        log.info("token %s of tenant %s revoked by %s", token_id, tenant, actor)
        return True
    raise AssertionError("unreachable")


async def load_tenant(store: EventStore, tenant: str) -> TenantState:
    """Fold the tenant's stream. Raises TenantNotFound."""
    state: TenantState | None = None
    try:
        async for event in store.read_stream(tenant_stream(tenant)):
            state = state or TenantState(version=event.version)
            state.version = event.version
            if event.type == TenantCreated.DESCRIPTOR.full_name:
                state.display_name = TenantCreated.FromString(event.data).display_name
            elif event.type == TenantTokenIssued.DESCRIPTOR.full_name:
                state.tokens[TenantTokenIssued.FromString(event.data).token_id] = False
            elif event.type == TenantTokenRevoked.DESCRIPTOR.full_name:
                state.tokens[TenantTokenRevoked.FromString(event.data).token_id] = True
    except StreamNotFound:
        raise TenantNotFound(tenant) from None
    if state is None:
        raise TenantNotFound(tenant)
    return state


def _check_tenant(tenant: str) -> None:
    if not is_valid_tenant(tenant):
        raise InvalidTenantName(tenant)


def _check_text(field_name: str, value: str) -> None:
    if len(value) > MAX_TEXT_LENGTH:
        raise InvalidTenancyArgument(field_name, f"at most {MAX_TEXT_LENGTH} characters")
    if any(not c.isprintable() for c in value):
        raise InvalidTenancyArgument(field_name, "control characters are not allowed")


def _token_issued(
    tenant: str,
    token_id: str,
    sha256: bytes,
    description: str,
    now: datetime,
    roles: frozenset[str],
) -> TenantTokenIssued:
    return TenantTokenIssued(
        tenant=TenantId(value=tenant),
        token_id=token_id,
        token_sha256=sha256,
        description=description,
        issued_at=_timestamp(now),
        roles=sorted(roles),
    )


def _event(message: Message, actor: str, correlation_id: str) -> NewEvent:
    trace_context: dict[str, str] = {}
    propagate.inject(trace_context)  # so the append can be followed back to its request
    metadata: Mapping[str, str] = {"actor": actor}
    return NewEvent.of(
        message,
        correlation_id=correlation_id,
        trace_context=trace_context,
        metadata=metadata,
    )


def _timestamp(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts
