"""Supervision for `archive up`: check the configuration, plan ports and environments, start
nats-server, the services and the gateway in order and wait for each to be ready, restart what
dies (with backoff), and stop everything in reverse order."""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Final

import grpc

from archive.files import atomic_write, ensure_dir
from archive.natsserver import NatsServer, free_port, nats_server_binary, sync_from_env
from services import catalog
from tools.launcher.child import LOCALHOST, Child, grpc_serving, nats_ready, served_services
from tools.launcher.errors import Interrupted, LaunchError, UsageError
from tools.launcher.layout import Layout
from tools.launcher.provision import operator_token

log = logging.getLogger("archive.launcher")

NATS: Final = "nats"
DEFAULT_NATS_PORT: Final = 4222
# Provisioning creates the demo tenant: whichever service hosts this must run.
PROVISIONING_SERVICE: Final = "archive.v1.TenantAdmin"

STOP_TIMEOUT: Final = 10.0  # SIGTERM, then SIGKILL after this many seconds
# Children drain in-flight calls for this long on SIGTERM (unless ARCHIVE_SHUTDOWN_GRACE_SECONDS
# says otherwise): well inside STOP_TIMEOUT, so a clean stop is never a SIGKILL.
CHILD_GRACE_SECONDS: Final = "5"
START_TIMEOUT: Final = 90.0
BACKOFF_FIRST: Final = 0.5
BACKOFF_MAX: Final = 10.0
STABLE_AFTER: Final = 30.0  # a child that ran this long starts its backoff afresh
TICK: Final = 0.1


def port_is_free(port: int, host: str = LOCALHOST) -> bool:
    """Nothing listens on the port. SO_REUSEADDR as gRPC and nats-server set it: connections
    of a previous run lingering in TIME_WAIT do not make the port busy."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def port_variable(environ: Mapping[str, str], name: str, default: int) -> tuple[int, bool]:
    """(port, explicitly set)."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default, False
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise UsageError(f"{name}: {raw!r} is not a port number (1..65535)")
    return int(raw), True


def serve_argv(name: str) -> list[str]:
    """How a child runs one service (or the gateway). -P: the working directory (the data
    directory, which has a services/ folder of its own) must not shadow the installed
    `services` package."""
    return [sys.executable, "-P", "-m", "tools.launcher", "serve", name]


