"""The sealer: turns every event of a tenant into a leaf of the tenant's Merkle log, and cuts
signed, time-stamped, chained checkpoints.

A round for a tenant appends, atomically and with the exact expected version of the tenant's
seallog stream, the new leaves (LogLeavesAppended) and the checkpoint that covers them
(CheckpointSealed). A second sealer racing on the same tenant loses on the expected version,
reloads the winner's log and goes on: no lock, no leader, no fork. A sealer killed mid-round
has appended nothing of that round; on restart it reads the events again from its cursor.

A checkpoint is cut when `max_leaves` leaves wait or the oldest has waited `max_delay`
seconds. If the time-stamp authority cannot be reached, the round is retried with backoff
and the backlog reported; no leaf is dropped and no time is invented.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from archive.aio import raise_if_cancel_was_swallowed
from archive.eventstore import (
    ANY,
    NO_STREAM,
    SYSTEM_TENANT,
    EventStore,
    NewEvent,
    RecordedEvent,
    StreamFilter,
    StreamName,
    WrongExpectedVersion,
)
from archive.sealing.checkpoint import format_checkpoint, tenant_origin
from archive.sealing.leaves import leaf_hash_of, leaf_tenant
from archive.v1 import common_pb2, events_pb2
from services.sealing.log import SEALLOG_CATEGORY, TenantLog, load_tenant_log, seallog_stream

log = logging.getLogger(__name__)

CURSOR_STREAM = StreamName(SYSTEM_TENANT, SEALLOG_CATEGORY, "cursor")
# One LogLeavesAppended carries at most this many leaves (32-byte hash + id + position each),
# well under the event size limit.
MAX_LEAVES_PER_ROUND = 4000

SealFunction = Callable[[bytes], bytes]


@dataclass(frozen=True)
class Stamp:
    """A verified RFC 3161 time stamp of a checkpoint: the TimeStampResp (DER), the genTime it
    certifies, and the TSA's certificate path that validated it (recorded with the checkpoint:
    its evidence ships them)."""

    response: bytes
    gen_time: datetime
    tsa_chain_pem: str  # the TSA certificate, then its intermediates
    tsa_root_pem: str  # the TSA root the chain ends at


# Returns a verified time stamp of the data, or raises TimestampUnavailable.
TimestampFunction = Callable[[bytes], Awaitable[Stamp]]


class TimestampUnavailable(Exception):
    """The time-stamp authority could not be reached or refused: retry later."""


@dataclass
class _Pending:
    leaves: list[tuple[RecordedEvent, bytes]] = field(default_factory=list)
    since: float = 0.0  # monotonic time the oldest waiting leaf arrived


@dataclass
class SealerStats:
    rounds: int = 0
    leaves: int = 0
    lost_races: int = 0
    timestamp_failures: int = 0


class Sealer:
    def __init__(
        self,
        store: EventStore,
        *,
        origin: str,
        seal: SealFunction,
        timestamp: TimestampFunction,
        max_leaves: int = 1000,
        max_delay: float = 0.5,
        retry_delay: float = 1.0,
    ) -> None:
        self._store = store
        self._origin = origin
        self._seal = seal
        self._timestamp = timestamp
        self._max_leaves = min(max_leaves, MAX_LEAVES_PER_ROUND)
        self._max_delay = max_delay
        self._retry_delay = retry_delay
        self.logs: dict[str, TenantLog] = {}
        self._pending: dict[str, _Pending] = {}
        self._seen_position = 0
        self._cursor_written = 0
        self._sealed = asyncio.Condition()
        self._retry_at: dict[str, float] = {}
        self.stats = SealerStats()

    # ---- state ----

    async def load(self) -> int:
        """Rebuild every tenant's log from the seallog streams; returns the position to resume
        reading events after."""
        async for recorded in self._store.read_all(0, StreamFilter(category=SEALLOG_CATEGORY)):
            if recorded.stream == CURSOR_STREAM:
                cursor = events_pb2.SealerCursorAdvanced.FromString(recorded.data)
                self._cursor_written = max(self._cursor_written, cursor.position)
                continue
            tenant = recorded.stream.tenant
            self.logs.setdefault(tenant, TenantLog(tenant)).apply(recorded)
        self._seen_position = self._cursor_written
        return self._cursor_written

    def backlog(self) -> dict[str, int]:
        """Leaves waiting for a checkpoint, per tenant (an SRE's first question)."""
        return {t: len(p.leaves) for t, p in self._pending.items() if p.leaves}

    def log_of(self, tenant: str) -> TenantLog:
        return self.logs.setdefault(tenant, TenantLog(tenant))

    # ---- feeding ----

    def offer(self, event: RecordedEvent) -> None:
        """Queue an event as a leaf of its tenant's log (unless it is sealed already)."""
        self._seen_position = max(self._seen_position, event.position)
        tenant = leaf_tenant(event)
        if tenant is None:
            return
        if event.position <= self.log_of(tenant).last_position:
            return  # sealed by us before a restart, or by a sealer that won a race
        pending = self._pending.setdefault(tenant, _Pending())
        if not pending.leaves:
            pending.since = time.monotonic()
        pending.leaves.append((event, leaf_hash_of(event)))

    def due(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        return [
            tenant
            for tenant, pending in self._pending.items()
            if pending.leaves
            and now >= self._retry_at.get(tenant, 0.0)
            and (len(pending.leaves) >= self._max_leaves or now - pending.since >= self._max_delay)
        ]

    # ---- sealing ----

    async def seal_round(self, tenant: str) -> bool:
        """Append the waiting leaves of a tenant with a checkpoint covering them. Returns
        False if the round must be retried later (time-stamp authority unavailable)."""
        pending = self._pending[tenant]
        tenant_log = self.log_of(tenant)
        batch = pending.leaves[: self._max_leaves]
        if not batch:
            return True  # another sealer took them all
        previous = tenant_log.latest_checkpoint
        first_index = tenant_log.size
        for _, leaf in batch:
            tenant_log.tree.append(leaf)
        size = tenant_log.tree.size
        root = tenant_log.tree.root()
        checkpoint = format_checkpoint(tenant_origin(self._origin, tenant), size, root)
        try:
            seal = self._seal(checkpoint)
            stamp = await self._timestamp(checkpoint)
        except TimestampUnavailable as exc:
            await self._reload(tenant)  # undo the optimistic tree appends
            self.stats.timestamp_failures += 1
            self._retry_at[tenant] = time.monotonic() + self._retry_delay
            log.warning(
                "time-stamp authority unavailable (%s); %d leaves of %s wait, retrying in %.1fs",
                exc,
                len(pending.leaves),
                tenant,
                self._retry_delay,
            )
            return False
        stamped_at = Timestamp()
        stamped_at.FromDatetime(stamp.gen_time)
        tenant_id = common_pb2.TenantId(value=tenant)
        leaves = events_pb2.LogLeavesAppended(
            tenant=tenant_id,
            first_index=first_index,
            leaf_hashes=[leaf for _, leaf in batch],
            event_ids=[event.event_id for event, _ in batch],
            event_positions=[event.position for event, _ in batch],
        )
        sealed = events_pb2.CheckpointSealed(
            tenant=tenant_id,
            tree_size=size,
            root_hash=root,
            checkpoint=checkpoint,
            seal=seal,
            timestamp_response=stamp.response,
            timestamped_at=stamped_at,
            tsa_chain_pem=stamp.tsa_chain_pem,
            tsa_root_pem=stamp.tsa_root_pem,
        )
        if previous is not None:
            sealed.previous_checkpoint_sha256 = hashlib.sha256(previous.checkpoint).digest()
            sealed.previous_tree_size = previous.tree_size
            sealed.consistency_proof.extend(
                tenant_log.tree.consistency_proof(previous.tree_size, size)
            )
        expected = NO_STREAM if tenant_log.stream_version is None else tenant_log.stream_version
        try:
            result = await self._store.append(
                seallog_stream(tenant),
                [NewEvent.of(leaves), NewEvent.of(sealed)],
                expected,
            )
        except WrongExpectedVersion:
            # Another sealer sealed this tenant first: adopt its log, keep what it lacks.
            self.stats.lost_races += 1
            await self._reload(tenant)
            self._drop_sealed(tenant)
            log.info("another sealer advanced %s first; adopted its log", tenant)
            return True
        except BaseException:
            await self._reload(tenant)
            raise
        tenant_log.record_round(leaves, sealed, result.version)
        self._drop_sealed(tenant)
        self._retry_at.pop(tenant, None)
        self.stats.rounds += 1
        self.stats.leaves += len(batch)
        async with self._sealed:
            self._sealed.notify_all()
        return True

    async def _reload(self, tenant: str) -> None:
        self.logs[tenant] = await load_tenant_log(self._store, tenant)

    def _drop_sealed(self, tenant: str) -> None:
        pending = self._pending.get(tenant)
        if pending is None:
            return
        last = self.logs[tenant].last_position
        pending.leaves = [(e, h) for e, h in pending.leaves if e.position > last]
        if pending.leaves:
            pending.since = min(pending.since, time.monotonic())

    async def seal_due(self) -> None:
        for tenant in self.due():
            # Full rounds back to back while a backlog lasts; a remainder waits its delay.
            while await self.seal_round(tenant) and (
                len(self._pending[tenant].leaves) >= self._max_leaves
            ):
                pass
        await self._advance_cursor()

    async def _advance_cursor(self) -> None:
        """Record the position up to which every tenant's events are sealed, so a restart
        need not re-read everything; written at most every few seconds."""
        waiting = [p.leaves[0][0].position for p in self._pending.values() if p.leaves]
        cursor = min(waiting) - 1 if waiting else self._seen_position
        if cursor - self._cursor_written < 1 or time.monotonic() - self._cursor_time < 2.0:
            return
        await self._store.append(
            CURSOR_STREAM, [NewEvent.of(events_pb2.SealerCursorAdvanced(position=cursor))], ANY
        )
        self._cursor_written = cursor
        self._cursor_time = time.monotonic()

    _cursor_time = 0.0

    # ---- running ----

    async def run(self, tick: float = 0.05) -> None:
        """Load, then follow every event of the store and seal, until cancelled."""
        after = await self.load()
        subscription = await self._store.subscribe_all(after)
        queue: asyncio.Queue[RecordedEvent] = asyncio.Queue(maxsize=10_000)

        async def pump() -> None:
            async for event in subscription:
                await queue.put(event)

        pumping = asyncio.create_task(pump(), name="sealer-pump")
        try:
            while True:
                raise_if_cancel_was_swallowed()
                if pumping.done():
                    pumping.result()
                    return
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow the
                # cancellation that stops this loop when it races a completing get().
                try:
                    async with asyncio.timeout(tick):
                        event = await queue.get()
                    self.offer(event)
                    while not queue.empty():
                        self.offer(queue.get_nowait())
                except TimeoutError:
                    pass
                await self.seal_due()
        finally:
            pumping.cancel()
            await subscription.close()

    async def wait_sealed(self, tenant: str, event_id: str, timeout: float) -> bool:
        """Until the event is a leaf covered by a checkpoint (evidence can then be given)."""

        def covered() -> bool:
            tenant_log = self.logs.get(tenant)
            if tenant_log is None or event_id not in tenant_log.index_of_event:
                return False
            return tenant_log.checkpoint_covering(tenant_log.index_of_event[event_id]) is not None

        try:
            async with asyncio.timeout(timeout), self._sealed:
                await self._sealed.wait_for(covered)
        except TimeoutError:
            return covered()
        return True
