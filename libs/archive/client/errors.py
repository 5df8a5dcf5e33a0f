"""Typed exceptions for archive callers, mapped from gRPC status codes and ErrorInfo reasons.

Callers catch what they mean (`except NotFound`, `except Unavailable`) instead of comparing
status codes. Every exception keeps what the server said: the gRPC code, the stable ErrorInfo
`reason`, the BadRequest field violations, the RetryInfo delay and the correlation id to quote
when reporting a problem (docs/errors.md is the server side of this table).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Self, cast

import grpc
import grpc.aio
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"
DIGEST_MISMATCH_REASON: Final = "DIGEST_MISMATCH"
NOT_READY_REASON: Final = "NOT_READY_YET"


class ArchiveError(Exception):
    """Base of every error the client raises on purpose.

    `code` is the gRPC status code (None for errors found on the client side), `reason` the
    ErrorInfo reason (UPPER_SNAKE_CASE, stable: switch on it rather than on the message),
    `field_violations` pairs of (field path, what is expected), `retry_delay` the server's
    RetryInfo in seconds, `correlation_id` the id the server logged the failure under.
    `idempotency_key` is set on errors from `upload`: retrying with that key is always safe.
    """

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        field_violations: Sequence[tuple[str, str]] = (),
        correlation_id: str = "",
        metadata: Mapping[str, str] | None = None,
        retry_delay: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.field_violations: tuple[tuple[str, str], ...] = tuple(field_violations)
        self.correlation_id = correlation_id
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retry_delay = retry_delay
        self.idempotency_key: str | None = None
        self.attempts = 1

    def for_key(self, idempotency_key: str) -> Self:
        """This error as one document's (of a bulk upload, say): a copy, with its key."""
        own = copy.copy(self)
        own.idempotency_key = idempotency_key
        return own

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        code = self.code.name if self.code is not None else None
        return f"{type(self).__name__}({self.message!r}, code={code}, reason={self.reason!r})"


class ConfigurationError(ArchiveError, ValueError):
    """The client is not configured for this call (no endpoint, no token, unreadable env
    file). The message names the variable; it never contains a token."""


class InvalidArgument(ArchiveError, ValueError):
    """INVALID_ARGUMENT: fix the request (see `field_violations`); retrying unchanged fails."""


class Unauthenticated(ArchiveError):
    """UNAUTHENTICATED: missing, malformed, unknown or revoked token."""


class PermissionDenied(ArchiveError):
    """PERMISSION_DENIED: a valid token of the wrong kind (tenant vs operator)."""


class NotFound(ArchiveError, LookupError):
    """NOT_FOUND: the document, tenant or token does not exist (for this tenant)."""


class AlreadyExists(ArchiveError):
    """ALREADY_EXISTS: e.g. a tenant of that name exists."""


class ResourceExhausted(ArchiveError):
    """RESOURCE_EXHAUSTED: over a size limit (or quota); retrying unchanged fails."""


class Conflict(ArchiveError):
    """ABORTED: a concurrent change won; re-read, decide again, retry the whole operation."""


class Unavailable(ArchiveError):
    """UNAVAILABLE: the service or one of its dependencies is down; retry later. Raised only
    after the client's own bounded retries are used up."""


class TlsHandshakeFailed(Unavailable):
    """UNAVAILABLE because the TLS handshake failed: the archive's certificate is not trusted
    (ARCHIVE_CA_FILE is not the CA that issued it, or it is a private CA and none was given),
    or the endpoint does not speak TLS. Not retried: asking again fails the same way."""


class DeadlineExceeded(Unavailable):
    """DEADLINE_EXCEEDED: no answer in time; treated like Unavailable (retried, then raised)."""


class NotReady(ArchiveError):
    """FAILED_PRECONDITION: what was asked for does not exist yet. With reason NOT_READY_YET
    it will shortly (e.g. the evidence of a deposit not yet covered by a checkpoint, which the
    archive seals within about a second): retry after `retry_delay`. `get_evidence` does so
    itself a few times before raising this."""


class Unimplemented(ArchiveError):
    """UNIMPLEMENTED: the server does not offer this method; check server and client versions."""


class IntegrityError(ArchiveError):
    """Content does not match its digest or size. Raised by the client when it checks a
    download or a receipt itself (`expected` and `actual` say what differed), and for the
    archive's DATA_LOSS (reason CONTENT_DAMAGED): its stored copy failed its own check."""

    def __init__(self, message: str, *, expected: str = "", actual: str = "", **kwargs: Any):
        super().__init__(message, **kwargs)
        self.expected = expected
        self.actual = actual


class DigestMismatch(InvalidArgument, IntegrityError):
    """The server refused a deposit whose bytes differ from the announced SHA-256 (reason
    DIGEST_MISMATCH): altered in transit, or the file changed while it was read. Nothing was
    stored. Both an InvalidArgument and an IntegrityError, so either `except` catches it."""


