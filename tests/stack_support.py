"""`archive up` started as a user starts it, for the launcher and end-to-end tests: a real
launcher process with a real nats-server, the services and the gateway, in a temporary data
directory on free ports, and everything killed at teardown whatever happened."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from archive.natsserver import free_port
from services import catalog
from tools.launcher.layout import pid_alive, read_pid
from tools.launcher.provision import ENV_KEYS as LAUNCHER_ENV_KEYS

# Every service of the catalog: what `archive up` starts by default.
SERVICES = list(catalog.NAMES)
ENV_KEYS = list(LAUNCHER_ENV_KEYS)
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


def launcher_factory(tmp_path: Path) -> Iterator[Callable[..., Launch]]:
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
                [sys.executable, "-m", "tools.launcher", "up"],
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
