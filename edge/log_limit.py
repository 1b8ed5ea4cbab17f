"""Rate-limited log lines, for what any client can provoke at will (garbage requests).

A line per bad request lets one client fill the disk and drown every other line;
none at all hides an attack. :class:`LogLimiter` writes the first line of each kind,
then at most one per ``interval_s``, saying how many it held back meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["LogLimiter"]


class LogLimiter:
    """``limiter.warning("undecodable", "bad request: %s", why)``: one line per kind per interval.

    ``clock`` (monotonic seconds) is injectable so tests need not sleep.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._log = logger
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}  # kind -> when its last line was written
        self._held: dict[str, int] = {}  # kind -> lines held back since then

    def warning(self, kind: str, msg: str, *args: object) -> bool:
        """Log ``msg % args`` at WARNING unless ``kind`` logged within ``interval_s``;
        True when written."""
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval_s:
            self._held[kind] = self._held.get(kind, 0) + 1
            return False
        held = self._held.pop(kind, 0)
        self._last[kind] = now
        if held:
            msg += f" ({held} more like this in the last %.0f s not logged)"
            args = (*args, now - last if last is not None else 0.0)
        self._log.warning(msg, *args)
        return True
