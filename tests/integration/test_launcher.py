"""`archive up` as a user runs it: a real launcher process starting a real nats-server, the
services and the gateway, in a temporary data directory on free ports."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from stack_support import ENV_KEYS, SERVICES, Launch

from archive.launcher import pid_alive, read_env_file
from archive.v1 import tenancy_pb2, tenancy_pb2_grpc

pytestmark = pytest.mark.integration


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
