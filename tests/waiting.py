"""Waiting on a condition instead of sleeping: a test that sleeps and then asserts passes or
fails with the machine's speed; one that waits for what it needs only fails when it is wrong."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 20, what: str = ""
) -> None:
    """Poll until `condition()` (plain or a coroutine function) holds. The timeout only
    bounds a broken run; it raises AssertionError, naming `what` was awaited."""

    async def holds() -> bool:
        result = condition()
        return bool(await result) if inspect.isawaitable(result) else bool(result)

    try:
        async with asyncio.timeout(timeout):
            while not await holds():  # noqa: ASYNC110 - state owned by another task or thread
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"still waiting after {timeout} s for {what or condition}") from None
