"""Child process for the last-will tests: a StatusPublisher with a 2 s keepalive.

Prints ``published`` once its first status reached the broker, then publishes every
0.2 s until killed (SIGKILL: the broker fires the will) or SIGTERM (clean offline).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from splitedge.control_plane.link import BrokerConfig
from splitedge.control_plane.publisher import StatusPublisher


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-id", required=True)
    parser.add_argument("--queue-depth", type=int, default=0)
    args = parser.parse_args()

    def provider() -> dict:
        return {
            "address": f"127.0.0.1:{50000 + args.queue_depth}",
            "models": {"echo": ["offload-png"]},
            "queue_depth": args.queue_depth,
            "queue_capacity": 16,
            "tail_ms": {"echo": {"offload-png": {"p50": 2.0, "p95": 3.0}}},
            "device": "cpu",
            "load": 0.1,
        }

    config = BrokerConfig(port=args.port, keepalive_s=2, reconnect_max_s=1.0)
    publisher = StatusPublisher(config, args.server_id, provider, interval_s=0.2)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with publisher:
        while publisher.published_count == 0:
            await asyncio.sleep(0.02)
        print("published", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
