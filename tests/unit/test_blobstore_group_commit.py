"""FilesystemBlobStore group commit: grouping, deduplication, failing syncfs, cancellation."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import hashlib
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from waiting import eventually

from archive.blobstore import BlobInfo, BlobNotFound, FilesystemBlobStore
from archive.blobstore import filesystem as fs

pytestmark = pytest.mark.skipif(
    not fs.syncfs_available(), reason="group commit needs syncfs(2) in libc"
)

TENANT = "acme"
REAL_SYNCFS: Callable[[int], int] = fs._syncfs


async def chunked(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def expected_info(data: bytes) -> BlobInfo:
    return BlobInfo(
        TENANT, hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest(), len(data)
    )


def blob_path(root: Path, sha256: str) -> Path:
    return root / TENANT / "sha256" / sha256[:2] / sha256[2:4] / sha256


def stored_files(root: Path) -> list[Path]:
    """Blobs and sidecars at their final paths."""
    return sorted(p for p in (root / TENANT / "sha256").rglob("*") if p.is_file())


def tmp_files(root: Path) -> list[Path]:
    tmp = root / TENANT / "tmp"
    return sorted(tmp.iterdir()) if tmp.exists() else []


async def read_all(store: FilesystemBlobStore, sha256: str) -> bytes:
    async with await store.open(TENANT, sha256) as stream:
        return b"".join([chunk async for chunk in stream])


class SyncfsGate:
    """Replaces `_syncfs`: the first call waits in its thread until released, so that a test
    can line puts up behind a commit that is known to be running."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, fd: int) -> int:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            self.release.wait(10)
        return REAL_SYNCFS(fd)

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 10)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> SyncfsGate:
    gate = SyncfsGate()
    monkeypatch.setattr(fs, "_syncfs", gate)
    return gate


