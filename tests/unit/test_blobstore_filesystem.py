"""FilesystemBlobStore specifics: layout, read-only files, crash leftovers, no partial reads."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import os
import stat
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from waiting import eventually

from archive.blobstore import BlobNotFound, FilesystemBlobStore
from archive.blobstore.filesystem import SHA512_XATTR, _FileBlobStream

T = TypeVar("T")

TENANT = "acme"
MiB = 1024 * 1024


async def chunked(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def blob_path(root: Path, tenant: str, sha256: str) -> Path:
    return root / tenant / "sha256" / sha256[:2] / sha256[2:4] / sha256


def tmp_files(root: Path, tenant: str = TENANT) -> list[Path]:
    tmp = root / tenant / "tmp"
    return sorted(tmp.iterdir()) if tmp.exists() else []


def require_xattrs(directory: Path) -> None:
    probe = directory / "xattr-probe"
    probe.touch()
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError as exc:
        if exc.errno != errno.ENOTSUP:
            raise
        pytest.skip("no user xattrs on this filesystem (the sidecar test covers it)")
    finally:
        probe.unlink()


class Gate:
    """A producer that sends `first`, then waits until released before sending `rest`."""

    def __init__(self, first: bytes, rest: bytes) -> None:
        self.first = first
        self.rest = rest
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self.first
        self.waiting.set()  # by now the put has written `first` (it asks for the next chunk)
        await self.release.wait()
        yield self.rest


async def test_layout_and_read_only_files(tmp_path: Path) -> None:
    require_xattrs(tmp_path)
    store = FilesystemBlobStore(tmp_path)
    data = b"hello archive"
    info = await store.put(TENANT, chunked(data))
    path = blob_path(tmp_path, TENANT, info.sha256)
    assert path.read_bytes() == data
    assert os.getxattr(path, SHA512_XATTR).decode() == hashlib.sha512(data).hexdigest()
    assert list(path.parent.iterdir()) == [path]  # no sidecar where xattrs work
    mode = path.stat().st_mode
    assert mode & 0o222 == 0, oct(mode)
    assert stat.S_IMODE(mode) == 0o400  # read-only, and for the service user only
    assert tmp_files(tmp_path) == []


async def test_sidecar_where_xattrs_are_not_supported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_xattrs(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", no_xattrs)
    store = FilesystemBlobStore(tmp_path)
    infos = [await store.put(TENANT, chunked(data)) for data in (b"one", b"two")]
    for info in infos:
        path = blob_path(tmp_path, TENANT, info.sha256)
        sidecar = path.with_name(path.name + ".sha512")
        assert sidecar.read_text() == info.sha512 + "\n"
        assert stat.S_IMODE(sidecar.stat().st_mode) == 0o400
        assert stat.S_IMODE(path.stat().st_mode) == 0o400
        assert await store.stat(TENANT, info.sha256) == info
    assert tmp_files(tmp_path) == []


async def test_stat_rehashes_when_the_sha512_is_lost(tmp_path: Path) -> None:
    require_xattrs(tmp_path)
    store = FilesystemBlobStore(tmp_path)
    data = os.urandom(3 * MiB)
    info = await store.put(TENANT, chunked(data))
    path = blob_path(tmp_path, TENANT, info.sha256)
    path.chmod(0o600)  # an owner that is not root needs write permission to change xattrs
    os.removexattr(path, SHA512_XATTR)  # e.g. copied by a tool that drops xattrs
    assert await store.stat(TENANT, info.sha256) == info
    os.setxattr(path, SHA512_XATTR, b"0" * 127)
    assert await store.stat(TENANT, info.sha256) == info

    sidecar = path.with_name(path.name + ".sha512")
    sidecar.write_text("")  # what a crash can leave of a sidecar that was not fsynced
    assert await store.stat(TENANT, info.sha256) == info
    sidecar.write_text("1" * 128 + "\n")  # well-formed: trusted, the content is not reread
    assert (await store.stat(TENANT, info.sha256)).sha512 == "1" * 128
    os.setxattr(path, SHA512_XATTR, b"2" * 128)  # the xattr comes first
    assert (await store.stat(TENANT, info.sha256)).sha512 == "2" * 128


async def test_put_restores_a_missing_tmp_directory(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    await store.put(TENANT, chunked(b"one"))
    (tmp_path / TENANT / "tmp").rmdir()
    info = await store.put(TENANT, chunked(b"two"))
    assert await store.exists(TENANT, info.sha256)


async def test_cleanup_removes_temporary_files_of_a_crashed_put(tmp_path: Path) -> None:
    FilesystemBlobStore(tmp_path)
    tmp = tmp_path / TENANT / "tmp"
    tmp.mkdir(parents=True)
    # What a process killed mid-put leaves: unlocked, half-written temporary files.
    (tmp / "3f2a.tmp").write_bytes(b"half a docu")
    (tmp / "3f2a.tmp.sha512").write_bytes(b"")
    (tmp_path / "other" / "tmp").mkdir(parents=True)
    (tmp_path / "other" / "tmp" / "9c.tmp").write_bytes(b"x")

    store = FilesystemBlobStore(tmp_path)  # start-up cleans
    assert tmp_files(tmp_path) == []
    assert tmp_files(tmp_path, "other") == []
    assert store.cleanup_temporary() == 0


async def test_cleanup_spares_puts_in_progress(tmp_path: Path) -> None:
    """Another process sharing root (or this one) may be mid-put: its file is flocked."""
    store = FilesystemBlobStore(tmp_path, write_buffer_size=1024)
    gate = Gate(os.urandom(4096), os.urandom(4096))
    put = asyncio.create_task(store.put(TENANT, gate.chunks()))
    await asyncio.wait_for(gate.waiting.wait(), 10)
    in_progress = tmp_files(tmp_path)
    assert len(in_progress) == 1

    FilesystemBlobStore(tmp_path)  # e.g. a second replica starting
    assert tmp_files(tmp_path) == in_progress

    gate.release.set()
    info = await put
    assert blob_path(tmp_path, TENANT, info.sha256).read_bytes() == gate.first + gate.rest
    assert tmp_files(tmp_path) == []


async def test_locked_file_is_what_cleanup_respects(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    tmp = tmp_path / TENANT / "tmp"
    tmp.mkdir(parents=True)
    locked = tmp / "live.tmp"
    locked.write_bytes(b"busy")
    with locked.open("rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        assert store.cleanup_temporary() == 0
        assert locked.exists()
    assert store.cleanup_temporary() == 1
    assert not locked.exists()


async def test_reader_never_sees_a_partial_blob(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path, write_buffer_size=1024)
    gate = Gate(os.urandom(100_000), os.urandom(100_000))
    sha = hashlib.sha256(gate.first + gate.rest).hexdigest()
    put = asyncio.create_task(store.put(TENANT, gate.chunks(), expected_sha256=sha))
    await asyncio.wait_for(gate.waiting.wait(), 10)

    # Half the bytes are on disk, in a temporary file only.
    assert [p.stat().st_size for p in tmp_files(tmp_path)] == [len(gate.first)]
    assert not await store.exists(TENANT, sha)
    with pytest.raises(BlobNotFound):
        await store.stat(TENANT, sha)
    with pytest.raises(BlobNotFound):
        await store.open(TENANT, sha)
    assert not blob_path(tmp_path, TENANT, sha).exists()

    gate.release.set()
    info = await put
    assert await store.exists(TENANT, sha)
    assert (await store.stat(TENANT, sha)).size == info.size == 200_000
    assert blob_path(tmp_path, TENANT, sha).read_bytes() == gate.first + gate.rest


class GatedExecutor(ThreadPoolExecutor):
    """Runs calls only while `gate` is set, and records what they raised: lets a test cancel
    while a blocking call is known to be in its thread, then see what that call went through."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()
        self.errors: list[BaseException] = []

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        def gated() -> T:
            if not self.gate.is_set():
                self.waiting.set()
                self.gate.wait(10)
            try:
                return fn(*args, **kwargs)
            except BaseException as exc:
                self.errors.append(exc)
                raise

        return super().submit(gated)


