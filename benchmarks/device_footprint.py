"""What the device install costs: disk and memory of a torch-free client.

    python -m benchmarks.device_footprint [--extras client,device] [--frames 150] [--fps 30]

For each extra, a fresh venv (``python -m venv``) gets ``pip install -c
constraints.txt '<copy of this checkout>[EXTRA]'`` (from the index pip is configured
with), and ``import torch`` must fail there. Then a real edge process (this
interpreter, torch and all) serves ``echo``, and the venv's ``splitedge-client run``
streams ``--frames`` synthetic frames on ``offload-jpeg90`` pinned to one core
(``taskset -c 0`` where it exists), paced at ``--fps``; its resident memory is
sampled from /proc every 20 ms.

Prints a table (site-packages MB, the same without pip/setuptools, which every venv
carries; the client's peak and median RSS) and ends with
``device_site_packages_mb=.. device_client_rss_mb=..`` for the last extra. Targets:
site-packages <= 150 MB, RSS <= 150 MB; a miss is printed, the exit status stays 0
(a benchmark reports, it does not judge).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks._stats import machine, pct, table
from splitedge.simulations.processes import EdgeProcess

ROOT = Path(__file__).resolve().parents[1]
TARGET_MB = 150.0
# What every venv carries whatever the project installs.
VENV_TOOLING = ("pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence.pth")
_SKIP = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "out", "runs"
)


def build_device_venv(where: Path, extra: str, *, timeout_s: float = 600.0) -> Path:
    """A fresh venv in ``where`` with this checkout installed as ``splitedge[extra]``.

    The checkout is copied first (without venvs and build folders) so that setuptools'
    in-tree ``build/`` never leaks stale files into the wheel. Returns the venv's
    python; raises RuntimeError with pip's output if the install fails.
    """
    src = where / "src"
    shutil.copytree(ROOT, src, ignore=_SKIP)
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-c", str(src / "constraints.txt"), f"{src}[{extra}]"],
        capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"pip install '.[{extra}]' failed:\n{done.stdout}\n{done.stderr}")
    return python


def site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return Path(out.stdout.strip())


def _size_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 1e6
    return (
        sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6
    )


def footprint_mb(python: Path) -> tuple[float, float]:
    """(site-packages MB, the same without the venv's own pip/setuptools)."""
    site = site_packages(python)
    total = _size_mb(site)
    tooling = sum(
        _size_mb(p)
        for p in site.iterdir()
        if p.name.split("-")[0] in VENV_TOOLING or p.name in VENV_TOOLING
    )
    return total, total - tooling


def has_torch(python: Path) -> bool:
    return subprocess.run([str(python), "-c", "import torch"], capture_output=True).returncode == 0


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


STUDENT = "zoo:ghnd-frcnn-small-c12"
CODE_BRANCH = "bottleneck-12-w0.5-4bit"


def stream_rss(
    python: Path,
    server: str,
    frames: int,
    fps: float,
    *,
    model: str = "echo",
    branch: str = "offload-jpeg90",
    size: str = "640x480",
    extra_args: tuple[str, ...] = (),
) -> tuple[list[float], str]:
    """Run the venv's client on ``branch`` at one core; RSS samples (MB) and its stderr."""
    client = python.parent / "splitedge-client"
    cmd = [str(client), "run", "--server", server, "--model", model,
           "--branch", branch, "--frames", str(frames), "--fps", str(fps),
           "--size", size, "--out", "/dev/null", *extra_args]  # fmt: skip
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples: list[float] = []

    def sample() -> None:
        while proc.poll() is None:
            rss = _rss_mb(proc.pid)
            if rss is not None:
                samples.append(rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    sampler.start()
    _, err = proc.communicate(timeout=120 + frames / max(fps, 1.0))
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"client exited with {proc.returncode}: {err.strip()}")
    return samples, err.strip().splitlines()[-1] if err.strip() else ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.device_footprint", description=__doc__)
    p.add_argument("--extras", default="client,device", help="extras to install (default both)")
    p.add_argument("--frames", type=int, default=150, help="frames streamed (default 150)")
    p.add_argument("--fps", type=float, default=30.0, help="frame pacing (default 30)")
    args = p.parse_args(argv)
    if args.frames < 1 or not args.fps > 0:
        p.error("--frames must be >= 1 and --fps > 0")
    extras = [e for e in args.extras.split(",") if e]
    rows = []
    last: tuple[float, float] = (0.0, 0.0)
    with (
        tempfile.TemporaryDirectory(prefix="device-footprint-") as tmp,
        EdgeProcess(["--model", "echo"]) as edge,
        EdgeProcess(["--model", STUDENT]) as student_edge,
    ):
        for extra in extras:
            where = Path(tmp) / extra
            where.mkdir()
            t0 = time.perf_counter()
            python = build_device_venv(where, extra)
            install_s = time.perf_counter() - t0
            if has_torch(python):
                raise SystemExit(f"torch is importable in the '{extra}' venv: not a device install")
            total, ours = footprint_mb(python)
            samples, summary = stream_rss(python, edge.address, args.frames, args.fps)
            peak, median = max(samples), pct(samples, 50)
            rows.append(
                [extra, "offload-jpeg90 640x480", f"{install_s:.0f}", f"{total:.0f}",
                 f"{ours:.0f}", f"{peak:.0f}", f"{median:.0f}",
                 summary.removeprefix("splitedge-client: ")]
            )  # fmt: skip
            last = (ours, peak)
            if extra == "device":  # ONNX Runtime: a bottleneck code, head fetched from the edge
                samples, summary = stream_rss(
                    python, student_edge.address, args.frames, args.fps, model=STUDENT,
                    branch=CODE_BRANCH, size="320x240",
                    extra_args=("--threads", "1", "--head-cache", str(where / "heads")),
                )  # fmt: skip
                peak, median = max(samples), pct(samples, 50)
                rows.append(
                    [extra, f"{CODE_BRANCH} 320x240", "", "", "", f"{peak:.0f}",
                     f"{median:.0f}", summary.removeprefix("splitedge-client: ")]
                )  # fmt: skip
                last = (ours, max(last[1], peak))
    print(f"# {machine()}; targets: site-packages <= {TARGET_MB:g} MB, client RSS <= "
          f"{TARGET_MB:g} MB (streaming at {args.fps:g} fps, one core)")  # fmt: skip
    print(
        table(
            ["extra", "stream", "install s", "site-pkgs MB", "w/o pip MB", "RSS peak MB",
             "RSS p50 MB", "client"],
            rows,
        )
    )  # fmt: skip
    for name, value in (("site-packages", last[0]), ("client RSS", last[1])):
        if value > TARGET_MB:
            print(f"# over target: {name} {value:.0f} MB > {TARGET_MB:g} MB")
    print(f"device_site_packages_mb={last[0]:.0f} device_client_rss_mb={last[1]:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
