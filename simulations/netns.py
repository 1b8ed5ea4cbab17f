"""Linux backend: two network namespaces joined by a veth pair, shaped with ``tc``.

Root only. The *device* namespace's veth egress follows the uplink trace, the
*edge* namespace's veth egress the downlink trace: an ``htb`` class whose rate is
changed (``tc class change``) at the trace's change points, with a byte-bounded
leaf queue. Unlike the user-space relay, this queue really drops (``bfifo``), and
TCP reacts to real loss.

Delay and random loss need the ``netem`` qdisc. Whether the kernel has it is
checked at run time by a dry attempt on the new veth; without it
``delay_supported`` is False and asking for ``delay_ms > 0`` or ``loss > 0``
raises :class:`DelayUnsupportedError` (the kernel this was written on has no
netem). Segments shorter than ``update_interval_s`` are averaged, because each
change costs a ``tc`` process start; a zero rate becomes 8 kbit/s (htb needs a
positive rate).

Traffic stays inside the two namespaces (addresses ``10.203.0.1`` / ``.2``).
Namespaces are deleted on exit, on errors during setup, and at interpreter exit.

    with NetnsLink(uplink=trace) as link:
        server = link.socket("edge"); server.bind((link.edge_address, 0)) ...
        subprocess.run([*link.exec_prefix("device"), "python", "client.py"])
"""

from __future__ import annotations

import atexit
import ctypes
import itertools
import logging
import math
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from types import TracebackType
from typing import Literal

from splitedge.simulations.traces import BandwidthTrace

log = logging.getLogger(__name__)

Side = Literal["device", "edge"]
_CLONE_NEWNET = 0x40000000
_MIN_RATE_BPS = 8000
_FRAME_BYTES = 1514  # Ethernet header + 1500-byte IP packet
_TCP_PAYLOAD_BYTES = 1448  # 1500 - IPv4 (20) - TCP with timestamps (32)
_PREFIX = "se"
_counter = itertools.count()


class NetnsError(RuntimeError):
    """A namespace, link or tc command failed."""


class NetnsUnavailableError(NetnsError):
    """This process cannot create network namespaces (not root, no iproute2 ...)."""


class DelayUnsupportedError(NetnsError):
    """Delay or loss asked for, but the kernel has no netem qdisc."""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)


