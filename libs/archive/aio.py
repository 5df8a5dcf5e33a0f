"""asyncio helpers shared by the long-running loops (projections, the sealer)."""

from __future__ import annotations

import asyncio


def raise_if_cancel_was_swallowed() -> None:
    """Python 3.11's asyncio.wait_for (used inside nats-py) can swallow a cancellation; the
    task still counts the request, so a loop that checks this stops as asked."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
