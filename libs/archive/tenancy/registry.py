"""TenantRegistry: the in-memory projection of tenants and token hashes that authenticates
callers.

It follows the `_system.tenant.*` streams through `subscribe_all`. A token it does not know
may have been issued a moment ago by another process, so on a miss it first catches up with
the store (read_all up to last_position) and only then answers no: read-your-writes for tokens.
A revocation made elsewhere takes effect as soon as the subscription delivers it (normally
milliseconds; call `catch_up()` to force it).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from dataclasses import dataclass
from typing import Final

from archive.eventstore import SYSTEM_TENANT, EventStore, RecordedEvent, StreamFilter, Subscription
from archive.tenancy.commands import TENANT_CATEGORY
from archive.tenancy.roles import roles_of_event
from archive.tenancy.tokens import digest_matches, token_id_of
from archive.v1.events_pb2 import TenantTokenIssued, TenantTokenRevoked

log = logging.getLogger(__name__)

TENANT_EVENTS: Final = StreamFilter(tenant=SYSTEM_TENANT, category=TENANT_CATEGORY)
_ISSUED: Final = TenantTokenIssued.DESCRIPTOR.full_name
_REVOKED: Final = TenantTokenRevoked.DESCRIPTOR.full_name
_STOP_TIMEOUT_SECONDS: Final = 5.0


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant and the id of the token it presented."""

    tenant: str
    token_id: str
    # What the token may do (archive.tenancy.roles); the operator has no tenant roles.
    roles: frozenset[str] = frozenset()

    @property
    def is_operator(self) -> bool:
        return self.tenant == SYSTEM_TENANT


# The platform operator, authenticated by the operator token rather than by a tenant token.
OPERATOR: Final = Principal(tenant=SYSTEM_TENANT, token_id="operator")


class TokenCheck(enum.Enum):
    OK = "ok"
    MALFORMED = "malformed"  # not shaped like "arc_<token id>_<secret>"
    UNKNOWN = "unknown"  # no such token (or a wrong secret for a known id)
    REVOKED = "revoked"


@dataclass(frozen=True)
class Verification:
    check: TokenCheck
    principal: Principal | None = None


@dataclass
class _TokenEntry:
    tenant: str
    sha256: bytes
    roles: frozenset[str]
    revoked: bool = False


class TenantRegistry:
    def __init__(self, store: EventStore, *, retry_delay: float = 1.0) -> None:
        self._store = store
        self._retry_delay = retry_delay
        # Keyed by the public token id; the secret is then checked against the stored hash
        # in constant time.
        self._tokens: dict[str, _TokenEntry] = {}
        # Every matching event at or below this position has been applied.
        self._position = 0
        self._catch_up_lock = asyncio.Lock()
        self._catch_ups_started = 0
        self._last_finished_catch_up = 0
        self._follower: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._stopping = False

    @property
    def position(self) -> int:
        return self._position

    async def start(self) -> None:
        """Load every tenant event, then follow new ones in the background."""
        if self._follower is not None:
            return
        await self.catch_up()
        self._stopping = False
        self._follower = asyncio.create_task(self._follow(), name="tenant-registry")

    async def stop(self) -> None:
        follower, self._follower = self._follower, None
        if follower is None:
            return
        self._stopping = True
        # Ask twice. Closing the subscription ends its iteration even if a cancellation gets
        # swallowed on the way (asyncio.wait_for in Python 3.11 can lose one, and nats-py uses
        # it); cancelling makes the stop prompt instead of waiting for the next poll.
        subscription = self._subscription
        closing = asyncio.ensure_future(subscription.close()) if subscription else None
        follower.cancel()
        done, _ = await asyncio.wait({follower}, timeout=_STOP_TIMEOUT_SECONDS)
        if closing is not None:
            with contextlib.suppress(Exception):
                await closing
        if not done:
            log.warning("tenant registry follower did not stop within %ss", _STOP_TIMEOUT_SECONDS)

    async def verify(self, token: str) -> Verification:
        """Check a bearer token; says why it is refused. Raises StoreUnavailable if a needed
        catch-up cannot reach the store (better than wrongly answering "unknown")."""
        token_id = token_id_of(token)
        if token_id is None:
            return Verification(TokenCheck.MALFORMED)
        entry = self._tokens.get(token_id)
        if entry is None:
            await self._catch_up_since_now()
            entry = self._tokens.get(token_id)
        if entry is None or not digest_matches(token, entry.sha256):
            return Verification(TokenCheck.UNKNOWN)
        if entry.revoked:
            return Verification(TokenCheck.REVOKED)
        return Verification(
            TokenCheck.OK, Principal(tenant=entry.tenant, token_id=token_id, roles=entry.roles)
        )

    async def catch_up(self) -> int:
        """Apply every tenant event stored now; returns the position reached."""
        async with self._catch_up_lock:
            await self._catch_up_locked()
        return self._position

    async def _catch_up_since_now(self) -> None:
        # Misses arriving together share one catch-up, as long as it started after they did.
        ticket = self._catch_ups_started
        async with self._catch_up_lock:
            if self._last_finished_catch_up > ticket:
                return
            await self._catch_up_locked()

    async def _catch_up_locked(self) -> None:
        self._catch_ups_started += 1
        number = self._catch_ups_started
        target = await self._store.last_position()
        if target > self._position:
            async for event in self._store.read_all(after=self._position, filter=TENANT_EVENTS):
                self._apply(event)
            # read_all covered everything up to `target`, including what the filter skipped.
            self._position = max(self._position, target)
        self._last_finished_catch_up = number

    async def _follow(self) -> None:
        while not self._stopping:
            try:
                self._subscription = await self._store.subscribe_all(
                    after=self._position, filter=TENANT_EVENTS
                )
                async for event in self._subscription:
                    self._apply(event)
                return  # the subscription was closed by stop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep following: a store outage must not stop auth
                if self._stopping:
                    return
                log.warning("tenant registry subscription failed, retrying: %r", exc)
                await asyncio.sleep(self._retry_delay)
            finally:
                subscription, self._subscription = self._subscription, None
                if subscription is not None:
                    with contextlib.suppress(Exception):
                        await subscription.close()

    def _apply(self, event: RecordedEvent) -> None:
        # Both the follower and catch-ups feed us, each in position order without gaps.
        if event.position <= self._position:
            return
        self._position = event.position
        tenant = event.stream.id
        if event.type == _ISSUED:
            issued = TenantTokenIssued.FromString(event.data)
            self._tokens[issued.token_id] = _TokenEntry(
                tenant, bytes(issued.token_sha256), roles_of_event(issued.roles)
            )
        elif event.type == _REVOKED:
            revoked = TenantTokenRevoked.FromString(event.data)
            entry = self._tokens.get(revoked.token_id)
            if entry is not None and entry.tenant == tenant:
                entry.revoked = True
