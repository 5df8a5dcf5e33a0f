"""`archive up` as a user runs it: a real launcher process starting a real nats-server, the
services and the gateway, in a temporary data directory on free ports."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
import pytest

from archive.launcher import pid_alive, read_env_file, read_pid, service_available
from archive.natsserver import free_port
from archive.v1 import tenancy_pb2, tenancy_pb2_grpc

pytestmark = pytest.mark.integration

# The default set, minus services that do not exist yet; ingest is required (it hosts
# TenantAdmin, which creates the demo tenant).
SERVICES = [name for name in ("ingest", "search") if service_available(name)]
ENV_KEYS = ["ARCHIVE_ENDPOINT", "ARCHIVE_TENANT", "ARCHIVE_TOKEN", "ARCHIVE_OPERATOR_TOKEN"]
T = TypeVar("T")


@dataclass
class Launch:
    process: subprocess.Popen[bytes]
    data: Path
    output: Path
    seen_pids: set[int] = field(default_factory=set)

    @property
    def run_dir(self) -> Path:
        return self.data / "run"

    def pid(self, name: str) -> int | None:
        pid = read_pid(self.run_dir / f"{name}.pid")
        if pid is not None:
            self.seen_pids.add(pid)
        return pid

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, what: str, check: Callable[[], T | None], timeout: float = 45) -> T:
        """Poll `check` until it returns something truthy; fail early if the launcher dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            if self.process.poll() is not None:
                pytest.fail(
                    f"launcher exited ({self.process.returncode}) before {what}:\n" + self.text()
                )
            time.sleep(0.05)
        pytest.fail(f"timed out waiting for {what}:\n{self.text()}")

    def wait_until_up(self) -> None:
        self.wait_for("the banner", lambda: "archive is up" in self.text())

    def stop(self, timeout: float = 20) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"launcher did not exit within {timeout}s of SIGINT:\n{self.text()}")


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Callable[..., Launch]]:
    """Starts `archive up`; at teardown kills whatever is left, whatever happened."""
    launches: list[Launch] = []
    gateway_port, nats_port = free_port(), free_port()

    def start(**extra_env: str) -> Launch:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
        env.update(
            ARCHIVE_DATA_DIR=str(tmp_path / "data"),
            ARCHIVE_GATEWAY_PORT=str(gateway_port),
            ARCHIVE_NATS_PORT=str(nats_port),
            ARCHIVE_SERVICES=",".join(SERVICES),
            ARCHIVE_LOG_LEVEL="INFO",
        )
        env.update(extra_env)
        output = tmp_path / f"launcher-{len(launches)}.out"
        with open(output, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "archive.launcher", "up"],
                env=env,
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        launch = Launch(process, tmp_path / "data", output)
        launches.append(launch)
        return launch

    try:
        yield start
    finally:
        for launch in launches:
            if launch.process.poll() is None:
                os.killpg(launch.process.pid, signal.SIGKILL)
                launch.process.wait(5)
            pids = set(launch.seen_pids)
            for pid_file in launch.run_dir.glob("*.pid"):
                pid = read_pid(pid_file)
                if pid is not None:
                    pids.add(pid)
            for pid in pids:
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)


def who_am_i(endpoint: str, token: str) -> str:
    with grpc.insecure_channel(endpoint) as channel:
        response = tenancy_pb2_grpc.TenancyStub(channel).WhoAmI(
            tenancy_pb2.WhoAmIRequest(),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=5,
        )
    return str(response.tenant.value)


def who_am_i_eventually(endpoint: str, token: str, launch: Launch) -> str:
    def attempt() -> str | None:
        try:
            return who_am_i(endpoint, token)
        except grpc.RpcError:
            return None

    return launch.wait_for("WhoAmI through the gateway", attempt, timeout=20)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(
    "ingest" not in SERVICES, reason="services/ingest/main.py with run() does not exist yet"
)
def test_up_provisions_supervises_and_stops_cleanly(launcher: Callable[..., Launch]) -> None:
    processes = ["nats", "gateway", *SERVICES]

    # -- first start: everything runs, the demo tenant and archive.env exist
    first = launcher()
    first.wait_until_up()
    env_file = first.data / "archive.env"
    values = read_env_file(env_file)
    assert list(values) == ENV_KEYS
    assert all(values.values())
    assert values["ARCHIVE_TENANT"] == "demo"
    assert mode(env_file) == 0o600
    assert mode(first.data / "secrets") == 0o700
    assert mode(first.data / "secrets" / "operator-token") == 0o600
    original_env = env_file.read_text()

    for name in processes:
        pid = first.pid(name)
        assert pid is not None, f"no pid file for {name}"
        assert pid_alive(pid), f"{name} (pid {pid}) is not running"
        assert (first.data / "logs" / f"{name}.log").exists()

    endpoint = values["ARCHIVE_ENDPOINT"]
    assert who_am_i(endpoint, values["ARCHIVE_TOKEN"]) == "demo"

    # -- a service killed hard is restarted, and the gateway finds it again
    old = first.pid("ingest")
    assert old is not None
    os.kill(old, signal.SIGKILL)
    new = first.wait_for(
        "ingest to be restarted",
        lambda: (pid := first.pid("ingest")) not in (None, old) and pid_alive(pid) and pid,
        timeout=20,
    )
    assert new != old
    assert who_am_i_eventually(endpoint, values["ARCHIVE_TOKEN"], first) == "demo"

    # -- Ctrl-C: exit 0, every child gone, pid files removed
    pids = {first.pid(name) for name in processes} | first.seen_pids
    assert first.stop() == 0, first.text()
    alive = [pid for pid in pids if pid is not None and pid_alive(pid)]
    assert alive == [], f"still running: {alive}"
    assert list(first.run_dir.glob("*.pid")) == []

    # -- second start on the same data directory: same tenant, same token, same file
    second = launcher()
    second.wait_until_up()
    assert env_file.read_text() == original_env
    assert who_am_i(endpoint, values["ARCHIVE_TOKEN"]) == "demo"
    assert second.stop() == 0, second.text()
    assert list(second.run_dir.glob("*.pid")) == []

    # The terminal never shows a secret, only where they are.
    for output in (first.text(), second.text()):
        assert values["ARCHIVE_TOKEN"] not in output
        assert values["ARCHIVE_OPERATOR_TOKEN"] not in output
        assert "archive.env" in output


@pytest.mark.skipif("ingest" not in SERVICES, reason="services/ingest/main.py does not exist yet")
def test_gateway_port_taken_fails_clearly(launcher: Callable[..., Launch]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        launch = launcher(ARCHIVE_GATEWAY_PORT=str(port), ARCHIVE_SERVICES="ingest")
        code = launch.process.wait(30)
    assert code == 1
    assert f"port {port}" in launch.text()
    assert "ARCHIVE_GATEWAY_PORT" in launch.text()
    assert list(launch.run_dir.glob("*.pid")) == []


def test_unknown_service_in_services_list_is_a_usage_error(
    launcher: Callable[..., Launch],
) -> None:
    launch = launcher(ARCHIVE_SERVICES="ingest,nope")
    assert launch.process.wait(30) == 2
    assert "nope" in launch.text() and "known: ingest, search" in launch.text()


def test_serve_unknown_service_exits_2_with_the_list() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "archive.launcher", "serve", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "unknown service 'nope'" in result.stderr
    assert "gateway" in result.stderr
