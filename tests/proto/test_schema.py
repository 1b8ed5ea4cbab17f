"""The one schema reader: typed getters, and one line naming the dotted key per bad input."""

from __future__ import annotations

import math

import pytest

from splitedge.proto.schema import REQUIRED, SchemaError, Section


class ValueProblem(ValueError):
    pass


class KeyProblem(ValueError):
    pass


DOC = {
    "name": "run",
    "fps": 15,
    "sla_ms": 250.5,
    "clients": 2,
    "kind": "fixed",
    "levels": [0, 1],
    "edges": [0.5, 2],
    "edge": {"max_batch_size": 4, "queue": {"depth": 8}},
    "latency": {"0": 3.5, "2": 7},
}


def _error(call) -> str:
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_typed_getters_read_a_document_and_finish_accepts_it():
    top = Section(DOC)
    assert top.string("name", required=True) == "run"
    assert top.number("fps", minimum=0, exclusive=True) == 15.0
    assert top.number("sla_ms", 1000.0, minimum=0) == 250.5
    assert top.number("absent", 1.5) == 1.5
    assert top.integer("clients", minimum=1, maximum=64) == 2
    assert top.choice("kind", ("fixed", "adaptive")) == "fixed"
    assert top.int_list("levels") == [0, 1]
    assert top.number_list("edges") == [0.5, 2.0]
    edge = top.section("edge")
    assert edge.integer("max_batch_size", 8, minimum=1) == 4
    assert edge.section("queue").integer("depth", minimum=1) == 8
    assert top.section("latency").int_keyed(minimum=0) == {0: 3.5, 2: 7.0}
    assert top.get("missing", str, "x") == "x"
    top.finish()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.integer("fps", maximum=10), "fps: expected an integer in [0, 10], got 15"),
        (lambda s: s.integer("sla_ms"), "sla_ms: expected an integer, got 250.5"),
        (lambda s: s.number("name"), "name: expected a number, got 'run'"),
        (lambda s: s.number("fps", minimum=20), "fps: expected a number >= 20, got 15"),
        (
            lambda s: s.number("fps", minimum=15, exclusive=True),
            "fps: expected a number > 15, got 15",
        ),
        (
            lambda s: s.number("sla_ms", minimum=0, maximum=1),
            "sla_ms: expected a number in [0, 1], got 250.5",
        ),
        (lambda s: s.number("fps", maximum=1), "fps: expected a number <= 1, got 15"),
        (lambda s: s.string("fps"), "fps: expected a non-empty string, got 15"),
        (lambda s: s.choice("kind", ("a", "b")), "kind: expected one of a, b, got 'fixed'"),
        (lambda s: s.get("levels", dict), "levels: expected a table, got [0, 1]"),
        (lambda s: s.get("name", (int, float)), "name: expected a number, got 'run'"),
        (lambda s: s.int_list("edges"), "edges[0]: expected an integer >= 0, got 0.5"),
        (lambda s: s.number_list("name"), "name: expected a list, got 'run'"),
        (
            lambda s: s.section("edge").section("queue").integer("depth", maximum=4),
            "edge.queue.depth: expected an integer in [0, 4], got 8",
        ),
        (lambda s: s.section("name"), "name: expected a table, got str"),
    ],
)
def test_a_wrong_value_names_its_dotted_key(call, message):
    assert _error(lambda: call(Section(DOC))) == message


def test_a_bool_is_never_a_number_and_nan_is_refused():
    sec = Section({"on": True, "x": math.nan, "xs": [1, math.inf]})
    assert _error(lambda: sec.number("on")) == "on: expected a number, got True"
    assert _error(lambda: sec.integer("on")) == "on: expected an integer, got True"
    assert _error(lambda: sec.choice("on", (0, 1))) == "on: expected one of 0, 1, got True"
    assert _error(lambda: sec.number("x")) == "x: expected a number, got nan"
    assert _error(lambda: sec.number_list("xs")) == "xs[1]: expected a number, got inf"
    assert sec.get("on", bool) is True


def test_missing_and_unknown_keys_use_the_key_error_class_and_the_source():
    top = Section(
        {"edge": {"max_batch_size": 4, "extra": 1, "bogus": 2}},
        source="s.toml",
        error=ValueProblem,
        key_error=KeyProblem,
    )
    with pytest.raises(KeyProblem, match=r"^s\.toml: name: required key is missing$"):
        top.string("name", required=True)
    with pytest.raises(KeyProblem, match=r"^s\.toml: fps: required key is missing$"):
        top.number("fps")  # no default: REQUIRED
    edge = top.section("edge")
    with pytest.raises(ValueProblem, match=r"^s\.toml: edge\.max_batch_size: expected an integer"):
        edge.integer("max_batch_size", maximum=2)
    with pytest.raises(KeyProblem, match=r"^s\.toml: edge\.bogus: unknown key \(also: extra\)$"):
        edge.finish()
    with pytest.raises(KeyProblem, match=r"^s\.toml: section: required key is missing$"):
        top.section("section", required=True)


def test_tables_are_named_as_their_format_names_them():
    with pytest.raises(SchemaError, match=r"^top level: expected an object, got list$"):
        Section([1], table="an object")
    doc = Section({"entries": [{"latency": [1]}]}, table="an object")
    assert doc.get("entries", list)
    inner = Section(doc.data["entries"][0], "entries[0]", table="an object")
    with pytest.raises(SchemaError, match=r"^entries\[0\]\.latency: expected an object, got list$"):
        inner.section("latency")


def test_int_keyed_tables_refuse_other_keys():
    sec = Section({"lat": {"0": 1, "one": 2}}).section("lat")
    assert _error(lambda: sec.int_keyed()) == (
        "lat.one: keys must be non-negative integers, got 'one'"
    )


def test_required_is_a_visible_sentinel():
    assert repr(REQUIRED) == "REQUIRED"
