"""The gRPC server every service runs: its own servicers plus health checking, reflection,
OpenTelemetry, the error table and authentication, with a graceful shutdown.

A service main is, in short:

    settings = Settings.from_env()
    configure_from_settings(settings)
    store = await open_event_store(settings)          # the service's choice of adapter
    registry = TenantRegistry(store)
    server = build_server(settings, [Registration.of(...)], event_store=store, registry=registry)
    await serve(server)                               # until SIGTERM/SIGINT, then drain
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import grpc
import grpc.aio
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters
from opentelemetry.trace import TracerProvider

from archive.config import Settings
from archive.eventstore import EventStore
from archive.grpcserver.auth import AuthInterceptor
from archive.grpcserver.errors import ErrorInterceptor
from archive.tenancy.registry import TenantRegistry

log = logging.getLogger(__name__)

HEALTH_SERVICE: Final = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


@dataclass(frozen=True)
class Registration:
    """One gRPC service to serve: its full name (for health and reflection) and how to add it."""

    service_name: str
    add_to_server: Callable[[grpc.aio.Server], None]

    @classmethod
    def of(
        cls,
        service: ServiceDescriptor,
        add_servicer_to_server: Callable[[Any, grpc.aio.Server], None],
        servicer: object,
    ) -> Registration:
        """E.g. Registration.of(tenancy_pb2.DESCRIPTOR.services_by_name["Tenancy"],
        tenancy_pb2_grpc.add_TenancyServicer_to_server, TenancyServicer())."""
        return cls(service.full_name, lambda server: add_servicer_to_server(servicer, server))


class ArchiveServer:
    def __init__(
        self,
        settings: Settings,
        server: grpc.aio.Server,
        health: HealthServicer,
        service_names: Sequence[str],
        event_store: EventStore,
        registry: TenantRegistry,
    ) -> None:
        self.settings = settings
        self.event_store = event_store
        self.registry = registry
        self.health = health
        self.service_names = tuple(service_names)
        self._server = server
        self._port: int | None = None
        self._stopping = False
        # Set once start() has finished: the port is bound and health says SERVING.
        self.ready = asyncio.Event()

    @property
    def port(self) -> int:
        """The bound port (useful when ARCHIVE_GRPC_PORT=0 picked a free one)."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def address(self) -> str:
        host = self.settings.grpc_host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    async def start(self) -> None:
        """Load the tenant registry, bind, serve, then report SERVING."""
        await self.registry.start()
        self._port = self._bind()
        await self._server.start()
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.ready.set()
        log.info("serving %s on %s", ", ".join(self.service_names) or "nothing", self.address)

    async def wait(self) -> None:
        """Until the server has stopped."""
        await self._server.wait_for_termination()

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first (so probes and balancers move away), refuse new calls, let
        in-flight ones finish for up to `grace` seconds, then cancel what is left."""
        if self._stopping:
            return
        self._stopping = True
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        log.info("stopping; in-flight calls have %.1fs to finish", grace)
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace)
        await self.registry.stop()

    def _bind(self) -> int:
        return bind_port(self._server, self.settings)


def bind_port(server: grpc.aio.Server, settings: Settings) -> int:
    """Listen on the configured address, with TLS when a certificate and key are set; a clear
    error when the address cannot be had (port taken, not a local address)."""
    address = settings.grpc_address
    try:
        if settings.grpc_tls_cert_file and settings.grpc_tls_key_file:
            credentials = grpc.ssl_server_credentials(
                [
                    (
                        settings.grpc_tls_key_file.read_bytes(),
                        settings.grpc_tls_cert_file.read_bytes(),
                    )
                ]
            )
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise RuntimeError(f"cannot listen on {address}: {exc}") from exc
    if port == 0:
        raise RuntimeError(f"cannot listen on {address} (in use or not a local address?)")
    return port


def build_server(
    settings: Settings,
    registrations: Sequence[Registration],
    *,
    event_store: EventStore,
    registry: TenantRegistry,
    tracer_provider: TracerProvider | None = None,
    extra_interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> ArchiveServer:
    """A server with `registrations` plus health and reflection. Interceptors, outermost
    first: OpenTelemetry (spans, not for health/reflection), errors, authentication, then
    `extra_interceptors` (which therefore see only authenticated calls)."""
    interceptors: list[grpc.aio.ServerInterceptor] = [
        aio_server_interceptor(
            tracer_provider=tracer_provider,
            # Probes would flood traces; Health.Watch writes through context.write, which the
            # instrumentation's streaming wrapper cannot drive.
            filter_=filters.negate(
                filters.any_of(filters.health_check(), filters.service_prefix("grpc.reflection"))
            ),
        ),
        ErrorInterceptor(),
        AuthInterceptor(registry, settings.operator_token),
        *extra_interceptors,
    ]
    max_bytes = settings.grpc_max_message_bytes
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.max_send_message_length", max_bytes),
            # Two processes on one port would silently share calls; fail to bind instead.
            ("grpc.so_reuseport", 0),
        ],
    )
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    names = []
    for registration in registrations:
        registration.add_to_server(server)
        names.append(registration.service_name)
    reflection.enable_server_reflection((*names, HEALTH_SERVICE, reflection.SERVICE_NAME), server)
    return ArchiveServer(settings, server, health, names, event_store, registry)


async def serve(
    server: ArchiveServer,
    *,
    grace: float | None = None,
    background: Sequence[asyncio.Task[Any]] = (),
) -> None:
    """Run a service main: start, serve until SIGTERM or SIGINT (or the server ends), stop
    gracefully, cancel the service's background tasks (projections), close the event store.
    The tasks go before the store so that none is left reading from a closed connection."""
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not main thread / Windows
            loop.add_signal_handler(signum, stop_requested.set)
            handled.append(signum)
    try:
        await server.start()
        stopped = asyncio.create_task(server.wait())
        signalled = asyncio.create_task(stop_requested.wait())
        await asyncio.wait({stopped, signalled}, return_when=asyncio.FIRST_COMPLETED)
        signalled.cancel()
        if stop_requested.is_set():
            log.info("termination signal received")
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        await server.stop(grace)
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await server.event_store.close()
