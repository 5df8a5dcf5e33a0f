"""One process `archive up` supervises: how it starts, where its pid and log go, how to tell
it is ready, and what a gRPC one says it serves."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import grpc

from tools.launcher.layout import Layout, write_pid_file

LOCALHOST: Final = "127.0.0.1"

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
    _channel: grpc.Channel | None = field(default=None, repr=False)

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
        log_fd = self.layout.open_log(self.name)
        try:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            os.write(log_fd, f"---- {stamp} archive up starts {self.name} ----\n".encode())
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-c", _TRAMPOLINE, str(os.getpid()), *self.argv],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                # Its own process group: the terminal's Ctrl-C goes to the launcher only.
                process_group=0,
                cwd=self.layout.root,
            )
        finally:
            os.close(log_fd)
        self.started_at = time.monotonic()
        self.restart_at = None
        # The start time is the trampoline's, and stays the program's across its exec.
        write_pid_file(self.pid_file, self.process.pid, self.argv)

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

    def grpc_channel(self) -> grpc.Channel:
        if self.grpc_port is None:
            raise RuntimeError(f"{self.name} has no gRPC port")
        if self._channel is None:
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
    from grpc_health.v1 import health_pb2

    # By its path: the stubs of grpc_health's HealthStub name none of its methods.
    check = child.grpc_channel().unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    try:
        response = check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    except grpc.RpcError:
        return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def nats_ready(port: int) -> Callable[[Child], bool]:
    def ready(child: Child) -> bool:
        try:
            with socket.create_connection((LOCALHOST, port), timeout=0.3) as s:
                s.settimeout(0.3)
                return s.recv(4).startswith(b"INFO")
        except OSError:
            return False

    return ready


# Served by every archive server besides its own services (archive.grpcserver.build_server).
_SCAFFOLDING: Final = frozenset(
    {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
)


def served_services(child: Child, timeout: float = 5.0) -> set[str]:
    """The gRPC services a running child says it serves (server reflection), without the
    health and reflection services every server has."""
    from grpc_reflection.v1alpha import reflection_pb2

    # By its path: the stubs of grpc_reflection's ServerReflectionStub leave it untyped.
    reflection_info = child.grpc_channel().stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names: set[str] = set()
    for response in reflection_info(iter([request]), timeout=timeout):
        names.update(s.name for s in response.list_services_response.service)
        break
    return names - _SCAFFOLDING
