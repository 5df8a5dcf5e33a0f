"""PackBlobStore: group commit, several writers and readers on one root, segment rolling,
recovery of torn tails, failing syncs, cancellation, spilled blobs, tenant isolation."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from waiting import eventually

from archive.blobstore import BlobInfo, BlobNotFound, PackBlobStore, pack

TENANT = "acme"
OTHER_TENANT = "globex"
MiB = 1024 * 1024
REAL_FDATASYNC: Callable[[int], None] = pack._fdatasync


async def chunked(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def expected_info(data: bytes, tenant: str = TENANT) -> BlobInfo:
    return BlobInfo(
        tenant, hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest(), len(data)
    )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def read_all(
    store: PackBlobStore, sha256: str, tenant: str = TENANT, chunk_size: int = 64 * 1024
) -> bytes:
    async with await store.open(tenant, sha256, chunk_size=chunk_size) as stream:
        return b"".join([chunk async for chunk in stream])


async def assert_absent(store: PackBlobStore, sha256: str, tenant: str = TENANT) -> None:
    assert not await store.exists(tenant, sha256)
    with pytest.raises(BlobNotFound):
        await store.stat(tenant, sha256)
    with pytest.raises(BlobNotFound):
        await store.open(tenant, sha256)


def segments(root: Path, tenant: str = TENANT) -> list[Path]:
    packs = root / tenant / "packs"
    return sorted(packs.iterdir()) if packs.exists() else []


def is_held(path: Path) -> bool:
    """Whether a writer holds the segment's flock."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def record(data: bytes) -> bytes:
    """A complete blob record, as the store writes it."""
    header = pack.encode_record_header(
        len(data), hashlib.sha256(data).digest(), hashlib.sha512(data).digest()
    )
    return header + data


def committed_records(path: Path) -> list[str]:
    """SHA-256 of every record followed by a commit marker."""
    fd = os.open(path, os.O_RDONLY)
    try:
        scan = pack._scan_segment(fd, str(path), 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    return [r.sha256 for r in scan.committed]


@pytest.fixture
def stores() -> Iterator[list[PackBlobStore]]:
    """Stores a test opens, closed at its end (their flocks released)."""
    opened: list[PackBlobStore] = []
    yield opened
    for store in opened:
        store.close()


class FdatasyncGate:
    """Replaces `pack._fdatasync`: the first call waits in its thread until released (so that
    a test can line puts up behind a commit known to be running); the calls numbered in
    `fail_calls` raise EIO, the others sync for real."""

    def __init__(self, fail_calls: tuple[int, ...] = ()) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_calls = fail_calls
        self.calls = 0

    def __call__(self, fd: int) -> None:
        self.calls += 1
        call = self.calls
        if call == 1:
            self.entered.set()
            self.release.wait(60)
        if call in self.fail_calls:
            raise OSError(errno.EIO, "injected fdatasync failure")
        REAL_FDATASYNC(fd)

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 30)


def install_gate(
    monkeypatch: pytest.MonkeyPatch, fail_calls: tuple[int, ...] = ()
) -> FdatasyncGate:
    gate = FdatasyncGate(fail_calls)
    monkeypatch.setattr(pack, "_fdatasync", gate)
    return gate


# -- group commit ----------------------------------------------------------------------------


async def test_concurrent_puts_commit_in_fewer_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stores: list[PackBlobStore]
) -> None:
    store = PackBlobStore(tmp_path)
    stores.append(store)
    gate = install_gate(monkeypatch)
    group_sizes: list[int] = []
    commit_group = store._commit_group

    def counting(group: list[pack._PendingPut]) -> list[BlobInfo | Exception]:
        group_sizes.append(len(group))
        return commit_group(group)

    monkeypatch.setattr(store, "_commit_group", counting)
    blobs = [os.urandom(30_000 + i) for i in range(200)]
    puts = [asyncio.create_task(store.put(TENANT, chunked(b, 7000))) for b in blobs]
    try:
        await gate.wait_entered()  # the first group's fdatasync is running
        # Every other put becomes ready meanwhile and waits for the next commit.
        await eventually(lambda: group_sizes[0] + store.puts_awaiting_commit == 200)
    finally:
        gate.release.set()
    infos = await asyncio.gather(*puts)
    assert (store.commit_groups, store.committed_puts) == (2, 200)
    assert len(group_sizes) == 2 and sum(group_sizes) == 200
    assert gate.calls == 2  # one fdatasync per group (one tenant, one segment)
    for data, info in zip(blobs, infos, strict=True):
        assert info == expected_info(data)
        assert await store.stat(TENANT, info.sha256) == info
        assert await read_all(store, info.sha256) == data
    [segment] = segments(tmp_path)
    assert sorted(committed_records(segment)) == sorted(info.sha256 for info in infos)


