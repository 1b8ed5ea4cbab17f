"""A bare grpc.aio bidi stream that answers each message with 8 bytes: the baseline.

Also the *floor* path: the least Python a split round trip needs. It parses each
``FrameRequest``, views its first tensor with numpy (after zstd when the request
says so; no validation beyond the byte count) and answers an empty-detections
``FrameResult``: what any Python runtime on grpc.aio pays at least, before checking
a single field properly.

Run as a process (``python -m benchmarks._rawgrpc``); prints ``raw-grpc listening on PORT``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import numpy as np
import zstandard

from splitedge.proto import splitedge_pb2 as pb

METHOD = "/bench.Raw/Echo"
FLOOR_METHOD = "/bench.Raw/Floor"
MAX_MESSAGE_BYTES = 64 * 2**20


async def _echo(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
) -> AsyncIterator[bytes]:
    async for _ in requests:
        yield b"ok-reply"


async def _floor(
    requests: AsyncIterator[pb.FrameRequest], context: grpc.aio.ServicerContext
) -> AsyncIterator[pb.FrameResult]:
    decompressor = zstandard.ZstdDecompressor()
    async for request in requests:
        tensor = request.tensors[0]
        data = tensor.data if tensor.compression == pb.RAW else decompressor.decompress(tensor.data)
        values = np.frombuffer(data, np.float32)
        if values.size != tensor.shape[0]:
            raise ValueError("floor path: tensor size and shape disagree")
        result = pb.FrameResult(
            frame_id=request.frame_id, model=request.model, branch=request.branch
        )
        result.detections.SetInParent()
        yield result


async def serve() -> None:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    handler = grpc.method_handlers_generic_handler(
        "bench.Raw",
        {
            "Echo": grpc.stream_stream_rpc_method_handler(_echo),
            "Floor": grpc.stream_stream_rpc_method_handler(
                _floor,
                request_deserializer=pb.FrameRequest.FromString,
                response_serializer=pb.FrameResult.SerializeToString,
            ),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"raw-grpc listening on {port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve())
