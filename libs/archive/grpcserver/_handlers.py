"""Re-wrapping a gRPC method handler's behaviour while keeping its streaming kind.

grpc.aio decides how to drive a handler from its kind (unary/stream in and out) and, for
streamed responses, from the behaviour itself: an async generator function is iterated, a
coroutine function is awaited and writes with `context.write`. Wrappers must keep both.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

if TYPE_CHECKING:
    # The stubs make RpcMethodHandler generic; at run time it is a plain class.
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]

# behaviour(request_or_iterator, context)
Behavior = Callable[[Any, Any], Any]
# Wraps a behaviour that returns one response (or None for context.write streaming).
UnaryBehavior = Callable[[Any, Any], Awaitable[Any]]
UnaryWrapper = Callable[[UnaryBehavior], UnaryBehavior]
# Wraps a behaviour that is an async generator of responses.
StreamWrapper = Callable[
    [Callable[[Any, Any], AsyncIterator[Any]]], Callable[[Any, Any], AsyncIterator[Any]]
]


def behavior_of(handler: Handler) -> Behavior:
    behavior: Behavior | None
    if handler.request_streaming and handler.response_streaming:
        behavior = handler.stream_stream
    elif handler.request_streaming:
        behavior = handler.stream_unary
    elif handler.response_streaming:
        behavior = handler.unary_stream
    else:
        behavior = handler.unary_unary
    if behavior is None:
        raise ValueError("a method handler without the behaviour of its own streaming kind")
    return behavior


def same_kind(handler: Handler, behavior: Behavior) -> Handler:
    """A handler of `handler`'s kind and serializers running `behavior`."""
    if handler.request_streaming and handler.response_streaming:
        factory = grpc.stream_stream_rpc_method_handler
    elif handler.request_streaming:
        factory = grpc.stream_unary_rpc_method_handler
    elif handler.response_streaming:
        factory = grpc.unary_stream_rpc_method_handler
    else:
        factory = grpc.unary_unary_rpc_method_handler
    return factory(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def wrap_handler(
    handler: Handler, unary: UnaryWrapper, stream: StreamWrapper
) -> Handler:
    behavior = behavior_of(handler)
    if handler.response_streaming and inspect.isasyncgenfunction(behavior):
        return same_kind(handler, stream(behavior))
    # Unary responses, and streamed responses written through context.write.
    return same_kind(handler, unary(behavior))