def _check(*args: str) -> str:
    proc = _run(*args)
    if proc.returncode != 0:
        raise NetnsError(f"`{' '.join(args)}` failed: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def netns_unavailable_reason() -> str | None:
    """Why namespaces cannot be used here, or None when they can (tests skip on it)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (network namespaces and tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    name = f"{_PREFIX}probe{os.getpid()}"
    proc = _run("ip", "netns", "add", name)
    if proc.returncode != 0:
        return f"`ip netns add` failed: {proc.stderr.strip()}"
    _run("ip", "netns", "del", name)
    return None


def cleanup_stale() -> list[str]:
    """Delete namespaces left by NetnsLinks of processes that no longer exist."""
    removed = []
    for line in _run("ip", "netns", "list").stdout.splitlines():
        m = re.match(rf"({_PREFIX}(\d+)x\d+-(dev|edge))\b", line)
        if m and not os.path.exists(f"/proc/{m.group(2)}"):
            _run("ip", "netns", "del", m.group(1))
            removed.append(m.group(1))
    return removed


class NetnsLink:
    """A device namespace and an edge namespace joined by a trace-shaped veth pair."""

    device_address = "10.203.0.1"
    edge_address = "10.203.0.2"

    def __init__(
        self,
        uplink: BandwidthTrace,
        downlink: BandwidthTrace | None = None,
        *,
        delay_ms: float = 0.0,
        loss: float = 0.0,
        queue_bytes: int = 262_144,
        update_interval_s: float = 0.1,
        payload_rate: bool = True,
    ) -> None:
        if delay_ms < 0 or not (0.0 <= loss < 1.0) or queue_bytes < 1514:
            raise NetnsError(
                f"need delay_ms >= 0, 0 <= loss < 1, queue_bytes >= 1514; got "
                f"{delay_ms}, {loss}, {queue_bytes}"
            )
        if update_interval_s < 0.01:
            raise NetnsError(f"update_interval_s={update_interval_s} is below 10 ms")
        self.traces = {"device": uplink, "edge": downlink or uplink}
        self.delay_ms = delay_ms
        self.loss = loss
        self.queue_bytes = queue_bytes
        self.update_interval_s = update_interval_s
        # htb counts whole Ethernet frames; scaling by frame/payload size makes the TCP
        # payload rate follow the trace, as the user-space link (and throughput logs) do.
        self._frame_overhead = _FRAME_BYTES / _TCP_PAYLOAD_BYTES if payload_rate else 1.0
        tag = f"{_PREFIX}{os.getpid()}x{next(_counter)}"
        self.namespaces: dict[Side, str] = {"device": f"{tag}-dev", "edge": f"{tag}-edge"}
        # Interface names are limited to 15 characters.
        self.interfaces: dict[Side, str] = {"device": f"v{tag[-12:]}d", "edge": f"v{tag[-12:]}e"}
        self.delay_supported = False
        self.rate_changes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> NetnsLink:
        reason = netns_unavailable_reason()
        if reason is not None:
            raise NetnsUnavailableError(reason)
        atexit.register(self._delete_namespaces)
        try:
            self._create()
            self._shape()
        except BaseException:
            self._delete_namespaces()
            raise
        self._started = True
        self._thread = threading.Thread(target=self._follow_traces, name="netns-rates", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._delete_namespaces()
        atexit.unregister(self._delete_namespaces)

    def _create(self) -> None:
        dev_ns, edge_ns = self.namespaces["device"], self.namespaces["edge"]
        dev_if, edge_if = self.interfaces["device"], self.interfaces["edge"]
        _check("ip", "netns", "add", dev_ns)
        _check("ip", "netns", "add", edge_ns)
        # Create the pair inside the device namespace so it never appears in ours.
        _check("ip", "-n", dev_ns, "link", "add", dev_if, "type", "veth", "peer", "name", edge_if)
        _check("ip", "-n", dev_ns, "link", "set", edge_if, "netns", edge_ns)
        for side, addr in (("device", self.device_address), ("edge", self.edge_address)):
            ns, ifname = self.namespaces[side], self.interfaces[side]
            _check("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", ifname)
            # One MTU-sized frame per skb, so htb and bfifo see real packets (not 64 KB GSO
            # bursts); older iproute2 lacks the knob, which only costs some precision.
            _run("ip", "-n", ns, "link", "set", ifname, "gso_max_segs", "1")
            _check("ip", "-n", ns, "link", "set", ifname, "up")
            _check("ip", "-n", ns, "link", "set", "lo", "up")

    def _delete_namespaces(self) -> None:
        for ns in self.namespaces.values():
            _run("ip", "netns", "del", ns)

    # -- shaping ------------------------------------------------------------------------

    def _htb_args(self, rate_mbps: float) -> list[str]:
        rate_bps = max(_MIN_RATE_BPS, round(rate_mbps * 1e6 * self._frame_overhead))
        # Bucket of ~2 ms of traffic (at least two full frames) keeps htb accurate at
        # high rates without letting long bursts through at low ones.
        burst_bytes = max(3028, int(rate_bps / 8 * 0.002))
        rate, burst = f"{rate_bps}bit", str(burst_bytes)
        return ["rate", rate, "ceil", rate, "burst", burst, "cburst", burst]

    def _shape(self) -> None:
        for side in ("device", "edge"):
            ns, ifname = self.namespaces[side], self.interfaces[side]
            tc = ["tc", "-n", ns]
            _check(
                *tc, "qdisc", "add", "dev", ifname, "root", "handle", "1:", "htb", "default", "1"
            )
            rate_args = self._htb_args(self.traces[side].rate_at(0.0))
            _check(
                *tc, "class", "add", "dev", ifname, "parent", "1:", "classid", "1:1", "htb",
                *rate_args,
            )  # fmt: skip
            # The dry attempt that tells whether this kernel has netem.
            netem = _run(
                *tc, "qdisc", "add", "dev", ifname, "parent", "1:1", "handle", "10:", "netem"
            )
            self.delay_supported = netem.returncode == 0
            if self.delay_supported:
                limit_packets = max(1, self.queue_bytes // 1514)
                _check(
                    *tc, "qdisc", "change", "dev", ifname, "parent", "1:1", "handle", "10:",
                    "netem", "delay", f"{self.delay_ms}ms", "loss", f"{self.loss * 100}%",
                    "limit", str(limit_packets),
                )  # fmt: skip
            else:
                if self.delay_ms > 0 or self.loss > 0:
                    raise DelayUnsupportedError(
                        f"delay_ms={self.delay_ms} / loss={self.loss} need the netem qdisc, "
                        f"which this kernel lacks ({netem.stderr.strip()}); use delay_ms=0 "
                        "and loss=0 here, or the user-space EmulatedLink"
                    )
                _check(
                    *tc, "qdisc", "add", "dev", ifname, "parent", "1:1", "handle", "10:",
                    "bfifo", "limit", str(self.queue_bytes),
                )  # fmt: skip

    def _set_rate(self, side: Side, rate_mbps: float) -> None:
        _check(
            "tc", "-n", self.namespaces[side], "class", "change", "dev", self.interfaces[side],
            "parent", "1:", "classid", "1:1", "htb", *self._htb_args(rate_mbps),
        )  # fmt: skip
        self.rate_changes += 1

    def _windows(self, trace: BandwidthTrace, t_s: float) -> tuple[float, float]:
        """``(end_s, mean_mbps)`` of the next constant stretch starting at ``t_s``."""
        period = trace.duration_s
        within = t_s % period
        i = int((trace.start_s <= within).sum()) - 1
        seg_end = trace.start_s[i + 1] if i + 1 < trace.start_s.size else period
        end = t_s + (seg_end - within)
        if end - t_s < self.update_interval_s:
            end = t_s + self.update_interval_s
        cum = trace.cumulative_megabits([t_s, end])
        return end, float((cum[1] - cum[0]) / (end - t_s))

    def _follow_traces(self) -> None:
        t0 = time.monotonic()
        next_change: dict[Side, float] = {}
        for side in ("device", "edge"):
            next_change[side], rate = self._windows(self.traces[side], 0.0)
            self._safe_set_rate(side, rate)
        while not self._stop.is_set():
            side = min(next_change, key=next_change.__getitem__)
            due = next_change[side]
            if self._stop.wait(max(0.0, t0 + due - time.monotonic())):
                return
            next_change[side], rate = self._windows(self.traces[side], due)
            self._safe_set_rate(side, rate)

    def _safe_set_rate(self, side: Side, rate_mbps: float) -> None:
        try:
            self._set_rate(side, rate_mbps)
        except NetnsError as exc:  # namespace gone during shutdown
            if not self._stop.is_set():
                log.error("netns rate update failed: %s", exc)

    # -- using the namespaces -------------------------------------------------------

    def exec_prefix(self, side: Side) -> list[str]:
        """Prefix a command with this to run it inside ``side``'s namespace."""
        return ["ip", "netns", "exec", self.namespaces[side]]

    def socket(
        self, side: Side, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM
    ) -> socket.socket:
        """A socket created inside ``side``'s namespace (usable from any thread)."""
        result: list[socket.socket | BaseException] = []

        def make() -> None:
            # setns changes only the calling thread, so a throwaway thread is used.
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/run/netns/{self.namespaces[side]}", os.O_RDONLY)
                try:
                    if libc.setns(fd, _CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise NetnsError(f"setns({side}) failed: {os.strerror(err)}")
                finally:
                    os.close(fd)
                result.append(socket.socket(family, type))
            except BaseException as exc:  # handed to the caller's thread below
                result.append(exc)

        worker = threading.Thread(target=make, name=f"netns-{side}")
        worker.start()
        worker.join()
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]

    def rates_now(self) -> dict[Side, float]:
        """The rates currently set (payload Mbps), read back from the kernel's htb."""
        out: dict[Side, float] = {}
        for side in ("device", "edge"):
            text = _check(
                "tc", "-n", self.namespaces[side], "class", "show", "dev", self.interfaces[side]
            )
            m = re.search(r"rate (\d+(?:\.\d+)?)([KMG]?)bit", text)
            scale = {"": 1e-6, "K": 1e-3, "M": 1.0, "G": 1e3}
            wire_mbps = float(m.group(1)) * scale[m.group(2)] if m else math.nan
            out[side] = wire_mbps / self._frame_overhead
        return out


__all__ = [
    "DelayUnsupportedError",
    "NetnsError",
    "NetnsLink",
    "NetnsUnavailableError",
    "cleanup_stale",
    "netns_unavailable_reason",
]
