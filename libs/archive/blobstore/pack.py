"""Pack blob store: blobs appended to per-tenant segment files, made durable by group commit.

Why: on the 2-core VM the ingest service runs on, creating a file costs ~600 us of kernel CPU
(measured: open(O_CREAT|O_EXCL) of an empty file ~625 us sys, appending 30 KB to an already
open file ~10 us sys). The one-file-per-blob FilesystemBlobStore therefore spends more than
1 ms of CPU per 30 KB document, far from the target of 1,000 deposits/s. Here a put costs one
append to an open file plus its share of one fdatasync per group.

Layout under `root` (directories 0700, files 0600: for the service user only):
    <tenant>/packs/<20-digit time_ns>-<12 hex writer id>.pack    segments, append-only
    <tenant>/tmp/                                                 puts above SPILL_BYTES spill
                                                                  here (O_TMPFILE: no name)
Names sort by creation. The writer id is random per store instance, so several processes (or
instances) sharing `root` never append to the same file: a writer appends only to segments it
created, holds an exclusive flock on each of them for as long as it may write to it, and rolls
to a new one once the current one reached `segment_bytes`. A segment nobody holds a flock on
is finished, or was left by a crash.

Records (little-endian), one after the other:
    blob:   b"ARBLOB1\\0" | size u64 | SHA-256 (32 raw) | SHA-512 (64 raw) | CRC32 of the
            preceding 112 header bytes u32 | the content (size bytes)
    commit: b"ARCOMIT\\0" | offset of this marker u64 | CRC32 of the preceding 16 bytes u32
The format describes itself, so the index is rebuilt by scanning headers (seeking over the
content). A scan stops at the first incomplete header, bad magic, bad CRC, marker not at its
own offset, or content running past the end of the file (a record being written, a torn tail).

Durability. A put streams its chunks while hashing (SHA-256, SHA-512, size; max_size enforced
on the way), in memory up to SPILL_BYTES and in a temporary file beyond; any failure in this
phase (mismatch, oversize, failing iterator, cancellation) drops the buffer or file: nothing
reached a segment. A put then joins the group committer: one commit at a time, in an executor
thread, for every put ready when it starts (puts ready meanwhile wait for the next one, so
groups grow with the load, without a timer). One commit:
    1. per tenant, the records of new content (deduplicated within the group and against the
       index) are appended to the tenant's current segment with pwritev at a tracked offset;
    2. fdatasync of every segment touched, and fsync of the packs directory when a segment was
       created, so that its name is durable too;
    3. a commit marker is appended to each touched segment, after the sync: a marker proves
       that every record before it was on disk;
    4. the records enter the in-memory index and the puts return.
If a write or sync fails, every put of the group fails with that OSError, and each touched
segment is truncated back to where the group began (and fdatasynced, so that the cut survives
a crash); if that fails too, the writer overwrites the group's first magic (best effort),
abandons the segment (keeping its flock until the store is closed, so that nobody repairs it
meanwhile) and rolls to a new one. Nothing of a failed group is ever readable. A put cancelled
while it waits for its commit only stops waiting: the group goes on.

Readers only index records followed by a commit marker, so another process never sees a blob
whose put has not returned (its group is not synced yet, and may still be cut off).

Recovery. A crash may leave records after a segment's last marker: never synced, or synced but
not marked (the marker itself is not synced, the next group's fdatasync or recovery makes it
durable). A writable store repairs segments nobody holds (it takes LOCK_EX|LOCK_NB itself, so
a live writer's segment is never touched; readers take no lock, so they never block writers):
at construction for every segment not ending with a marker, and when a scan finds an unmarked
tail. The records of the tail are re-hashed; the file is truncated at the first one whose
SHA-256 does not match or that is incomplete, the rest is fdatasynced and gets a marker (their
puts never returned; keeping complete, verified content is harmless and a retry dedupes).
Records before the last marker are trusted (their header CRC is still checked). If a valid
marker turns up after the point where the scan stopped, the damage is not a torn tail but
corruption inside committed data: the file is left alone and a warning logged.

Multi-process readers (the search service reads what ingest wrote): on a miss, open, stat and
exists rescan the tenant, each segment from the offset already scanned (segments are
append-only) plus new segment files. Puts do not rescan on a miss (the common case): content
stored concurrently by another process is then stored twice, which is harmless.

Known limits:
- no deletion: retention and destruction will need segment compaction (rewriting segments
  without the destroyed blobs) or per-document encryption keys (crypto-shredding);
- the index lives in memory (~360 bytes per blob: ~360 MB per million) and is rebuilt by
  scanning every segment of a tenant on its first use (seconds per million blobs); a
  persisted index snapshot (and a more compact index) is future work;
- a corrupt record hides the rest of its segment from the index (no resynchronisation yet);
- acked blobs whose marker was lost in a crash stay invisible to read-only stores until a
  writable store has recovered their segment;
- if cutting a failed group off fails, and so does overwriting its first magic, the records
  stay in the abandoned segment; once its writer is gone, a recovery that finds them intact
  keeps them (complete, verified content, but of puts that failed).

Blocking calls run in the executor passed to the constructor (None: the loop's default one),
and so does the hashing of large puts (hashlib releases the GIL). A put of at most
_INLINE_HASH_BYTES (64 KiB) in all is hashed on the event loop instead (~80 us for 30 KB on the
VM above): the thread hop it saves cost more CPU than the hashing (measured with 30 KB puts,
64 in flight: ~260 us of CPU per put with the hop, ~110 us without). A store is used from one
event loop at a time; executor threads share the index and the writer state under threading
locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import struct
import threading
import time
import weakref
import zlib
from collections.abc import AsyncIterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, NamedTuple, TypeVar

from archive.blobstore.committing import GroupCommitter, Worker, stream_in_batches
from archive.blobstore.errors import BlobNotFound, InvalidBlobKey
from archive.blobstore.port import (
    DEFAULT_CHUNK_SIZE,
    BlobDigester,
    BlobInfo,
    BlobStore,
    BlobStream,
    validate_chunk_size,
    validate_key,
    validate_put_arguments,
    validate_tenant,
)
from archive.files import PRIVATE_FILE, ensure_dir, fsync_dir

T = TypeVar("T")

log = logging.getLogger(__name__)

RECORD_MAGIC: Final = b"ARBLOB1\0"
MARKER_MAGIC: Final = b"ARCOMIT\0"
_HEADER: Final = struct.Struct("<8sQ32s64s")  # magic, size, SHA-256, SHA-512
_MARKER: Final = struct.Struct("<8sQ")  # magic, offset of the marker itself
_CRC: Final = struct.Struct("<I")
HEADER_SIZE: Final = _HEADER.size + _CRC.size  # 116
MARKER_SIZE: Final = _MARKER.size + _CRC.size  # 20

DEFAULT_SEGMENT_BYTES: Final = 1 << 30
# A put holds up to this much in memory, then spills to a temporary file: with 32 documents in
# flight per UploadMany stream, memory stays near 1 MiB a document whatever their sizes.
SPILL_BYTES: Final = 1024 * 1024
_HASH_BATCH: Final = 1024 * 1024  # chunks are hashed (and spilled) in the executor by this much
_INLINE_HASH_BYTES: Final = 64 * 1024  # smaller puts are hashed on the event loop
_IOV_MAX: Final = 512  # buffers per pwritev (Linux allows 1024)
_READ_CHUNK: Final = 1024 * 1024
_SEGMENT_RE: Final = re.compile(r"\d{20}-[0-9a-f]{12}\.pack")
_TMP_SUFFIX: Final = ".tmp"


def encode_record_header(size: int, sha256: bytes, sha512: bytes) -> bytes:
    """The header of a blob record (the content follows it)."""
    head = _HEADER.pack(RECORD_MAGIC, size, sha256, sha512)
    return head + _CRC.pack(zlib.crc32(head))


def encode_marker(offset: int) -> bytes:
    """A commit marker written at `offset`."""
    head = _MARKER.pack(MARKER_MAGIC, offset)
    return head + _CRC.pack(zlib.crc32(head))


def _fdatasync(fd: int) -> None:
    """Module level, so that tests can make it fail or wait."""
    os.fdatasync(fd)


def _pwritev_all(fd: int, buffers: list[bytes], offset: int) -> None:
    views = [memoryview(b) for b in buffers if b]
    i = 0
    while i < len(views):
        written = os.pwritev(fd, views[i : i + _IOV_MAX], offset)
        if written == 0:
            raise OSError(errno.EIO, "pwritev wrote nothing")
        offset += written
        while i < len(views) and written >= len(views[i]):
            written -= len(views[i])
            i += 1
        if written:
            views[i] = views[i][written:]


def _pread_exact(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) == size:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, size - got, offset + got)
        if not more:
            raise OSError(errno.EIO, f"segment ends {size - got} bytes short inside a record")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _copy_into(src: int, dst: int, count: int, dst_offset: int) -> None:
    """Copy `count` bytes from the start of `src` to `dst` at `dst_offset` (in the kernel
    where the filesystem allows, else through a buffer)."""
    done = 0
    while done < count:
        try:
            copied = os.copy_file_range(src, dst, count - done, done, dst_offset + done)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            break
        if copied == 0:
            raise OSError(errno.EIO, "temporary file shorter than the blob")
        done += copied
    while done < count:
        data = os.pread(src, min(_READ_CHUNK, count - done), done)
        if not data:
            raise OSError(errno.EIO, "temporary file shorter than the blob")
        _pwritev_all(dst, [data], dst_offset + done)
        done += len(data)


def _not_stored(cause: Exception, step: str) -> OSError:
    """The error a put of a failed group commit raises (one instance per put)."""
    err = cause.errno if isinstance(cause, OSError) and cause.errno else errno.EIO
    exc = OSError(err, f"group commit failed at {step}: {cause}; the blob was not stored")
    exc.__cause__ = cause
    return exc


# -- scanning ------------------------------------------------------------------------------


class _Entry(NamedTuple):
    """Where a committed blob is: what the index keeps per (tenant, sha256)."""

    path: str  # the segment
    offset: int  # of the content
    size: int
    sha512: bytes  # raw


class _Record(NamedTuple):
    start: int  # offset of the header
    sha256: str
    entry: _Entry

    @property
    def end(self) -> int:
        return self.entry.offset + self.entry.size


@dataclass
class _Scan:
    committed: list[_Record]  # records followed by a marker
    committed_end: int  # offset just after the last marker seen (or where the scan began)
    tail: list[_Record] = field(default_factory=list)  # complete records after the last marker
    stop: int = 0  # where parsing stopped
    damaged: bool = False  # recovery found corruption before committed data, left it alone


def _scan_segment(fd: int, path: str, start: int, size: int) -> _Scan:
    """Parse records from `start` (a record boundary) up to `size`, seeking over contents."""
    scan = _Scan([], start, stop=start)
    pos = start
    while size - pos >= len(RECORD_MAGIC):
        head = os.pread(fd, min(HEADER_SIZE, size - pos), pos)
        magic = head[: len(RECORD_MAGIC)]
        if magic == RECORD_MAGIC:
            if len(head) < HEADER_SIZE:
                break
            (crc,) = _CRC.unpack_from(head, _HEADER.size)
            if crc != zlib.crc32(head[: _HEADER.size]):
                break
            _, length, sha256, sha512 = _HEADER.unpack_from(head)
            content = pos + HEADER_SIZE
            if content + length > size:
                break
            scan.tail.append(_Record(pos, sha256.hex(), _Entry(path, content, length, sha512)))
            pos = content + length
        elif magic == MARKER_MAGIC:
            if len(head) < MARKER_SIZE:
                break
            _, at = _MARKER.unpack_from(head)
            (crc,) = _CRC.unpack_from(head, _MARKER.size)
            if at != pos or crc != zlib.crc32(head[: _MARKER.size]):
                break
            scan.committed.extend(scan.tail)
            scan.tail = []
            pos += MARKER_SIZE
            scan.committed_end = pos
        else:
            break
    scan.stop = pos
    return scan


def _ends_with_marker(fd: int, size: int) -> bool:
    """Cheap start-up check: does the segment end with its own commit marker?"""
    if size < MARKER_SIZE:
        return False
    tail = os.pread(fd, MARKER_SIZE, size - MARKER_SIZE)
    return tail == encode_marker(size - MARKER_SIZE)


def _valid_marker_after(fd: int, start: int, size: int) -> bool:
    """Whether a valid commit marker lies in [start, size): then the damage at `start` is
    corruption inside committed data, not a torn tail, and must not be cut off."""
    pos = start
    while pos < size:
        window = os.pread(fd, min(_READ_CHUNK + MARKER_SIZE, size - pos), pos)
        if not window:
            return False
        found = window.find(MARKER_MAGIC)
        while found != -1:
            at = pos + found
            if window[found : found + MARKER_SIZE] == encode_marker(at):
                return True
            found = window.find(MARKER_MAGIC, found + 1)
        if len(window) <= MARKER_SIZE:
            return False
        pos += len(window) - MARKER_SIZE  # overlap: a marker across the window's end
    return False


def _sha256_of(fd: int, offset: int, size: int) -> str:
    digest = hashlib.sha256()
    done = 0
    while done < size:
        data = os.pread(fd, min(_READ_CHUNK, size - done), offset + done)
        if not data:
            break  # the caller compares digests: a short read fails that
        digest.update(data)
        done += len(data)
    return digest.hexdigest()


def _recover_segment(path: str, start: int) -> _Scan | None:
    """Repair the unmarked tail of a segment nobody holds (see the module docstring); None if
    a live writer holds it. `start` is a record boundary at or before its last marker."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return None  # not ours to repair: index what is committed, leave the rest
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a writer's live segment: its tail is a group in flight
        size = os.fstat(fd).st_size
        scan = _scan_segment(fd, path, start, size)
        if scan.committed_end == size:
            return scan
        keep = scan.committed_end
        verified: list[_Record] = []
        for record in scan.tail:
            if _sha256_of(fd, record.entry.offset, record.entry.size) != record.sha256:
                break
            verified.append(record)
            keep = record.end
        if keep < size:
            if _valid_marker_after(fd, scan.stop, size):
                log.warning(
                    "segment %s: unreadable record at offset %d before committed data; "
                    "left as it is (the rest of the segment is not indexed)",
                    path,
                    scan.stop,
                )
                scan.tail = []
                scan.damaged = True
                return scan
            os.ftruncate(fd, keep)
        if verified:
            _fdatasync(fd)  # the kept records first, then the marker that vouches for them
            _pwritev_all(fd, [encode_marker(keep)], keep)
            scan.committed.extend(verified)
            scan.committed_end = keep + MARKER_SIZE
        _fdatasync(fd)
        log.info(
            "segment %s: recovered its tail, kept %d unmarked record(s), cut %d byte(s)",
            path,
            len(verified),
            size - keep,
        )
        scan.tail = []
        return scan
    finally:
        os.close(fd)


