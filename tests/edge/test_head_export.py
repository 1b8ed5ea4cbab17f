"""Heads as artifacts: the GHND student's heads exported to ONNX, with spec and SHA-256,
and the device's numpy pre-processing + onnxruntime matching the torch head."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest

from splitedge.edge.cli import main as edge_main
from splitedge.edge.errors import InvalidArgument, NotFound
from splitedge.edge.export import HeadStore
from splitedge.mobile_client.onnx_heads import preprocess
from splitedge.models.registry import create_model
from splitedge.proto import codec
from splitedge.proto.head_spec import HeadSpec, HeadSpecError

ort = pytest.importorskip("onnxruntime")

MODEL = "zoo:ghnd-frcnn-small-c12"
WIDTHS = ("w1", "w0.75", "w0.5", "w0.25")


@pytest.fixture(scope="module")
def student():
    return create_model(MODEL)


@pytest.fixture(scope="module")
def store(student, tmp_path_factory):
    store = HeadStore(tmp_path_factory.mktemp("edge-heads"))
    store.export_all(MODEL, student)
    return store


def _frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    # Smooth content (a camera's) plus noise; sizes that shrink, grow and keep odd edges.
    out = []
    for h, w in ((240, 320), (480, 640), (301, 437)):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 127 // (h + w))], -1)
        noise = rng.integers(0, 40, size=(h, w, 3))
        out.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return out


def test_export_cli_writes_one_graph_per_width_with_spec_and_sha(tmp_path, capsys):
    assert edge_main(["export", "--model", MODEL, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    sums = dict(
        reversed(line.split("  ")) for line in (tmp_path / "SHA256SUMS").read_text().splitlines()
    )
    branches = []
    for key in WIDTHS:
        data = (tmp_path / f"{key}.onnx").read_bytes()
        spec_bytes = (tmp_path / f"{key}.json").read_bytes()
        spec = HeadSpec.from_json(spec_bytes)
        assert spec.graph == key and spec.model == MODEL
        assert sums[f"{key}.onnx"] == hashlib.sha256(data).hexdigest() == spec.onnx_sha256
        assert sums[f"{key}.json"] == hashlib.sha256(spec_bytes).hexdigest()
        # Branches that differ only in bits share the graph.
        width = key[1:]
        assert spec.branches == (f"bottleneck-12-w{width}-8bit", f"bottleneck-12-w{width}-4bit")
        assert (spec.min_size, spec.max_size, spec.size_divisible) == (240, 320, 32)
        assert spec.outputs == ("z",) and spec.input_name == "image" and spec.opset == 17
        assert "orig_size" in spec.sizes and "input_size" in spec.sizes
        assert spec.onnx_sha256 in printed
        branches += spec.branches
        assert 20_000 < len(data) < 1_000_000
    student = create_model(MODEL)
    assert sorted(branches) == sorted(b for b, s in student.branches.items() if s.kind == "split")
    assert sorted(sums) == sorted([f"{k}.onnx" for k in WIDTHS] + [f"{k}.json" for k in WIDTHS])


def test_export_cli_refuses_a_model_without_heads_in_one_line(tmp_path, capsys):
    assert edge_main(["export", "--model", "echo", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("splitedge-edge: error: model 'echo'") and "\n" not in err


def test_store_serves_from_disk_and_exports_again_a_corrupted_graph(student, store, caplog):
    branch = "bottleneck-12-w0.5-4bit"
    first = store.get(MODEL, student, branch)
    assert first is store.get(MODEL, student, "bottleneck-12-w0.5-8bit")  # one graph
    onnx_path, _ = store.paths(MODEL, store._plans_of(MODEL, student)["w0.5"])
    assert hashlib.sha256(onnx_path.read_bytes()).hexdigest() == first.sha256
    # Another store on the same folder (a restarted edge) reads it, exporting nothing.
    mtime = onnx_path.stat().st_mtime_ns
    again = HeadStore(store.cache_dir).get(MODEL, student, branch)
    assert again.onnx == first.onnx and onnx_path.stat().st_mtime_ns == mtime
    # A corrupted cache file is noticed and exported again.
    onnx_path.write_bytes(b"\0" + first.onnx[1:])
    with caplog.at_level(logging.WARNING, "splitedge.edge.export"):
        fixed = HeadStore(store.cache_dir).get(MODEL, student, branch)
    assert "does not match its spec; exporting again" in caplog.text
    assert hashlib.sha256(onnx_path.read_bytes()).hexdigest() == fixed.sha256


def test_unknown_and_non_split_branches_are_refused(student, store):
    with pytest.raises(NotFound, match="unknown branch 'nope'"):
        store.get(MODEL, student, "nope")
    with pytest.raises(InvalidArgument, match="offload branch; only split branches have a head"):
        store.get(MODEL, student, "offload-png")


def test_a_spec_that_does_not_check_out_is_refused_in_one_line(store, student):
    text = json.loads(store.get(MODEL, student, "bottleneck-12-w1-8bit").spec_json)
    with pytest.raises(HeadSpecError, match="onnx_sha256 is not 64 lowercase hex digits"):
        HeadSpec.from_json(json.dumps({**text, "onnx_sha256": "xyz"}))
    with pytest.raises(HeadSpecError, match="unknown key 'extra'"):
        HeadSpec.from_json(json.dumps({**text, "extra": 1}))
    with pytest.raises(HeadSpecError, match="not JSON"):
        HeadSpec.from_json("{")


def test_numpy_preprocessing_matches_the_torch_transform(student, store):
    import torch

    from splitedge.models.split import image_to_tensor

    spec = store.get(MODEL, student, "bottleneck-12-w1-8bit").spec
    for image in _frames():
        batch, size = preprocess(spec, image)
        with torch.inference_mode():
            ref, sizes = student.preprocess([image_to_tensor(image, torch.device("cpu"))])
        assert size == tuple(sizes[0])
        assert batch.shape == tuple(ref.shape)
        assert np.abs(batch - ref.numpy()).max() < 1e-4


def test_onnx_head_matches_the_torch_head_through_the_codec(student, store):
    for key in WIDTHS:
        artifact = next(a for a, _ in store.export_all(MODEL, student) if a.spec.graph == key)
        spec = artifact.spec
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(artifact.onnx, options, providers=["CPUExecutionProvider"])
        for image in _frames():
            ref = student.run_head(spec.branches[0], image)
            batch, size = preprocess(spec, image)
            (code,) = session.run(["z"], {"image": batch})
            assert size == ref.input_size
            assert code.shape == ref.tensors["z"].shape
            assert np.abs(code - ref.tensors["z"]).max() < 1e-4
            for bits in (8, 4):
                a = codec.encode_tensor(code, "z", bits=bits, compression="raw")
                b = codec.encode_tensor(ref.tensors["z"], "z", bits=bits, compression="raw")
                qa = codec.unpack_bits(a.data, code.size, bits)
                qb = codec.unpack_bits(b.data, code.size, bits)
                assert np.mean(qa == qb) >= 0.999, (key, image.shape, bits)


# ------------------------------------------------ segmentation heads (antialiased resize)

SEG_MODEL = "zoo:ghnd-lraspp-small-c12"


@pytest.fixture(scope="module")
def seg_student():
    return create_model(SEG_MODEL)


def test_a_segmentation_heads_numpy_preprocessing_matches_torch(seg_student, tmp_path):
    import torch

    from splitedge.models.split import image_to_tensor

    store = HeadStore(tmp_path)
    spec = store.get(SEG_MODEL, seg_student, "bottleneck-12-w1-8bit").spec
    assert spec.preprocess == "seg" and spec.size_divisible == 1
    for image in _frames():
        batch, size = preprocess(spec, image)
        with torch.inference_mode():
            ref, sizes = seg_student.preprocess([image_to_tensor(image, torch.device("cpu"))])
        assert size == tuple(sizes[0])
        assert batch.shape == tuple(ref.shape)
        assert np.abs(batch - ref.numpy()).max() < 1e-4


def test_a_segmentation_onnx_head_matches_the_torch_head_through_the_codec(seg_student, tmp_path):
    store = HeadStore(tmp_path)
    for artifact, _ in store.export_all(SEG_MODEL, seg_student):
        spec = artifact.spec
        session = ort.InferenceSession(artifact.onnx, providers=["CPUExecutionProvider"])
        for image in _frames():
            ref = seg_student.run_head(spec.branches[0], image)
            batch, size = preprocess(spec, image)
            (code,) = session.run(list(spec.outputs), {spec.input_name: batch})
            want = ref.tensors[spec.outputs[0]]
            assert size == ref.input_size and code.shape == want.shape
            assert np.abs(code - want).max() < 1e-4
            a = codec.encode_tensor(code, "z", bits=8, compression="raw")
            b = codec.encode_tensor(want, "z", bits=8, compression="raw")
            qa = codec.unpack_bits(a.data, code.size, 8)
            qb = codec.unpack_bits(b.data, code.size, 8)
            assert np.mean(qa == qb) >= 0.999, (spec.graph, image.shape)
