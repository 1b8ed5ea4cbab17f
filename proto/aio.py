"""asyncio helpers both ends of the wire share.

``asyncio.wait_for`` on Python 3.10 and 3.11 swallows a cancellation that lands in
the same loop step as the awaited thing finishes (CPython gh-86296): it returns the
result instead of raising. A loop that waits with it and is cancelled at shutdown
then runs on, and whoever awaits the cancelled task waits forever (seen as a
90 s test timeout on a fleet session leaving its ``async with``).
:func:`wait_within` is the same wait without that hole.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def wait_within(awaitable: Awaitable[T], timeout_s: float | None) -> T:
    """Await ``awaitable`` for at most ``timeout_s`` seconds (``None``: no limit).

    Raises :class:`asyncio.TimeoutError` on timeout, after cancelling the awaitable.
    A cancellation of the caller always raises :class:`asyncio.CancelledError`, even
    when the awaitable has just finished; its result is then dropped.
    """
    inner = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait((inner,), timeout=timeout_s)
    except BaseException:
        _drop(inner)
        raise
    if not done:
        _drop(inner)
        raise asyncio.TimeoutError
    return inner.result()


def _drop(inner: asyncio.Future[T]) -> None:
    if inner.done():
        _retrieve(inner)
    else:
        inner.cancel()


def _retrieve(done: asyncio.Future[T]) -> None:
    """Mark a finished future's error as seen (no "exception was never retrieved")."""
    if not done.cancelled():
        done.exception()


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], *, every_s: float = 1.0) -> None:
    """Cancel ``tasks`` and wait until all have ended, cancelling again every
    ``every_s`` seconds any that went on (one that swallowed a cancellation).
    Their results and errors are discarded. A cancellation of the caller still
    raises (the tasks are left cancelled)."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()  # a no-op on one that has ended
        done, pending = await asyncio.wait(pending, timeout=every_s)
        for task in done:
            _retrieve(task)