async def test_identical_content_is_stored_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stores: list[PackBlobStore]
) -> None:
    store = PackBlobStore(tmp_path)
    stores.append(store)
    gate = install_gate(monkeypatch)
    data = os.urandom(50_000)
    other = os.urandom(50_000)
    first = asyncio.create_task(store.put(TENANT, chunked(data)))
    try:
        await gate.wait_entered()
        # Not indexed yet when they look: they queue, and the next group finds `data` stored
        # by the first one; the twins of `other` share one record.
        puts = [
            asyncio.create_task(store.put(TENANT, chunked(content, 999)))
            for content in (data, data, other, other)
        ]
        await eventually(lambda: store.puts_awaiting_commit == 4)
    finally:
        gate.release.set()
    infos = await asyncio.gather(*puts)
    assert infos == [expected_info(data)] * 2 + [expected_info(other)] * 2
    assert await first == expected_info(data)
    # Stored already: a later put returns at once, without a commit.
    assert await store.put(TENANT, chunked(data)) == expected_info(data)
    assert (store.commit_groups, store.committed_puts) == (2, 5)
    [segment] = segments(tmp_path)
    assert committed_records(segment) == [sha(data), sha(other)]
    assert segment.stat().st_size == 2 * (len(record(data)) + pack.MARKER_SIZE)


async def test_small_reads_never_go_beyond_the_record(
    tmp_path: Path, stores: list[PackBlobStore]
) -> None:
    store = PackBlobStore(tmp_path)
    stores.append(store)
    first, second = os.urandom(10_000), os.urandom(10_000)
    a = await store.put(TENANT, chunked(first))
    await store.put(TENANT, chunked(second))
    assert await read_all(store, a.sha256, chunk_size=MiB) == first
    async with await store.open(TENANT, a.sha256, chunk_size=3000) as stream:
        sizes = [len(chunk) async for chunk in stream]
    assert sizes == [3000, 3000, 3000, 1000]


# -- several stores on one root ----------------------------------------------------------------


async def test_other_store_sees_committed_blobs_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stores: list[PackBlobStore]
) -> None:
    writer = PackBlobStore(tmp_path)
    other_writer = PackBlobStore(tmp_path)  # writable: would repair a segment nobody holds
    reader = PackBlobStore(tmp_path, writable=False)
    stores.extend([writer, other_writer, reader])
    early = await writer.put(TENANT, chunked(b"committed before"))
    gate = install_gate(monkeypatch)
    data = os.urandom(40_000)
    put = asyncio.create_task(writer.put(TENANT, chunked(data)))
    try:
        await gate.wait_entered()  # the record is written, not yet synced nor marked
        [segment] = segments(tmp_path)
        size_in_flight = segment.stat().st_size
        assert size_in_flight > len(record(b"committed before")) + len(data)
        for store in (other_writer, reader):
            assert await store.stat(TENANT, early.sha256) == early
            await assert_absent(store, sha(data))
        assert segment.stat().st_size == size_in_flight  # the live segment was left alone
        assert not put.done()
    finally:
        gate.release.set()
    info = await put
    for store in (other_writer, reader):  # a miss rescans, from where the last scan ended
        assert await store.exists(TENANT, info.sha256)
        assert await store.stat(TENANT, info.sha256) == info
        assert await read_all(store, info.sha256) == data
    later = await writer.put(TENANT, chunked(b"and one more"))
    assert await read_all(reader, later.sha256) == b"and one more"


