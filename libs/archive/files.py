"""Durable, private file writes shared by the stores, the launcher, the keys and the CLI.

A rename is only durable once the directory holding it is fsynced; every helper here does
that, so "written" means "survives a power cut" wherever it is used. What the archive keeps
for itself is readable by the service user only: files 0600, directories 0700."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Final

PRIVATE_FILE: Final = 0o600
PRIVATE_DIR: Final = 0o700


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the entries of a directory (creations, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: str, fsync: bool = True, mode: int = PRIVATE_DIR) -> None:
    """mkdir -p that fsyncs the parent of every directory it creates, so a file's directory
    entry cannot vanish in a crash after its write returned. Existing directories cost one
    failing mkdir. `fsync=False` when a later syncfs covers the new directories."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return
    except FileNotFoundError:
        ensure_dir(os.path.dirname(path), fsync, mode)
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            return
    if fsync:
        fsync_dir(os.path.dirname(path) or ".")


def atomic_write(path: Path, data: bytes, mode: int = PRIVATE_FILE) -> None:
    """Write `data` to `path` through a temporary file created with its final mode (no
    window where a secret is readable by others), fsynced, renamed into place, and the
    directory fsynced: a reader sees the old file or the whole new one, never half."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.part")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)  # umask may have removed bits we asked for (never added)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    fsync_dir(path.parent)
