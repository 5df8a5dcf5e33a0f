"""One table from typed exceptions to gRPC status codes with google.rpc error details.

Every RPC goes through `ErrorInterceptor`: a handler raises what it means (TenantNotFound,
WrongExpectedVersion, ...) and the caller receives the matching code, a message a person can
act on, and rich details (`grpc-status-details-bin`): always an ErrorInfo (reason, domain,
correlation id), a BadRequest with field violations when the input was wrong, a RetryInfo
when trying again later is the right move. Anything not in the table is INTERNAL with a
generic message; the real exception is logged with the correlation id the caller was given.
docs/errors.md is the human version of ERROR_TABLE; keep them together.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NoReturn

import grpc
import grpc.aio
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from archive.audit_errors import AuditAlreadyRunning
from archive.blobstore.errors import BlobDigestMismatch, BlobNotFound, BlobTooLarge, InvalidBlobKey
from archive.document_errors import ContentDamaged, DocumentNotFound, IdempotencyKeyReused
from archive.eventstore import (
    EventTooLarge,
    InvalidEvent,
    InvalidStreamName,
    StoreUnavailable,
    StreamNotFound,
    WrongExpectedVersion,
)
from archive.grpcserver._handlers import wrap_handler
from archive.tenancy.errors import (
    InvalidTenancyArgument,
    TenantAlreadyExists,
    TenantNotFound,
    TokenNotFound,
)

if TYPE_CHECKING:
    from archive.grpcserver._handlers import Handler

log = logging.getLogger(__name__)

ERROR_DOMAIN: Final = "archive.v1"
CORRELATION_HEADER: Final = "x-correlation-id"
_CORRELATION_RE: Final = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
# Exception attributes worth handing back in ErrorInfo.metadata: identifiers the caller sent
# or may need, never content or credentials.
_SAFE_ATTRIBUTES: Final = (
    "tenant",
    "token_id",
    "stream",
    "expected",
    "actual",
    "max_size",
    "document_id",
    "role",
)

_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "archive_correlation_id", default=None
)


# ---- exceptions the gRPC layer itself raises, or that any service may raise ----


class InvalidArgument(ValueError):
    """A request field is wrong. Raise it from a servicer to get INVALID_ARGUMENT with a
    BadRequest naming the field: `raise InvalidArgument("document_id.value", "not a UUID")`."""

    def __init__(self, field: str, description: str, *more: tuple[str, str]) -> None:
        self.field_violations: tuple[tuple[str, str], ...] = ((field, description), *more)
        super().__init__("; ".join(f"{f}: {d}" for f, d in self.field_violations))


class Unauthenticated(Exception):
    """No valid credentials; the message says how to get them."""


class PermissionDenied(Exception):
    """Valid credentials that may not call this method."""


class MissingRole(PermissionDenied):
    """A valid tenant token without the role this method needs."""

    def __init__(self, method: str, role: str) -> None:
        self.role = role
        super().__init__(
            f"this token lacks the role {role!r} that {method} needs; ask your archive "
            f"operator for a token with it (archivectl token issue TENANT --role {role})"
        )


class NotReadyYet(Exception):
    """What was asked for will exist shortly (e.g. evidence of a deposit not yet covered by a
    checkpoint): retry after the delay given."""

    def __init__(self, message: str, retry_after_seconds: float = 1.0) -> None:
        self.retry_after_seconds = retry_after_seconds
        super().__init__(message)


# ---- the table ----


@dataclass(frozen=True)
class ErrorRule:
    exception: type[BaseException]
    code: grpc.StatusCode
    reason: str  # ErrorInfo.reason: UPPER_SNAKE_CASE, stable, for programs to switch on
    caller_should: str  # documentation: what the caller should do about it
    retry_after_seconds: float | None = None  # adds a RetryInfo
    # A fixed message instead of str(exc), for errors whose text may carry internals.
    public_message: str | None = None
    log_level: int = logging.DEBUG


# First match wins: subclasses before their bases.
ERROR_TABLE: Final[tuple[ErrorRule, ...]] = (
    ErrorRule(
        Unauthenticated,
        grpc.StatusCode.UNAUTHENTICATED,
        "UNAUTHENTICATED",
        "send 'authorization: Bearer <token>' with a valid, unrevoked token",
        log_level=logging.INFO,
    ),
    ErrorRule(
        MissingRole,
        grpc.StatusCode.PERMISSION_DENIED,
        "MISSING_ROLE",
        "use a token with the role named in ErrorInfo.metadata['role']",
        log_level=logging.INFO,
    ),
    ErrorRule(
        PermissionDenied,
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
        "use a token allowed to call this method (the operator token for operator methods)",
        log_level=logging.INFO,
    ),
    ErrorRule(
        InvalidTenancyArgument,
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        "fix the field named in the BadRequest detail; retrying unchanged fails again",
    ),
    ErrorRule(
        InvalidArgument,
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        "fix the field named in the BadRequest detail; retrying unchanged fails again",
    ),
    ErrorRule(
        InvalidStreamName,
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_STREAM_NAME",
        "fix the identifier (lower-case tenant; ids of letters, digits, '_' or '-')",
    ),
    ErrorRule(
        InvalidEvent,
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_EVENT",
        "fix the request; retrying unchanged fails again",
    ),
    ErrorRule(
        InvalidBlobKey,
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_BLOB_KEY",
        "send a lower-case hex SHA-256 digest and a valid tenant",
    ),
    ErrorRule(
        BlobDigestMismatch,
        grpc.StatusCode.INVALID_ARGUMENT,
        "DIGEST_MISMATCH",
        "the bytes were altered in transit or the announced digest is wrong: re-send",
    ),
    ErrorRule(
        TenantAlreadyExists,
        grpc.StatusCode.ALREADY_EXISTS,
        "TENANT_ALREADY_EXISTS",
        "choose another tenant name, or use the existing tenant (IssueToken for a new token)",
    ),
    ErrorRule(
        IdempotencyKeyReused,
        grpc.StatusCode.ALREADY_EXISTS,
        "IDEMPOTENCY_KEY_REUSED",
        "use a new idempotency key for new content; the same key only replays the same deposit",
    ),
    ErrorRule(
        DocumentNotFound,
        grpc.StatusCode.NOT_FOUND,
        "DOCUMENT_NOT_FOUND",
        "check the document id; documents are only visible to the tenant that deposited them",
    ),
    ErrorRule(
        NotReadyYet,
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_READY_YET",
        "retry after the RetryInfo delay: what you asked for is being prepared",
        retry_after_seconds=1.0,
    ),
    ErrorRule(
        ContentDamaged,
        grpc.StatusCode.DATA_LOSS,
        "CONTENT_DAMAGED",
        "report it to the operator with the correlation id; the archive must restore the copy",
        log_level=logging.ERROR,
    ),
    ErrorRule(
        TenantNotFound,
        grpc.StatusCode.NOT_FOUND,
        "TENANT_NOT_FOUND",
        "check the tenant name, or create it first (CreateTenant)",
    ),
    ErrorRule(
        TokenNotFound,
        grpc.StatusCode.NOT_FOUND,
        "TOKEN_NOT_FOUND",
        "check the token id (the 12 characters after 'arc_') and the tenant",
    ),
    ErrorRule(
        StreamNotFound,
        grpc.StatusCode.NOT_FOUND,
        "STREAM_NOT_FOUND",
        "check the identifier; the thing it names was never created",
    ),
    ErrorRule(
        BlobNotFound,
        grpc.StatusCode.NOT_FOUND,
        "BLOB_NOT_FOUND",
        "check the digest and tenant; content is only visible to the tenant that deposited it",
    ),
    ErrorRule(
        WrongExpectedVersion,
        grpc.StatusCode.ABORTED,
        "WRONG_EXPECTED_VERSION",
        "someone changed the same thing first: re-read, re-decide, retry",
    ),
    ErrorRule(
        AuditAlreadyRunning,
        grpc.StatusCode.ABORTED,
        "AUDIT_ALREADY_RUNNING",
        "wait for the running audit of the tenant to end, then ask again",
    ),
    ErrorRule(
        EventTooLarge,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "EVENT_TOO_LARGE",
        "send less per call (large content goes to the blob store); retrying unchanged fails",
    ),
    ErrorRule(
        BlobTooLarge,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "BLOB_TOO_LARGE",
        "the content is over the size limit in ErrorInfo.metadata; retrying unchanged fails",
    ),
    ErrorRule(
        StoreUnavailable,
        grpc.StatusCode.UNAVAILABLE,
        "STORE_UNAVAILABLE",
        "retry after the RetryInfo delay, with backoff; retries of the same request are safe",
        retry_after_seconds=1.0,
        public_message="the event store is temporarily unavailable; retry with backoff",
        log_level=logging.WARNING,
    ),
    ErrorRule(
        TimeoutError,
        grpc.StatusCode.UNAVAILABLE,
        "DEPENDENCY_TIMEOUT",
        "retry after the RetryInfo delay, with backoff",
        retry_after_seconds=1.0,
        public_message="a dependency did not answer in time; retry with backoff",
        log_level=logging.WARNING,
    ),
    ErrorRule(
        NotImplementedError,
        grpc.StatusCode.UNIMPLEMENTED,
        "UNIMPLEMENTED",
        "this server does not offer the method (yet); check the server version",
        public_message="method not implemented",
    ),
)

INTERNAL_REASON: Final = "INTERNAL"


def rule_for(exc: BaseException) -> ErrorRule | None:
    for rule in ERROR_TABLE:
        if isinstance(exc, rule.exception):
            return rule
    return None


def current_correlation_id() -> str:
    """The id of the current call (the caller's x-correlation-id if it sent a sane one);
    handlers pass it on to events so that a request can be followed through the store."""
    value = _correlation_id.get()
    if value is None:
        value = uuid.uuid4().hex
        _correlation_id.set(value)
    return value


def status_for(exc: BaseException, correlation_id: str) -> grpc.Status:
    """The rich gRPC status for an exception (details included in trailing metadata)."""
    return rpc_status.to_status(status_proto_for(exc, correlation_id))


def status_proto_for(exc: BaseException, correlation_id: str) -> status_pb2.Status:
    """The google.rpc.Status for an exception: code, message a person can act on, details.
    Also what a streaming method sends as one item's error without ending the call."""
    rule = rule_for(exc)
    if rule is None:
        code = grpc.StatusCode.INTERNAL
        reason = INTERNAL_REASON
        message = f"internal error; quote correlation id {correlation_id} when reporting it"
        metadata: dict[str, str] = {}
    else:
        code = rule.code
        reason = rule.reason
        message = rule.public_message or str(exc) or reason.lower().replace("_", " ")
        metadata = _safe_metadata(exc)
    metadata["correlation_id"] = correlation_id
    details: list[Message] = [
        error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata)
    ]
    violations: Sequence[tuple[str, str]] = getattr(exc, "field_violations", ()) if rule else ()
    if violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in violations
                ]
            )
        )
    if rule is not None and rule.retry_after_seconds is not None:
        delay = Duration()
        delay.FromNanoseconds(int(rule.retry_after_seconds * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    status = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        status.details.add().Pack(detail)
    return status


async def abort_with_error(
    context: grpc.aio.ServicerContext[Any, Any], exc: BaseException, method: str = ""
) -> NoReturn:
    """Log `exc` as its rule says and end the call with its status."""
    correlation_id = log_error(exc, method)
    status = status_for(exc, correlation_id)
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("context.abort returned")  # it always raises


def log_error(exc: BaseException, method: str = "") -> str:
    """Log `exc` as its rule says (unknown errors with their traceback, for the operators);
    return the correlation id that the caller is given with the error."""
    correlation_id = current_correlation_id()
    rule = rule_for(exc)
    if rule is None:
        # exc_info gives the operators the traceback; the caller only gets the id.
        log.error(
            "unhandled %s in %s [correlation_id=%s]",
            type(exc).__name__,
            method or "?",
            correlation_id,
            exc_info=exc,
        )
    else:
        log.log(
            rule.log_level,
            "%s in %s: %s [correlation_id=%s]",
            rule.code.name,
            method or "?",
            rule.public_message or exc,
            correlation_id,
        )
    return correlation_id


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Applies ERROR_TABLE to every method, unary or streaming."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # unknown method: UNIMPLEMENTED
        method = handler_call_details.method
        incoming = _incoming_correlation_id(handler_call_details.invocation_metadata)

        def unary(behavior: Callable[[Any, Any], Awaitable[Any]]) -> Callable[..., Any]:
            async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                _correlation_id.set(incoming or uuid.uuid4().hex)
                try:
                    return await behavior(request, context)
                except grpc.aio.AbortError:
                    raise  # the handler already chose its status
                except Exception as exc:
                    await abort_with_error(context, exc, method)

            return guarded

        def stream(behavior: Callable[[Any, Any], AsyncIterator[Any]]) -> Callable[..., Any]:
            async def guarded(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                _correlation_id.set(incoming or uuid.uuid4().hex)
                try:
                    async for response in behavior(request, context):
                        yield response
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    await abort_with_error(context, exc, method)

            return guarded

        return wrap_handler(handler, unary, stream)


def _incoming_correlation_id(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    for key, value in metadata or ():
        if key == CORRELATION_HEADER and isinstance(value, str) and _CORRELATION_RE.match(value):
            return value
    return None


def _safe_metadata(exc: BaseException) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in _SAFE_ATTRIBUTES:
        value = getattr(exc, name, None)
        if value is not None and not isinstance(value, bytes | Mapping):
            found["limit_bytes" if name == "max_size" else name] = str(value)
    return found