async def test_two_writers_write_to_their_own_segments(
    tmp_path: Path, stores: list[PackBlobStore]
) -> None:
    first = PackBlobStore(tmp_path)
    second = PackBlobStore(tmp_path)
    stores.extend([first, second])
    blobs = [os.urandom(5000 + i) for i in range(20)]
    infos = []
    for i, data in enumerate(blobs):
        infos.append(await (first if i % 2 else second).put(TENANT, chunked(data)))
    names = [p.name for p in segments(tmp_path)]
    assert len(names) == 2
    writer_ids = {name.removesuffix(".pack").split("-")[1] for name in names}
    assert len(writer_ids) == 2
    assert all(is_held(p) for p in segments(tmp_path))
    for store in (first, second):
        for data, info in zip(blobs, infos, strict=True):
            assert await store.stat(TENANT, info.sha256) == info
            assert await read_all(store, info.sha256) == data


async def test_segments_roll_at_segment_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stores: list[PackBlobStore]
) -> None:
    store = PackBlobStore(tmp_path, segment_bytes=100_000)
    stores.append(store)
    synced_dirs: list[str] = []
    real_fsync_dir = pack.fsync_dir

    def recording(path: str) -> None:
        synced_dirs.append(path)
        real_fsync_dir(path)

    monkeypatch.setattr(pack, "fsync_dir", recording)
    blobs = [os.urandom(30_000) for _ in range(20)]
    infos = [await store.put(TENANT, chunked(b)) for b in blobs]
    paths = segments(tmp_path)
    assert len(paths) >= 4
    # Each new segment's name was made durable (once) before its first put returned.
    assert synced_dirs.count(str(tmp_path / TENANT / "packs")) == len(paths)
    assert paths == sorted(paths)  # names sort by creation
    for path in paths[:-1]:
        size = path.stat().st_size
        assert 100_000 <= size < 100_000 + len(record(blobs[0])) + pack.MARKER_SIZE
        assert not is_held(path)  # finished: released
    assert is_held(paths[-1])  # the current one
    stored = [s for path in paths for s in committed_records(path)]
    assert stored == [info.sha256 for info in infos]
    store.close()
    reopened = PackBlobStore(tmp_path, writable=False)
    for data, info in zip(blobs, infos, strict=True):
        assert await read_all(reopened, info.sha256) == data


# -- recovery --------------------------------------------------------------------------------


