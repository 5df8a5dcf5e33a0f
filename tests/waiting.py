"""Waiting on a condition instead of sleeping: a test that sleeps and then asserts passes or
fails with the machine's speed; one that waits for what it needs only fails when it is wrong."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(condition: Callable[[], bool], timeout: float = 20, what: str = "") -> None:
    """Poll until `condition()` holds. The timeout only bounds a broken run; it is an
    AssertionError (saying `what` was awaited) so that it reads as a failed test."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 - state owned by another task or thread
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"still waiting after {timeout} s for {what or condition}") from None
