"""`archive`: run the whole platform on one machine, or one service of it.

    archive up              nats-server, every service and the gateway, supervised (make run)
    archive serve NAME      one service in this process (what `up` runs for each service)
    archive status          what runs from a data directory
    archive down            stop the `archive up` of a data directory

`archive up` keeps everything under one data directory (ARCHIVE_DATA_DIR, default ./var):

    nats/                JetStream store          services/<name>/   each service's own data
    blobs/               shared blob store        secrets/           operator token (0700/0600)
    run/<name>.pid       one per process          logs/<name>.log    one per process
    archive.env          ARCHIVE_ENDPOINT, ARCHIVE_TENANT, ARCHIVE_TOKEN, ARCHIVE_OPERATOR_TOKEN

so that `set -a; . var/archive.env; set +a` is all a shell needs to talk to the archive.
Every child runs in its own process group, so a Ctrl-C in the terminal reaches only the
launcher, which then stops things in order: gateway, services, nats-server. Children are
also asked by the kernel to stop if the launcher dies without cleaning up (Linux).

Other variables: ARCHIVE_SERVICES (default "ingest,search,sealing"), ARCHIVE_GATEWAY_PORT (default
7070), ARCHIVE_NATS_PORT (default 4222, or a free port when 4222 is taken), ARCHIVE_NATS_SYNC
(default|always, see docs/decisions.md D4); every other ARCHIVE_* variable reaches the services.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import logging
import os
import pkgutil
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from archive.envfile import read_env_file, write_env_file
from archive.files import atomic_write

log = logging.getLogger("archive.launcher")

# What each service process hosts: the gateway routes these gRPC services to it.
HOSTED_SERVICES: Final[Mapping[str, tuple[str, ...]]] = {
    "ingest": ("archive.v1.Ingest", "archive.v1.TenantAdmin", "archive.v1.Tenancy"),
    "search": ("archive.v1.Search",),
    "sealing": ("archive.v1.Sealing",),
}
DEFAULT_SERVICES: Final = "ingest,search,sealing"
GATEWAY: Final = "gateway"
NATS: Final = "nats"
LAUNCHER: Final = "launcher"
DEFAULT_GATEWAY_PORT: Final = 7070
DEFAULT_NATS_PORT: Final = 4222
DEMO_TENANT: Final = "demo"
LOCALHOST: Final = "127.0.0.1"

STOP_TIMEOUT: Final = 10.0  # SIGTERM, then SIGKILL after this many seconds
# Children drain in-flight calls for this long on SIGTERM (unless ARCHIVE_SHUTDOWN_GRACE_SECONDS
# says otherwise): well inside STOP_TIMEOUT, so a clean stop is never a SIGKILL.
CHILD_GRACE_SECONDS: Final = "5"
START_TIMEOUT: Final = 90.0
BACKOFF_FIRST: Final = 0.5
BACKOFF_MAX: Final = 10.0
STABLE_AFTER: Final = 30.0  # a child that ran this long starts its backoff afresh
TICK: Final = 0.1

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_RUNNING: Final = 3

# Runs before each child's program: asks Linux to SIGTERM the child when the launcher dies
# (PR_SET_PDEATHSIG, kept across exec), then execs the program under the same pid. Done in
# a small interpreter rather than a preexec_fn, which is unsafe once gRPC threads exist.
_TRAMPOLINE: Final = (
    "import os, signal, sys\n"
    "try:\n"
    "    import ctypes\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)\n"
    "except Exception:\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


class LaunchError(RuntimeError):
    """Start-up cannot go on; the message says why and where to look."""

    exit_code = 1


class UsageError(LaunchError):
    """The configuration asks for something that cannot be (exit code 2)."""

    exit_code = 2


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived while starting."""


# ---------------------------------------------------------------- data directory layout


