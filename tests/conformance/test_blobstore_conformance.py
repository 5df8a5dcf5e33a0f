"""Behaviour every BlobStore adapter must share, run against each of them."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import pytest

from archive.blobstore import (
    BlobDigestMismatch,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    FilesystemBlobStore,
    InMemoryBlobStore,
    InvalidBlobKey,
    PackBlobStore,
)
from archive.blobstore.filesystem import syncfs_available
from archive.blobstore.pack import SPILL_BYTES

TENANT = "acme"
OTHER_TENANT = "globex"
MiB = 1024 * 1024


# The filesystem adapter in each of its commit modes (see archive.blobstore.filesystem), and
# the pack adapter (segment files, see archive.blobstore.pack).
@pytest.fixture(params=["memory", "filesystem-group", "filesystem-per-file", "pack"])
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "memory":
        yield InMemoryBlobStore()
        return
    if request.param == "pack":
        pack = PackBlobStore(tmp_path / "blobs")
        yield pack
        pack.close()
        return
    mode = request.param.removeprefix("filesystem-")
    if mode == "group" and not syncfs_available():
        pytest.skip("group commit needs syncfs(2) in libc")
    store = FilesystemBlobStore(tmp_path / "blobs", commit=mode)
    assert store.commit_mode == mode
    yield store


async def chunked(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def from_parts(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read_all(
    store: BlobStore, tenant: str, sha256: str, chunk_size: int = 64 * 1024
) -> bytes:
    async with await store.open(tenant, sha256, chunk_size=chunk_size) as stream:
        return b"".join([chunk async for chunk in stream])


def expected_info(tenant: str, data: bytes) -> BlobInfo:
    return BlobInfo(
        tenant, hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest(), len(data)
    )


def assert_nothing_stored(store: BlobStore) -> None:
    """No blob at all, and for the file-based adapters no file anywhere (no blob, sidecar,
    segment or temporary file)."""
    if isinstance(store, InMemoryBlobStore):
        assert len(store) == 0
    elif isinstance(store, FilesystemBlobStore | PackBlobStore):
        # Pack: segments are created by the first commit, so no segment, no temporary file.
        files = [p for p in store.root.rglob("*") if not p.is_dir()]
        assert files == []
    else:  # pragma: no cover - a new adapter must teach this helper how to look
        raise AssertionError(f"unknown adapter {type(store)}")


async def test_round_trip_digests_match_hashlib(blob_store: BlobStore) -> None:
    data = b"the quick brown fox jumps over the lazy dog\n" * 1000
    info = await blob_store.put(TENANT, chunked(data, 1000))
    assert info == expected_info(TENANT, data)
    assert await blob_store.exists(TENANT, info.sha256)
    assert await blob_store.stat(TENANT, info.sha256) == info
    assert await read_all(blob_store, TENANT, info.sha256) == data


async def test_empty_blob(blob_store: BlobStore) -> None:
    info = await blob_store.put(TENANT, from_parts([]))
    assert info == expected_info(TENANT, b"")
    assert info.sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert await blob_store.stat(TENANT, info.sha256) == info
    assert await read_all(blob_store, TENANT, info.sha256) == b""


async def test_empty_chunks_are_ignored(blob_store: BlobStore) -> None:
    info = await blob_store.put(TENANT, from_parts([b"", b"ab", b"", b"c", b""]))
    assert info == expected_info(TENANT, b"abc")


async def test_large_multi_chunk_blob(blob_store: BlobStore) -> None:
    data = os.urandom(5 * MiB + 123)
    # Irregular chunk sizes, so buffering boundaries never line up with chunk boundaries.
    sizes = [1, 4095, 64 * 1024, 777_777, 3 * MiB]
    parts: list[bytes] = []
    pos = 0
    while pos < len(data):
        size = sizes[len(parts) % len(sizes)]
        parts.append(data[pos : pos + size])
        pos += size
    info = await blob_store.put(TENANT, from_parts(parts), expected_sha256=None)
    assert info == expected_info(TENANT, data)
    assert await blob_store.stat(TENANT, info.sha256) == info
    assert await read_all(blob_store, TENANT, info.sha256) == data


async def test_read_in_small_chunks(blob_store: BlobStore) -> None:
    data = os.urandom(10_000)
    info = await blob_store.put(TENANT, chunked(data))
    async with await blob_store.open(TENANT, info.sha256, chunk_size=1000) as stream:
        chunks = [chunk async for chunk in stream]
    assert all(0 < len(chunk) <= 1000 for chunk in chunks)
    assert b"".join(chunks) == data


async def test_stream_closed_early_then_iteration_ends(blob_store: BlobStore) -> None:
    data = os.urandom(100_000)
    info = await blob_store.put(TENANT, chunked(data))
    stream = await blob_store.open(TENANT, info.sha256, chunk_size=1000)
    assert await anext(stream) == data[:1000]
    await stream.aclose()
    await stream.aclose()  # idempotent
    assert [chunk async for chunk in stream] == []


async def test_bytearray_chunks_are_copied(blob_store: BlobStore) -> None:
    async def reused_buffer() -> AsyncIterator[bytes]:
        buf = bytearray(b"a" * 10)
        yield buf  # type: ignore[misc]  # producers sometimes hand out a buffer they reuse
        buf[:] = b"b" * 10
        yield buf  # type: ignore[misc]

    info = await blob_store.put(TENANT, reused_buffer())
    assert info == expected_info(TENANT, b"a" * 10 + b"b" * 10)
    assert await read_all(blob_store, TENANT, info.sha256) == b"a" * 10 + b"b" * 10


async def test_buffer_chunks_are_counted_in_bytes(blob_store: BlobStore) -> None:
    data = os.urandom(1000)

    async def words() -> AsyncIterator[bytes]:
        yield memoryview(data).cast("H")  # type: ignore[misc]  # len() is 500 items here

    info = await blob_store.put(TENANT, words())
    assert info == expected_info(TENANT, data)
    with pytest.raises(BlobTooLarge):
        await blob_store.put(TENANT, words(), max_size=999)


async def test_expected_digest_matching_is_accepted(blob_store: BlobStore) -> None:
    data = b"announced"
    sha = hashlib.sha256(data).hexdigest()
    info = await blob_store.put(TENANT, chunked(data), expected_sha256=sha)
    assert info.sha256 == sha


@pytest.mark.parametrize("size", [10, 3 * MiB])
async def test_expected_digest_mismatch_leaves_nothing(blob_store: BlobStore, size: int) -> None:
    data = os.urandom(size)
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(BlobDigestMismatch) as caught:
        await blob_store.put(TENANT, chunked(data), expected_sha256=wrong)
    assert caught.value.expected == wrong
    assert caught.value.actual == hashlib.sha256(data).hexdigest()
    for sha in (wrong, hashlib.sha256(data).hexdigest()):
        assert not await blob_store.exists(TENANT, sha)
        with pytest.raises(BlobNotFound):
            await blob_store.stat(TENANT, sha)
    assert_nothing_stored(blob_store)


@pytest.mark.parametrize("chunk_size", [1000, MiB])
async def test_max_size_exceeded_leaves_nothing(blob_store: BlobStore, chunk_size: int) -> None:
    data = os.urandom(5 * MiB)
    with pytest.raises(BlobTooLarge) as caught:
        await blob_store.put(TENANT, chunked(data, chunk_size), max_size=3 * MiB)
    assert caught.value.max_size == 3 * MiB
    with pytest.raises(BlobNotFound):
        await blob_store.stat(TENANT, hashlib.sha256(data).hexdigest())
    assert_nothing_stored(blob_store)


async def test_max_size_is_inclusive(blob_store: BlobStore) -> None:
    data = os.urandom(1000)
    info = await blob_store.put(TENANT, chunked(data, 100), max_size=1000)
    assert info.size == 1000
    with pytest.raises(BlobTooLarge):
        await blob_store.put(TENANT, chunked(data + b"x", 100), max_size=1000)


async def test_tenant_isolation(blob_store: BlobStore) -> None:
    data = b"tenant a's secret"
    info = await blob_store.put(TENANT, chunked(data))
    assert not await blob_store.exists(OTHER_TENANT, info.sha256)
    with pytest.raises(BlobNotFound):
        await blob_store.stat(OTHER_TENANT, info.sha256)
    with pytest.raises(BlobNotFound):
        await blob_store.open(OTHER_TENANT, info.sha256)
    # The other tenant storing the same bytes gets its own copy, with its own tenant.
    other = await blob_store.put(OTHER_TENANT, chunked(data))
    assert other == expected_info(OTHER_TENANT, data)
    assert await blob_store.stat(TENANT, info.sha256) == info


async def test_missing_blob_is_not_found(blob_store: BlobStore) -> None:
    sha = hashlib.sha256(b"never stored").hexdigest()
    assert not await blob_store.exists(TENANT, sha)
    with pytest.raises(BlobNotFound) as caught:
        await blob_store.stat(TENANT, sha)
    assert (caught.value.tenant, caught.value.sha256) == (TENANT, sha)
    # Raised by open itself, not deferred to the first chunk.
    with pytest.raises(BlobNotFound):
        await blob_store.open(TENANT, sha)


GOOD_SHA = hashlib.sha256(b"x").hexdigest()
BAD_TENANTS = ["../x", "A", "", "-a", "a/b", "a\n", "a" * 64, "ä", ".", "a_b"]
BAD_DIGESTS = ["zz", "", GOOD_SHA.upper(), GOOD_SHA[:-1], GOOD_SHA + "0", "../" + GOOD_SHA[3:]]


@pytest.mark.parametrize("tenant", BAD_TENANTS)
async def test_invalid_tenant(blob_store: BlobStore, tenant: str) -> None:
    with pytest.raises(InvalidBlobKey):
        await blob_store.put(tenant, chunked(b"x"))
    with pytest.raises(InvalidBlobKey):
        await blob_store.stat(tenant, GOOD_SHA)
    with pytest.raises(InvalidBlobKey):
        await blob_store.exists(tenant, GOOD_SHA)
    with pytest.raises(InvalidBlobKey):
        await blob_store.open(tenant, GOOD_SHA)
    assert_nothing_stored(blob_store)


@pytest.mark.parametrize("sha256", BAD_DIGESTS)
async def test_invalid_digest(blob_store: BlobStore, sha256: str) -> None:
    with pytest.raises(InvalidBlobKey):
        await blob_store.stat(TENANT, sha256)
    with pytest.raises(InvalidBlobKey):
        await blob_store.exists(TENANT, sha256)
    with pytest.raises(InvalidBlobKey):
        await blob_store.open(TENANT, sha256)
    with pytest.raises(InvalidBlobKey):
        await blob_store.put(TENANT, chunked(b"x"), expected_sha256=sha256)
    assert_nothing_stored(blob_store)


async def test_longest_valid_tenant(blob_store: BlobStore) -> None:
    tenant = "a" + "-9" * 31  # 63 characters
    info = await blob_store.put(tenant, chunked(b"x"))
    assert await blob_store.stat(tenant, info.sha256) == info


async def test_idempotent_double_put(blob_store: BlobStore) -> None:
    data = os.urandom(30_000)
    first = await blob_store.put(TENANT, chunked(data))
    second = await blob_store.put(TENANT, chunked(data, 7), expected_sha256=first.sha256)
    assert first == second
    assert await read_all(blob_store, TENANT, first.sha256) == data


async def test_concurrent_puts_of_same_content(blob_store: BlobStore) -> None:
    data = os.urandom(2 * MiB)

    async def slowly() -> AsyncIterator[bytes]:
        async for chunk in chunked(data, 256 * 1024):
            await asyncio.sleep(0)  # interleave the puts
            yield chunk

    infos = await asyncio.gather(*(blob_store.put(TENANT, slowly()) for _ in range(8)))
    assert set(infos) == {expected_info(TENANT, data)}
    assert await read_all(blob_store, TENANT, infos[0].sha256) == data


async def test_concurrent_puts_of_different_content(blob_store: BlobStore) -> None:
    blobs = [os.urandom(1000 + i) for i in range(50)]
    infos = await asyncio.gather(*(blob_store.put(TENANT, chunked(b, 300)) for b in blobs))
    for data, info in zip(blobs, infos, strict=True):
        assert info == expected_info(TENANT, data)
        assert await read_all(blob_store, TENANT, info.sha256) == data


class ProducerFailed(Exception):
    pass


@pytest.mark.parametrize("before_failure", [0, 1000, 3 * MiB])
async def test_failing_chunk_iterator_leaves_nothing(
    blob_store: BlobStore, before_failure: int
) -> None:
    async def failing() -> AsyncIterator[bytes]:
        async for chunk in chunked(os.urandom(before_failure), 512 * 1024):
            yield chunk
        raise ProducerFailed("client went away")

    with pytest.raises(ProducerFailed):
        await blob_store.put(TENANT, failing())
    assert_nothing_stored(blob_store)


async def test_cancelled_put_leaves_nothing(blob_store: BlobStore) -> None:
    blocked = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield os.urandom(2 * MiB)  # enough to be flushed to a temporary file first
        blocked.set()
        await asyncio.Event().wait()
        yield b"never"  # pragma: no cover

    task = asyncio.create_task(blob_store.put(TENANT, stalls()))
    await asyncio.wait_for(blocked.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_nothing_stored(blob_store)


async def test_what_is_stored_is_for_the_service_user_only(
    usual_umask: None, blob_store: BlobStore
) -> None:
    """Every tenant's documents are on this disk: nobody but the service user may read them,
    whatever the umask (files without group or other bits, directories 0700)."""
    if isinstance(blob_store, InMemoryBlobStore):
        pytest.skip("keeps nothing on disk")
    assert isinstance(blob_store, FilesystemBlobStore | PackBlobStore)
    await blob_store.put(TENANT, chunked(os.urandom(1000)))
    await blob_store.put(OTHER_TENANT, chunked(os.urandom(SPILL_BYTES + 1)))  # through tmp/
    root = blob_store.root
    directories = [root, *(p for p in root.rglob("*") if p.is_dir())]
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(directories) > 3 and len(files) >= 2
    assert {p: stat.S_IMODE(p.stat().st_mode) for p in directories} == dict.fromkeys(
        directories, 0o700
    )
    for path in files:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0 and mode & stat.S_IRUSR, (path, oct(mode))
