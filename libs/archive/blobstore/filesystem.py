"""Filesystem blob store: one read-only file per blob, written to a temp file, then renamed.

Layout under `root` (directories 0700, for the service user only):
    <tenant>/sha256/<hex[0:2]>/<hex[2:4]>/<hex>          the content, mode 0o400, with its
                                                         SHA-512 (hex) in the xattr
                                                         user.archive.sha512, so stat need
                                                         not rehash
    <tenant>/sha256/<hex[0:2]>/<hex[2:4]>/<hex>.sha512   the SHA-512 instead, on filesystems
                                                         without user xattrs
    <tenant>/tmp/                                        puts in progress (same filesystem)

A put streams into a temporary file that it holds an exclusive flock on, hashing on the way.
Only complete, read-only files are ever renamed into place, so a reader never sees a partial
blob, and a put returns only once the content, its SHA-512 (xattr or sidecar) and its
directory entry are durable. Two ways to get there (`commit=`):

"per-file": each put fsyncs its file, renames it into place (after the sidecar, if there is
one) and fsyncs the directory: two synchronous flushes per blob, in its own thread; the journal
merges concurrent ones, but each costs a lot of CPU.

"group" (group commit, the default where libc has syncfs(2)): a put writes, hashes, sets the
xattr, makes its temporary file read-only and creates the blob's directory if need be, but
neither fsyncs nor renames anything; it then joins the store's group committer. When no commit
is running, the committer starts one (in an executor thread) for every put waiting; puts that
become ready meanwhile wait for the next one, so groups grow with the load, without a timer.
One commit:
    1. syncfs: the contents and xattrs of every temporary file of the group are durable;
    2. for each put: if the blob is already in place (content-addressed: same bytes), drop the
       temporary file; else write the sidecar if needed and rename the temporary file into
       place (this runs one put after the other, so the put made the directory beforehand);
    3. syncfs again: the new names (and directories, and sidecars) are durable;
    4. every put of the group returns.
If either syncfs fails, every put of the group fails with that OSError, and the files the group
renamed in step 2 are removed again (its own renames only: a blob of an earlier, successful
group stays). Temporary files stay flocked until their commit is over. syncfs runs on one
descriptor per filesystem, opened before the first temporary file on it was created and kept
open: since Linux 5.8, syncfs(2) reports every writeback error on that filesystem since the
previous call on the same descriptor (before 5.8 it always succeeded, so a writeback error was
not reported at all; this machine ran 6.18 when this was written).

Crashes, group mode: until step 2 (so never before the first syncfs) no blob is at its final
path, there are only temporary files (and maybe empty directories), which a crash leaves
unlocked, and `cleanup_temporary` removes them at the next start. A rename of step 2 not yet
covered by step 3 may or may not survive a crash, but its content and xattr were made durable
by step 1 first, so a blob that survives is always complete (a sidecar's bytes may be lost:
stat then rehashes the content). Its put had not returned, so the client retries, and the
retry is idempotent. Per-file mode gives the same guarantees, one file at a time.

Temporary files left by a crash are unlocked (the kernel drops a dead process' locks), which is
how `cleanup_temporary` tells them from the puts of another live process sharing `root`.

Blocking calls run in an executor thread (the loop's default one unless given), with chunks
buffered so that a small blob costs a single thread hop; hashing runs there too (hashlib
releases the GIL, so it uses the other cores). A store is used from one event loop at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import hashlib
import io
import os
import re
import stat
import threading
import weakref
from collections.abc import AsyncIterable, Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Final, Literal, TypeVar

from archive.blobstore.committing import GroupCommitter, Worker, stream_in_batches
from archive.blobstore.errors import BlobNotFound
from archive.blobstore.port import (
    DEFAULT_CHUNK_SIZE,
    BlobDigester,
    BlobInfo,
    BlobStore,
    BlobStream,
    validate_chunk_size,
    validate_key,
    validate_put_arguments,
)
from archive.files import PRIVATE_FILE, ensure_dir, fsync_dir

T = TypeVar("T")
CommitMode = Literal["group", "per-file"]

DEFAULT_WRITE_BUFFER_SIZE: Final = 1024 * 1024
# Read-only, and for the service user only (directories are 0700 too: archive.files).
BLOB_MODE: Final = 0o400
SHA512_XATTR: Final = "user.archive.sha512"
_SIDECAR_SUFFIX: Final = ".sha512"
_TMP_SUFFIX: Final = ".tmp"
_SHA512_RE: Final = re.compile(rb"[0-9a-f]{128}\n?")  # sidecars end with a newline
_REHASH_CHUNK: Final = 1024 * 1024
_COMMIT_MODES: Final = ("auto", "group", "per-file")


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - no C library to load
        return None
    if not hasattr(libc, "syncfs"):
        return None
    fn = libc.syncfs
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_LIBC_SYNCFS: Final = _load_syncfs()


def syncfs_available() -> bool:
    """Whether libc has syncfs(2), which group commit needs."""
    return _LIBC_SYNCFS is not None


def _syncfs(fd: int) -> int:
    """syncfs(2) through libc (the GIL is released meanwhile): 0, or -1 with the error in
    `ctypes.get_errno()`. Module level, so that tests can make it fail."""
    if _LIBC_SYNCFS is None:  # pragma: no cover - group mode is refused without it
        raise OSError(errno.ENOSYS, "syncfs is not available")
    return _LIBC_SYNCFS(fd)


def _sync_filesystem(fd: int) -> None:
    if _syncfs(fd) == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"syncfs: {os.strerror(err)}")


def _not_stored(cause: Exception, step: str) -> OSError:
    """The error a put of a failed group commit raises (one instance per put)."""
    err = cause.errno if isinstance(cause, OSError) and cause.errno else errno.EIO
    exc = OSError(err, f"group commit failed at {step}: {cause}; the blob was not stored")
    exc.__cause__ = cause
    return exc


def _close_fds(fds: dict[int, int]) -> None:
    for fd in fds.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _create_locked(path: str) -> int:
    """Create a new file, exclusively flocked while this process holds it open."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _PendingPut:
    """One put in progress. The sync methods run in the executor, one at a time: first those
    of the put itself (through `worker`), then, in group mode, those of its group commit."""

    def __init__(self, store: FilesystemBlobStore, tenant: str) -> None:
        self.worker = Worker(store._executor)
        self._store = store
        self._tenant = tenant
        self._digester = BlobDigester()
        self._fd: int | None = None
        self._tmp_path: str | None = None  # set while there is a temporary file to remove
        # Group mode only: set by `prepare`, then by `publish_in_group`.
        self.info: BlobInfo | None = None
        self.device = 0  # st_dev of the temporary file: the filesystem to syncfs
        self._has_xattr = False
        self._published: list[str] = []  # what this put's commit renamed into place

    def write(self, chunks: list[bytes]) -> None:
        if self._fd is None:
            tmp_dir = self._store._tmp_dir(self._tenant)
            self._store._ensure_tmp_dir(self._tenant, tmp_dir)
            path = os.path.join(tmp_dir, os.urandom(12).hex() + _TMP_SUFFIX)
            try:
                self._fd = _create_locked(path)
            except FileNotFoundError:
                # tmp/ was removed behind our back (its existence is cached): make it again.
                self._store._tmp_dirs_made.discard(self._tenant)
                self._store._ensure_tmp_dir(self._tenant, tmp_dir)
                self._fd = _create_locked(path)
            self._tmp_path = path
        for chunk in chunks:
            self._digester.update(chunk)
        if chunks:
            _write_all(self._fd, chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def finish(self, chunks: list[bytes], expected_sha256: str | None) -> BlobInfo:
        self.write(chunks)  # also creates the temporary file of an empty blob
        assert self._fd is not None and self._tmp_path is not None
        try:
            info = self._digester.result(self._tenant, expected_sha256)
            target = self._store._blob_path(self._tenant, info.sha256)
            if not os.path.exists(target):
                self._publish(info, target)
        finally:
            self.discard()
        return info

    def prepare(self, chunks: list[bytes], expected_sha256: str | None) -> BlobInfo:
        """Group mode: everything `finish` does but the fsyncs and the rename, which the group
        commit does for many puts at once. The temporary file stays open (and flocked)."""
        self.write(chunks)  # also creates the temporary file of an empty blob
        assert self._fd is not None and self._tmp_path is not None
        try:
            info = self._digester.result(self._tenant, expected_sha256)
            # The xattr now: the group's first syncfs makes it durable with the content.
            self._has_xattr = self._store._xattr_supported and self._set_xattr(info.sha512)
            os.fchmod(self._fd, BLOB_MODE)  # read-only before the rename, as in `_publish`
            self.device = os.fstat(self._fd).st_dev
            self._store._watch_filesystem(self.device, os.path.dirname(self._tmp_path))
            # The leaf directory now, in this put's own thread, rather than in the commit,
            # which runs one put after the other: creating directories is most of the cost of
            # publishing (measured on ext4: ~260 us of ~300 us per blob while most leaves are
            # new). An empty directory left by a put that fails later is harmless; the group's
            # syncfs makes the new directories durable before any put of the group returns.
            leaf = os.path.dirname(self._store._blob_path(self._tenant, info.sha256))
            ensure_dir(leaf, fsync=False)
        except BaseException:
            self.discard()
            raise
        self.info = info
        return info

    def publish_in_group(self) -> None:
        """Group mode, in the commit thread, once the group's first syncfs has made the content
        durable: rename it into place, unless the same content already is."""
        assert self.info is not None and self._tmp_path is not None
        target = self._store._blob_path(self._tenant, self.info.sha256)
        if os.path.exists(target):
            return  # identical bytes (content-addressed): `discard` drops our copy
        sidecar = None if self._has_xattr else target + _SIDECAR_SUFFIX
        try:
            self._move_into_place(target, sidecar)
        except FileNotFoundError:
            # The leaf directory `prepare` made was removed since: make it again (the group's
            # second syncfs makes new directories durable).
            ensure_dir(os.path.dirname(target), fsync=False)
            self._move_into_place(target, sidecar)
        self._tmp_path = None
        self._published = [target] if sidecar is None else [target, sidecar]

    def _move_into_place(self, target: str, sidecar: str | None) -> None:
        assert self.info is not None and self._tmp_path is not None
        try:
            if sidecar is not None:
                self._write_sidecar(self.info.sha512, sidecar)
            os.rename(self._tmp_path, target)
        except BaseException:
            if sidecar is not None:
                with contextlib.suppress(OSError):
                    os.unlink(sidecar)
            raise

    def unpublish(self) -> None:
        """Group mode: the group's second syncfs failed, so our rename is not known durable and
        the put fails: take the blob away again. Only what this put renamed: a blob already in
        place before its group (an earlier, successful commit) is durable and stays. The
        removal itself may not survive a crash, which is harmless: the content was made durable
        by the first syncfs, so a blob that comes back is complete."""
        for path in self._published:  # the content first: never there without its SHA-512
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._published = []

    def _publish(self, info: BlobInfo, target: str) -> None:
        assert self._fd is not None and self._tmp_path is not None
        # The SHA-512 goes in an extended attribute: set before the fsync, it is as durable as
        # the content and appears with it in the rename, at no extra file (creating a file
        # costs far more than a setxattr). Without xattr support, a sidecar file instead.
        has_xattr = self._store._xattr_supported and self._set_xattr(info.sha512)
        os.fsync(self._fd)
        # Read-only before the rename rather than after: no moment where the blob in place is
        # writable, and no writable blob left if we crash between rename and chmod.
        os.fchmod(self._fd, BLOB_MODE)
        leaf = os.path.dirname(target)
        ensure_dir(leaf)
        if not has_xattr:
            self._write_sidecar(info.sha512, target + _SIDECAR_SUFFIX)
        # A concurrent put of the same content may have renamed its copy first; replacing it
        # with identical bytes is atomic and harmless to readers holding the old file open.
        os.rename(self._tmp_path, target)
        self._tmp_path = None
        fsync_dir(leaf)

    def _set_xattr(self, sha512: str) -> bool:
        assert self._fd is not None
        try:
            os.setxattr(self._fd, SHA512_XATTR, sha512.encode("ascii"))
        except OSError as exc:
            if exc.errno != errno.ENOTSUP:
                raise
            self._store._xattr_supported = False  # the filesystem will not change its mind
            return False
        return True

    def _write_sidecar(self, sha512: str, path: str) -> None:
        """Rename a sidecar into place before the content: whoever sees the content finds its
        SHA-512. It is not fsynced (the directory fsync after the content rename covers its
        name); should its bytes be lost in a crash, stat finds it malformed and rehashes."""
        assert self._tmp_path is not None
        sidecar_tmp = self._tmp_path + _SIDECAR_SUFFIX
        sidecar_fd = _create_locked(sidecar_tmp)
        try:
            _write_all(sidecar_fd, sha512.encode("ascii") + b"\n")
            os.fchmod(sidecar_fd, BLOB_MODE)
            os.rename(sidecar_tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sidecar_tmp)
            raise
        finally:
            os.close(sidecar_fd)

    def discard(self) -> None:
        """Remove the temporary file (if any) and release the descriptor. Idempotent."""
        if self._tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp_path)  # while still locked: cleanup cannot race us
            self._tmp_path = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _FileBlobStream(BlobStream):
    def __init__(self, file: io.FileIO, chunk_size: int, executor: Executor | None) -> None:
        self._file: io.FileIO | None = file
        self._chunk_size = chunk_size
        self._worker = Worker(executor)
        self._closed = False

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        assert self._file is not None
        data = await self._worker.call(self._file.read, self._chunk_size)
        if not data:
            await self.aclose()
            raise StopAsyncIteration
        return data

    async def aclose(self) -> None:
        self._closed = True
        self._worker.when_idle(self._close_file)

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class FilesystemBlobStore(BlobStore):
    """Blob store on a local (or shared POSIX) filesystem under `root`.

    The constructor creates `root` and removes temporary files left by crashed puts (blocking,
    meant for service start-up). `executor` runs the blocking calls; None uses the loop's
    default executor. Puts buffer up to `write_buffer_size` bytes before each write.
    `commit` is how puts are made durable (see the module docstring): "group" (needs libc's
    syncfs), "per-file", or "auto" (the default): "group" where syncfs is available.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        write_buffer_size: int = DEFAULT_WRITE_BUFFER_SIZE,
        executor: Executor | None = None,
        commit: str = "auto",
    ) -> None:
        if write_buffer_size <= 0:
            raise ValueError(f"write_buffer_size must be > 0, got {write_buffer_size}")
        if commit not in _COMMIT_MODES:
            raise ValueError(f"commit must be one of {_COMMIT_MODES}, got {commit!r}")
        if commit == "group" and not syncfs_available():
            raise ValueError('commit="group" needs syncfs(2), which this libc does not have')
        mode: CommitMode = (
            "per-file"
            if commit == "per-file" or (commit == "auto" and not syncfs_available())
            else "group"
        )
        self.root = Path(root).absolute()
        self._root = os.fspath(self.root)
        ensure_dir(self._root)
        self._write_buffer_size = write_buffer_size
        self._executor = executor
        self._tmp_dirs_made: set[str] = set()
        self._xattr_supported = True  # until a setxattr says otherwise
        self._commit_mode: CommitMode = mode
        self._committer: GroupCommitter[_PendingPut] | None = (
            GroupCommitter(self._executor, lambda puts: self._commit_group(puts))
            if mode == "group"
            else None
        )
        # Group mode: st_dev -> a descriptor to syncfs that filesystem with, opened before any
        # temporary file on it (see the module docstring) and closed with the store.
        self._sync_fds: dict[int, int] = {}
        self._sync_fds_lock = threading.Lock()
        if mode == "group":
            weakref.finalize(self, _close_fds, self._sync_fds)
            self._watch_filesystem(os.stat(self._root).st_dev, self._root)
        self.cleanup_temporary()

    @property
    def commit_mode(self) -> CommitMode:
        """How puts are made durable: "group" or "per-file" (what "auto" chose)."""
        return self._commit_mode

    @property
    def commit_groups(self) -> int:
        """Group commits run so far (0 in per-file mode)."""
        return self._committer.groups if self._committer is not None else 0

    @property
    def committed_puts(self) -> int:
        """Puts those group commits handled, failed ones included (0 in per-file mode)."""
        return self._committer.puts if self._committer is not None else 0

    @property
    def puts_awaiting_commit(self) -> int:
        """Puts ready and waiting for the next group commit (not those of the one running)."""
        return self._committer.waiting() if self._committer is not None else 0

    # -- paths -----------------------------------------------------------------------------

    def _blob_path(self, tenant: str, sha256: str) -> str:
        return os.path.join(self._root, tenant, "sha256", sha256[:2], sha256[2:4], sha256)

    def _tmp_dir(self, tenant: str) -> str:
        return os.path.join(self._root, tenant, "tmp")

    def _ensure_tmp_dir(self, tenant: str, tmp_dir: str) -> None:
        # Runs in executor threads: set.add is atomic, and a duplicate mkdir is harmless.
        if tenant not in self._tmp_dirs_made:
            ensure_dir(tmp_dir)
            if self._committer is not None:  # a tenant directory may be another filesystem
                self._watch_filesystem(os.stat(tmp_dir).st_dev, tmp_dir)
            self._tmp_dirs_made.add(tenant)

    # -- group commit ----------------------------------------------------------------------

    def _watch_filesystem(self, device: int, directory: str) -> None:
        """Keep a descriptor to syncfs `device` with, opened on `directory` (which is on it).
        Runs in executor threads."""
        if device in self._sync_fds:
            return
        with self._sync_fds_lock:
            if device not in self._sync_fds:
                fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                self._sync_fds[device] = fd

    def _sync_devices(self, devices: set[int]) -> None:
        for device in sorted(devices):
            _sync_filesystem(self._sync_fds[device])

    def _commit_group(self, group: list[_PendingPut]) -> list[BlobInfo | Exception]:
        """One group commit, in an executor thread: what each put returns or raises. Never
        raises itself, and releases every temporary file of the group (still flocked until
        then, so `cleanup_temporary` leaves them alone)."""
        try:
            devices = {pending.device for pending in group}
            try:
                self._sync_devices(devices)  # contents and xattrs durable, nothing visible yet
            except Exception as exc:
                return [_not_stored(exc, "the first syncfs") for _ in group]
            results: list[BlobInfo | Exception] = []
            for pending in group:
                try:
                    pending.publish_in_group()
                except Exception as exc:
                    results.append(exc)
                else:
                    assert pending.info is not None
                    results.append(pending.info)
            try:
                self._sync_devices(devices)  # names, directories and sidecars durable
            except Exception as exc:
                for pending in group:
                    pending.unpublish()
                return [_not_stored(exc, "the second syncfs") for _ in group]
            return results
        finally:
            for pending in group:
                pending.discard()

    # -- maintenance -----------------------------------------------------------------------

    def cleanup_temporary(self) -> int:
        """Remove temporary files of crashed puts; return how many were removed.

        Files still flocked belong to puts in progress (possibly in another process sharing
        `root`) and are left alone. Blocking: call it at start-up or through a thread.
        """
        removed = 0
        try:
            tenants = os.listdir(self._root)
        except FileNotFoundError:
            return 0
        for tenant in tenants:
            tmp_dir = self._tmp_dir(tenant)
            try:
                names = os.listdir(tmp_dir)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for name in names:
                if _remove_if_unlocked(os.path.join(tmp_dir, name)):
                    removed += 1
        return removed

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
        pending = _PendingPut(self, tenant)

        async def write(batch: list[bytes]) -> None:
            await pending.worker.call(pending.write, batch)

        try:
            buffer = await stream_in_batches(chunks, max_size, self._write_buffer_size, write)
            if self._committer is None:
                return await pending.worker.call(pending.finish, buffer, expected_sha256)
            await pending.worker.call(pending.prepare, buffer, expected_sha256)
        except BaseException:
            # Also on cancellation: then the thread may still be running, so clean up after it.
            pending.worker.when_idle(pending.discard)
            raise
        # From here the committer owns the temporary file and releases it after the commit,
        # even if this put is cancelled while it waits.
        return await self._committer.commit(pending)

    async def open(
        self, tenant: str, sha256: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> BlobStream:
        validate_chunk_size(chunk_size)
        path = self._checked_path(tenant, sha256)
        try:
            file = await asyncio.get_running_loop().run_in_executor(
                self._executor, io.FileIO, path, "rb"
            )
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(tenant, sha256) from None
        return _FileBlobStream(file, chunk_size, self._executor)

    async def stat(self, tenant: str, sha256: str) -> BlobInfo:
        path = self._checked_path(tenant, sha256)
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._stat_sync, tenant, sha256, path
        )

    async def exists(self, tenant: str, sha256: str) -> bool:
        path = self._checked_path(tenant, sha256)
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, os.path.isfile, path
        )

    def _checked_path(self, tenant: str, sha256: str) -> str:
        return self._blob_path(*validate_key(tenant, sha256))

    def _stat_sync(self, tenant: str, sha256: str, path: str) -> BlobInfo:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(tenant, sha256) from None
        if not stat.S_ISREG(st.st_mode):
            raise BlobNotFound(tenant, sha256)
        sha512 = _read_xattr(path) or _read_sidecar(path + _SIDECAR_SUFFIX)
        if sha512 is None:
            # Lost or never written (a copy without xattrs, a crash before the sidecar's bytes
            # reached the disk): still answer correctly, at the price of reading the content.
            sha512 = _sha512_of_file(path)
        return BlobInfo(tenant, sha256, sha512, st.st_size)


def _valid_sha512(data: bytes) -> str | None:
    if _SHA512_RE.fullmatch(data) is None:
        return None
    return data[:128].decode("ascii")


def _read_xattr(path: str) -> str | None:
    try:
        return _valid_sha512(os.getxattr(path, SHA512_XATTR))
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP):
            return None
        raise


def _read_sidecar(path: str) -> str | None:
    try:
        with io.FileIO(path, "rb") as f:
            data = f.read(256)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return _valid_sha512(data)


def _sha512_of_file(path: str) -> str:
    digest = hashlib.sha512()
    with io.FileIO(path, "rb") as f:
        while chunk := f.read(_REHASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _remove_if_unlocked(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno != errno.ELOOP:  # a symlink: not ours, but remove it all the same
            raise
        os.unlink(path)
        return True
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a put in progress holds it
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return True
    finally:
        os.close(fd)
