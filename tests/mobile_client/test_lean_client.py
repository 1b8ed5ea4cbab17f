"""The device CLI works where torch and OpenCV are not installed (a phone under Termux)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from splitedge.mobile_client.profile import PROFILE_VERSION

# Make both imports fail in the child process, as on a device without them.
_BLOCK = (
    "import sys\n"
    "for name in ('torch', 'torchvision', 'cv2', 'onnxruntime'): sys.modules[name] = None\n"
    "from splitedge.mobile_client.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _client(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _BLOCK, *args], capture_output=True, text=True, timeout=60
    )


def test_help_of_every_command_without_torch_or_opencv():
    for command in ((), ("run",), ("depth",), ("models",), ("profile",)):
        proc = _client(*command, "--help")
        assert proc.returncode == 0, proc.stderr
        assert "usage: splitedge-client" in proc.stdout


def test_offload_only_backend_is_chosen_without_torch(tmp_path):
    # --backend auto falls back to "none" (offload branches only) when torch is absent;
    # with no server reachable, frames are recorded as dropped, never lost.
    out = tmp_path / "r.jsonl"
    proc = _client(
        "run",
        "--server",
        "127.0.0.1:1",
        "--model",
        "echo",
        "--branch",
        "offload-jpeg90",
        "--frames",
        "2",
        "--size",
        "32x32",
        "--out",
        str(out),
    )
    assert proc.returncode == 2
    assert "unknown branch 'offload-jpeg90'" in proc.stderr  # no server: no branch list
    assert "Traceback" not in proc.stderr


# ------------------------------------------------ messages that say why (issue 15)
# Each refusal is one line, exit status 2, and names the cause and the fix; the
# blocker above stands in for a device with neither torch nor OpenCV.


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_backend_torch_without_torch_is_one_line():
    proc = _client(
        "run", "--server", "127.0.0.1:1", "--model", "echo", "--branch", "offload-jpeg90",
        "--backend", "torch",
    )  # fmt: skip
    line = _one_line_error(proc)
    assert "--backend torch: torch is not installed" in line
    assert "splitedge[torch]" in line


@pytest.mark.integration
def test_head_branch_without_torch_says_why_and_what_to_install(edge_factory):
    edge = edge_factory("--model", "echo")
    proc = _client(
        "run", "--server", edge.address, "--model", "echo", "--branch", "split@x",
        "--frames", "1", "--size", "32x32",
    )  # fmt: skip
    line = _one_line_error(proc)
    assert "'split@x' runs its head on this device" in line
    assert "neither torch nor onnxruntime is installed (backend auto chose none)" in line
    assert "install splitedge[device] (ONNX heads from the edge) or splitedge[torch]" in line


@pytest.mark.integration
@pytest.mark.parametrize(
    ("backend", "why"),
    [
        (
            "auto",
            "no local model: neither torch nor onnxruntime is installed (backend auto chose none)",
        ),
        ("none", "no local model: this client runs with --backend none"),
    ],
)
def test_local_branch_without_a_model_says_why(edge_factory, backend, why):
    edge = edge_factory("--model", "echo")
    proc = _client(
        "run", "--server", edge.address, "--model", "echo", "--branch", "local",
        "--backend", backend, "--frames", "1", "--size", "32x32",
    )  # fmt: skip
    # Each frame's record says why (issue 15: "a clear reason in each frame's record").
    assert proc.returncode == 0, proc.stderr
    (record,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert record["source"] == "dropped"
    assert record["reason"] == f"local: {why}; install splitedge[torch] or use an offload branch"


def _echo_profile_file(tmp_path: Path) -> Path:
    """A profile of echo's branches with tracked entries, as a torch device measures it."""
    quantiles = {"mean": 5.0, "p50": 5.0, "p95": 6.0}
    entries = [
        {"branch": branch, "kind": kind, "bits": bits, "detection_interval": k,
         "head_latency_ms": {"0": quantiles},
         "bytes_per_frame": {"mean": size, "p50": size, "p95": size},
         "accuracy": acc - 0.05 * (k > 1)}
        for branch, kind, bits, size, acc in (
            ("local", "local", 0, 0, 0.5),
            ("split@x", "split", 8, 2000, 0.7),
            ("offload-jpeg90", "offload", 0, 3000, 0.8),
        )
        for k in (1, 2)
    ]  # fmt: skip
    doc = {
        "version": PROFILE_VERSION, "model": "echo", "contention_levels": [0],
        "tracker_latency_ms": {"0": 1.0}, "entries": entries,
    }  # fmt: skip
    path = tmp_path / "echo-profile.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.integration
def test_branch_auto_without_torch_or_opencv_names_every_skipped_entry(edge_factory, tmp_path):
    # Before: the tracker's `import cv2` killed the run; the head entries went silently.
    edge = edge_factory("--model", "echo")
    out = tmp_path / "r.jsonl"
    proc = _client(
        "run", "--server", edge.address, "--model", "echo", "--branch", "auto",
        "--profile", str(_echo_profile_file(tmp_path)), "--sla-ms", "2000",
        "--frames", "4", "--size", "64x48", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "note:" in line]
    assert len(notes) == 3, proc.stderr
    assert "entries for local skipped: no local model: neither torch nor onnxruntime" in notes[0]
    assert "entries for split@x skipped: neither torch nor onnxruntime is installed" in notes[1]
    assert "tracked profile entries (detection interval > 1) skipped" in notes[2]
    assert "pip install 'splitedge[video]'" in notes[2]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 4
    assert {r["decision"]["key"] for r in records} == {"offload-jpeg90/0b/w1/native/k1"}


@pytest.mark.integration
def test_profile_without_torch_measures_the_offload_branches(edge_factory, tmp_path):
    edge = edge_factory("--model", "echo")
    out = tmp_path / "p.json"
    proc = _client(
        "profile", "--model", "echo", "--server", edge.address, "--output", str(out),
        "--frames", "2", "--levels", "0", "--size", "64x48", "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    note = proc.stderr.strip().splitlines()
    assert note == [
        "splitedge-client profile: note: local, split@x not measured: head branches need "
        "torch or the onnx backend; here neither torch nor onnxruntime is installed "
        "(backend auto chose none)"
    ]
    doc = json.loads(out.read_text())
    assert [e["branch"] for e in doc["entries"]] == ["offload-jpeg90"]
    assert doc["entries"][0]["bytes_per_frame"]["mean"] > 0
    assert doc["tracker_latency_ms"] == {}  # no OpenCV: no tracker measured


def test_profile_accuracy_without_torch_is_refused(tmp_path):
    proc = _client(
        "profile", "--model", "echo", "--output", str(tmp_path / "p.json"), "--frames", "1",
        "--levels", "0", "--size", "32x32", "--accuracy-frames", "2", "--no-progress",
    )  # fmt: skip
    line = _one_line_error(proc)
    assert "--accuracy-frames runs the whole model on this device and needs torch" in line
    assert not (tmp_path / "p.json").exists()


def test_profile_of_a_torch_model_without_torch_or_server_says_pass_server(tmp_path):
    proc = _client(
        "profile", "--model", "zoo:ghnd-frcnn-small-c12", "--output", str(tmp_path / "p.json"),
        "--frames", "1", "--levels", "0", "--no-progress",
    )  # fmt: skip
    line = _one_line_error(proc)
    assert "needs 'torch' to be built here; pass --server HOST:PORT" in line
