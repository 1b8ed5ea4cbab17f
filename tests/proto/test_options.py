"""The text formats every CLI shares: WIDTHxHEIGHT sizes, typed KEY=VALUE options, TOML."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from splitedge.proto.options import (
    FormatError,
    load_toml,
    option_arg,
    parse_option,
    parse_options,
    parse_size,
    parse_size_hw,
    parse_value,
    size_arg,
    size_hw_arg,
    split_items,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("320x240", (320, 240)), ("640X480", (640, 480)), (" 1x8192 ", (1, 8192))],
)
def test_a_size_is_width_by_height(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("big", "--size: expected WIDTHxHEIGHT such as 320x240, got 'big'"),
        ("320x", "--size: expected WIDTHxHEIGHT such as 320x240, got '320x'"),
        ("320x240x3", "--size: expected WIDTHxHEIGHT such as 320x240, got '320x240x3'"),
        ("-3x240", "--size: expected WIDTHxHEIGHT such as 320x240, got '-3x240'"),
        ("0x240", "--size: each side must be 1-8192 pixels, got '0x240'"),
        ("100000x100000", "--size: each side must be 1-8192 pixels, got '100000x100000'"),
    ],
)
def test_a_bad_size_names_the_flag_in_one_line(text, message):
    with pytest.raises(FormatError) as info:
        parse_size(text)
    assert str(info.value) == message


def test_a_size_can_have_its_own_bounds_and_flag():
    assert parse_size("32x32", "--crop", minimum=32) == (32, 32)
    with pytest.raises(FormatError, match=r"^--crop: each side must be 32-64 pixels, got '31x40'$"):
        parse_size("31x40", "--crop", minimum=32, maximum=64)


def test_a_recipe_size_reads_the_same_text_as_height_by_width(capsys):
    assert parse_size_hw("320x240") == (240, 320)
    parser = argparse.ArgumentParser(prog="p")
    parser.add_argument("--size", type=size_hw_arg(minimum=32))
    assert parser.parse_args(["--size", "64x48"]).size == (48, 64)
    with pytest.raises(SystemExit):
        parser.parse_args(["--size", "16x48"])
    assert "--size: each side must be 32-8192 pixels, got '16x48'" in capsys.readouterr().err


def test_argparse_shows_the_detail_after_its_own_flag_name(capsys):
    parser = argparse.ArgumentParser(prog="p")
    parser.add_argument("--size", type=size_arg(minimum=16))
    parser.add_argument("-o", type=option_arg("-o"), action="append", default=[])
    assert parser.parse_args(["--size", "64x48", "-o", "a=1"]).size == (64, 48)
    with pytest.raises(SystemExit):
        parser.parse_args(["--size", "8x8"])
    assert "argument --size: each side must be 16-8192 pixels, got '8x8'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["-o", "novalue"])
    assert "argument -o: expected KEY=VALUE, got 'novalue'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7", 7),
        ("-2", -2),
        ("0.5", 0.5),
        ("1e3", 1000.0),
        ("true", True),
        ("False", False),
        ("ckpt.pt", "ckpt.pt"),
        ("", ""),
        (" spaced ", "spaced"),
        ("90,50,20", [90, 50, 20]),
        ("a,0.5,true", ["a", 0.5, True]),
        ("[90, 50]", [90, 50]),
        ('{"jpeg_qualities": [90, 50]}', {"jpeg_qualities": [90, 50]}),
        ('"a,b.pt"', "a,b.pt"),  # quotes keep a comma, and go
        ("'7'", "7"),  # a number as a string
        ('"p,q",x', ["p,q", "x"]),
        ('"', '"'),
        ("features.9;features.12", ["features.9", "features.12"]),
        ("features.9;", ["features.9"]),  # a trailing ; makes a one-item list
        ("90;50", [90, 50]),
        ('"a;b"', "a;b"),  # quotes keep a semicolon
    ],
)
def test_one_typing_rule_for_every_option_value(text, expected):
    value = parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_options_keep_the_last_value_of_a_repeated_key():
    items = ["num_classes=7", "weights=a.pt", 'teacher_options={"q":[1,2]}', "num_classes=9"]
    assert parse_options(items, "--model-option") == {
        "num_classes": 9,
        "weights": "a.pt",
        "teacher_options": {"q": [1, 2]},
    }


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("novalue", "--model-option: expected KEY=VALUE, got 'novalue'"),
        ("=3", "--model-option: expected KEY=VALUE, got '=3'"),
        ("k=[1,", "--model-option k: not valid JSON (Expecting value)"),
    ],
)
def test_a_bad_option_names_the_flag_in_one_line(item, message):
    with pytest.raises(FormatError) as info:
        parse_option(item, "--model-option")
    assert str(info.value) == message


def test_items_split_on_commas_outside_brackets_and_quotes():
    assert split_items('a=1, b=[1,2],c={"x":1,"y":2}, d="p,q",,') == [
        "a=1",
        "b=[1,2]",
        'c={"x":1,"y":2}',
        'd="p,q"',
    ]


def test_items_split_on_another_separator():
    assert split_items('a;[1;2];"p;q";;b', ";") == ["a", "[1;2]", '"p;q"', "b"]


def test_toml_loads_and_each_failure_names_the_file(tmp_path: Path):
    good = tmp_path / "good.toml"
    good.write_text("[server]\nport = 1\n")
    assert load_toml(good) == {"server": {"port": 1}}
    missing = tmp_path / "none.toml"
    with pytest.raises(FormatError) as info:
        load_toml(missing, "scenario file")
    assert str(info.value) == f"scenario file {str(missing)!r} does not exist"
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(FormatError, match=r"^config file '.*bad\.toml' is not valid TOML \("):
        load_toml(bad)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(FormatError, match="is not valid TOML"):
        load_toml(binary)
    with pytest.raises(FormatError, match="cannot be read"):
        load_toml(tmp_path)  # a folder