class Supervisor:
    def __init__(self, layout: Layout, environ: Mapping[str, str]) -> None:
        self.layout = layout
        self.environ = dict(environ)
        self.stop_requested = threading.Event()
        self.force = False
        self.nats: Child | None = None
        self.services: list[Child] = []
        self.gateway: Child | None = None
        self.nats_url = ""
        self.endpoint = ""
        self.operator_token = ""
        # Set by check().
        self.names: list[str] = []
        self.gateway_port = catalog.GATEWAY_DEFAULT_PORT
        self.nats_port = DEFAULT_NATS_PORT
        self.nats_port_explicit = False
        self.nats_sync = ""

    # -- signals

    def on_signal(self, signum: int, frame: object) -> None:
        if self.stop_requested.is_set():
            self.force = True  # a second Ctrl-C: stop waiting for graceful exits
        self.stop_requested.set()

    # -- start-up

    def children(self) -> list[Child]:
        return [c for c in (self.gateway, *self.services, self.nats) if c is not None]

    def check(self) -> None:
        """Refuse a configuration that cannot work, before touching the data directory."""
        env = self.environ
        listed = env.get("ARCHIVE_SERVICES", "").strip() or ",".join(catalog.NAMES)
        names = [n for n in (n.strip() for n in listed.split(",")) if n]
        unknown = [n for n in names if n not in catalog.BY_NAME]
        if unknown or not names:
            raise UsageError(
                f"ARCHIVE_SERVICES: unknown service(s) {', '.join(unknown) or '(none given)'}; "
                f"known: {', '.join(catalog.NAMES)}"
            )
        if len(set(names)) != len(names):
            raise UsageError("ARCHIVE_SERVICES: a service is listed twice")
        host = catalog.host_of(PROVISIONING_SERVICE).name
        if host not in names:
            raise UsageError(
                f"ARCHIVE_SERVICES: {host} is needed (it hosts {PROVISIONING_SERVICE}, "
                "which creates the demo tenant)"
            )
        self.names = names
        self.gateway_port, _ = port_variable(
            env, "ARCHIVE_GATEWAY_PORT", catalog.GATEWAY_DEFAULT_PORT
        )
        self.nats_port, self.nats_port_explicit = port_variable(
            env, "ARCHIVE_NATS_PORT", DEFAULT_NATS_PORT
        )
        try:
            self.nats_sync = sync_from_env(env)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def plan(self) -> None:
        """Decide ports, commands and environments; start nothing yet."""
        env = self.environ
        gateway_port, nats_port = self.gateway_port, self.nats_port
        if not port_is_free(gateway_port):
            raise LaunchError(
                f"port {gateway_port} (the gateway) is in use: is an archive already running? "
                "Stop it, or choose another port with ARCHIVE_GATEWAY_PORT"
            )
        if not port_is_free(nats_port):
            if self.nats_port_explicit:
                raise LaunchError(
                    f"ARCHIVE_NATS_PORT: port {nats_port} is in use; choose another or unset it"
                )
            fallback = free_port()
            log.info("port %d is taken; nats-server uses %d instead", nats_port, fallback)
            nats_port = fallback

        token = self.operator_token = operator_token(self.layout, env)
        self.nats = self._nats_child(nats_port)

        base = {k: v for k, v in env.items() if k != "ARCHIVE_OPERATOR_TOKEN_FILE"}
        base.setdefault("ARCHIVE_SHUTDOWN_GRACE_SECONDS", CHILD_GRACE_SECONDS)
        # The embedded stack is the development one: sealing may make its own PKI and stamp
        # its own time here (services/sealing/trust.py); everywhere else it may not.
        base.setdefault("ARCHIVE_PROFILE", "development")
        base["PYTHONUNBUFFERED"] = "1"
        base.update(
            ARCHIVE_NATS_URL=self.nats_url,
            ARCHIVE_GRPC_HOST=LOCALHOST,
            ARCHIVE_BLOB_DIR=str(self.layout.blobs_dir),
            ARCHIVE_OPERATOR_TOKEN=token,
        )
        backends: dict[str, str] = {}
        taken = {gateway_port, nats_port}
        for name in self.names:
            port = free_port()
            while port in taken:
                port = free_port()
            taken.add(port)
            self.services.append(self._service_child(name, port, base))
            backends[name] = f"{LOCALHOST}:{port}"

        # The gateway forwards credentials, it never checks them: it gets no operator token.
        # It routes each backend's gRPC services as the catalog lists them.
        gateway_env = {
            k: v
            for k, v in base.items()
            if k not in ("ARCHIVE_OPERATOR_TOKEN", "ARCHIVE_GATEWAY_ROUTES")
        }
        gateway_env["ARCHIVE_GATEWAY_BACKENDS"] = ",".join(f"{n}={a}" for n, a in backends.items())
        self.gateway = self._service_child(catalog.GATEWAY, gateway_port, gateway_env)
        self.endpoint = f"{LOCALHOST}:{gateway_port}"

    def _nats_child(self, port: int) -> Child:
        server = NatsServer(store_dir=self.layout.nats_dir, port=port, sync=self.nats_sync)
        config = self.layout.nats_dir / "nats-server.conf"
        atomic_write(config, server.config_text().encode())
        self.nats_url = server.url
        return Child(
            NATS,
            [nats_server_binary(), "-c", str(config)],
            {k: v for k, v in self.environ.items() if not k.startswith("ARCHIVE_OPERATOR_TOKEN")},
            self.layout,
            ready=nats_ready(port),
        )

    def _service_child(self, name: str, port: int, base: Mapping[str, str]) -> Child:
        data = self.layout.service_dir(name)
        env = {
            **base,
            "ARCHIVE_GRPC_PORT": str(port),
            "ARCHIVE_DATA_DIR": str(data),
            "ARCHIVE_SERVICE_NAME": name,
        }
        return Child(name, serve_argv(name), env, self.layout, ready=grpc_serving, grpc_port=port)

    def start_all(self) -> None:
        assert self.nats is not None and self.gateway is not None
        for child in self.services:
            ensure_dir(str(self.layout.service_dir(child.name)))
        self.start_and_wait([self.nats])
        self.start_and_wait(self.services)
        self.check_registrations()
        self.start_and_wait([self.gateway])

    def check_registrations(self) -> None:
        """Each service serves exactly the gRPC services its catalog entry lists (what the
        gateway will route to it); asked through reflection, since a service main registers
        them itself."""
        for child in self.services:
            listed = set(catalog.entry(child.name).grpc_services)
            try:
                served = served_services(child)
            except grpc.RpcError as exc:
                raise LaunchError(
                    f"could not ask {child.name} which services it serves (reflection): "
                    f"{exc.code().name}"
                ) from None
            if served != listed:
                raise LaunchError(
                    f"{child.name} serves {', '.join(sorted(served)) or 'nothing'} but "
                    f"services/catalog.py lists {', '.join(sorted(listed))} for it: the gateway "
                    "routes by the catalog, so make them agree (and deploy/ with them)"
                )

    def start_and_wait(self, children: Sequence[Child]) -> None:
        for child in children:
            child.start()
            log.info("started %s (pid %s)", child.name, child.pid)
        waiting = list(children)
        deadline = time.monotonic() + START_TIMEOUT
        while waiting:
            if self.stop_requested.is_set():
                raise Interrupted
            for child in list(waiting):
                code = child.exit_code()
                if code is not None:
                    raise LaunchError(
                        f"{child.name} exited with code {code} while starting; "
                        f"see {self.layout.shown(child.log_file)}:\n{child.log_tail()}"
                    )
                if child.ready(child):
                    log.info("%s is ready", child.name)
                    waiting.remove(child)
            if waiting and time.monotonic() > deadline:
                names = ", ".join(c.name for c in waiting)
                raise LaunchError(
                    f"{names} not ready after {START_TIMEOUT:.0f}s; "
                    f"see {self.layout.shown(self.layout.logs_dir)}"
                )
            if waiting:
                self.stop_requested.wait(TICK)

    # -- supervision

    def supervise(self) -> None:
        """Until a stop is requested: restart what dies, with backoff."""
        while not self.stop_requested.wait(TICK):
            now = time.monotonic()
            for child in self.children():
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        child.close_channel()
                        child.start()
                        child.awaiting_health = True
                        log.info("restarted %s (pid %s)", child.name, child.pid)
                    continue
                code = child.exit_code()
                if code is not None:
                    ran = now - child.started_at
                    child.failures = 1 if ran >= STABLE_AFTER else child.failures + 1
                    delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (child.failures - 1))
                    child.restart_at = now + delay
                    log.warning(
                        "%s (pid %s) exited with code %s after %.1fs; restarting in %.1fs (see %s)",
                        child.name,
                        child.pid,
                        code,
                        ran,
                        delay,
                        self.layout.shown(child.log_file),
                    )
                elif child.awaiting_health and child.ready(child):
                    child.awaiting_health = False
                    log.info("%s is ready again (pid %s)", child.name, child.pid)

    # -- shutdown

    def stop_all(self) -> None:
        """Gateway first (no new calls come in), then the services, then nats-server. Each
        group gets SIGTERM and STOP_TIMEOUT seconds, then SIGKILL."""
        groups = [
            [self.gateway] if self.gateway else [],
            self.services,
            [self.nats] if self.nats else [],
        ]
        for group in groups:
            for child in group:
                child.restart_at = None
                child.terminate()
            deadline = time.monotonic() + STOP_TIMEOUT
            for child in group:
                while not child.wait(min(deadline, time.monotonic() + TICK)):
                    if self.force or time.monotonic() >= deadline:
                        if not self.force:
                            log.warning(
                                "%s did not stop in %.0fs; killing it", child.name, STOP_TIMEOUT
                            )
                        child.kill()
                        child.wait(time.monotonic() + 5)
                        break
                child.forget()
            for child in group:
                if child.process is not None:
                    log.info("stopped %s", child.name)
