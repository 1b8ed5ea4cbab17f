"""The committed protobuf/gRPC modules match a fresh protoc run over splitedge.proto."""

from __future__ import annotations

import pytest

pytest.importorskip("grpc_tools", reason="grpcio-tools (the dev extra) compiles the proto")

from splitedge.proto import generate


def test_generated_modules_are_up_to_date():
    stale = generate.stale_files()
    assert stale == [], f"run `python -m splitedge.proto.generate`; stale: {', '.join(stale)}"