@pytest.fixture
def gated() -> Iterator[GatedExecutor]:
    executor = GatedExecutor()
    yield executor
    executor.gate.set()
    executor.shutdown(wait=True)


async def wait_for_thread(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, 10)


async def test_cancel_during_a_blocking_write_cleans_up_after_the_thread(
    tmp_path: Path, gated: GatedExecutor
) -> None:
    """Cancelling while the executor thread writes must neither close the descriptor under it
    (it could be reused by then) nor leave the temporary file behind."""
    store = FilesystemBlobStore(tmp_path, write_buffer_size=1024, executor=gated)

    async def producer() -> AsyncIterator[bytes]:
        yield os.urandom(4096)  # flushed: creates the temporary file
        gated.gate.clear()
        yield os.urandom(4096)  # this flush waits in its thread

    put = asyncio.create_task(store.put(TENANT, producer()))
    await wait_for_thread(gated.waiting)
    put.cancel()
    with pytest.raises(asyncio.CancelledError):
        await put
    assert len(tmp_files(tmp_path)) == 1  # clean-up waits for the thread

    gated.gate.set()
    await eventually(lambda: not tmp_files(tmp_path), what="the clean-up after the thread")
    assert [p for p in (tmp_path / TENANT).rglob("*") if p.is_file()] == []
    assert gated.errors == []  # the write finished on a still open descriptor


async def test_stream_closed_while_a_read_runs(tmp_path: Path, gated: GatedExecutor) -> None:
    store = FilesystemBlobStore(tmp_path, executor=gated)
    data = os.urandom(100_000)
    info = await store.put(TENANT, chunked(data))
    stream = await store.open(TENANT, info.sha256, chunk_size=1000)
    assert isinstance(stream, _FileBlobStream)
    gated.gate.clear()
    read = asyncio.create_task(anext(stream))
    await wait_for_thread(gated.waiting)
    read.cancel()
    await stream.aclose()  # must not close the file under the waiting read
    with pytest.raises(asyncio.CancelledError):
        await read
    assert [chunk async for chunk in stream] == []

    gated.gate.set()
    await asyncio.to_thread(gated.shutdown, wait=True)
    # The close was deferred until the read was over: it runs, and the read succeeded.
    await eventually(lambda: stream._file is None, what="the deferred close")
    assert gated.errors == []
