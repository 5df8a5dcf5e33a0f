"""The gateway: one gRPC address in front of every service.

Clients (archivectl, the SDK) know one endpoint; the gateway forwards each call, untouched,
to the process hosting its service (`services.gateway.proxy`). Routes come from
ARCHIVE_GATEWAY_BACKENDS ("ingest=127.0.0.1:50061,search=..."; services/catalog.py says what
each serves) and ARCHIVE_GATEWAY_ROUTES (gRPC services one by one), see
`services.gateway.routes`; the launcher and deploy/base/gateway.yaml set the first. Backends
are dialled over TLS with ARCHIVE_BACKEND_TLS=1 (ARCHIVE_BACKEND_CA_FILE: the CA their
certificates chain to). The gateway answers grpc.health.v1.Health itself: each routed service
reports its backend's health, and the overall status ("") is SERVING only while every backend
is, checked every ARCHIVE_GATEWAY_HEALTH_INTERVAL seconds (default 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import pkgutil
import signal
from collections.abc import Mapping
from typing import Final

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from archive.config import ConfigError, Settings
from archive.grpcserver.server import bind_port
from services import catalog
from services.gateway.proxy import MethodKinds, ProxyHandler, descriptor_kinds
from services.gateway.routes import BACKENDS_VARIABLE, ROUTES_VARIABLE, RouteError, route_table

log = logging.getLogger(__name__)

HEALTH_SERVICE: Final = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
HEALTH_INTERVAL_VARIABLE: Final = "ARCHIVE_GATEWAY_HEALTH_INTERVAL"
DEFAULT_HEALTH_INTERVAL: Final = 2.0
_SERVING: Final = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING: Final = health_pb2.HealthCheckResponse.NOT_SERVING
# Health.Check by its path: the stubs of grpc_health's HealthStub name none of its methods.
_HEALTH_CHECK_METHOD: Final = f"/{HEALTH_SERVICE}/Check"


class Gateway:
    def __init__(
        self,
        settings: Settings,
        routes: Mapping[str, str],
        *,
        health_interval: float = DEFAULT_HEALTH_INTERVAL,
        method_kinds: MethodKinds | None = descriptor_kinds,
    ) -> None:
        if not routes:
            raise RouteError(BACKENDS_VARIABLE, "no routes, the gateway would serve nothing")
        self.settings = settings
        self.routes = dict(routes)
        self.health_interval = health_interval
        self.proxy = ProxyHandler(
            routes,
            local_services=(HEALTH_SERVICE,),
            max_message_bytes=settings.grpc_max_message_bytes,
            method_kinds=method_kinds,
            credentials=backend_credentials(settings),
        )
        self.health = HealthServicer()
        max_bytes = settings.grpc_max_message_bytes
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.max_send_message_length", max_bytes),
                ("grpc.so_reuseport", 0),  # a second gateway on the port must fail to bind
            ]
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self._server.add_generic_rpc_handlers((self.proxy,))
        self._statuses: dict[str, int] = {}
        self._checker: asyncio.Task[None] | None = None
        self._port: int | None = None
        self._stopping = False
        # Set after each full round of backend checks (tests wait on it).
        self.checked = asyncio.Event()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the gateway is not started")
        return self._port

    @property
    def address(self) -> str:
        host = self.settings.grpc_host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    async def start(self) -> None:
        self._port = self._bind()
        for name in ("", *self.routes):
            await self.health.set(name, _NOT_SERVING)
        await self._server.start()
        await self.check_backends()
        self._checker = asyncio.create_task(self._check_periodically(), name="gateway-health")
        routes = ", ".join(f"{s} -> {a}" for s, a in sorted(self.routes.items()))
        log.info("gateway on %s routes %s", self.address, routes)

    async def wait(self) -> None:
        await self._server.wait_for_termination()

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first, refuse new calls, let in-flight ones finish for `grace`
        seconds, then close the backend channels."""
        if self._stopping:
            return
        self._stopping = True
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace)
        await self.proxy.close()

    async def check_backends(self) -> None:
        """One Health.Check per routed service on its backend, all at once."""
        services = list(self.routes)
        results = await asyncio.gather(*(self._check(service) for service in services))
        for service, status in zip(services, results, strict=True):
            if self._statuses.get(service) != status:
                level = logging.INFO if status == _SERVING else logging.WARNING
                log.log(
                    level,
                    "backend %s for %s is %s",
                    self.routes[service],
                    service,
                    health_pb2.HealthCheckResponse.ServingStatus.Name(status),
                )
            self._statuses[service] = status
            await self.health.set(service, status)
        overall = _SERVING if all(s == _SERVING for s in results) else _NOT_SERVING
        await self.health.set("", overall)
        self.checked.set()

    async def _check(self, service: str) -> int:
        backend = self.proxy.backends[self.routes[service]]
        check = backend.channel.unary_unary(
            _HEALTH_CHECK_METHOD,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        timeout = max(0.2, min(1.0, self.health_interval))
        try:
            response = await check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.aio.AioRpcError:
            return int(_NOT_SERVING)
        return int(_SERVING if response.status == _SERVING else _NOT_SERVING)

    async def _check_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval)
            try:
                await self.check_backends()
            except Exception:  # keep checking: a bug here must not freeze health at SERVING
                log.exception("backend health check failed")
                await self.health.set("", _NOT_SERVING)

    def _bind(self) -> int:
        return bind_port(self._server, self.settings)