# -- writer state --------------------------------------------------------------------------


class _Segment:
    """A segment this store writes to, flocked while open."""

    __slots__ = ("abandoned", "dir_synced", "fd", "name", "path", "size", "tenant")

    def __init__(self, tenant: str, name: str, path: str, fd: int) -> None:
        self.tenant = tenant
        self.name = name
        self.path = path
        self.fd = fd
        self.size = 0  # where the next record goes: we track it rather than ask the file
        self.dir_synced = False  # its name is durable once the packs directory was fsynced
        self.abandoned = False


class _TenantIndex:
    """sha256 -> where the blob is, and how far each segment was scanned. Mutated under
    `lock` (executor threads); the event loop reads `entries` without it (a dict lookup is
    atomic under the GIL, and an entry never changes once there)."""

    __slots__ = ("damaged", "entries", "loaded", "lock", "offsets")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[str, _Entry] = {}
        self.offsets: dict[str, int] = {}  # segment name -> end of its last scanned marker
        self.damaged: set[str] = set()  # segments not to repair again (see _recover_segment)
        self.loaded = False


def _close_segments(segments: dict[str, _Segment], abandoned: list[_Segment]) -> None:
    for seg in (*segments.values(), *abandoned):
        with contextlib.suppress(OSError):
            os.close(seg.fd)  # also releases its flock
    segments.clear()
    abandoned.clear()