_BY_CODE: Final[dict[grpc.StatusCode, type[ArchiveError]]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.FAILED_PRECONDITION: NotReady,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.DATA_LOSS: IntegrityError,
}

# Codes on which repeating the very same request is safe and may succeed.
RETRYABLE_CODES: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
TLS_HANDSHAKE_REASON: Final = "TLS_HANDSHAKE_FAILED"


def is_retryable(error: ArchiveError) -> bool:
    """Whether repeating the very same request may succeed (and is safe)."""
    return error.code in RETRYABLE_CODES and not isinstance(error, TlsHandshakeFailed)


def error_from_rpc(error: grpc.RpcError, correlation_id: str = "") -> ArchiveError:
    """The typed exception for a failed call, with the rich details the server attached.
    `correlation_id` is the one the client sent, used when the server gave none."""
    code: grpc.StatusCode = error.code()
    message: str = error.details() or code.name.lower().replace("_", " ")
    if code is grpc.StatusCode.UNAVAILABLE and _is_tls_handshake_failure(message):
        return TlsHandshakeFailed(
            "the TLS handshake with the archive failed: its certificate is not trusted (is "
            "ARCHIVE_CA_FILE / --ca-file the CA that issued it?) or it does not speak TLS; "
            f"grpc says: {message}",
            code=code,
            reason=TLS_HANDSHAKE_REASON,
            correlation_id=correlation_id,
        )
    return _typed_error(code, message, _rich_status(error), correlation_id)


def _is_tls_handshake_failure(details: str) -> bool:
    # grpc reports it only in the text: "Tls handshake failed (TSI_PROTOCOL_FAILURE): ...
    # CERTIFICATE_VERIFY_FAILED", "... WRONG_VERSION_NUMBER".
    text = details.lower()
    return "handshake failed" in text and ("tls" in text or "ssl" in text)


def error_from_status(status: status_pb2.Status, correlation_id: str = "") -> ArchiveError:
    """The typed exception for a google.rpc.Status sent as data (one document's failure in
    an UploadMany stream), exactly as if a call had ended with it."""
    code = _CODE_BY_VALUE.get(status.code, grpc.StatusCode.UNKNOWN)
    message = status.message or code.name.lower().replace("_", " ")
    return _typed_error(code, message, status, correlation_id)


_CODE_BY_VALUE: Final = {code.value[0]: code for code in grpc.StatusCode}


def _typed_error(
    code: grpc.StatusCode, message: str, status: status_pb2.Status | None, correlation_id: str
) -> ArchiveError:
    reason = ""
    metadata: dict[str, str] = {}
    violations: list[tuple[str, str]] = []
    retry_delay: float | None = None
    if status is not None:
        for detail in status.details:
            # Unpack is False for another message type, so each detail lands in its own.
            info = error_details_pb2.ErrorInfo()
            bad = error_details_pb2.BadRequest()
            retry = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                reason = info.reason
                metadata = dict(info.metadata)
            elif detail.Unpack(bad):
                violations.extend((v.field, v.description) for v in bad.field_violations)
            elif detail.Unpack(retry):
                retry_delay = retry.retry_delay.ToNanoseconds() / 1e9
    cls = _BY_CODE.get(code, ArchiveError)
    if code is grpc.StatusCode.INVALID_ARGUMENT and reason == DIGEST_MISMATCH_REASON:
        cls = DigestMismatch
    kwargs: dict[str, Any] = {
        "code": code,
        "reason": reason or code.name,
        "field_violations": violations,
        "correlation_id": metadata.get("correlation_id", correlation_id),
        "metadata": metadata,
        "retry_delay": retry_delay,
    }
    if issubclass(cls, IntegrityError):
        return cls(
            message,
            expected=metadata.get("expected", ""),
            actual=metadata.get("actual", ""),
            **kwargs,
        )
    return cls(message, **kwargs)


def _rich_status(error: grpc.RpcError) -> status_pb2.Status | None:
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    # Pairs at run time (grpc.aio.Metadata, or the sync API's tuples), whatever the stubs say.
    pairs = cast("Iterable[tuple[str, str | bytes]]", trailing or ())
    for key, value in pairs:
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # a garbled trailer must not hide the real error
                return None
    return None


def server_status_lost(error: grpc.aio.AioRpcError) -> bool:
    """grpc.aio bug (grpc/grpc#36066): when a server ends a client-streaming call while the
    client is still sending (a refused token, a size limit), a write failing just after can
    replace the server's status with a local INTERNAL "Internal error from Core" carrying no
    details. The server then stored nothing (it answered before the end of the content), so
    repeating the upload with the same idempotency key is safe and brings back its real answer;
    on loopback this happens to a few percent of refused uploads."""
    return (
        error.code() is grpc.StatusCode.INTERNAL
        and error.details() == "Internal error from Core"
        and not error.trailing_metadata()
    )
