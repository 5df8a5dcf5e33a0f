"""NATS plumbing shared by every service: one connection with reconnects, and a clean
shutdown that drains what is in flight."""

from __future__ import annotations

import contextlib
import logging

import nats
from nats.aio.client import Client as NATS

log = logging.getLogger(__name__)


async def connect(
    url: str,
    *,
    name: str,
    connect_timeout: float = 5.0,
    max_reconnect_attempts: int = -1,
    reconnect_time_wait: float = 0.5,
) -> NATS:
    """Connect, reconnecting forever by default: a NATS restart must not kill a service."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error on %s: %r", name, exc)

    async def on_disconnected() -> None:
        log.warning("nats disconnected (%s)", name)

    async def on_reconnected() -> None:
        log.info("nats reconnected (%s)", name)

    return await nats.connect(
        url,
        name=name,
        connect_timeout=connect_timeout,
        allow_reconnect=True,
        max_reconnect_attempts=max_reconnect_attempts,
        reconnect_time_wait=reconnect_time_wait,
        drain_timeout=5,  # a shutdown must not hang on a server that is gone
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )


async def close(nc: NATS) -> None:
    """Drain: finish in-flight subscriptions and flush pending publishes, then close."""
    if nc.is_closed:
        return
    if not nc.is_connected:  # nothing can be drained while the server is away
        with contextlib.suppress(Exception):
            await nc.close()
        return
    try:
        await nc.drain()
    except Exception as exc:
        log.warning("nats drain failed, closing: %r", exc)
        with contextlib.suppress(Exception):
            await nc.close()