def test_auto_picks_group_on_linux(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only")
    assert FilesystemBlobStore(tmp_path).commit_mode == "group"
    assert FilesystemBlobStore(tmp_path, commit="auto").commit_mode == "group"
    assert FilesystemBlobStore(tmp_path, commit="group").commit_mode == "group"
    assert FilesystemBlobStore(tmp_path, commit="per-file").commit_mode == "per-file"


@pytest.mark.parametrize("mode", ["", "Group", "per_file", "fsync", "none"])
def test_invalid_mode_is_refused(tmp_path: Path, mode: str) -> None:
    with pytest.raises(ValueError, match="commit"):
        FilesystemBlobStore(tmp_path, commit=mode)


async def test_per_file_mode_runs_no_group_commit(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path, commit="per-file")
    info = await store.put(TENANT, chunked(b"one at a time"))
    assert await read_all(store, info.sha256) == b"one at a time"
    assert (store.commit_groups, store.committed_puts) == (0, 0)


async def test_concurrent_puts_are_committed_in_fewer_groups(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    blobs = [os.urandom(2000 + i) for i in range(200)]
    infos = await asyncio.gather(*(store.put(TENANT, chunked(b, 700)) for b in blobs))
    assert store.committed_puts == 200
    assert 1 <= store.commit_groups < 200
    for data, info in zip(blobs, infos, strict=True):
        assert info == expected_info(data)
        assert await store.stat(TENANT, info.sha256) == info
        assert await read_all(store, info.sha256) == data
    assert tmp_files(tmp_path) == []


async def test_puts_ready_during_a_commit_share_the_next_one(
    tmp_path: Path, gate: SyncfsGate
) -> None:
    store = FilesystemBlobStore(tmp_path)
    first = asyncio.create_task(store.put(TENANT, chunked(b"first")))
    await gate.wait_entered()  # the first group's commit is running
    blobs = [os.urandom(1000 + i) for i in range(50)]
    puts = [asyncio.create_task(store.put(TENANT, chunked(b))) for b in blobs]
    await eventually(lambda: store.puts_awaiting_commit == 50)
    assert store.commit_groups == 0
    gate.release.set()
    infos = await asyncio.gather(*puts)
    assert await first == expected_info(b"first")
    assert (store.commit_groups, store.committed_puts) == (2, 51)
    assert gate.calls == 4  # two syncfs per group, not per put
    for data, info in zip(blobs, infos, strict=True):
        assert info == expected_info(data)
        assert blob_path(tmp_path, info.sha256).read_bytes() == data
    assert tmp_files(tmp_path) == []


async def test_identical_puts_in_one_group_give_one_blob(tmp_path: Path, gate: SyncfsGate) -> None:
    store = FilesystemBlobStore(tmp_path)
    blocker = asyncio.create_task(store.put(TENANT, chunked(b"blocker")))
    await gate.wait_entered()
    data = os.urandom(30_000)
    twins = [asyncio.create_task(store.put(TENANT, chunked(data, 1000))) for _ in range(2)]
    await eventually(lambda: store.puts_awaiting_commit == 2)
    gate.release.set()
    infos = await asyncio.gather(*twins)
    await blocker
    assert infos == [expected_info(data)] * 2
    assert (store.commit_groups, store.committed_puts) == (2, 3)  # the twins: one group
    path = blob_path(tmp_path, infos[0].sha256)
    assert list(path.parent.iterdir()) == [path]
    assert path.read_bytes() == data
    assert await store.stat(TENANT, infos[0].sha256) == infos[0]
    assert tmp_files(tmp_path) == []


class FailingSyncfs:
    """Fails the first syncfs of every group commit (the one before any rename: nothing is in
    place yet), or the second one, by returning -1 with errno EIO (as libc does) or raising.
    Every other call succeeds, so a store that went on after a failure would store blobs."""

    def __init__(self, root: Path, which: str, how: str) -> None:
        self.root = root
        self.which = which
        self.how = how
        self.calls = 0
        self.renamed_before_failure: list[Path] = []

    def __call__(self, fd: int) -> int:
        self.calls += 1
        renamed = stored_files(self.root)
        if self.which == "first" and renamed:
            return REAL_SYNCFS(fd)
        if self.which == "second" and self.calls % 2 == 1:
            return REAL_SYNCFS(fd)
        self.renamed_before_failure.extend(renamed)
        if self.how == "raises":
            raise OSError(errno.ENOSPC, "No space left on device")
        ctypes.set_errno(errno.EIO)
        return -1


@pytest.mark.parametrize("sha512_in", ["xattr", "sidecar"])
@pytest.mark.parametrize("how", ["returns -1", "raises"])
@pytest.mark.parametrize("which", ["first", "second"])
async def test_failing_syncfs_fails_every_put_of_the_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str, how: str, sha512_in: str
) -> None:
    if sha512_in == "sidecar":

        def no_xattrs(*args: object, **kwargs: object) -> None:
            raise OSError(errno.ENOTSUP, "Operation not supported")

        monkeypatch.setattr(os, "setxattr", no_xattrs)
    store = FilesystemBlobStore(tmp_path)
    failing = FailingSyncfs(tmp_path, which, how)
    monkeypatch.setattr(fs, "_syncfs", failing)
    blobs = [os.urandom(3000 + i) for i in range(20)]
    outcomes = await asyncio.gather(
        *(store.put(TENANT, chunked(b)) for b in blobs), return_exceptions=True
    )

    expected_errno = errno.ENOSPC if how == "raises" else errno.EIO
    for outcome in outcomes:
        assert isinstance(outcome, OSError), outcome
        assert outcome.errno == expected_errno
    assert store.committed_puts == 20
    if which == "second":
        assert failing.renamed_before_failure  # there were renamed blobs, now taken away
    else:
        assert failing.renamed_before_failure == []  # nothing renamed before the first syncfs
    assert stored_files(tmp_path) == []
    assert tmp_files(tmp_path) == []
    for data in blobs:
        sha = hashlib.sha256(data).hexdigest()
        assert not await store.exists(TENANT, sha)
        with pytest.raises(BlobNotFound):
            await store.stat(TENANT, sha)

    monkeypatch.setattr(fs, "_syncfs", REAL_SYNCFS)  # the disk is back: the store still works
    info = await store.put(TENANT, chunked(blobs[0]))
    assert await read_all(store, info.sha256) == blobs[0]


async def test_a_failed_group_leaves_blobs_of_earlier_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemBlobStore(tmp_path)
    earlier = await store.put(TENANT, chunked(b"committed before"))
    monkeypatch.setattr(fs, "_syncfs", FailingSyncfs(tmp_path, "second", "returns -1"))
    outcomes = await asyncio.gather(
        store.put(TENANT, chunked(b"committed before")),
        store.put(TENANT, chunked(b"new")),
        return_exceptions=True,
    )
    assert all(isinstance(outcome, OSError) for outcome in outcomes), outcomes
    assert await store.stat(TENANT, earlier.sha256) == earlier
    assert await read_all(store, earlier.sha256) == b"committed before"
    assert not await store.exists(TENANT, hashlib.sha256(b"new").hexdigest())
    assert tmp_files(tmp_path) == []


async def test_put_cancelled_while_waiting_for_its_commit(tmp_path: Path, gate: SyncfsGate) -> None:
    store = FilesystemBlobStore(tmp_path)
    blobs = {name: os.urandom(5000) for name in ("a", "b", "c", "d", "e")}
    a = asyncio.create_task(store.put(TENANT, chunked(blobs["a"])))
    await gate.wait_entered()  # a's commit is running
    b, c, d = (asyncio.create_task(store.put(TENANT, chunked(blobs[n]))) for n in "bcd")
    await eventually(lambda: store.puts_awaiting_commit == 3)
    a.cancel()  # its group is in flight
    b.cancel()  # its group has not started yet
    for task in (a, b):
        with pytest.raises(asyncio.CancelledError):
            await task
    # The committer, not the cancelled puts, releases their files, after their commits.
    assert len(tmp_files(tmp_path)) == 4
    gate.release.set()
    assert await c == expected_info(blobs["c"])
    assert await d == expected_info(blobs["d"])
    # Commits run one at a time: once a later put returns, a's and b's groups are over.
    assert await store.put(TENANT, chunked(blobs["e"])) == expected_info(blobs["e"])
    assert (store.commit_groups, store.committed_puts) == (3, 5)

    for name in "abcde":
        info = expected_info(blobs[name])
        path = blob_path(tmp_path, info.sha256)
        if path.exists():  # a cancelled put's blob: complete or absent
            assert path.read_bytes() == blobs[name]
            assert await store.stat(TENANT, info.sha256) == info
        else:
            assert name in "ab"
    assert tmp_files(tmp_path) == []
    assert store.cleanup_temporary() == 0


async def test_put_cancelled_before_joining_a_group_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemBlobStore(tmp_path)
    in_prepare = threading.Event()
    release = threading.Event()
    real_prepare = fs._PendingPut.prepare

    def slow_prepare(
        self: fs._PendingPut, chunks: list[bytes], expected_sha256: str | None
    ) -> BlobInfo:
        in_prepare.set()
        release.wait(10)
        return real_prepare(self, chunks, expected_sha256)

    monkeypatch.setattr(fs._PendingPut, "prepare", slow_prepare)
    put = asyncio.create_task(store.put(TENANT, chunked(os.urandom(5000))))
    assert await asyncio.to_thread(in_prepare.wait, 10)
    put.cancel()
    with pytest.raises(asyncio.CancelledError):
        await put
    release.set()
    await eventually(lambda: tmp_files(tmp_path) == [])  # removed once the thread returns
    assert stored_files(tmp_path) == []
    assert (store.commit_groups, store.puts_awaiting_commit) == (0, 0)

    monkeypatch.setattr(fs._PendingPut, "prepare", real_prepare)
    info = await store.put(TENANT, chunked(b"after"))
    assert await read_all(store, info.sha256) == b"after"
    assert store.commit_groups == 1