def torn_tail(kind: str, data: bytes) -> bytes:
    whole = record(data)
    if kind == "half a record":
        return whole[: pack.HEADER_SIZE + len(data) // 2]
    if kind == "half a header":
        return whole[: pack.HEADER_SIZE // 2]
    if kind == "corrupted content":
        return whole[:-1] + bytes([whole[-1] ^ 0xFF])
    if kind == "garbage":
        return os.urandom(1000)
    if kind == "valid then corrupted":
        return whole + torn_tail("corrupted content", data[::-1])
    raise AssertionError(kind)


TORN_KINDS = ["half a record", "half a header", "corrupted content", "garbage"]


@pytest.mark.parametrize("kind", [*TORN_KINDS, "valid then corrupted"])
async def test_torn_tail_is_cut_on_the_next_writable_open(
    tmp_path: Path, stores: list[PackBlobStore], kind: str
) -> None:
    store = PackBlobStore(tmp_path)
    blobs = [os.urandom(20_000) for _ in range(3)]
    infos = [await store.put(TENANT, chunked(b)) for b in blobs]
    store.close()  # as a crash would: nobody holds the segment
    [segment] = segments(tmp_path)
    good_size = segment.stat().st_size
    unsynced = os.urandom(20_000)
    with open(segment, "ab") as f:
        f.write(torn_tail(kind, unsynced))

    reader = PackBlobStore(tmp_path, writable=False)  # never repairs
    stores.append(reader)
    assert segment.stat().st_size > good_size
    assert await reader.stat(TENANT, infos[0].sha256) == infos[0]
    assert segment.stat().st_size > good_size

    recovered = PackBlobStore(tmp_path)
    stores.append(recovered)
    if kind == "valid then corrupted":
        # The complete, verified record is kept and marked; the corrupted one is cut.
        assert segment.stat().st_size == good_size + len(record(unsynced)) + pack.MARKER_SIZE
        assert await read_all(recovered, sha(unsynced)) == unsynced
    else:
        assert segment.stat().st_size == good_size
        await assert_absent(recovered, sha(unsynced))
    for data, info in zip(blobs, infos, strict=True):
        assert await recovered.stat(TENANT, info.sha256) == info
        assert await read_all(recovered, info.sha256) == data
    # The writable store appends to a segment of its own, not to the repaired one.
    after = await recovered.put(TENANT, chunked(b"after recovery"))
    assert len(segments(tmp_path)) == 2
    assert await read_all(recovered, after.sha256) == b"after recovery"


async def test_unmarked_complete_record_is_verified_and_kept(
    tmp_path: Path, stores: list[PackBlobStore]
) -> None:
    """A crash after a group's fdatasync, before its marker: the record is complete."""
    store = PackBlobStore(tmp_path)
    first = await store.put(TENANT, chunked(b"first"))
    store.close()
    [segment] = segments(tmp_path)
    good_size = segment.stat().st_size
    synced = os.urandom(30_000)
    with open(segment, "ab") as f:
        f.write(record(synced))
    reader = PackBlobStore(tmp_path, writable=False)
    stores.append(reader)
    await assert_absent(reader, sha(synced))  # not marked: not visible before recovery
    recovered = PackBlobStore(tmp_path)
    stores.append(recovered)
    assert segment.stat().st_size == good_size + len(record(synced)) + pack.MARKER_SIZE
    assert committed_records(segment) == [first.sha256, sha(synced)]
    assert await recovered.stat(TENANT, sha(synced)) == expected_info(synced)
    assert await read_all(reader, sha(synced)) == synced  # the reader's rescan finds it now


@pytest.mark.parametrize("kind", TORN_KINDS)
async def test_torn_tail_found_by_a_rescan_is_cut(
    tmp_path: Path, stores: list[PackBlobStore], kind: str
) -> None:
    crashed = PackBlobStore(tmp_path)
    info = await crashed.put(TENANT, chunked(b"before the crash"))
    running = PackBlobStore(tmp_path)  # started while the other writer was still alive
    stores.append(running)
    assert await running.stat(TENANT, info.sha256) == info  # index built
    crashed.close()
    [segment] = segments(tmp_path)
    good_size = segment.stat().st_size
    unsynced = os.urandom(10_000)
    with open(segment, "ab") as f:
        f.write(torn_tail(kind, unsynced))
    await assert_absent(running, sha(unsynced))  # the miss rescans, finds the tail, repairs
    assert segment.stat().st_size == good_size
    assert await read_all(running, info.sha256) == b"before the crash"


async def test_corruption_before_committed_data_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stores: list[PackBlobStore]
) -> None:
    store = PackBlobStore(tmp_path)
    a = await store.put(TENANT, chunked(b"a" * 1000))
    b = await store.put(TENANT, chunked(b"b" * 1000))
    store.close()
    [segment] = segments(tmp_path)
    raw = bytearray(segment.read_bytes())
    second_header = len(record(b"a" * 1000)) + pack.MARKER_SIZE
    raw[second_header + 20] ^= 0xFF  # a flipped bit in the second header: its CRC fails
    segment.write_bytes(bytes(raw))
    recovered = PackBlobStore(tmp_path)
    stores.append(recovered)
    assert segment.read_bytes() == bytes(raw)  # a valid marker follows: not a torn tail
    attempts: list[str] = []
    real_recover = pack._recover_segment

    def counting(path: str, start: int) -> pack._Scan | None:
        attempts.append(path)
        return real_recover(path, start)

    monkeypatch.setattr(pack, "_recover_segment", counting)
    assert await read_all(recovered, a.sha256) == b"a" * 1000
    for _ in range(2):
        await assert_absent(recovered, b.sha256)  # misses rescan, and leave it alone too
    assert segment.read_bytes() == bytes(raw)
    assert attempts == [str(segment)]  # the damage is remembered: searched once


# -- failures --------------------------------------------------------------------------------


async def test_failing_fdatasync_fails_every_put_of_the_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stores: list[PackBlobStore]
) -> None:
    store = PackBlobStore(tmp_path)
    stores.append(store)
    gate = install_gate(monkeypatch, fail_calls=(2,))  # the second group's fdatasync fails
    first = asyncio.create_task(store.put(TENANT, chunked(b"first group")))
    blobs = [os.urandom(20_000 + i) for i in range(5)]
    try:
        await gate.wait_entered()
        puts = [asyncio.create_task(store.put(TENANT, chunked(b))) for b in blobs]
        await eventually(lambda: store.puts_awaiting_commit == 5)
    finally:
        gate.release.set()
    outcomes = await asyncio.gather(*puts, return_exceptions=True)
    assert await first == expected_info(b"first group")
    for outcome in outcomes:
        assert isinstance(outcome, OSError), outcome
        assert outcome.errno == errno.EIO
    assert (store.commit_groups, store.committed_puts) == (2, 6)
    [segment] = segments(tmp_path)
    # Cut back to the end of the first group: nothing of the failed one is left.
    assert segment.stat().st_size == len(record(b"first group")) + pack.MARKER_SIZE
    reader = PackBlobStore(tmp_path, writable=False)
    stores.append(reader)
    for data in blobs:
        await assert_absent(store, sha(data))
        await assert_absent(reader, sha(data))
    # The store goes on: a later group succeeds, a retry too.
    later = await store.put(TENANT, chunked(b"later group"))
    retried = await store.put(TENANT, chunked(blobs[0]))
    assert retried == expected_info(blobs[0])
    for s in (store, reader):
        assert await read_all(s, later.sha256) == b"later group"
        assert await read_all(s, retried.sha256) == blobs[0]
    assert committed_records(segment) == [sha(b"first group"), later.sha256, retried.sha256]


