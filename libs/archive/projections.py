"""Projections: derive a service's local state from events, exactly once in effect.

A `ProjectionRunner` feeds events from the store into a `Projection` and commits, in one SQLite
transaction, the state the projection derived together with the position it has applied. A
crash mid-batch rolls both back, so the batch is applied again from the same position: nothing
is skipped and nothing is applied twice. Delete the database file and the runner rebuilds the
state from position 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from archive.aio import raise_if_cancel_was_swallowed
from archive.eventstore import EventStore, RecordedEvent, StreamFilter
from archive.files import PRIVATE_FILE, ensure_dir

log = logging.getLogger(__name__)

_POSITION_TABLE = """
CREATE TABLE IF NOT EXISTS projection_position (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
)
"""


class Projection(ABC):
    """What a service derives from events. `apply` runs inside the runner's transaction and
    must only touch the database through the connection it is given."""

    name: str
    filter: StreamFilter | None = None

    @abstractmethod
    def setup(self, db: sqlite3.Connection) -> None:
        """Create tables (idempotent: CREATE TABLE IF NOT EXISTS)."""

    @abstractmethod
    def apply(self, db: sqlite3.Connection, event: RecordedEvent) -> None: ...


def open_database(path: Path) -> sqlite3.Connection:
    """A projection database, created if need be, readable by the service user only: its
    directory 0700, the file 0600 (SQLite gives its -wal and -shm files the file's mode)."""
    ensure_dir(os.fspath(path.parent))
    # SQLite would create the file with the umask's mode: create it first, and tighten one
    # left by an older version (a projection is ours alone, and rebuilt from events anyway).
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # WAL with synchronous=NORMAL keeps each commit atomic; a power loss may drop the last
    # commits, and since the position is in the same transaction they are simply replayed.
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


class ProjectionRunner:
    def __init__(
        self,
        store: EventStore,
        projection: Projection,
        db_path: Path,
        *,
        batch_size: int = 500,
    ) -> None:
        self._store = store
        self._projection = projection
        self._db = open_database(db_path)
        self._db_lock = threading.Lock()
        self._closed = False
        self._batch_size = batch_size
        self._db.execute(_POSITION_TABLE)
        self._db.execute("BEGIN")
        projection.setup(self._db)
        self._db.execute("COMMIT")
        self._position = self._load_position()
        self._advanced = asyncio.Condition()

    @property
    def position(self) -> int:
        """Position of the last event whose effect is committed."""
        return self._position

    @property
    def db(self) -> sqlite3.Connection:
        return self._db

    def _load_position(self) -> int:
        row = self._db.execute(
            "SELECT position FROM projection_position WHERE name = ?", (self._projection.name,)
        ).fetchone()
        return int(row[0]) if row else 0

    def _apply_batch(self, events: Sequence[RecordedEvent]) -> None:
        # Runs in a worker thread that a cancelled caller does not stop: the lock makes
        # close() wait for it rather than pull the connection from under it.
        with self._db_lock:
            if self._closed:
                raise RuntimeError(f"projection {self._projection.name} is closed")
            self._apply_locked(events)

    def _apply_locked(self, events: Sequence[RecordedEvent]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for event in events:
                self._projection.apply(db, event)
            db.execute(
                "INSERT INTO projection_position(name, position) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET position = excluded.position",
                (self._projection.name, events[-1].position),
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def _commit(self, events: list[RecordedEvent]) -> None:
        await asyncio.to_thread(self._apply_batch, events)
        self._position = events[-1].position
        async with self._advanced:
            self._advanced.notify_all()

    async def catch_up(self) -> int:
        """Apply everything stored now; returns the position reached."""
        batch: list[RecordedEvent] = []
        async for event in self._store.read_all(self._position, self._projection.filter):
            batch.append(event)
            if len(batch) >= self._batch_size:
                await self._commit(batch)
                batch = []
        if batch:
            await self._commit(batch)
        return self._position

    async def run(self) -> None:
        """Catch up, then follow live events until cancelled. Events that arrive together are
        committed together."""
        queue: asyncio.Queue[RecordedEvent] = asyncio.Queue(maxsize=self._batch_size * 4)
        subscription = await self._store.subscribe_all(self._position, self._projection.filter)

        async def pump() -> None:
            async for event in subscription:
                await queue.put(event)

        pumping = asyncio.create_task(pump(), name=f"projection-{self._projection.name}")
        try:
            while True:
                raise_if_cancel_was_swallowed()
                if pumping.done():
                    pumping.result()  # re-raise what stopped the subscription
                    return
                try:
                    # Not wait_for: in Python 3.11 it can swallow the cancellation that stops
                    # this loop when it races a completing get().
                    async with asyncio.timeout(1.0):
                        first = await queue.get()
                except TimeoutError:
                    continue
                batch = [first]
                while len(batch) < self._batch_size and not queue.empty():
                    batch.append(queue.get_nowait())
                await self._commit(batch)
        finally:
            pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pumping
            await subscription.close()

    async def wait_for(self, position: int, timeout: float = 10.0) -> None:
        """Block until the projection has applied `position` (read-your-writes for a caller
        that just appended)."""
        async with asyncio.timeout(timeout), self._advanced:
            await self._advanced.wait_for(lambda: self._position >= position)

    async def wait_for_store(self, timeout: float = 10.0) -> None:
        """Block until the projection has applied every event of its filter that the store
        holds now. Not `wait_for(store.last_position())`: the store's last event may be one
        the filter never passes (an access, a listing), which the projection never reaches."""
        if await self._store.last_position() <= self._position:
            return  # nothing stored beyond what is applied: no read needed
        last_matching = self._position
        async for event in self._store.read_all(self._position, self._projection.filter):
            last_matching = event.position
        await self.wait_for(last_matching, timeout)

    def close(self) -> None:
        with self._db_lock:
            self._closed = True
            self._db.close()
