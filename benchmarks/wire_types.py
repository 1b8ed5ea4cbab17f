"""One encoded tensor from codec to wire? The cost of the conversion we keep.

    python -m benchmarks.wire_types

Issue 17 asked whether the codec should work on ``pb.Tensor`` directly instead of its
own :class:`~splitedge.proto.codec.EncodedTensor` (converted once each way in
:mod:`splitedge.proto.wire`). This prints, per typical payload, the median time of the
codec's encode and decode beside the conversion to and from protobuf, and the
protobuf serialize/parse that any design pays. Run on an idle machine.
"""

from __future__ import annotations

import time

import numpy as np

from splitedge.proto import codec, wire
from splitedge.proto import splitedge_pb2 as pb

CASES = (
    ("code w0.5 4-bit", (1, 6, 30, 40), 4),
    ("code w1 8-bit", (1, 12, 30, 40), 8),
    ("raw float 1x3x48x64", (1, 3, 48, 64), 0),
)


def median_us(fn, repeats: int = 2000) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e6


def main() -> int:
    rng = np.random.default_rng(0)
    header = ("payload", "bytes", "encode us", "to_pb us", "serialize us", "parse us",
              "from_pb us", "decode us", "conversion share")  # fmt: skip
    rows = []
    for name, shape, bits in CASES:
        x = rng.standard_normal(shape).astype(np.float32)

        def encode(x=x, bits=bits):
            return codec.encode_tensor(x, "z", bits=bits) if bits else codec.encode_tensor(x, "z")

        t = encode()
        message = wire.tensor_to_pb(t)
        data = message.SerializeToString()
        enc = median_us(encode, 500)
        to_pb = median_us(lambda t=t: wire.tensor_to_pb(t))
        ser = median_us(lambda m=message: m.SerializeToString())
        parse = median_us(lambda d=data: pb.Tensor.FromString(d))
        from_pb = median_us(lambda m=message: wire.tensor_from_pb(m))
        dec = median_us(lambda t=t: codec.decode_tensor(t), 500)
        share = (to_pb + from_pb) / (enc + ser + parse + dec + to_pb + from_pb)
        rows.append((name, len(t.data), enc, to_pb, ser, parse, from_pb, dec, share))
    print("# benchmarks.wire_types: one tensor, device encode -> wire -> edge decode")
    print(" | ".join(header))
    for r in rows:
        print(f"{r[0]} | {r[1]} | " + " | ".join(f"{v:.1f}" for v in r[2:8]) + f" | {r[8]:.1%}")
    worst = max(r[8] for r in rows)
    print(f"conversion_share_max={worst:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