def load_api_descriptors() -> None:
    """Import every generated archive.v1 module, so that the descriptor pool tells the proxy
    each method's streaming kind (see ProxyHandler); messages are never decoded."""
    import archive.v1

    for module in pkgutil.iter_modules(archive.v1.__path__):
        if module.name.endswith("_pb2"):
            importlib.import_module(f"archive.v1.{module.name}")


def backend_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """TLS for the calls to the backends when ARCHIVE_BACKEND_TLS (or a CA file) says so:
    the backends' certificates must chain to ARCHIVE_BACKEND_CA_FILE (else the system's
    roots) and name the host the route gives."""
    if not settings.backend_tls:
        return None
    ca = settings.backend_ca_file.read_bytes() if settings.backend_ca_file else None
    return grpc.ssl_channel_credentials(root_certificates=ca)


def gateway_from_env(settings: Settings, environ: Mapping[str, str] = os.environ) -> Gateway:
    """The gateway configured by ARCHIVE_GATEWAY_BACKENDS and/or ARCHIVE_GATEWAY_ROUTES (see
    services.gateway.routes), and ARCHIVE_GATEWAY_HEALTH_INTERVAL."""
    load_api_descriptors()
    try:
        routes = route_table(environ)
    except RouteError as exc:
        raise ConfigError(exc.variable, exc.problem) from None
    if not routes:
        raise ConfigError(
            BACKENDS_VARIABLE,
            f"required: name=host:port, comma separated, for {', '.join(catalog.NAMES)} "
            f"(or {ROUTES_VARIABLE}: gRPC service=host:port)",
        )
    raw_interval = environ.get(HEALTH_INTERVAL_VARIABLE, "").strip()
    try:
        interval = float(raw_interval) if raw_interval else DEFAULT_HEALTH_INTERVAL
    except ValueError:
        raise ConfigError(HEALTH_INTERVAL_VARIABLE, f"{raw_interval!r} is not seconds") from None
    if not 0.05 <= interval <= 300:
        raise ConfigError(HEALTH_INTERVAL_VARIABLE, f"{interval} is outside 0.05..300 seconds")
    return Gateway(settings, routes, health_interval=interval)


async def run(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT, then drain gracefully."""
    gateway = gateway_from_env(settings)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not main thread / Windows
            loop.add_signal_handler(signum, stop_requested.set)
            handled.append(signum)
    try:
        await gateway.start()
        stopped = asyncio.create_task(gateway.wait())
        signalled = asyncio.create_task(stop_requested.wait())
        await asyncio.wait({stopped, signalled}, return_when=asyncio.FIRST_COMPLETED)
        signalled.cancel()
        if stop_requested.is_set():
            log.info("termination signal received")
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        await gateway.stop()
