"""Choose the blob store adapter from configuration (ARCHIVE_BLOB_STORE, ARCHIVE_BLOB_DIR)."""

from __future__ import annotations

from concurrent.futures import Executor, ThreadPoolExecutor

from archive.blobstore.port import BlobStore
from archive.config import Settings

# Threads for the blob stores' blocking calls. Group commits (both adapters) need few: more
# only contend (measured, 30 KB puts on 2 cores: 1,581/s at 517 us of CPU each with 2 threads,
# 942/s at 1,610 us with 64). Per-file fsyncs need many in flight for the journal to merge
# them (760/s one at a time, 2,000-3,700/s with 16-64 threads).
GROUP_COMMIT_THREADS = 4
PER_FILE_THREADS = 64


def open_blob_store(settings: Settings, *, writer: bool) -> BlobStore:
    """The configured blob store. `writer`: this process deposits (ingest); readers (search,
    sealing) open the same directory without repairing or appending anything."""
    if settings.blob_store == "filesystem":
        from archive.blobstore.filesystem import FilesystemBlobStore, syncfs_available

        mode = "group" if syncfs_available() else "per-file"
        threads = GROUP_COMMIT_THREADS if mode == "group" else PER_FILE_THREADS
        return FilesystemBlobStore(settings.blob_root, executor=_threads(threads), commit=mode)
    from archive.blobstore.pack import PackBlobStore

    return PackBlobStore(
        settings.blob_root, executor=_threads(GROUP_COMMIT_THREADS), writable=writer
    )


def _threads(count: int) -> Executor:
    return ThreadPoolExecutor(count, thread_name_prefix="blob-io")
