"""Shared by the projection tests: a small projection whose state shows any skipped or
double-applied event."""

from __future__ import annotations

import sqlite3
import uuid

from archive.eventstore import ANY, EventStore, NewEvent, RecordedEvent, StreamFilter, StreamName
from archive.projections import Projection


class DocumentCounts(Projection):
    """Counts events per tenant and remembers each event id once: a double-applied event
    shows as a count that is too high or a primary key violation."""

    name = "document-counts"

    def __init__(self, fail_at: int | None = None, filter: StreamFilter | None = None) -> None:
        self.fail_at = fail_at
        self.filter = filter
        self.applied = 0

    def setup(self, db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS counts (tenant TEXT PRIMARY KEY, n INTEGER)")
        db.execute("CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY, position INT)")

    def apply(self, db: sqlite3.Connection, event: RecordedEvent) -> None:
        self.applied += 1
        if self.fail_at is not None and self.applied == self.fail_at:
            raise RuntimeError("simulated crash in the middle of a batch")
        db.execute("INSERT INTO seen VALUES (?, ?)", (event.event_id, event.position))
        db.execute(
            "INSERT INTO counts VALUES (?, 1) ON CONFLICT(tenant) DO UPDATE SET n = n + 1",
            (event.tenant,),
        )


def dump(db: sqlite3.Connection) -> tuple[list[tuple[object, ...]], ...]:
    return (
        db.execute("SELECT * FROM counts ORDER BY tenant").fetchall(),
        db.execute("SELECT * FROM seen ORDER BY position").fetchall(),
    )


async def fill(store: EventStore, n: int) -> None:
    for i in range(n):
        tenant = ["acme", "globex", "initech"][i % 3]
        await store.append(
            StreamName(tenant, "document", uuid.uuid4().hex),
            [NewEvent(type="t", data=b"%d" % i)],
            ANY,
        )
