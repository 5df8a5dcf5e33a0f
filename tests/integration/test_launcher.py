"""`archive up` as a user runs it: a real launcher process starting a real nats-server, the
services and the gateway, in a temporary data directory on free ports."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from stack_support import ENV_KEYS, SERVICES, Launch

from archive.envfile import read_env_file
from archive.natsserver import free_port
from archive.v1 import tenancy_pb2, tenancy_pb2_grpc
from services import catalog
from tools.launcher.child import Child, grpc_serving
from tools.launcher.errors import LaunchError
from tools.launcher.layout import Layout, PidRecord, pid_alive, read_pid_file
from tools.launcher.supervisor import Supervisor, serve_argv

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


def cmdline(pid: int) -> list[str]:
    return [arg.decode() for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]]


def assert_private_layout(data: Path, processes: list[str]) -> None:
    """What `archive up` creates is the service user's only: directories 0700, files 0600."""
    directories = [data, *(data / d for d in ("run", "logs", "secrets", "nats", "blobs"))]
    directories += [data / "services", *(data / "services" / name for name in SERVICES)]
    files = [data / "archive.env", data / "secrets" / "operator-token"]
    files += [data / "nats" / "nats-server.conf"]
    files += [data / "run" / f"{name}.pid" for name in (*processes, "launcher")]
    files += [data / "logs" / f"{name}.log" for name in (*processes, "launcher")]
    assert {str(d): oct(mode(d)) for d in directories} == {str(d): "0o700" for d in directories}
    assert {str(f): oct(mode(f)) for f in files} == {str(f): "0o600" for f in files}


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
    assert_private_layout(first.data, processes)
    original_env = env_file.read_text()
    # Durable by default: the embedded nats-server fsyncs before it acknowledges.
    assert "sync_interval: always" in (first.data / "nats" / "nats-server.conf").read_text()

    for name in processes:
        pid = first.pid(name)
        assert pid is not None, f"no pid file for {name}"
        assert pid_alive(pid), f"{name} (pid {pid}) is not running"
        assert (first.data / "logs" / f"{name}.log").exists()
    # A pid file names its process exactly: the command it runs, as the kernel shows it.
    for name in SERVICES:
        record = read_pid_file(first.run_dir / f"{name}.pid")
        assert record is not None and record.is_running(), name
        expected = [sys.executable, "-P", "-m", "tools.launcher", "serve", name]
        assert list(record.argv) == expected
        assert cmdline(record.pid) == expected

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
    assert "nope" in launch.text()
    assert f"known: {', '.join(catalog.NAMES)}" in launch.text()


def test_a_nats_sync_that_is_neither_always_nor_an_interval_is_a_usage_error(
    launcher: Callable[..., Launch],
) -> None:
    launch = launcher(ARCHIVE_NATS_SYNC="sometimes")
    assert launch.process.wait(30) == 2
    assert "ARCHIVE_NATS_SYNC: 'sometimes' is neither 'always'" in launch.text()


def test_serve_unknown_service_exits_2_with_the_list() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.launcher", "serve", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "unknown service 'nope'" in result.stderr
    assert "gateway" in result.stderr


DECOY_ARGV = [sys.executable, "-c", "import time; time.sleep(120)", "archive", "serve", "ingest"]


@pytest.fixture
def decoy(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process that is not ours, though its command line says "archive" (which the old
    check took for proof)."""
    process = subprocess.Popen(DECOY_ARGV)
    yield process
    process.kill()
    process.wait(5)


def forged_pid_file(path: Path, decoy: subprocess.Popen[bytes]) -> None:
    """A pid file naming the decoy's pid but another start time: a pid recycled since."""
    record = PidRecord.of(decoy.pid, ["archive", "serve", "ingest"])
    assert record is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(replace(record, start_ticks=record.start_ticks - 1).to_bytes())


def archive(command: str, data: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
    return subprocess.run(
        [sys.executable, "-m", "tools.launcher", command],
        env={**env, "ARCHIVE_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_recycled_pid_is_never_taken_for_ours(
    tmp_path: Path, decoy: subprocess.Popen[bytes]
) -> None:
    data = tmp_path / "data"
    forged_pid_file(data / "run" / "launcher.pid", decoy)
    status = archive("status", data)
    assert status.returncode == 3, status.stdout + status.stderr
    assert "not running" in status.stdout
    down = archive("down", data)
    assert down.returncode == 3, down.stdout + down.stderr
    assert decoy.poll() is None, "archive down signalled a process that is not ours"

    # The real record of the same process is recognised (and `down` stops it).
    record = PidRecord.of(decoy.pid, DECOY_ARGV)
    assert record is not None
    (data / "run" / "launcher.pid").write_bytes(record.to_bytes())
    status = archive("status", data)
    assert status.returncode == 0 and f"running (pid {decoy.pid})" in status.stdout
    assert archive("down", data).returncode == 0
    assert decoy.wait(10) == -signal.SIGTERM


def test_leftover_pid_files_do_not_kill_strangers(
    launcher: Callable[..., Launch], decoy: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    forged_pid_file(tmp_path / "data" / "run" / "ingest.pid", decoy)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        launch = launcher(ARCHIVE_GATEWAY_PORT=str(port), ARCHIVE_SERVICES="ingest")
        assert launch.process.wait(30) == 1
    # The leftover pid files were cleared before the start was refused, the stranger lives.
    assert list(launch.run_dir.glob("*.pid")) == []
    assert decoy.poll() is None


def test_a_service_serving_other_than_its_catalog_entry_stops_the_start(tmp_path: Path) -> None:
    """The catalog is held to what each service registers: here a real search process stands
    where ingest should be, and the launcher's check says so instead of routing to it."""
    layout = Layout(tmp_path / "data")
    layout.create()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
    env.update(
        ARCHIVE_EVENT_STORE="memory",
        ARCHIVE_GRPC_PORT=str(port),
        ARCHIVE_DATA_DIR=str(layout.service_dir("search")),
        ARCHIVE_BLOB_DIR=str(layout.blobs_dir),
    )
    impostor = Child("ingest", serve_argv("search"), env, layout, grpc_serving, grpc_port=port)
    supervisor = Supervisor(layout, {})
    supervisor.services = [impostor]
    try:
        supervisor.start_and_wait([impostor])
        with pytest.raises(LaunchError) as caught:
            supervisor.check_registrations()
    finally:
        supervisor.stop_all()
    message = str(caught.value)
    assert "ingest serves archive.v1.Search but services/catalog.py lists" in message
    assert "archive.v1.Ingest, archive.v1.Tenancy, archive.v1.TenantAdmin" in message
