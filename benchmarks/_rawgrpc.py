"""A bare grpc.aio bidi stream that answers each message with 8 bytes: the baseline.

Run as a process (``python -m benchmarks._rawgrpc``); prints ``raw-grpc listening on PORT``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

METHOD = "/bench.Raw/Echo"
MAX_MESSAGE_BYTES = 64 * 2**20


async def _echo(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
) -> AsyncIterator[bytes]:
    async for _ in requests:
        yield b"ok-reply"


async def serve() -> None:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    handler = grpc.method_handlers_generic_handler(
        "bench.Raw",
        {"Echo": grpc.stream_stream_rpc_method_handler(_echo)},
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"raw-grpc listening on {port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve())
