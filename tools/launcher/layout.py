"""The data directory of `archive up` (ARCHIVE_DATA_DIR, default ./var) and its pid files.

    nats/                JetStream store          services/<name>/   each service's own data
    blobs/               shared blob store        secrets/           operator token
    run/<name>.pid       one per process          logs/<name>.log    one per process
    archive.env          ARCHIVE_ENDPOINT, ARCHIVE_TENANT, ARCHIVE_TOKEN, ARCHIVE_OPERATOR_TOKEN

Everything here is the service user's only: directories 0700, files 0600.

A pid file records more than the pid: the kernel's start time of that process and the boot
it belongs to, so that a pid recycled by another program (after a crash, a reboot) is never
taken for ours, signalled or reported as running.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from archive.files import PRIVATE_DIR, PRIVATE_FILE, atomic_write, ensure_dir

log = logging.getLogger("archive.launcher")

TICK: Final = 0.1
_APPEND: Final = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC


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
    def services_dir(self) -> Path:
        return self.root / "services"

    @property
    def env_file(self) -> Path:
        return self.root / "archive.env"

    @property
    def token_file(self) -> Path:
        return self.secrets_dir / "operator-token"

    def service_dir(self, name: str) -> Path:
        return self.services_dir / name

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def create(self) -> None:
        """The directories, 0700; those an earlier version left more open are closed."""
        ensure_dir(str(self.root))
        for directory in self.directories():
            ensure_dir(str(directory))
            if directory.stat().st_mode & 0o077:
                directory.chmod(PRIVATE_DIR)

    def directories(self) -> tuple[Path, ...]:
        """The directories this layout owns (the root is the user's choice and left as is
        when it existed already)."""
        return (
            self.run_dir,
            self.logs_dir,
            self.secrets_dir,
            self.nats_dir,
            self.blobs_dir,
            self.services_dir,
        )

    def open_log(self, name: str) -> int:
        """A file descriptor appending to logs/<name>.log (created 0600)."""
        return os.open(self.log_file(name), _APPEND, PRIVATE_FILE)

    def shown(self, path: Path) -> str:
        """A path as the user will want to type it: relative to the working directory when
        it is below it."""
        with contextlib.suppress(ValueError):
            return str(path.relative_to(Path.cwd()))
        return str(path)


# ---------------------------------------------------------------- processes and pid files


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (/proc/<pid>/stat field 22); None
    when there is no such process (or no /proc). It does not change across exec."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (the command) is in parentheses and may hold spaces: split after the last ")".
    fields = stat.rpartition(")")[2].split()
    try:
        return int(fields[19])  # fields[0] is field 3 (state)
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """Some process has this pid and is not a zombie (exited, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    return True


@dataclass(frozen=True)
class PidRecord:
    """What a pid file holds: which process, and enough to recognise it later."""

    pid: int
    start_ticks: int
    boot_id: str
    argv: tuple[str, ...]

    @classmethod
    def of(cls, pid: int, argv: Sequence[str]) -> PidRecord | None:
        """The record of a running process; None when it is already gone."""
        ticks = start_ticks(pid)
        if ticks is None:
            return None
        return cls(pid, ticks, _boot_id(), tuple(argv))

    def is_running(self) -> bool:
        """The very process this record was written for is still there: same boot, same pid,
        same start time (a recycled pid has another), and not a zombie."""
        return (
            self.boot_id == _boot_id()
            and start_ticks(self.pid) == self.start_ticks
            and pid_alive(self.pid)
        )

    def to_bytes(self) -> bytes:
        fields = {
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "boot_id": self.boot_id,
            "argv": list(self.argv),
        }
        return (json.dumps(fields) + "\n").encode("utf-8")


def write_pid_file(path: Path, pid: int, argv: Sequence[str]) -> PidRecord | None:
    """Record a running process in `path` (0600, atomically); None (and no file) when it has
    exited already."""
    record = PidRecord.of(pid, argv)
    if record is not None:
        atomic_write(path, record.to_bytes())
    return record


def read_pid_file(path: Path) -> PidRecord | None:
    """The record in a pid file; None when there is none or it is not one of ours (a file
    of an older format cannot say which process it meant, so it names none)."""
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
        return PidRecord(
            int(fields["pid"]),
            int(fields["start_ticks"]),
            str(fields["boot_id"]),
            tuple(str(arg) for arg in fields["argv"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_pid(path: Path) -> int | None:
    record = read_pid_file(path)
    return record.pid if record is not None else None


def running_record(path: Path) -> PidRecord | None:
    """The record of `path` when its process still runs, else None."""
    record = read_pid_file(path)
    return record if record is not None and record.is_running() else None


def reap_leftovers(layout: Layout, stop_timeout: float) -> None:
    """Pid files left by a launcher that was killed: its children were told to stop when it
    died (SIGTERM); give them time to release their ports and nats' store, then make sure.
    Only processes whose pid file still describes them are signalled."""
    leftovers: list[PidRecord] = []
    for pid_file in layout.run_dir.glob("*.pid"):
        record = running_record(pid_file)
        if record is not None and record.pid != os.getpid():
            leftovers.append(record)
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGTERM)
        pid_file.unlink()
    if leftovers:
        log.warning("stopping processes left by a previous run: %s", [r.pid for r in leftovers])
    deadline = time.monotonic() + stop_timeout
    for record in leftovers:
        while record.is_running() and time.monotonic() < deadline:
            time.sleep(TICK)
        if record.is_running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGKILL)