async def test_segment_that_cannot_be_cut_is_abandoned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stores: list[PackBlobStore]
) -> None:
    store = PackBlobStore(tmp_path)
    first = await store.put(TENANT, chunked(b"kept"))
    [old_segment] = segments(tmp_path)
    calls = 0

    def failing_once(fd: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError(errno.EIO, "injected fdatasync failure")
        REAL_FDATASYNC(fd)

    def no_truncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "injected ftruncate failure")

    monkeypatch.setattr(pack, "_fdatasync", failing_once)
    monkeypatch.setattr(pack.os, "ftruncate", no_truncate)
    lost = os.urandom(10_000)
    with pytest.raises(OSError) as caught:
        await store.put(TENANT, chunked(lost))
    assert caught.value.errno == errno.EIO
    monkeypatch.undo()
    await assert_absent(store, sha(lost))
    assert is_held(old_segment)  # abandoned, but still held: nobody repairs it meanwhile
    later = await store.put(TENANT, chunked(b"later"))
    assert len(segments(tmp_path)) == 2  # rolled to a new segment
    store.close()
    recovered = PackBlobStore(tmp_path)
    stores.append(recovered)
    await assert_absent(recovered, sha(lost))
    assert old_segment.stat().st_size == len(record(b"kept")) + pack.MARKER_SIZE
    assert await read_all(recovered, first.sha256) == b"kept"
    assert await read_all(recovered, later.sha256) == b"later"


def open_temporary_files(root: Path) -> list[str]:
    """Descriptors of this process on files in the tenant's tmp/ (O_TMPFILE ones too)."""
    tmp_dir = str(root / TENANT / "tmp")
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith(tmp_dir + "/"):
            found.append(target)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
