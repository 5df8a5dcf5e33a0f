"""A transparent gRPC proxy: routes every call by its service name to a backend address.

The gateway never decodes a message. On the wire every gRPC call, whatever its kind, is a
stream of length-prefixed messages in each direction, so one stream-stream handler with
identity (bytes) serializers forwards unary, server-, client- and bidirectional-streaming
calls alike, message by message (an upload is never buffered whole); methods whose kind is
known from the descriptors take a cheaper handler of their own kind. What makes the proxy
transparent is everything around the messages: request metadata (authorization,
x-correlation-id, traceparent, ...) goes to the backend; initial and trailing metadata,
status code, details and `grpc-status-details-bin` (google.rpc.Status rich details) come
back; deadlines and cancellation travel both ways.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import grpc
import grpc.aio
from google.protobuf import descriptor_pool

log = logging.getLogger(__name__)

STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"

# Headers that belong to one HTTP/2 hop (or that gRPC core sets itself from call options, like
# grpc-timeout from the deadline): never copied from one call to the other.
_HOP_HEADERS: Final = frozenset({"content-type", "te", "host", "user-agent", "connection"})

# Local backends restart (the launcher's supervisor, a rolling update): reconnect within a
# second or two instead of gRPC's default backoff, which grows to two minutes.
_BACKEND_CHANNEL_OPTIONS: Final = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)
_MAX_CACHED_METHODS: Final = 1024
# time_remaining() above this means "no deadline" for our purposes.
_NO_DEADLINE_SECONDS: Final = 365 * 24 * 3600.0


if TYPE_CHECKING:
    # Every handler of the proxy takes and gives bytes: messages are never decoded.
    Handler: TypeAlias = grpc.RpcMethodHandler[bytes, bytes]

# (request_streaming, response_streaming) of a method path, or None when unknown.
MethodKinds = Callable[[str], tuple[bool, bool] | None]


def descriptor_kinds(method: str) -> tuple[bool, bool] | None:
    """A method's streaming kind from the protobuf descriptors this process has imported
    (only the kind: messages stay bytes). Unknown methods answer None."""
    service, _, name = method.lstrip("/").partition("/")
    try:
        found = descriptor_pool.Default().FindServiceByName(service).methods_by_name[name]
    except KeyError:
        return None
    return bool(found.client_streaming), bool(found.server_streaming)


@dataclass
class Backend:
    """One backend address and its long-lived channel (shared by every service it hosts):
    TLS when `credentials` are given (see services.gateway.main.backend_credentials), else
    plaintext."""

    address: str
    max_message_bytes: int = 4 * 1024 * 1024
    credentials: grpc.ChannelCredentials | None = None
    channel: grpc.aio.Channel = field(init=False)

    def __post_init__(self) -> None:
        options = [
            *_BACKEND_CHANNEL_OPTIONS,
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
        ]
        if self.credentials is None:
            self.channel = grpc.aio.insecure_channel(self.address, options=options)
        else:
            self.channel = grpc.aio.secure_channel(self.address, self.credentials, options)

    @property
    def tls(self) -> bool:
        return self.credentials is not None

    async def close(self) -> None:
        await self.channel.close()


def service_of(method: str) -> str:
    """'/archive.v1.Ingest/Upload' -> 'archive.v1.Ingest'."""
    return method.lstrip("/").partition("/")[0]


class ProxyHandler(grpc.GenericRpcHandler):
    """Answers every method of every routed service with a forwarding handler. Services in
    `local_services` (the gateway's own health service) are left to other handlers; any
    other service gets UNIMPLEMENTED naming the services this gateway knows.

    Any method can be forwarded as a stream-stream call, which is correct for every kind and
    is what happens to methods the gateway has no descriptor for. When `method_kinds` knows
    the method's real kind (from the generated descriptors: the kind only, messages stay
    bytes), the matching handler and client call are used instead: grpc.aio drives a unary
    call in one batch of operations where a stream needs one per message and per metadata,
    which cut the gateway's CPU per small unary call by about a third when measured."""

    def __init__(
        self,
        routes: Mapping[str, str],
        *,
        local_services: Iterable[str] = (),
        max_message_bytes: int = 4 * 1024 * 1024,
        method_kinds: MethodKinds | None = descriptor_kinds,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.routes = dict(routes)
        self._local = frozenset(local_services)
        # One backend (and so one channel) per distinct address.
        self.backends: dict[str, Backend] = {
            address: Backend(address, max_message_bytes, credentials)
            for address in set(routes.values())
        }
        self._by_service = {service: self.backends[addr] for service, addr in routes.items()}
        self._method_kinds = method_kinds
        self._handlers: dict[str, Handler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        method: str = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is not None:
            return handler
        service = service_of(method)
        if service in self._local:
            return None  # served by the gateway itself
        backend = self._by_service.get(service)
        if backend is None:
            return grpc.stream_stream_rpc_method_handler(
                functools.partial(self._unimplemented, service)
            )
        handler = self._forwarding_handler(method, service, backend)
        # Cached per path; the cap bounds memory when clients call made-up method names.
        if len(self._handlers) < _MAX_CACHED_METHODS:
            self._handlers[method] = handler
        return handler

    def _forwarding_handler(self, method: str, service: str, backend: Backend) -> Handler:
        kind = self._method_kinds(method) if self._method_kinds else None
        channel = backend.channel
        # No serializers anywhere: bytes in, bytes out. A partial of an async generator
        # function is still one for grpc.aio (inspect unwraps partials).
        if kind == (False, False):
            return grpc.unary_unary_rpc_method_handler(
                functools.partial(_to_unary, channel.unary_unary(method), backend, service)
            )
        if kind == (True, False):
            return grpc.stream_unary_rpc_method_handler(
                functools.partial(_to_unary, channel.stream_unary(method), backend, service)
            )
        if kind == (False, True):
            return grpc.unary_stream_rpc_method_handler(
                functools.partial(_to_stream, channel.unary_stream(method), backend, service)
            )
        return grpc.stream_stream_rpc_method_handler(
            functools.partial(_to_stream, channel.stream_stream(method), backend, service)
        )

    @property
    def known_services(self) -> list[str]:
        return sorted({*self.routes, *self._local})

    async def _unimplemented(
        self,
        service: str,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext[bytes, bytes],
    ) -> None:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            f"unknown service {service!r}; this gateway serves: " + ", ".join(self.known_services),
        )

    async def close(self) -> None:
        await asyncio.gather(*(backend.close() for backend in self.backends.values()))


def _start(
    multicallable: Any, request: Any, context: grpc.aio.ServicerContext[bytes, bytes]
) -> Any:
    """The backend call for `request` (bytes, or the caller's request stream: grpc.aio
    consumes it in a task of its own under HTTP/2 flow control, so a slow backend slows the
    client down instead of filling the gateway's memory)."""
    remaining = context.time_remaining()
    timeout = remaining if remaining is not None and remaining < _NO_DEADLINE_SECONDS else None
    return multicallable(
        request, metadata=forwarded_metadata(context.invocation_metadata()), timeout=timeout
    )


async def _to_unary(
    multicallable: Any,
    backend: Backend,
    service: str,
    request: Any,
    context: grpc.aio.ServicerContext[bytes, bytes],
) -> bytes:
    """Forward a call whose response is one message."""
    call = _start(multicallable, request, context)
    try:
        response: bytes = await call
        initial = await call.initial_metadata()
        if initial:
            await context.send_initial_metadata(_passable(initial))
        trailing = await call.trailing_metadata()
        if trailing:
            context.set_trailing_metadata(_passable(trailing, trailing=True))
        return response
    except grpc.aio.AioRpcError as error:
        code, details, trailing = _status_of(error, backend, service)
        await context.abort(code, details, trailing)
        raise  # not reached: abort raises
    finally:
        # Client went away, deadline passed, or the gateway is stopping: stop the backend too.
        if not call.done():
            call.cancel()


async def _to_stream(
    multicallable: Any,
    backend: Backend,
    service: str,
    request: Any,
    context: grpc.aio.ServicerContext[bytes, bytes],
) -> AsyncIterator[bytes]:
    """Forward a call whose responses are a stream, message by message."""
    call = _start(multicallable, request, context)
    try:
        initial = await call.initial_metadata()
        if initial:
            await context.send_initial_metadata(_passable(initial))
        async for response in call:
            yield response
        trailing = await call.trailing_metadata()
        if trailing:
            context.set_trailing_metadata(_passable(trailing, trailing=True))
    except grpc.aio.AioRpcError as error:
        # set_code rather than abort: the generator ends normally and grpc.aio sends this
        # status after the responses already forwarded.
        code, details, trailing = _status_of(error, backend, service)
        context.set_code(code)
        context.set_details(details)
        if trailing:
            context.set_trailing_metadata(trailing)
    finally:
        if not call.done():
            call.cancel()


def _status_of(
    error: grpc.aio.AioRpcError, backend: Backend, service: str
) -> tuple[grpc.StatusCode, str, tuple[tuple[str, Any], ...]]:
    """The backend's status, details and trailers, to end the gateway's call with."""
    code = error.code()
    details = error.details() or ""
    trailing = _passable(error.trailing_metadata() or (), trailing=True)
    has_rich_details = any(key == STATUS_DETAILS_KEY for key, _ in trailing)
    if code == grpc.StatusCode.UNAVAILABLE and not has_rich_details:
        # No google.rpc.Status means the status came from the channel, not the service: say
        # which backend could not be reached, keeping gRPC's own explanation.
        log.warning("backend %s for %s unreachable: %s", backend.address, service, details)
        why = (
            "its backend does not answer, or does not show a TLS certificate the gateway "
            "trusts (ARCHIVE_BACKEND_CA_FILE)"
            if backend.tls
            else "its backend does not answer"
        )
        details = f"{service} is unavailable right now ({why}); try again shortly [{details}]"
    return code, details, trailing


def forwarded_metadata(metadata: Iterable[tuple[str, Any]] | None) -> tuple[tuple[str, Any], ...]:
    """The caller's metadata minus the hop headers: authorization, x-correlation-id,
    traceparent/tracestate, baggage and any application header pass unchanged."""
    return tuple(
        (key, value)
        for key, value in metadata or ()
        if key not in _HOP_HEADERS and not key.startswith((":", "grpc-"))
    )


def _passable(
    metadata: Iterable[tuple[str, Any]], *, trailing: bool = False
) -> tuple[tuple[str, Any], ...]:
    """Response metadata gRPC core lets us set again: no pseudo or grpc- headers, except the
    rich error details in the trailers."""
    return tuple(
        (key, value)
        for key, value in metadata
        if key not in _HOP_HEADERS
        and not key.startswith(":")
        and (not key.startswith("grpc-") or (trailing and key == STATUS_DETAILS_KEY))
    )
