"""The device CLI works where torch and OpenCV are not installed (a phone under Termux)."""

from __future__ import annotations

import subprocess
import sys

# Make both imports fail in the child process, as on a device without them.
_BLOCK = (
    "import sys\n"
    "for name in ('torch', 'torchvision', 'cv2'): sys.modules[name] = None\n"
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