async def test_put_cancelled_while_streaming_leaves_nothing(
    tmp_path: Path, stores: list[PackBlobStore]
) -> None:
    store = PackBlobStore(tmp_path)
    stores.append(store)
    blocked = asyncio.Event()
    data = os.urandom(10 * MiB)  # above the spill threshold: a temporary file holds it

    async def stalls() -> AsyncIterator[bytes]:
        async for chunk in chunked(data, MiB):
            yield chunk
        blocked.set()
        await asyncio.Event().wait()
        yield b"never"  # pragma: no cover

    task = asyncio.create_task(store.put(TENANT, stalls()))
    await asyncio.wait_for(blocked.wait(), 30)
    assert len(open_temporary_files(tmp_path)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert open_temporary_files(tmp_path) == []
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == []
    await assert_absent(store, sha(data))
    assert store.commit_groups == 0


async def test_put_cancelled_while_waiting_for_its_commit_is_still_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stores: list[PackBlobStore]
) -> None:
    store = PackBlobStore(tmp_path)
    stores.append(store)
    gate = install_gate(monkeypatch)
    first = asyncio.create_task(store.put(TENANT, chunked(b"first")))
    data = os.urandom(25_000)
    try:
        await gate.wait_entered()
        waiting = asyncio.create_task(store.put(TENANT, chunked(data)))
        await eventually(lambda: store.puts_awaiting_commit == 1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    finally:
        gate.release.set()
    assert await first == expected_info(b"first")
    await eventually(lambda: store.commit_groups == 2)  # the group went on without it
    assert await store.stat(TENANT, sha(data)) == expected_info(data)
    assert await read_all(store, sha(data)) == data


async def test_large_blob_spills_and_round_trips(
    tmp_path: Path, stores: list[PackBlobStore]
) -> None:
    store = PackBlobStore(tmp_path)
    stores.append(store)
    data = os.urandom(20 * MiB + 17)
    sizes = [1, 4095, 64 * 1024, 777_777, 3 * MiB]  # never aligned with the batches
    parts, pos = [], 0
    while pos < len(data):
        size = sizes[len(parts) % len(sizes)]
        parts.append(data[pos : pos + size])
        pos += size

    async def from_parts() -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    small = await store.put(TENANT, chunked(b"small neighbour"))
    info = await store.put(TENANT, from_parts(), max_size=len(data))
    assert info == expected_info(data)
    assert await read_all(store, info.sha256, chunk_size=MiB) == data
    assert await read_all(store, small.sha256) == b"small neighbour"
    assert [p for p in tmp_path.rglob("*") if not p.is_dir() and p.suffix != ".pack"] == []
    store.close()
    reopened = PackBlobStore(tmp_path)
    stores.append(reopened)
    assert await reopened.stat(TENANT, info.sha256) == info
    assert await read_all(reopened, info.sha256, chunk_size=3 * MiB) == data


# -- tenants, reopening, read-only -----------------------------------------------------------


async def test_tenants_never_see_each_other(tmp_path: Path, stores: list[PackBlobStore]) -> None:
    store = PackBlobStore(tmp_path)
    stores.append(store)
    secret = await store.put(TENANT, chunked(b"acme's secret"))
    other = await store.put(OTHER_TENANT, chunked(b"globex's own"))
    await assert_absent(store, secret.sha256, OTHER_TENANT)
    await assert_absent(store, other.sha256, TENANT)
    second = PackBlobStore(tmp_path, writable=False)
    stores.append(second)
    await assert_absent(second, secret.sha256, OTHER_TENANT)
    assert await read_all(second, secret.sha256) == b"acme's secret"
    assert await read_all(second, other.sha256, OTHER_TENANT) == b"globex's own"
    assert len(segments(tmp_path)) == 1 and len(segments(tmp_path, OTHER_TENANT)) == 1


async def test_index_is_rebuilt_after_reopening(
    tmp_path: Path, stores: list[PackBlobStore]
) -> None:
    store = PackBlobStore(tmp_path)
    blobs = {
        tenant: [os.urandom(1000 * (i + 1)) for i in range(15)] for tenant in (TENANT, OTHER_TENANT)
    }
    infos = {
        tenant: await asyncio.gather(*(store.put(tenant, chunked(b)) for b in data))
        for tenant, data in blobs.items()
    }
    await store.put(TENANT, chunked(b""))
    store.close()
    sizes = {p: p.stat().st_size for p in tmp_path.rglob("*.pack")}
    for writable in (True, False):
        reopened = PackBlobStore(tmp_path, writable=writable)
        stores.append(reopened)
        assert await reopened.stat(TENANT, sha(b"")) == expected_info(b"")
        for tenant, data in blobs.items():
            for content, info in zip(data, infos[tenant], strict=True):
                assert await reopened.stat(tenant, info.sha256) == info
                assert await read_all(reopened, info.sha256, tenant) == content
    assert {p: p.stat().st_size for p in tmp_path.rglob("*.pack")} == sizes  # untouched


async def test_read_only_store_refuses_puts(tmp_path: Path) -> None:
    store = PackBlobStore(tmp_path / "missing", writable=False)
    with pytest.raises(PermissionError):
        await store.put(TENANT, chunked(b"x"))
    await assert_absent(store, sha(b"x"))
    assert not (tmp_path / "missing").exists()
