"""Machinery the durable blob stores share: blocking calls in an executor, one at a time per
put, and the group committer that makes many puts durable with one flush."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from concurrent.futures import Executor
from typing import Any, Generic, Protocol, TypeVar

from archive.blobstore.errors import BlobTooLarge
from archive.blobstore.port import BlobInfo

T = TypeVar("T")


class Discardable(Protocol):
    def discard(self) -> None:
        """Release what the put holds (temporary file, buffer). Idempotent."""


P = TypeVar("P", bound=Discardable)


class Worker:
    """Runs one put's or stream's blocking calls in the executor, one at a time.

    Cancelling an `await` does not stop the thread, so releasing a resource while a call is
    still running could pull it from under the thread (close a descriptor the OS already
    reused, say): `when_idle` defers such clean-up until the thread has returned.
    """

    __slots__ = ("_busy", "_executor")

    def __init__(self, executor: Executor | None) -> None:
        self._executor = executor
        self._busy: asyncio.Future[Any] | None = None

    def is_busy(self) -> bool:
        return self._busy is not None and not self._busy.done()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        if self.is_busy():
            raise RuntimeError("a blocking call is still running")
        fut = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        self._busy = fut
        # shield: a cancelled caller must not mark the future done while the thread still runs
        return await asyncio.shield(fut)

    def when_idle(self, fn: Callable[[], None]) -> None:
        if self._busy is not None and not self._busy.done():
            self._busy.add_done_callback(lambda _fut: fn())
        else:
            fn()


class GroupCommitter(Generic[P]):
    """Collects the puts that are ready and commits them in groups, one commit at a time.

    `commit_group(puts)` runs in the executor and returns, per put, its BlobInfo or the
    exception it fails with; it releases every put's content (`discard`) whatever happens.
    A put hands itself over with `commit`: from then on the committer owns its content. Puts
    that become ready during a commit wait for the next one, so groups grow with the load,
    without a timer. A put cancelled while it waits only stops waiting: its group is committed
    all the same (so its blob may or may not end up stored, complete either way), and the
    other puts are unaffected.
    """

    def __init__(
        self,
        executor: Executor | None,
        commit_group: Callable[[list[P]], Sequence[BlobInfo | BaseException]],
    ) -> None:
        self._executor = executor
        self._commit_group = commit_group
        self._queue: list[tuple[P, asyncio.Future[BlobInfo]]] = []
        self._task: asyncio.Task[None] | None = None
        self.groups = 0
        self.puts = 0

    def waiting(self) -> int:
        return len(self._queue)

    async def commit(self, pending: P) -> BlobInfo:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[BlobInfo] = loop.create_future()
        self._queue.append((pending, done))
        if self._task is None:
            self._task = loop.create_task(self._run())
        return await done  # cancelled: only `done` is, `_run` skips it

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        group: list[tuple[P, asyncio.Future[BlobInfo]]] = []
        try:
            while self._queue:
                group, self._queue = self._queue, []
                puts = [pending for pending, _ in group]
                try:
                    work = loop.run_in_executor(self._executor, self._commit_group, puts)
                except BaseException:
                    for pending in puts:  # never reached a thread: release them here
                        pending.discard()
                    raise
                # Shielded: cancelling this task (the loop shutting down) must not cancel a
                # commit still queued in the executor, which releases the group's content.
                results = await asyncio.shield(work)
                self.groups += 1
                self.puts += len(puts)
                for (_, done), result in zip(group, results, strict=True):
                    if done.done():  # its put was cancelled
                        continue
                    if isinstance(result, BaseException):
                        done.set_exception(result)
                    else:
                        done.set_result(result)
                group = []
        except BaseException as exc:
            # Cancelled (loop shutdown) or the executor refused the work: the group in flight
            # (its thread still releases its content) and the puts queued behind it fail.
            queued, self._queue = self._queue, []
            for pending, _ in queued:
                pending.discard()
            for _, done in (*group, *queued):
                if done.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    done.cancel()
                else:
                    failed = RuntimeError("group commit could not run; the blob was not stored")
                    failed.__cause__ = exc
                    done.set_exception(failed)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._task = None


async def stream_in_batches(
    chunks: AsyncIterable[bytes],
    max_size: int | None,
    batch_bytes: int,
    handle_batch: Callable[[list[bytes]], Awaitable[None]],
) -> list[bytes]:
    """Feed a put's chunks to `handle_batch` in batches of at least `batch_bytes` (few thread
    hops for many small chunks); return the last, smaller batch. `BlobTooLarge` as soon as
    more than `max_size` bytes arrived."""
    batch: list[bytes] = []
    batched = 0
    received = 0
    async for chunk in chunks:
        # A copy if it is not bytes: the producer may reuse a bytearray it gave us.
        data = chunk if isinstance(chunk, bytes) else bytes(chunk)
        if not data:
            continue
        received += len(data)
        if max_size is not None and received > max_size:
            raise BlobTooLarge(max_size)
        batch.append(data)
        batched += len(data)
        if batched >= batch_bytes:
            await handle_batch(batch)
            batch = []
            batched = 0
    return batch
