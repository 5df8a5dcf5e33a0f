"""Authentication of every call, as a grpc.aio server interceptor.

- Health checking and reflection are public (Kubernetes probes and grpcurl carry no token).
- `/archive.v1.TenantAdmin/*` and the whole-store audit need the operator token
  (ARCHIVE_OPERATOR_TOKEN).
- Everything else needs a valid, unrevoked tenant token holding the role the method needs
  (archive.tenancy.roles; PERMISSION_DENIED `MISSING_ROLE` names it); the handler then finds
  the caller with `current_principal()`.

Credentials travel as `authorization: Bearer <token>` metadata. A refused call gets a handler
of the same streaming kind as the method (grpc.aio breaks otherwise) that ends it with
UNAUTHENTICATED or PERMISSION_DENIED and a message saying what to do.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import grpc
import grpc.aio
from opentelemetry import trace

from archive.config import Secret
from archive.grpcserver._handlers import same_kind, wrap_handler
from archive.grpcserver.errors import (
    MissingRole,
    PermissionDenied,
    Unauthenticated,
    abort_with_error,
)
from archive.tenancy.registry import OPERATOR, Principal, TenantRegistry, TokenCheck
from archive.tenancy.roles import ARCHIVE_PREFIX, METHOD_ROLES

if TYPE_CHECKING:
    from archive.grpcserver._handlers import Handler

PUBLIC_METHOD_PREFIXES: Final = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
OPERATOR_METHOD_PREFIXES: Final = (
    "/archive.v1.TenantAdmin/",
    "/archive.v1.Sealing/RunStoreIntegrityAudit",  # every tenant's data: not for a tenant
)
AUTHORIZATION_HEADER: Final = "authorization"

_HOW_TO_SEND = "send metadata 'authorization: Bearer <token>'"
_GET_A_TOKEN = "ask your archive operator for a tenant token (TenantAdmin.IssueToken)"

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "archive_principal", default=None
)


def current_principal() -> Principal:
    """The authenticated caller of the current RPC. Raises Unauthenticated outside one
    (a public method, or code not running under the interceptor)."""
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("this call is not authenticated")
    return principal


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        registry: TenantRegistry,
        operator_token: Secret | None,
        *,
        public_prefixes: Sequence[str] = PUBLIC_METHOD_PREFIXES,
        operator_prefixes: Sequence[str] = OPERATOR_METHOD_PREFIXES,
    ) -> None:
        self._registry = registry
        # An empty operator token would match an empty bearer: treat it as not configured.
        self._operator_token = operator_token if operator_token else None
        self._public_prefixes = tuple(public_prefixes)
        self._operator_prefixes = tuple(operator_prefixes)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(self._public_prefixes):
            return handler
        try:
            token = _bearer_token(handler_call_details.invocation_metadata)
            if method.startswith(self._operator_prefixes):
                principal = await self._authenticate_operator(token, method)
            else:
                principal = await self._authenticate_tenant(token)
                _check_role(principal, method)
        except Exception as exc:  # refusals, and StoreUnavailable during a catch-up
            # Logged once, by abort_with_error, when the rejecting handler runs.
            return _rejecting(handler, exc, method)
        return _as_principal(handler, principal)

    async def _authenticate_operator(self, token: str, method: str) -> Principal:
        if self._operator_token is not None and self._operator_token.matches(token):
            return OPERATOR
        verification = await self._registry.verify(token)
        if verification.check is TokenCheck.OK:
            raise PermissionDenied(
                f"tenant tokens cannot call {method}: it needs the operator token"
            )
        if self._operator_token is None:
            raise Unauthenticated(
                f"{method} is disabled on this server: its operator has not set "
                "ARCHIVE_OPERATOR_TOKEN"
            )
        raise Unauthenticated(f"this is not the operator token; {_HOW_TO_SEND} with it")

    async def _authenticate_tenant(self, token: str) -> Principal:
        if self._operator_token is not None and self._operator_token.matches(token):
            raise PermissionDenied(
                "the operator token cannot call tenant methods; use a tenant token "
                "(issue one with TenantAdmin.IssueToken)"
            )
        verification = await self._registry.verify(token)
        if verification.check is TokenCheck.OK and verification.principal is not None:
            return verification.principal
        if verification.check is TokenCheck.REVOKED:
            raise Unauthenticated(f"this token has been revoked; {_GET_A_TOKEN}")
        if verification.check is TokenCheck.MALFORMED:
            raise Unauthenticated(
                "the bearer token is not an archive token (expected 'arc_<token id>_<secret>'); "
                f"check it was copied whole, or {_GET_A_TOKEN}"
            )
        raise Unauthenticated(
            f"unknown token; check it was copied whole and is for this archive, or {_GET_A_TOKEN}"
        )


def _check_role(principal: Principal, method: str) -> None:
    """The token holds the role the method needs (archive.tenancy.roles). An archive method
    missing from the table is refused: a new RPC must say which role it needs."""
    if not method.startswith(ARCHIVE_PREFIX):
        return  # not one of our APIs (e.g. a test service registered beside them)
    if method not in METHOD_ROLES:
        raise PermissionDenied(f"{method} has no role assigned; this is a bug of the archive")
    role = METHOD_ROLES[method]
    if role is not None and role not in principal.roles:
        raise MissingRole(method, role)


def _bearer_token(metadata: Sequence[tuple[str, Any]] | None) -> str:
    values = [value for key, value in metadata or () if key == AUTHORIZATION_HEADER]
    if not values:
        raise Unauthenticated(f"missing credentials: {_HOW_TO_SEND}; {_GET_A_TOKEN}")
    if len(values) > 1:
        raise Unauthenticated(f"several authorization headers; {_HOW_TO_SEND} exactly once")
    value = values[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    scheme, _, token = str(value).strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(f"malformed authorization header: {_HOW_TO_SEND}")
    return token


def _rejecting(handler: Handler, exc: Exception, method: str) -> Handler:
    """A handler of the method's own kind that ends the call with `exc`'s status, without
    reading the request stream."""
    if handler.response_streaming:

        async def reject_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await abort_with_error(context, exc, method)
            yield  # pragma: no cover - makes this an async generator, like the method

        return same_kind(handler, reject_stream)

    async def reject(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await abort_with_error(context, exc, method)

    return same_kind(handler, reject)


def _as_principal(handler: Handler, principal: Principal) -> Handler:
    """Runs the method with `principal` in the context, and names it on the server span."""

    def enter() -> contextvars.Token[Principal | None]:
        span = trace.get_current_span()
        span.set_attribute("archive.tenant", principal.tenant)
        span.set_attribute("archive.token_id", principal.token_id)
        return _principal.set(principal)

    def leave(token: contextvars.Token[Principal | None]) -> None:
        # An async generator may be closed from another context; the value dies with the
        # call's task anyway.
        with contextlib.suppress(ValueError):
            _principal.reset(token)

    def unary(behavior: Callable[[Any, Any], Awaitable[Any]]) -> Callable[..., Any]:
        async def authenticated(request: Any, context: Any) -> Any:
            token = enter()
            try:
                return await behavior(request, context)
            finally:
                leave(token)

        return authenticated

    def stream(behavior: Callable[[Any, Any], AsyncIterator[Any]]) -> Callable[..., Any]:
        async def authenticated(request: Any, context: Any) -> AsyncIterator[Any]:
            token = enter()
            try:
                async for response in behavior(request, context):
                    yield response
            finally:
                leave(token)

        return authenticated

    return wrap_handler(handler, unary, stream)
