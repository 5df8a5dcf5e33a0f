"""The raw durable writes the benchmarks measure our blob stores against (no hashing, no
framing, no asyncio): the floor of each storage scheme on this machine."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def write_file_durably(directory: Path, name: str, data: bytes) -> None:
    """One file per blob: write a temporary file, fsync it, rename it into place, fsync the
    directory (what the filesystem blob store's per-file mode does for each put)."""
    tmp_path = directory / f"{name}.tmp"
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    os.rename(tmp_path, directory / name)
    dir_fd = os.open(directory, os.O_RDONLY)
    os.fsync(dir_fd)
    os.close(dir_fd)


def append_with_fdatasync(fd: int, docs: Sequence[bytes], group: int) -> None:
    """Appends to one open file, one fdatasync per `group` documents and one at the end (what
    the pack blob store does per group commit)."""
    for i, doc in enumerate(docs, 1):
        os.write(fd, doc)
        if i % group == 0 or i == len(docs):
            os.fdatasync(fd)