@dataclass(frozen=True)
class Layout:
    root: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Layout:
        return cls(Path(environ.get("ARCHIVE_DATA_DIR", "").strip() or "./var").resolve())

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def nats_dir(self) -> Path:
        return self.root / "nats"

    @property
    def blobs_dir(self) -> Path:
        return self.root / "blobs"

    @property
    def env_file(self) -> Path:
        return self.root / "archive.env"

    @property
    def token_file(self) -> Path:
        return self.secrets_dir / "operator-token"

    def service_dir(self, name: str) -> Path:
        return self.root / "services" / name

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def create(self) -> None:
        for directory in (self.run_dir, self.logs_dir, self.nats_dir, self.blobs_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.secrets_dir.chmod(0o700)  # mkdir's mode is filtered by the umask

    def shown(self, path: Path) -> str:
        """A path as the user will want to type it: relative to the working directory when
        it is below it."""
        with contextlib.suppress(ValueError):
            return str(path.relative_to(Path.cwd()))
        return str(path)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not running.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    return True


def _is_ours(pid: int) -> bool:
    """The process is one `archive up` starts (guards against a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"archive" in cmdline or b"nats-server" in cmdline


def reap_leftovers(layout: Layout) -> None:
    """Pid files left by a launcher that was killed: its children were told to stop when it
    died (SIGTERM); give them time to release their ports and nats' store, then make sure."""
    leftovers = []
    for pid_file in layout.run_dir.glob("*.pid"):
        pid = read_pid(pid_file)
        if pid is not None and pid != os.getpid() and pid_alive(pid) and _is_ours(pid):
            leftovers.append(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        pid_file.unlink()
    if leftovers:
        log.warning("stopping processes left by a previous run: %s", leftovers)
    deadline = time.monotonic() + STOP_TIMEOUT
    for pid in leftovers:
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(TICK)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def operator_token(layout: Layout, environ: Mapping[str, str] = os.environ) -> str:
    """ARCHIVE_OPERATOR_TOKEN if set, else the one kept in secrets/operator-token, else a new
    one written there (first start)."""
    from archive.config import ConfigError, Settings

    explicit = environ.get("ARCHIVE_OPERATOR_TOKEN", "").strip()
    if explicit:
        try:  # same rules as the services will apply, checked before anything starts
            Settings.from_env({"ARCHIVE_OPERATOR_TOKEN": explicit})
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        return explicit
    if layout.token_file.exists():
        token = layout.token_file.read_text(encoding="utf-8").strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    atomic_write(layout.token_file, (token + "\n").encode("utf-8"))
    log.info("generated the operator token in %s", layout.shown(layout.token_file))
    return token


def _env_values(path: Path) -> dict[str, str]:
    """What an env file of ours holds, or nothing before the first start wrote it."""
    return read_env_file(path) if path.exists() else {}


# ---------------------------------------------------------------- ports


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


def _port_variable(environ: Mapping[str, str], name: str, default: int) -> tuple[int, bool]:
    """(port, explicitly set)."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default, False
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise UsageError(f"{name}: {raw!r} is not a port number (1..65535)")
    return int(raw), True


# ---------------------------------------------------------------- children


@dataclass
class Child:
    """One supervised process: how to start it, where its pid and log go, how to tell it is
    ready."""

    name: str
    argv: list[str]
    env: dict[str, str]
    layout: Layout
    ready: Callable[[Child], bool]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0  # consecutive short-lived runs, for the restart backoff
    restart_at: float | None = None
    awaiting_health: bool = False
    grpc_port: int | None = None
    _channel: Any = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def pid_file(self) -> Path:
        return self.layout.pid_file(self.name)

    @property
    def log_file(self) -> Path:
        return self.layout.log_file(self.name)

    def start(self) -> None:
        with open(self.log_file, "ab") as log_out:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log_out.write(f"---- {stamp} archive up starts {self.name} ----\n".encode())
            log_out.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-c", _TRAMPOLINE, str(os.getpid()), *self.argv],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log_out,
                stderr=subprocess.STDOUT,
                # Its own process group: the terminal's Ctrl-C goes to the launcher only.
                process_group=0,
                cwd=self.layout.root,
            )
        self.started_at = time.monotonic()
        self.restart_at = None
        self.pid_file.write_text(f"{self.process.pid}\n")

    def exit_code(self) -> int | None:
        """None while running."""
        return None if self.process is None else self.process.poll()

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    def wait(self, deadline: float) -> bool:
        """True when the process has exited by `deadline` (monotonic)."""
        if self.process is None:
            return True
        try:
            self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
        return True

    def forget(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        self.close_channel()

    def grpc_channel(self) -> Any:
        import grpc

        if self._channel is None and self.grpc_port is not None:
            self._channel = grpc.insecure_channel(
                f"{LOCALHOST}:{self.grpc_port}",
                options=[
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 500),
                ],
            )
        return self._channel

    def close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


def grpc_serving(child: Child, timeout: float = 0.5) -> bool:
    """gRPC health of the whole server ("") is SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        response = health_pb2_grpc.HealthStub(child.grpc_channel()).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout
        )
    except grpc.RpcError:
        return False
    return response.status == health_pb2.HealthCheckResponse.SERVING


def nats_ready(port: int) -> Callable[[Child], bool]:
    def ready(child: Child) -> bool:
        try:
            with socket.create_connection((LOCALHOST, port), timeout=0.3) as s:
                s.settimeout(0.3)
                return s.recv(4).startswith(b"INFO")
        except OSError:
            return False

    return ready


# ---------------------------------------------------------------- the supervisor


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
        self.gateway_port = DEFAULT_GATEWAY_PORT
        self.nats_port = DEFAULT_NATS_PORT
        self.nats_port_explicit = False
        self.nats_sync = "default"

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
        names = [n.strip() for n in env.get("ARCHIVE_SERVICES", DEFAULT_SERVICES).split(",")]
        names = [n for n in names if n]
        unknown = [n for n in names if n not in HOSTED_SERVICES]
        if unknown or not names:
            raise UsageError(
                f"ARCHIVE_SERVICES: unknown service(s) {', '.join(unknown) or '(none given)'}; "
                f"known: {', '.join(HOSTED_SERVICES)}"
            )
        missing = [n for n in names if not service_available(n)]
        if missing:
            raise UsageError(
                f"ARCHIVE_SERVICES: {', '.join(missing)} not installed "
                f"(no services/<name>/main.py with run()); available: "
                f"{', '.join(available_services()) or 'none'}"
            )
        if len(set(names)) != len(names):
            raise UsageError("ARCHIVE_SERVICES: a service is listed twice")
        self.names = names
        self.gateway_port, _ = _port_variable(env, "ARCHIVE_GATEWAY_PORT", DEFAULT_GATEWAY_PORT)
        self.nats_port, self.nats_port_explicit = _port_variable(
            env, "ARCHIVE_NATS_PORT", DEFAULT_NATS_PORT
        )
        from archive.natsserver import SYNC_ALWAYS, SYNC_DEFAULT

        self.nats_sync = env.get("ARCHIVE_NATS_SYNC", SYNC_DEFAULT).strip() or SYNC_DEFAULT
        if self.nats_sync not in (SYNC_DEFAULT, SYNC_ALWAYS):
            raise UsageError(f"ARCHIVE_NATS_SYNC: {self.nats_sync!r} is not one of default, always")

    def plan(self) -> None:
        """Decide ports, commands and environments; start nothing yet."""
        env = self.environ
        names, gateway_port, nats_port = self.names, self.gateway_port, self.nats_port
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
            from archive.natsserver import free_port

            fallback = free_port()
            log.info("port %d is taken; nats-server uses %d instead", nats_port, fallback)
            nats_port = fallback

        token = self.operator_token = operator_token(self.layout, env)
        self.nats = self._nats_child(nats_port)

        base = {k: v for k, v in env.items() if k != "ARCHIVE_OPERATOR_TOKEN_FILE"}
        base.setdefault("ARCHIVE_SHUTDOWN_GRACE_SECONDS", CHILD_GRACE_SECONDS)
        base["PYTHONUNBUFFERED"] = "1"
        base.update(
            ARCHIVE_NATS_URL=self.nats_url,
            ARCHIVE_GRPC_HOST=LOCALHOST,
            ARCHIVE_BLOB_DIR=str(self.layout.blobs_dir),
            ARCHIVE_OPERATOR_TOKEN=token,
        )
        from archive.natsserver import free_port

        routes: dict[str, str] = {}
        taken = {gateway_port, nats_port}
        for name in names:
            port = free_port()
            while port in taken:
                port = free_port()
            taken.add(port)
            self.services.append(self._service_child(name, port, base))
            for hosted in HOSTED_SERVICES[name]:
                routes[hosted] = f"{LOCALHOST}:{port}"

        # The gateway forwards credentials, it never checks them: it gets no operator token.
        gateway_env = {k: v for k, v in base.items() if k != "ARCHIVE_OPERATOR_TOKEN"}
        # The format services.gateway.proxy.parse_routes reads (the library does not import
        # the services).
        gateway_env["ARCHIVE_GATEWAY_ROUTES"] = ",".join(f"{s}={a}" for s, a in routes.items())
        self.gateway = self._service_child(GATEWAY, gateway_port, gateway_env)
        self.endpoint = f"{LOCALHOST}:{gateway_port}"

    def _nats_child(self, port: int) -> Child:
        from archive.natsserver import NatsServer, nats_server_binary

        server = NatsServer(store_dir=self.layout.nats_dir, port=port, sync=self.nats_sync)
        config = self.layout.nats_dir / "nats-server.conf"
        config.write_text(server.config_text())
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
        data.mkdir(parents=True, exist_ok=True)
        env = {
            **base,
            "ARCHIVE_GRPC_PORT": str(port),
            "ARCHIVE_DATA_DIR": str(data),
            "ARCHIVE_SERVICE_NAME": name,
        }
        # -P: the working directory (the data directory, which has a services/ folder of its
        # own) must not shadow the installed `services` package.
        argv = [sys.executable, "-P", "-m", "archive.launcher", "serve", name]
        return Child(name, argv, env, self.layout, ready=grpc_serving, grpc_port=port)

    def start_all(self) -> None:
        assert self.nats is not None and self.gateway is not None
        self._start_and_wait([self.nats])
        self._start_and_wait(self.services)
        self._start_and_wait([self.gateway])

    def _start_and_wait(self, children: Sequence[Child]) -> None:
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

    # -- the demo tenant and archive.env

    def provision(self) -> None:
        """First start: create tenant demo through the gateway and write archive.env.
        Later starts: keep archive.env, refreshing the endpoint and operator token lines if
        they changed, and re-provision only if its tenant token no longer works."""
        token = self.operator_token
        values = _env_values(self.layout.env_file)
        if values.get("ARCHIVE_TOKEN") and values.get("ARCHIVE_TENANT"):
            if self._token_works(values["ARCHIVE_TOKEN"]):
                updated = {
                    **values,
                    "ARCHIVE_ENDPOINT": self.endpoint,
                    "ARCHIVE_OPERATOR_TOKEN": token,
                }
                if updated != values:
                    write_env_file(self.layout.env_file, updated)
                    log.info("updated %s", self.layout.shown(self.layout.env_file))
                return
            log.warning(
                "the tenant token in %s is no longer accepted (data directory reset?); "
                "issuing a new one",
                self.layout.shown(self.layout.env_file),
            )
        tenant = values.get("ARCHIVE_TENANT") or DEMO_TENANT
        tenant_token = self._demo_token(tenant, token)
        write_env_file(
            self.layout.env_file,
            {
                "ARCHIVE_ENDPOINT": self.endpoint,
                "ARCHIVE_TENANT": tenant,
                "ARCHIVE_TOKEN": tenant_token,
                "ARCHIVE_OPERATOR_TOKEN": token,
            },
        )
        log.info("wrote %s", self.layout.shown(self.layout.env_file))

    def _gateway_rpc(self, call: Callable[[Any], Any]) -> Any:
        """Run `call(channel)` against the gateway, retrying while it is UNAVAILABLE (a
        backend's channel may still be connecting)."""
        import grpc

        assert self.gateway is not None
        deadline = time.monotonic() + 15
        while True:
            try:
                return call(self.gateway.grpc_channel())
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
            if self.stop_requested.wait(0.2):
                raise Interrupted

    def _token_works(self, tenant_token: str) -> bool:
        import grpc

        from archive.v1 import tenancy_pb2, tenancy_pb2_grpc

        def who_am_i(channel: Any) -> Any:
            return tenancy_pb2_grpc.TenancyStub(channel).WhoAmI(
                tenancy_pb2.WhoAmIRequest(), metadata=_bearer(tenant_token), timeout=5
            )

        try:
            self._gateway_rpc(who_am_i)
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                return False
            log.warning("could not check the tenant token in archive.env: %s", exc.code().name)
        return True

    def _demo_token(self, tenant: str, token: str) -> str:
        import grpc

        from archive.v1 import tenancy_pb2, tenancy_pb2_grpc
        from archive.v1.common_pb2 import TenantId

        def create(channel: Any) -> Any:
            return tenancy_pb2_grpc.TenantAdminStub(channel).CreateTenant(
                tenancy_pb2.CreateTenantRequest(
                    tenant=TenantId(value=tenant), display_name="Demo tenant (archive up)"
                ),
                metadata=_bearer(token),
                timeout=10,
            )

        def issue(channel: Any) -> Any:
            return tenancy_pb2_grpc.TenantAdminStub(channel).IssueToken(
                tenancy_pb2.IssueTokenRequest(
                    tenant=TenantId(value=tenant), description="archive up (archive.env)"
                ),
                metadata=_bearer(token),
                timeout=10,
            )

        try:
            response = self._gateway_rpc(create)
            log.info("created tenant %s", tenant)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise LaunchError(
                    f"could not create tenant {tenant}: {exc.code().name}: {exc.details()}"
                ) from None
            # archive.env was removed but the tenant lives on: give it a fresh token.
            response = self._gateway_rpc(issue)
            log.info("tenant %s exists; issued it a new token", tenant)
        return str(response.token.token)

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


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


# ---------------------------------------------------------------- service discovery


def service_available(name: str) -> bool:
    """services/<name>/main.py exists and defines run() (checked without importing it, so
    that a broken service does not break `archive up`'s argument checks)."""
    if not name.isidentifier():
        return False
    try:
        spec = importlib.util.find_spec(f"services.{name}.main")
    except ModuleNotFoundError:
        return False
    if spec is None or spec.origin is None:
        return False
    try:
        source = Path(spec.origin).read_text(encoding="utf-8")
    except OSError:
        return False
    return "\nasync def run(" in source or "\ndef run(" in source


def available_services() -> list[str]:
    import services

    return sorted(
        module.name
        for module in pkgutil.iter_modules(services.__path__)
        if module.ispkg and service_available(module.name)
    )


# ---------------------------------------------------------------- commands


def cmd_serve(name: str) -> int:
    import asyncio

    from archive.config import ConfigError, Settings
    from archive.telemetry import configure_logging

    if not service_available(name):
        print(
            f"archive serve: unknown service {name!r}; available: "
            f"{', '.join(available_services()) or 'none'}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"archive serve {name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level)
    module = importlib.import_module(f"services.{name}.main")
    try:
        asyncio.run(module.run(settings))
    except ConfigError as exc:  # settings a service reads itself (e.g. the gateway's routes)
        print(f"archive serve {name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # a second Ctrl-C while draining
        return 130
    return EXIT_OK


def cmd_up(environ: Mapping[str, str] = os.environ) -> int:
    from archive.telemetry import configure_logging

    level = (environ.get("ARCHIVE_LOG_LEVEL") or "INFO").strip().upper()
    configure_logging(level if level in logging.getLevelNamesMapping() else "INFO")
    layout = Layout.from_env(environ)
    supervisor = Supervisor(layout, environ)
    try:
        supervisor.check()
    except LaunchError as exc:
        log.error("%s", exc)
        return exc.exit_code
    layout.create()
    launcher_pid = layout.pid_file(LAUNCHER)
    running = read_pid(launcher_pid)
    if running is not None and running != os.getpid() and pid_alive(running) and _is_ours(running):
        print(
            f"archive up: already running from {layout.shown(layout.root)} (pid {running}); "
            "stop it with `archive down` or Ctrl-C in its terminal",
            file=sys.stderr,
        )
        return EXIT_FAILED

    file_log = logging.FileHandler(layout.log_file(LAUNCHER))
    file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(file_log)
    # From here on a signal only asks the supervisor to stop: cleanup always runs.
    previous = {
        signum: signal.signal(signum, supervisor.on_signal)
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    code = EXIT_OK
    try:
        reap_leftovers(layout)
        launcher_pid.write_text(f"{os.getpid()}\n")
        supervisor.plan()
        supervisor.start_all()
        supervisor.provision()
        _banner(supervisor)
        supervisor.supervise()
        log.info("stopping")
    except Interrupted:
        log.info("interrupted while starting; stopping")
    except LaunchError as exc:
        log.error("%s", exc)
        code = exc.exit_code
    except Exception:
        log.exception("archive up failed")
        code = EXIT_FAILED
    finally:
        supervisor.stop_all()
        with contextlib.suppress(FileNotFoundError):
            launcher_pid.unlink()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        logging.getLogger().removeHandler(file_log)
        file_log.close()
    return code


def _banner(supervisor: Supervisor) -> None:
    layout = supervisor.layout
    env_file = layout.shown(layout.env_file)
    names = ", ".join(c.name for c in supervisor.services)
    print(
        "\n"
        f"  archive is up: {names} behind the gateway\n"
        f"  endpoint  {supervisor.endpoint}  (gRPC)\n"
        f"  env file  {env_file}  (load it with: set -a; . {env_file}; set +a)\n"
        f"  logs      {layout.shown(layout.logs_dir)}/\n"
        f"  stop      Ctrl-C here, or `archive down` (pid {os.getpid()})\n",
        flush=True,
    )


def cmd_status(environ: Mapping[str, str] = os.environ) -> int:
    layout = Layout.from_env(environ)
    pid_files = sorted(layout.run_dir.glob("*.pid")) if layout.run_dir.is_dir() else []
    launcher = read_pid(layout.pid_file(LAUNCHER))
    up = launcher is not None and pid_alive(launcher)
    print(f"data directory  {layout.shown(layout.root)}")
    print(f"archive up      {f'running (pid {launcher})' if up else 'not running'}")
    for path in pid_files:
        if path.stem == LAUNCHER:
            continue
        pid = read_pid(path)
        state = "running" if pid is not None and pid_alive(pid) else "not running (stale pid file)"
        print(f"  {path.stem:<12} pid {pid}  {state}")
    endpoint = _env_values(layout.env_file).get("ARCHIVE_ENDPOINT")
    if up and endpoint:
        print(f"endpoint        {endpoint}  (env file {layout.shown(layout.env_file)})")
    return EXIT_OK if up else EXIT_NOT_RUNNING


def cmd_down(environ: Mapping[str, str] = os.environ, timeout: float = 60.0) -> int:
    layout = Layout.from_env(environ)
    pid = read_pid(layout.pid_file(LAUNCHER))
    if pid is None or not pid_alive(pid):
        print(f"archive down: nothing runs from {layout.shown(layout.root)}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            print(f"archive down: pid {pid} still running after {timeout:.0f}s", file=sys.stderr)
            return EXIT_FAILED
        time.sleep(0.1)
    print("archive stopped")
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archive", description="Run the trusted archive platform."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("up", help="start everything and supervise it (Ctrl-C stops)")
    serve = commands.add_parser("serve", help="run one service in this process")
    serve.add_argument("service", help="ingest, search, gateway, ...")
    commands.add_parser("status", help="what runs from ARCHIVE_DATA_DIR (default ./var)")
    commands.add_parser("down", help="stop the `archive up` of ARCHIVE_DATA_DIR")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return cmd_serve(args.service)
    if args.command == "up":
        return cmd_up()
    if args.command == "status":
        return cmd_status()
    return cmd_down()


if __name__ == "__main__":
    sys.exit(main())
