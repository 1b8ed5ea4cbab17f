"""ONNX heads vs torch heads on the device, one thread (issue 15's latency target).

    taskset -c 0 python -m benchmarks.onnx_heads [--model zoo:ghnd-frcnn-small-c12]
                                                 [--sizes 320x240,640x480] [--repeats 50]

For every graph the edge exports for ``--model`` (one per slimmable width), the median
time of the torch head (``model.run_head``: the model's own pre-processing + the head,
``torch.set_num_threads(1)``) against the onnx path a torch-free device runs
(:func:`splitedge.mobile_client.onnx_heads.preprocess` in numpy + the graph in
onnxruntime with one intra-op thread), per frame size. Target: onnx <= 0.6x torch for
every branch. Pin the process to one core (``taskset -c 0``) as a device would be.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from splitedge.proto.options import parse_size

TARGET = 0.6


def _median_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1000.0


def _measure(model, artifact, sizes, repeats: int) -> list[tuple[str, str, float, float, float]]:
    """(graph, frame, torch ms, onnx ms, numpy pre-processing ms) per frame size."""
    import onnxruntime as ort

    from splitedge.mobile_client.onnx_heads import preprocess

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(artifact.onnx, options, providers=["CPUExecutionProvider"])
    spec = artifact.spec
    branch = spec.branches[0]
    outputs = list(spec.outputs)
    rng = np.random.default_rng(0)
    rows = []
    for width, height in sizes:
        image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)

        def onnx_head(image: np.ndarray = image) -> object:
            batch, _ = preprocess(spec, image)
            return session.run(outputs, {spec.input_name: batch})

        torch_ms = _median_ms(lambda image=image: model.run_head(branch, image), repeats)
        onnx_ms = _median_ms(onnx_head, repeats)
        pre_ms = _median_ms(lambda image=image: preprocess(spec, image), repeats)
        rows.append((spec.graph, f"{width}x{height}", torch_ms, onnx_ms, pre_ms))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="zoo:ghnd-frcnn-small-c12")
    p.add_argument("--sizes", default="320x240,640x480", help="frame sizes WIDTHxHEIGHT")
    p.add_argument("--repeats", type=int, default=50)
    args = p.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",")]

    import torch

    from splitedge.edge.export import HeadStore
    from splitedge.models.registry import create_model

    torch.set_num_threads(1)
    model = create_model(args.model)
    rows = []
    with tempfile.TemporaryDirectory(prefix="splitedge-onnx-bench-") as folder:
        for artifact, _ in HeadStore(Path(folder)).export_all(args.model, model):
            rows += _measure(model, artifact, sizes, args.repeats)
    print(f"# benchmarks.onnx_heads: {args.model}, one thread, median of {args.repeats}")
    print("graph | frame | torch ms | onnx ms (numpy + graph) | numpy pre-processing ms | ratio")
    for graph, size, t, o, pre in rows:
        print(f"{graph} | {size} | {t:.2f} | {o:.2f} | {pre:.2f} | {o / t:.2f}")
    worst = max(o / t for _, _, t, o, _ in rows)
    print(f"onnx_vs_torch_worst={worst:.2f} target<={TARGET}")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