class _PendingPut:
    """One put: its content (in memory, or in a temporary file beyond the spill threshold)
    and, once complete, its `BlobInfo`. From `commit` on, the committer owns it."""

    def __init__(self, store: PackBlobStore, tenant: str) -> None:
        self.worker = Worker(store._executor)
        self.tenant = tenant
        self._store = store
        self._digester = BlobDigester()
        self.held: list[bytes] = []
        self._held_bytes = 0
        self.spill_fd: int | None = None
        self._spilled = 0
        self.info: BlobInfo | None = None

    def absorb(self, chunks: list[bytes]) -> None:
        """Hash `chunks` and keep them, spilling to a temporary file past the threshold."""
        for chunk in chunks:
            self._digester.update(chunk)
        if len(chunks) > 1:
            # One buffer per batch: a stream of tiny chunks must not become as many iovecs.
            chunks = [b"".join(chunks)]
        self.held.extend(chunks)
        self._held_bytes += sum(map(len, chunks))
        if self.spill_fd is not None or self._held_bytes > self._store._spill_bytes:
            self._spill()

    def finish(self, chunks: list[bytes], expected_sha256: str | None) -> BlobInfo | None:
        """Hash the last chunks, check the digest; the stored `BlobInfo` if the index already
        has this content (then there is nothing to commit), else None."""
        self.absorb(chunks)
        self.info = self._digester.result(self.tenant, expected_sha256)
        entry = self._store._lookup_for_put(self.tenant, self.info.sha256)
        return None if entry is None else self.info

    def _spill(self) -> None:
        if self.spill_fd is None:
            self.spill_fd = self._store._open_spill_file(self.tenant)
        _pwritev_all(self.spill_fd, self.held, self._spilled)
        self._spilled += self._held_bytes
        self.held = []
        self._held_bytes = 0

    def discard(self) -> None:
        """Drop the content (buffer and temporary file). Idempotent."""
        self.held = []
        self._held_bytes = 0
        if self.spill_fd is not None:
            os.close(self.spill_fd)
            self.spill_fd = None


