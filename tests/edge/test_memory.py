"""The edge fixes glibc's mmap threshold, unless the operator set their own."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Run in a child: mallopt changes the whole process, and the answer depends on its env.
_CHILD = "from splitedge.edge.memory import fix_mmap_threshold; print(fix_mmap_threshold())"


def _child(env_extra: dict[str, str]) -> str:
    import os

    env = {**os.environ, **env_extra}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_the_threshold_is_fixed_on_glibc_unless_the_operator_set_one():
    assert _child({}) == "True"
    assert _child({"MALLOC_MMAP_THRESHOLD_": "131072"}) == "False"
