"""The one status vocabulary: every code -> wire number -> the device's code -> outcome
reason, and back; the edge's refusals travel through it unchanged."""

from __future__ import annotations

import grpc
import pytest

from splitedge.edge import errors
from splitedge.edge.server import result_to_pb
from splitedge.edge.service import Outcome
from splitedge.mobile_client.outcome import EDGE_UNAVAILABLE, FrameOutcome
from splitedge.mobile_client.transport import _frame_reply
from splitedge.proto import splitedge_pb2 as pb
from splitedge.proto.status import EDGE_ERROR_PREFIX, StatusCode


@pytest.mark.parametrize("code", list(StatusCode))
def test_every_code_round_trips_through_the_wire_and_the_outcome_reason(code):
    sent = pb.FrameResult(frame_id=7, status_code=code, status_message="why")
    received = pb.FrameResult.FromString(sent.SerializeToString())
    assert received.status_code == int(code)
    reply = _frame_reply(received)
    assert reply.status is code
    assert StatusCode[code.name] is code
    assert StatusCode.from_reason(code.reason) is code
    if code is StatusCode.OK:
        assert code.reason == ""
    elif code is StatusCode.DEADLINE_EXCEEDED:
        assert code.reason == "deadline"
    else:
        assert code.reason == EDGE_ERROR_PREFIX + code.name
        assert reply.message == "why" and reply.prediction is None


@pytest.mark.parametrize("code", list(StatusCode))
def test_the_numbers_are_grpcs(code):
    assert code.grpc.name == code.name and code.grpc.value[0] == int(code)
    assert StatusCode.from_grpc(code.grpc) is code


@pytest.mark.parametrize("code", list(StatusCode))
def test_an_outcome_reads_its_code_back_from_its_reason(code):
    # The reason string is the output format; readers match on the code behind it.
    outcome = FrameOutcome(1, "split", "local", code.reason)
    assert outcome.status is code
    failed = code not in (StatusCode.OK, StatusCode.DEADLINE_EXCEEDED)
    assert code.edge_error is failed and outcome.edge_failed is failed


def test_reasons_no_edge_gave_carry_no_code():
    assert FrameOutcome(1, "split", "local", EDGE_UNAVAILABLE).edge_failed
    for reason in ("prefiltered", "tracked", "busy"):
        outcome = FrameOutcome(1, "split", "dropped", reason)
        assert outcome.status is None and not outcome.edge_failed


def test_grpc_has_no_code_the_vocabulary_lacks():
    assert {c.name for c in grpc.StatusCode} == {c.name for c in StatusCode}


def test_a_number_from_a_newer_peer_reads_as_unknown():
    assert StatusCode.from_wire(99) is StatusCode.UNKNOWN
    assert _frame_reply(pb.FrameResult(status_code=99)).status is StatusCode.UNKNOWN
    assert StatusCode.from_reason("edge-unavailable") is None
    assert StatusCode.from_reason("prefiltered") is None


@pytest.mark.parametrize(
    "error",
    [
        errors.NotFound("no such model"),
        errors.InvalidArgument("bad tensor"),
        errors.ResourceExhausted("queue full"),
        errors.DeadlineExceeded("too late"),
        errors.Unavailable("stopping"),
        errors.InternalError("tail raised"),
    ],
)
def test_an_edge_refusal_reaches_the_device_as_its_code(error):
    outcome = Outcome(3, "echo", "split@x", error=error)
    reply = _frame_reply(pb.FrameResult.FromString(result_to_pb(outcome).SerializeToString()))
    assert reply.status is error.code and reply.message == error.message
    deadline = error.code is StatusCode.DEADLINE_EXCEEDED
    assert reply.status.reason == ("deadline" if deadline else f"edge-error:{error.code.name}")
