"""Whether to zstd-compress a split payload: only while the link makes it pay.

Compressing costs CPU on both ends; it pays only when the transfer time it saves is
larger. On a fast LAN or loopback, zstd on float32 features that barely shrink costs
more than it saves; over Wi-Fi or LTE the same bytes are worth squeezing.

:class:`CompressionChooser` decides per branch, from what it measured:

- the branch's *saving* (bytes zstd removes per frame) and *cost* (ms to compress),
  moving averages over the frames it compressed;
- a *floor* under the uplink rate: payload bytes / (round trip - server time) of
  recent frames, the best of the last ``window``. Latency and the downlink count as
  transfer time here, so the floor is below the true rate and the rule errs
  towards compressing.

It compresses when ``saving * 8 / floor > 2 * cost`` (decompression is charged as
much as compression; zstd's is several times cheaper). Before anything is measured
it compresses, as a fixed ``zstd`` client would; while it does not, every
``probe_every``-th frame of the branch is still compressed to keep saving and cost
current.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

__all__ = ["COMPRESSION_MODES", "CompressionChooser"]

COMPRESSION_MODES = ("auto", "zstd", "raw")


@dataclass
class _BranchCodec:
    saved_bytes: float
    cost_ms: float
    since_probe: int = 0


class CompressionChooser:
    """``mode``: ``auto`` (decide as the module says), ``zstd`` (always), ``raw`` (never)."""

    def __init__(self, mode: str = "auto", *, probe_every: int = 32, window: int = 16) -> None:
        if mode not in COMPRESSION_MODES:
            raise ValueError(
                f"compression must be one of {', '.join(COMPRESSION_MODES)}, got {mode!r}"
            )
        if probe_every < 1 or window < 1:
            raise ValueError("probe_every and window must be >= 1")
        self.mode = mode
        self.probe_every = probe_every
        self._branches: dict[str, _BranchCodec] = {}
        self._rates: deque[float] = deque(maxlen=window)
        # Heads run in worker threads as well as on the event loop.
        self._lock = threading.Lock()

    @property
    def uplink_floor_mbps(self) -> float | None:
        """The rate the decision assumes (None until a transfer was measured)."""
        with self._lock:
            return max(self._rates) if self._rates else None

    def pays(self, branch: str) -> bool | None:
        """Whether compressing ``branch`` pays at the measured floor (None: not known yet)."""
        with self._lock:
            return self._pays(branch)

    def _pays(self, branch: str) -> bool | None:
        stats = self._branches.get(branch)
        if stats is None or not self._rates:
            return None
        saved_ms = stats.saved_bytes * 8.0 / (max(self._rates) * 1000.0)
        return saved_ms > 2.0 * stats.cost_ms

    def should_compress(self, branch: str) -> bool:
        """The decision for the next frame of ``branch`` (counts towards the next probe)."""
        if self.mode != "auto":
            return self.mode == "zstd"
        with self._lock:
            pays = self._pays(branch)
            if pays is None or pays:
                return True
            stats = self._branches[branch]
            stats.since_probe += 1
            if stats.since_probe >= self.probe_every:
                stats.since_probe = 0
                return True
            return False

    def observe_compression(
        self, branch: str, raw_bytes: int, packed_bytes: int, cost_ms: float
    ) -> None:
        """One frame of ``branch`` compressed from ``raw_bytes`` to ``packed_bytes``."""
        saved = float(raw_bytes - packed_bytes)
        with self._lock:
            stats = self._branches.get(branch)
            if stats is None:
                self._branches[branch] = _BranchCodec(saved, cost_ms)
            else:
                stats.saved_bytes = 0.8 * stats.saved_bytes + 0.2 * saved
                stats.cost_ms = 0.8 * stats.cost_ms + 0.2 * cost_ms

    def observe_transfer(self, payload_bytes: int, network_ms: float) -> None:
        """A frame's payload crossed the link and came back answered in ``network_ms``."""
        if payload_bytes > 0 and network_ms > 0:
            with self._lock:
                self._rates.append(payload_bytes * 8.0 / (network_ms * 1000.0))

    def forget_link(self) -> None:
        """Drop the rate samples (another server, another link); savings stay."""
        with self._lock:
            self._rates.clear()
