"""Embedded MQTT broker (amqtt, pure Python): the zero-setup default for demos.

Production fleets point at a real broker (mosquitto, EMQX, ...); a demo or a laptop
run can start one here instead::

    async with EmbeddedBroker(port=0) as broker:
        config = broker.link_config(client_id="edge-a")

``mode="inprocess"`` runs amqtt on the current event loop; ``mode="subprocess"``
runs ``python -m splitedge.control_plane.broker`` as a child (the broker then survives
a blocked loop in the parent, and a test can kill it). Both bind 127.0.0.1 by default;
port 0 picks a free port, reported by :attr:`EmbeddedBroker.port`;
:attr:`EmbeddedBroker.url` is the address to hand to the CLIs (``mqtt://HOST:PORT``).

From a shell: ``python -m splitedge.control_plane.broker --listen mqtt://0.0.0.0:1883``
(or ``--host``/``--port``); it prints ``splitedge-broker listening on mqtt://HOST:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from types import TracebackType
from typing import Any, Literal

from splitedge.control_plane.address import BrokerAddress, BrokerAddressError, parse_broker_address
from splitedge.control_plane.link import BrokerConfig

__all__ = ["BrokerStartError", "EmbeddedBroker", "main"]

log = logging.getLogger(__name__)

_READY_PREFIX = "splitedge-broker listening on "


class BrokerStartError(RuntimeError):
    """The embedded broker could not start (port taken, child exited, timeout)."""


def _amqtt_config(host: str, port: int) -> dict[str, Any]:
    # Only anonymous auth: the $SYS and packet-logger plugins cost CPU and log noise.
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


def _bound_port(broker: Any) -> int:
    """The port amqtt actually bound (differs from the configured one for port 0)."""
    servers = getattr(broker, "_servers", {})  # amqtt has no public accessor (0.12)
    server = servers.get("default")
    sockets = getattr(getattr(server, "instance", None), "sockets", None) or ()
    for sock in sockets:
        return int(sock.getsockname()[1])
    raise BrokerStartError("amqtt started but its listening socket could not be found")


class EmbeddedBroker:
    """An amqtt broker on ``host:port`` for the lifetime of an ``async with`` block."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        mode: Literal["inprocess", "subprocess"] = "inprocess",
        start_timeout_s: float = 15.0,
    ) -> None:
        if mode not in ("inprocess", "subprocess"):
            raise ValueError(f"mode must be 'inprocess' or 'subprocess', got {mode!r}")
        self.host = host
        self.port = port
        self.mode = mode
        self.start_timeout_s = start_timeout_s
        self._broker: Any = None
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        """``mqtt://HOST:PORT`` of this broker (the port is known once started)."""
        return BrokerAddress(self.host, self.port).url

    def link_config(self, **overrides: Any) -> BrokerConfig:
        """A :class:`BrokerConfig` pointing at this broker."""
        return BrokerConfig(host=self.host, port=self.port, **overrides)

    async def start(self) -> EmbeddedBroker:
        """Start the broker and learn its port."""
        if self.mode == "inprocess":
            await self._start_inprocess()
        else:
            await self._start_subprocess()
        log.info("embedded MQTT broker (%s) on %s:%d", self.mode, self.host, self.port)
        return self

    async def _start_inprocess(self) -> None:
        from amqtt.broker import Broker
        from amqtt.errors import BrokerError

        broker = Broker(_amqtt_config(self.host, self.port))
        try:
            await broker.start()
        except BrokerError as exc:
            where = f"{self.host}:{self.port}"
            raise BrokerStartError(f"amqtt could not listen on {where}: {exc}") from exc
        self._broker = broker
        self.port = _bound_port(broker)

    async def _start_subprocess(self) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "splitedge.control_plane.broker",
            "--host",
            self.host,
            "--port",
            str(self.port),
            stdout=asyncio.subprocess.PIPE,
        )
        self._process = process
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), self.start_timeout_s)
        except asyncio.TimeoutError:
            await self.stop()
            raise BrokerStartError(
                f"embedded broker did not report ready within {self.start_timeout_s:g} s"
            ) from None
        text = line.decode(errors="replace").strip()
        if not text.startswith(_READY_PREFIX):
            await self.stop()
            raise BrokerStartError(f"embedded broker failed to start (said {text!r})")
        self.port = int(text.rsplit(":", 1)[1])

    async def stop(self) -> None:
        """Stop the broker (idempotent)."""
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5.0)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()

    async def __aenter__(self) -> EmbeddedBroker:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def _serve(host: str, port: int) -> None:
    broker = EmbeddedBroker(host, port, mode="inprocess")
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # The parent reads this exact line to learn the port.
    print(f"{_READY_PREFIX}{broker.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await broker.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m splitedge.control_plane.broker [--listen mqtt://H:P | --host H --port P]``.

    Runs until SIGTERM/SIGINT; a bad ``--listen`` prints one line and exits 2.
    """
    parser = argparse.ArgumentParser(
        prog="python -m splitedge.control_plane.broker",
        description="Run the embedded amqtt MQTT broker.",
    )
    parser.add_argument(
        "--listen",
        metavar="mqtt://HOST:PORT",
        help="address to bind, port 0 = any free port (replaces --host/--port)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=1883, help="port to bind, 0 = any free port")
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    host, port = args.host, args.port
    if args.listen is not None:
        try:
            address = _listen_address(args.listen)
        except BrokerAddressError as exc:
            print(f"splitedge-broker: error: {exc}", file=sys.stderr)
            return 2
        host, port = address.host, address.port
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(host, port))
    return 0


def _listen_address(text: str) -> BrokerAddress:
    address = parse_broker_address(text, "--listen", any_port=True)
    if address.tls:
        raise BrokerAddressError(f"--listen {text!r}: the embedded broker speaks no TLS (mqtt://)")
    return address


if __name__ == "__main__":
    sys.exit(main())