class _Appender:
    """Gathers consecutive in-memory records of one segment into few pwritev calls."""

    __slots__ = ("_at", "_buffers", "_segment")

    def __init__(self) -> None:
        self._segment: _Segment | None = None
        self._buffers: list[bytes] = []
        self._at = 0

    def append(self, segment: _Segment, buffers: list[bytes]) -> None:
        """Queue `buffers` to go at `segment.size` (the caller then advances it)."""
        if segment is not self._segment or len(self._buffers) + len(buffers) > _IOV_MAX:
            self.flush()
        if not self._buffers:
            self._segment = segment
            self._at = segment.size
        self._buffers.extend(buffers)

    def flush(self) -> None:
        if self._buffers:
            assert self._segment is not None
            buffers, self._buffers = self._buffers, []
            _pwritev_all(self._segment.fd, buffers, self._at)
        self._segment = None


class _PackBlobStream(BlobStream):
    """Exactly `size` bytes from `offset` of a segment: never beyond the record."""

    def __init__(
        self, fd: int, offset: int, size: int, chunk_size: int, executor: Executor | None
    ) -> None:
        self._fd = fd
        self._pos = offset
        self._end = offset + size
        self._chunk_size = chunk_size
        self._worker = Worker(executor)
        self._closed = False
        # Closes the descriptor once, on aclose or when the stream is dropped unclosed.
        self._release = weakref.finalize(self, _close_quietly, fd)

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        if self._pos >= self._end:
            await self.aclose()
            raise StopAsyncIteration
        size = min(self._chunk_size, self._end - self._pos)
        data = await self._worker.call(_pread_exact, self._fd, size, self._pos)
        self._pos += size
        return data

    async def aclose(self) -> None:
        self._closed = True
        self._worker.when_idle(self._release)


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _close_opened(fut: asyncio.Future[tuple[int, _Entry] | None]) -> None:
    """Done-callback of an `open` whose caller was cancelled: close what it opened."""
    if fut.cancelled() or fut.exception() is not None:
        return
    opened = fut.result()
    if opened is not None:
        _close_quietly(opened[0])


