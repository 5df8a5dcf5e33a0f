"""The document registry: a projection of DocumentIngested events into SQLite, queried by
GetDocument and ListDocuments. It can be deleted at any time; it rebuilds from the store."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path

from archive.documents import DOCUMENT_CATEGORY, info_from
from archive.eventstore import RecordedEvent, StreamFilter
from archive.projections import Projection, open_database
from archive.v1 import events_pb2, search_pb2

INGESTED = events_pb2.DocumentIngested.DESCRIPTOR.full_name


class DocumentRegistryProjection(Projection):
    name = "document-registry"
    # Only document streams; positions still advance over every event of those streams.
    filter = StreamFilter(category=DOCUMENT_CATEGORY)

    def setup(self, db: sqlite3.Connection) -> None:
        db.execute(
            """CREATE TABLE IF NOT EXISTS documents (
                tenant TEXT NOT NULL,
                document_id TEXT NOT NULL,
                position INTEGER NOT NULL,
                document_class TEXT NOT NULL,
                info BLOB NOT NULL,
                PRIMARY KEY (tenant, document_id)
            )"""
        )
        db.execute(
            "CREATE INDEX IF NOT EXISTS documents_newest ON documents (tenant, position DESC)"
        )
        db.execute(
            "CREATE INDEX IF NOT EXISTS documents_by_class "
            "ON documents (tenant, document_class, position DESC)"
        )
        db.execute(
            """CREATE TABLE IF NOT EXISTS document_metadata (
                tenant TEXT NOT NULL,
                document_id TEXT NOT NULL,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                PRIMARY KEY (tenant, document_id, key)
            )"""
        )
        db.execute(
            "CREATE INDEX IF NOT EXISTS metadata_lookup ON document_metadata (tenant, key, value)"
        )

    def apply(self, db: sqlite3.Connection, event: RecordedEvent) -> None:
        if event.type != INGESTED:
            return  # accesses and later lifecycle events do not change the registry (yet)
        ingested = events_pb2.DocumentIngested.FromString(event.data)
        info = info_from(ingested, event.position)
        tenant, document_id = event.tenant, ingested.document_id.value
        db.execute(
            "INSERT OR IGNORE INTO documents VALUES (?, ?, ?, ?, ?)",
            (
                tenant,
                document_id,
                event.position,
                ingested.document_class,
                info.SerializeToString(deterministic=True),
            ),
        )
        db.executemany(
            "INSERT OR IGNORE INTO document_metadata VALUES (?, ?, ?, ?)",
            [(tenant, document_id, k, v) for k, v in ingested.metadata.items()],
        )


class RegistryQueries:
    """Read side of the registry, on its own connection (WAL lets it read while the runner
    writes). Every query is scoped to one tenant."""

    def __init__(self, db_path: Path) -> None:
        self._db = open_database(db_path)
        self._db.execute("PRAGMA query_only = ON")

    def get(self, tenant: str, document_id: str) -> search_pb2.DocumentInfo | None:
        row = self._db.execute(
            "SELECT info FROM documents WHERE tenant = ? AND document_id = ?",
            (tenant, document_id),
        ).fetchone()
        return search_pb2.DocumentInfo.FromString(row[0]) if row else None

    def page(
        self,
        tenant: str,
        *,
        before_position: int | None,
        limit: int,
        document_class: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> list[search_pb2.DocumentInfo]:
        """Newest first; `before_position` continues after a previous page."""
        sql = ["SELECT d.info FROM documents d WHERE d.tenant = ?"]
        args: list[object] = [tenant]
        if before_position is not None:
            sql.append("AND d.position < ?")
            args.append(before_position)
        if document_class:
            sql.append("AND d.document_class = ?")
            args.append(document_class)
        for key, value in (metadata or {}).items():
            sql.append(
                "AND EXISTS (SELECT 1 FROM document_metadata m WHERE m.tenant = d.tenant "
                "AND m.document_id = d.document_id AND m.key = ? AND m.value = ?)"
            )
            args.extend((key, value))
        sql.append("ORDER BY d.position DESC LIMIT ?")
        args.append(limit)
        rows = self._db.execute(" ".join(sql), args).fetchall()
        return [search_pb2.DocumentInfo.FromString(r[0]) for r in rows]

    def close(self) -> None:
        self._db.close()
