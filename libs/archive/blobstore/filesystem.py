"""Filesystem blob store: one read-only file per blob, written with temp file + fsync + rename.

Layout under `root`:
    <tenant>/sha256/<hex[0:2]>/<hex[2:4]>/<hex>          the content, mode 0o444, with its
                                                         SHA-512 (hex) in the xattr
                                                         user.archive.sha512, so stat need
                                                         not rehash
    <tenant>/sha256/<hex[0:2]>/<hex[2:4]>/<hex>.sha512   the SHA-512 instead, on filesystems
                                                         without user xattrs
    <tenant>/tmp/                                        puts in progress (same filesystem)

A put streams into a temporary file that it holds an exclusive flock on, fsyncs it, makes it
read-only, renames it into place (after the sidecar, if there is one) and fsyncs the directory.
Only complete files are ever renamed into place, so a reader never sees a partial blob.
Temporary files left by a crash are unlocked (the kernel drops a dead process' locks), which is
how `cleanup_temporary` tells them from the puts of another live process sharing `root`.

Blocking calls run in an executor thread (the loop's default one unless given), with chunks
buffered so that a small blob costs a single thread hop; hashing runs there too (hashlib
releases the GIL, so it uses the other cores).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import io
import os
import re
import stat
from collections.abc import AsyncIterable, Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Final, TypeVar

from archive.blobstore.errors import BlobNotFound, BlobTooLarge
from archive.blobstore.port import (
    DEFAULT_CHUNK_SIZE,
    BlobDigester,
    BlobInfo,
    BlobStore,
    BlobStream,
    validate_chunk_size,
    validate_put_arguments,
    validate_sha256,
    validate_tenant,
)

T = TypeVar("T")

DEFAULT_WRITE_BUFFER_SIZE: Final = 1024 * 1024
BLOB_MODE: Final = 0o444
SHA512_XATTR: Final = "user.archive.sha512"
_SIDECAR_SUFFIX: Final = ".sha512"
_TMP_SUFFIX: Final = ".tmp"
_SHA512_RE: Final = re.compile(rb"[0-9a-f]{128}\n?")  # sidecars end with a newline
_REHASH_CHUNK: Final = 1024 * 1024


class _Worker:
    """Runs one file's blocking calls in the executor, one at a time.

    Cancelling an `await` does not stop the thread, so closing the file while a call is still
    running could close a descriptor under it (or one the OS already reused): `when_idle`
    defers such clean-up until the thread has returned.
    """

    __slots__ = ("_busy", "_executor")

    def __init__(self, executor: Executor | None) -> None:
        self._executor = executor
        self._busy: asyncio.Future[Any] | None = None

    def is_busy(self) -> bool:
        return self._busy is not None and not self._busy.done()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        if self.is_busy():
            raise RuntimeError("a blocking call on this file is still running")
        fut = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        self._busy = fut
        # shield: a cancelled caller must not mark the future done while the thread still runs
        return await asyncio.shield(fut)

    def when_idle(self, fn: Callable[[], None]) -> None:
        if self._busy is not None and not self._busy.done():
            self._busy.add_done_callback(lambda _fut: fn())
        else:
            fn()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ensure_dir(path: str) -> None:
    """mkdir -p that fsyncs the parent of every directory it creates, so a blob's directory
    entry cannot vanish in a crash after its put returned. Existing directories cost one
    failing mkdir."""
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        return
    except FileNotFoundError:
        _ensure_dir(os.path.dirname(path))
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            return
    _fsync_dir(os.path.dirname(path))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _create_locked(path: str) -> int:
    """Create a new file, exclusively flocked while this process holds it open."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _PendingPut:
    """One put in progress. The sync methods run in the executor, one at a time."""

    def __init__(self, store: FilesystemBlobStore, tenant: str) -> None:
        self.worker = _Worker(store._executor)
        self._store = store
        self._tenant = tenant
        self._digester = BlobDigester()
        self._fd: int | None = None
        self._tmp_path: str | None = None  # set while there is a temporary file to remove

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
        _ensure_dir(leaf)
        if not has_xattr:
            self._write_sidecar(info.sha512, target + _SIDECAR_SUFFIX)
        # A concurrent put of the same content may have renamed its copy first; replacing it
        # with identical bytes is atomic and harmless to readers holding the old file open.
        os.rename(self._tmp_path, target)
        self._tmp_path = None
        _fsync_dir(leaf)

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
        self._worker = _Worker(executor)
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
    """

    def __init__(
        self,
        root: Path | str,
        *,
        write_buffer_size: int = DEFAULT_WRITE_BUFFER_SIZE,
        executor: Executor | None = None,
    ) -> None:
        if write_buffer_size <= 0:
            raise ValueError(f"write_buffer_size must be > 0, got {write_buffer_size}")
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True)
        self._root = os.fspath(self.root)
        self._write_buffer_size = write_buffer_size
        self._executor = executor
        self._tmp_dirs_made: set[str] = set()
        self._xattr_supported = True  # until a setxattr says otherwise
        self.cleanup_temporary()

    # -- paths -----------------------------------------------------------------------------

    def _blob_path(self, tenant: str, sha256: str) -> str:
        return os.path.join(self._root, tenant, "sha256", sha256[:2], sha256[2:4], sha256)

    def _tmp_dir(self, tenant: str) -> str:
        return os.path.join(self._root, tenant, "tmp")

    def _ensure_tmp_dir(self, tenant: str, tmp_dir: str) -> None:
        # Runs in executor threads: set.add is atomic, and a duplicate mkdir is harmless.
        if tenant not in self._tmp_dirs_made:
            _ensure_dir(tmp_dir)
            self._tmp_dirs_made.add(tenant)

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
        buffer: list[bytes] = []
        buffered = 0
        received = 0
        try:
            async for chunk in chunks:
                # A copy if it is not bytes: the producer may reuse a bytearray it gave us.
                data = chunk if isinstance(chunk, bytes) else bytes(chunk)
                if not data:
                    continue
                received += len(data)
                if max_size is not None and received > max_size:
                    raise BlobTooLarge(max_size)
                buffer.append(data)
                buffered += len(data)
                if buffered >= self._write_buffer_size:
                    await pending.worker.call(pending.write, buffer)
                    buffer = []
                    buffered = 0
            return await pending.worker.call(pending.finish, buffer, expected_sha256)
        except BaseException:
            # Also on cancellation: then the thread may still be running, so clean up after it.
            pending.worker.when_idle(pending.discard)
            raise

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
        return self._blob_path(validate_tenant(tenant), validate_sha256(sha256))

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