class PackBlobStore(BlobStore):
    """Blob store appending blobs to per-tenant segment files under `root` (module docstring).

    The constructor (blocking, meant for service start-up) creates `root` and, when
    `writable`, repairs the torn tails of segments nobody holds and removes temporary files of
    crashed puts. `executor` runs the blocking calls (None: the loop's default executor).
    Segments roll once they reached `segment_bytes`. A store with `writable=False` only reads
    (puts raise PermissionError) and never modifies a file. Call `close` to release the
    segments (and their flocks) when done.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        executor: Executor | None = None,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        writable: bool = True,
    ) -> None:
        if segment_bytes <= 0:
            raise ValueError(f"segment_bytes must be > 0, got {segment_bytes}")
        self.root = Path(root).absolute()
        self._root = os.fspath(self.root)
        self._executor = executor
        self._segment_bytes = segment_bytes
        self._writable = writable
        self._spill_bytes = SPILL_BYTES
        self._writer_id = os.urandom(6).hex()
        self._last_ns = 0
        self._tenants: dict[str, _TenantIndex] = {}
        self._tenants_lock = threading.Lock()
        # Writer state, touched by the commit thread (and `close`) under `_write_lock`.
        self._write_lock = threading.Lock()
        self._segments: dict[str, _Segment] = {}  # tenant -> its current segment
        self._abandoned: list[_Segment] = []  # kept open (flocked) so nobody repairs them
        self._held_names: set[str] = set()  # segments we hold: no repair attempt on them
        self._packs_made: set[str] = set()
        self._closed = False
        self._committer: GroupCommitter[_PendingPut] = GroupCommitter(
            self._executor, lambda puts: self._commit_group(puts)
        )
        weakref.finalize(self, _close_segments, self._segments, self._abandoned)
        if writable:
            ensure_dir(os.fspath(self.root))
            self.recover()

    # -- counters --------------------------------------------------------------------------

    @property
    def commit_groups(self) -> int:
        """Group commits run so far."""
        return self._committer.groups

    @property
    def committed_puts(self) -> int:
        """Puts those group commits handled, failed ones included."""
        return self._committer.puts

    @property
    def puts_awaiting_commit(self) -> int:
        """Puts ready and waiting for the next group commit (not those of the one running)."""
        return self._committer.waiting()

    @property
    def writable(self) -> bool:
        return self._writable

    # -- paths -----------------------------------------------------------------------------

    def _packs_dir(self, tenant: str) -> str:
        return os.path.join(self._root, tenant, "packs")

    def _tmp_dir(self, tenant: str) -> str:
        return os.path.join(self._root, tenant, "tmp")

    def _tenant_names(self) -> list[str]:
        try:
            names = os.listdir(self._root)
        except FileNotFoundError:
            return []
        tenants = []
        for name in names:
            with contextlib.suppress(InvalidBlobKey):
                tenants.append(validate_tenant(name))
        return sorted(tenants)

    def _segment_names(self, tenant: str) -> list[str]:
        try:
            names = os.listdir(self._packs_dir(tenant))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(name for name in names if _SEGMENT_RE.fullmatch(name))

    # -- maintenance -----------------------------------------------------------------------

    def recover(self) -> int:
        """Repair every segment nobody holds that does not end with a commit marker, and
        remove temporary files of crashed puts; return how many segments were repaired.
        Blocking: runs at construction, call it again only from a thread."""
        if not self._writable:
            raise PermissionError("a read-only PackBlobStore does not recover segments")
        repaired = 0
        for tenant in self._tenant_names():
            self._remove_stale_temporary(tenant)
            packs = self._packs_dir(tenant)
            for name in self._segment_names(tenant):
                if name in self._held_names:
                    continue
                path = os.path.join(packs, name)
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    size = os.fstat(fd).st_size
                    clean = size == 0 or _ends_with_marker(fd, size)
                finally:
                    os.close(fd)
                if not clean and _recover_segment(path, 0) is not None:
                    repaired += 1
        return repaired

    def _remove_stale_temporary(self, tenant: str) -> None:
        """Named temporary files exist only where O_TMPFILE is not supported; one left by a
        crash is unlocked, one of a live put (maybe another process) is flocked."""
        tmp_dir = self._tmp_dir(tenant)
        try:
            names = os.listdir(tmp_dir)
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:
            path = os.path.join(tmp_dir, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            finally:
                os.close(fd)

    def close(self) -> None:
        """Close the segments this store writes to, releasing their flocks; later puts fail.
        Blocking (waits for a commit in progress); idempotent. Reads keep working."""
        with self._write_lock:
            self._closed = True
            self._held_names.clear()
            _close_segments(self._segments, self._abandoned)

    # -- index -----------------------------------------------------------------------------

    def _index(self, tenant: str) -> _TenantIndex:
        index = self._tenants.get(tenant)
        if index is None:
            with self._tenants_lock:
                index = self._tenants.setdefault(tenant, _TenantIndex())
        return index

    def _loaded(self, tenant: str) -> bool:
        index = self._tenants.get(tenant)
        return index is not None and index.loaded

    def _cached(self, tenant: str, sha256: str) -> _Entry | None:
        """Event-loop lookup without blocking: only what is indexed already."""
        index = self._tenants.get(tenant)
        return None if index is None else index.entries.get(sha256)

    def _lookup_for_put(self, tenant: str, sha256: str) -> _Entry | None:
        """Blocking: the index, built on the tenant's first use, but not rescanned on a miss."""
        index = self._index(tenant)
        if not index.loaded:
            with index.lock:
                if not index.loaded:
                    self._refresh(tenant, index)
        return index.entries.get(sha256)

    def _find(self, tenant: str, sha256: str) -> _Entry | None:
        """Blocking: the index, rescanned on a miss (blobs other processes committed)."""
        index = self._index(tenant)
        entry = index.entries.get(sha256)
        if entry is None:
            with index.lock:
                entry = index.entries.get(sha256)
                if entry is None:
                    self._refresh(tenant, index)
                    entry = index.entries.get(sha256)
        return entry

    def _refresh(self, tenant: str, index: _TenantIndex) -> None:
        """Index what was committed since the last scan. Holds `index.lock`."""
        packs = self._packs_dir(tenant)
        for name in self._segment_names(tenant):
            path = os.path.join(packs, name)
            start = index.offsets.get(name, 0)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                size = os.fstat(fd).st_size
                if size <= start:
                    continue
                scan = _scan_segment(fd, path, start, size)
            finally:
                os.close(fd)
            records = scan.committed
            end = scan.committed_end
            if (
                scan.committed_end < size
                and self._writable
                and name not in self._held_names
                and name not in index.damaged
            ):
                # An unmarked tail: a group in flight (the repair attempt finds it flocked),
                # or left by a crash.
                repaired = _recover_segment(path, scan.committed_end)
                if repaired is not None:
                    records = records + repaired.committed
                    end = repaired.committed_end
                    if repaired.damaged:
                        index.damaged.add(name)  # searching it for markers again is costly
            for record in records:
                index.entries.setdefault(record.sha256, record.entry)
            index.offsets[name] = max(end, index.offsets.get(name, 0))
        index.loaded = True

    # -- writing ---------------------------------------------------------------------------

    def _open_spill_file(self, tenant: str) -> int:
        tmp_dir = self._tmp_dir(tenant)
        ensure_dir(tmp_dir, fsync=False)  # nothing in it needs to survive a crash
        o_tmpfile = getattr(os, "O_TMPFILE", 0)
        if o_tmpfile:
            try:
                # Anonymous: a crash leaves nothing to clean up.
                return os.open(tmp_dir, os.O_RDWR | o_tmpfile | os.O_CLOEXEC, PRIVATE_FILE)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise
        path = os.path.join(tmp_dir, os.urandom(12).hex() + _TMP_SUFFIX)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # until unlinked: not stale
            os.unlink(path)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _create_segment(self, tenant: str) -> _Segment:
        packs = self._packs_dir(tenant)
        if tenant not in self._packs_made:
            ensure_dir(packs)
            self._packs_made.add(tenant)
        while True:
            # Increasing within this writer even if the clock steps back.
            ns = max(time.time_ns(), self._last_ns + 1)
            self._last_ns = ns
            name = f"{ns:020d}-{self._writer_id}.pack"
            path = os.path.join(packs, name)
            try:
                # Every tenant's documents: for the service user only.
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
            except FileExistsError:
                continue
            break
        try:
            # Blocking: only a repair attempt can hold it, and it finds an empty file.
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._held_names.add(name)
        return _Segment(tenant, name, path, fd)

    def _segment_for(
        self, tenant: str, touched: dict[str, tuple[_Segment, int]], retired: list[_Segment]
    ) -> _Segment:
        """The tenant's current segment, rolled or created as needed, noted as touched."""
        seg = self._segments.get(tenant)
        if seg is not None and seg.size >= self._segment_bytes:
            retired.append(seg)  # closed once this group's marker is on it
            seg = None
        if seg is None:
            seg = self._create_segment(tenant)
            self._segments[tenant] = seg
        if seg.path not in touched:
            touched[seg.path] = (seg, seg.size)
        return seg

    def _roll_back(self, seg: _Segment, start: int) -> None:
        """Cut what a failed group appended to `seg`; abandon `seg` if that fails too."""
        try:
            os.ftruncate(seg.fd, start)
            _fdatasync(seg.fd)  # the cut must survive a crash: recovery would revive the tail
            seg.size = start
        except OSError:
            log.exception("segment %s: cannot cut a failed group at %d; abandoned", seg.path, start)
            with contextlib.suppress(OSError):
                # A bad magic where the group begins: every scan stops there.
                os.pwrite(seg.fd, b"\0" * len(RECORD_MAGIC), start)
                _fdatasync(seg.fd)
            seg.abandoned = True
            self._abandoned.append(seg)
            if self._segments.get(seg.tenant) is seg:
                del self._segments[seg.tenant]

    def _commit_group(self, group: list[_PendingPut]) -> list[BlobInfo | Exception]:
        """One group commit, in an executor thread: what each put returns or raises. Never
        raises itself, and releases the content of every put of the group."""
        try:
            with self._write_lock:
                if self._closed:
                    closed = RuntimeError("the store is closed; the blob was not stored")
                    return [closed for _ in group]
                return self._commit_locked(group)
        except Exception as exc:  # pragma: no cover - a bug: fail the puts, not the committer
            return [_not_stored(exc, "an unexpected error") for _ in group]
        finally:
            for pending in group:
                pending.discard()

    def _commit_locked(self, group: list[_PendingPut]) -> list[BlobInfo | Exception]:
        infos: list[BlobInfo] = []
        for pending in group:
            assert pending.info is not None
            infos.append(pending.info)
        # The first put of each new content writes it; the others (and content an earlier
        # group stored) share its outcome.
        writers: dict[tuple[str, str], _PendingPut | None] = {}
        for pending, info in zip(group, infos, strict=True):
            key = (info.tenant, info.sha256)
            if key not in writers:
                stored = self._index(info.tenant).entries.get(info.sha256) is not None
                writers[key] = None if stored else pending
        to_write = [p for p in writers.values() if p is not None]
        if not to_write:
            return list(infos)

        touched: dict[str, tuple[_Segment, int]] = {}  # path -> (segment, size before)
        retired: list[_Segment] = []
        written: dict[tuple[str, str], tuple[_Segment, _Record]] = {}
        step = "the write"
        try:
            appender = _Appender()
            for pending in sorted(to_write, key=lambda p: p.tenant):
                assert pending.info is not None
                info = pending.info
                seg = self._segment_for(info.tenant, touched, retired)
                start = seg.size
                sha512 = bytes.fromhex(info.sha512)
                header = encode_record_header(info.size, bytes.fromhex(info.sha256), sha512)
                if pending.spill_fd is None:
                    appender.append(seg, [header, *pending.held])
                else:
                    appender.flush()
                    _pwritev_all(seg.fd, [header], start)
                    _copy_into(pending.spill_fd, seg.fd, info.size, start + HEADER_SIZE)
                seg.size = start + HEADER_SIZE + info.size
                entry = _Entry(seg.path, start + HEADER_SIZE, info.size, sha512)
                written[(info.tenant, info.sha256)] = (seg, _Record(start, info.sha256, entry))
            appender.flush()
            step = "fdatasync"
            for seg, _ in touched.values():
                _fdatasync(seg.fd)
            step = "the directory fsync"
            for seg, _ in touched.values():
                if not seg.dir_synced:
                    fsync_dir(self._packs_dir(seg.tenant))
                    seg.dir_synced = True
        except Exception as exc:
            for seg, start in touched.values():
                self._roll_back(seg, start)
            self._close_retired(retired)
            return [_not_stored(exc, step) for _ in group]

        # Everything is durable: mark it so. A segment whose marker fails fails its own puts.
        failed: dict[str, Exception] = {}
        for path, (seg, start) in touched.items():
            try:
                _pwritev_all(seg.fd, [encode_marker(seg.size)], seg.size)
                seg.size += MARKER_SIZE
            except Exception as exc:
                failed[path] = exc
                self._roll_back(seg, start)

        by_tenant: dict[str, list[tuple[_Segment, _Record]]] = {}
        for seg, record in written.values():
            if seg.path not in failed:
                by_tenant.setdefault(seg.tenant, []).append((seg, record))
        for tenant, records in by_tenant.items():
            index = self._index(tenant)
            with index.lock:
                for seg, record in records:
                    index.entries.setdefault(record.sha256, record.entry)
                    # Everything up to the marker is indexed: a rescan starts after it.
                    index.offsets[seg.name] = max(seg.size, index.offsets.get(seg.name, 0))
        self._close_retired(retired)

        results: list[BlobInfo | Exception] = []
        for info in infos:
            outcome = written.get((info.tenant, info.sha256))
            if outcome is not None and outcome[0].path in failed:
                results.append(_not_stored(failed[outcome[0].path], "the commit marker"))
            else:
                results.append(info)
        return results

    def _close_retired(self, retired: list[_Segment]) -> None:
        for seg in retired:
            if not seg.abandoned:
                _close_quietly(seg.fd)
                self._held_names.discard(seg.name)

    # -- port ------------------------------------------------------------------------------

    async def put(
        self,
        tenant: str,
        chunks: AsyncIterable[bytes],
        *,
        expected_sha256: str | None = None,
        max_size: int | None = None,
    ) -> BlobInfo:
        validate_put_arguments(tenant, expected_sha256, max_size)
        if not self._writable:
            raise PermissionError("this PackBlobStore was opened read-only")
        if self._closed:
            raise RuntimeError("this PackBlobStore is closed")
        pending = _PendingPut(self, tenant)

        async def absorb(batch: list[bytes]) -> None:
            await pending.worker.call(pending.absorb, batch)

        try:
            batch = await stream_in_batches(chunks, max_size, _HASH_BATCH, absorb)
            batched = sum(map(len, batch))
            if not pending.held and batched <= _INLINE_HASH_BYTES and self._loaded(tenant):
                # Small, and the index is built: no blocking call left, so no thread hop.
                stored = pending.finish(batch, expected_sha256)
            else:
                stored = await pending.worker.call(pending.finish, batch, expected_sha256)
        except BaseException:
            # Also on cancellation: then the thread may still be running, so clean up after it.
            pending.worker.when_idle(pending.discard)
            raise
        if stored is not None:
            pending.discard()
            return stored
        # From here the committer owns the content and releases it after the commit, even if
        # this put is cancelled while it waits.
        return await self._committer.commit(pending)

    async def open(
        self, tenant: str, sha256: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> BlobStream:
        validate_chunk_size(chunk_size)
        validate_key(tenant, sha256)
        fut = asyncio.get_running_loop().run_in_executor(
            self._executor, self._open_sync, tenant, sha256
        )
        try:
            opened = await asyncio.shield(fut)
        except asyncio.CancelledError:
            fut.add_done_callback(_close_opened)
            raise
        if opened is None:
            raise BlobNotFound(tenant, sha256)
        fd, entry = opened
        return _PackBlobStream(fd, entry.offset, entry.size, chunk_size, self._executor)

    def _open_sync(self, tenant: str, sha256: str) -> tuple[int, _Entry] | None:
        entry = self._find(tenant, sha256)
        if entry is None:
            return None
        return os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC), entry

    async def stat(self, tenant: str, sha256: str) -> BlobInfo:
        entry = await self._entry(*validate_key(tenant, sha256))
        if entry is None:
            raise BlobNotFound(tenant, sha256)
        return BlobInfo(tenant, sha256, entry.sha512.hex(), entry.size)

    async def exists(self, tenant: str, sha256: str) -> bool:
        return await self._entry(*validate_key(tenant, sha256)) is not None

    async def _entry(self, tenant: str, sha256: str) -> _Entry | None:
        entry = self._cached(tenant, sha256)
        if entry is not None:
            return entry  # no thread hop for what is indexed already
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._find, tenant, sha256
        )
