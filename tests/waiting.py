"""Wait on a condition with a deadline, instead of a fixed sleep that a busy 2-core CI machine can outrun."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


def wait_until(condition: Callable[[], object], *, timeout: float = 30.0, what: str = "the condition") -> None:
    """Poll ``condition`` every 20 ms until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


async def async_wait_until(
    condition: Callable[[], object | Awaitable[object]], *, timeout: float = 30.0, what: str = "the condition"
) -> None:
    """:func:`wait_until` for coroutines: ``condition`` may be sync or async."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)
