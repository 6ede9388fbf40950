"""configc.yamlout: the exact text for each kind of value, and that YAML reads back the value."""

from __future__ import annotations

import math
import random

import pytest
from ruamel.yaml import YAML

from configc.yamlout import dump


def load(text: str):
    """What the executor (ruamel, YAML 1.2) reads."""
    # A fresh instance each time: one that has read a %YAML 1.1 document stays in 1.1.
    return YAML(typ="safe", pure=True).load(text)


def load_yaml_1_1(text: str):
    """What a YAML 1.1 reader such as Ansible's PyYAML reads."""
    return YAML(typ="safe", pure=True).load("%YAML 1.1\n---\n" + text)


ADVERSARIAL = [
    *("true", "False", "TRUE", "NO", "no", "Yes", "y", "Y", "n", "N", "on", "OFF", "Off"),
    *("null", "Null", "NULL", "~", "", " ", "  ", " lead", "trail ", "in side"),
    *("0", "1", "-1", "+1", "017", "0o17", "0x1F", "0X1f", "0b101", "1_000", "1__0", "0x_1"),
    *("1e3", "1E3", "1.5e-3", "1.", ".5", ".", "1.0", "-1.5", "+.5", "1_0.5", "1e+03"),
    *(".inf", "-.inf", "+.INF", ".Inf", ".nan", ".NaN", ".NAN", "inf", "nan", "NaN"),
    *("1:20", "190:20:30", "1:20.5", "-1:20", "12:345", "10:00", "1:"),
    *("2001-12-14", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5", "2001-1-1"),
    *("- a", "-", "--", "---", "...", "-x", "a: b", "a:b", "a:", ":", ":a", "::", "a :b"),
    *("#x", "x #y", "x#y", "'", "''", '"', "it's", 'say "hi"', "\t", "a\tb", "\\", "\\n"),
    *("é", "naïve", "日本語", "😀", "\u00a0", "\ufeff", "\u2028", "\u2029", "\x85", "\x7f"),
    *("\x00", "\x01", "\x1b[0m", "\r", "\r\n", "a\nb", "a\n", "\n", "\n\n", " \n "),
    *("@at", "`bt", "%", "%YAML", "!tag", "!!str", "&anchor", "*alias", "[x]", "{x}", "]"),
    *(",", "a,b", "?", "? x", "|", ">", "=", "<<", "a b", "a  b", "a - b", "x: y: z"),
    *("http://10.0.0.1:9200", "10.0.0.1", "1.2.3", "v1.2", "a/b.c", "_", "__x__"),
    *("qwen-plus@Tongyi-Qianwen", "BAAI/bge-large-zh-v1.5", "change-me", "INFO"),
    "x" * 200,
]


EXACT = [
    ({}, "{}\n"),
    ([], "[]\n"),
    ({"a": 1}, "a: 1\n"),
    ({"a": None}, "a:\n"),
    ({"a": {}, "b": []}, "a: {}\nb: []\n"),
    ({"b": 2, "a": 1}, "b: 2\na: 1\n"),  # insertion order, not sorted
    ({"a": {"b": {"c": 1}}}, "a:\n  b:\n    c: 1\n"),
    ({"a": [1, 2]}, "a:\n  - 1\n  - 2\n"),
    ({"a": [{"b": 1, "c": [2]}, {}]}, "a:\n  - b: 1\n    c:\n      - 2\n  - {}\n"),
    ({"a": [[1, 2], [], None]}, "a:\n  - - 1\n    - 2\n  - []\n  -\n"),
    ([1, {"a": 1, "b": 2}], "- 1\n- a: 1\n  b: 2\n"),
    ({"t": True, "f": False}, "t: true\nf: false\n"),
    ({"i": 0, "m": -42, "big": 2**70}, f"i: 0\nm: -42\nbig: {2**70}\n"),
    ({"f": 1.5, "g": -0.0, "h": 1e-05, "j": 1e100}, "f: 1.5\ng: -0.0\nh: 1.0e-05\nj: 1.0e+100\n"),
    ({"f": 0.1 + 0.2}, "f: 0.30000000000000004\n"),
    ({"i": math.inf, "j": -math.inf}, "i: .inf\nj: -.inf\n"),
    ({"s": "plain", "e": ""}, "s: plain\ne: ''\n"),
    (
        {"u": "http://10.0.0.1:9200", "p": "/var/lib/x", "ip": "10.0.0.1", "v": "1.2.3"},
        "u: http://10.0.0.1:9200\np: /var/lib/x\nip: 10.0.0.1\nv: 1.2.3\n",
    ),
    (
        {"m": "qwen-plus@Tongyi-Qianwen", "w": "two words"},
        "m: qwen-plus@Tongyi-Qianwen\nw: two words\n",
    ),
    ({"b": "true", "o": "NO", "z": "null", "t": "~"}, "b: 'true'\no: 'NO'\nz: 'null'\nt: '~'\n"),
    (
        {"h": "0x1F", "e": "1e3", "s": "1:20", "d": "2001-12-14"},
        "h: '0x1F'\ne: '1e3'\ns: '1:20'\nd: '2001-12-14'\n",
    ),
    (
        {"q": "it's", "c": "#x", "k": "a: b", "x": "x #y", "e": "a:"},
        "q: 'it''s'\nc: '#x'\nk: 'a: b'\nx: 'x #y'\ne: 'a:'\n",
    ),
    (
        {"d": "- a", "a": "@at", "b": "`bt", "l": " lead", "r": "trail "},
        "d: '- a'\na: '@at'\nb: '`bt'\nl: ' lead'\nr: 'trail '\n",
    ),
    ({"u": "é", "dq": '"', "bs": "\\"}, "u: 'é'\ndq: '\"'\nbs: '\\'\n"),
    (
        {"nl": "a\nb", "tab": "\t", "nul": "\x00", "del": "\x7f", "mix": 'it\'s\n"x"\\'},
        'nl: "a\\nb"\ntab: "\\t"\nnul: "\\0"\ndel: "\\x7f"\nmix: "it\'s\\n\\"x\\"\\\\"\n',
    ),
    (
        {"ls": "\u2028", "bom": "\ufeff", "nel": "\x85", "emoji": "😀"},
        'ls: "\\u2028"\nbom: "\\ufeff"\nnel: "\\x85"\nemoji: \'😀\'\n',
    ),
    ({"true": 1, "": 2, "a b": 3, "1": 4}, "'true': 1\n'': 2\na b: 3\n'1': 4\n"),
    ({"y": 1, "n": 2, "on": 3, "x": 4}, "'y': 1\n'n': 2\n'on': 3\nx: 4\n"),  # YAML 1.1 bools
]


@pytest.mark.parametrize(("data", "text"), EXACT)
def test_exact_text(data, text):
    assert dump(data) == text
    assert load(text) == data
    assert load_yaml_1_1(text) == data


def test_nan():
    assert dump({"x": math.nan}) == "x: .nan\n"
    assert math.isnan(load("x: .nan\n")["x"])


def test_long_keys_are_explicit():
    key = "k" * 2000
    data = {key: {"a": 1}, "b": [{key: None, "c": 2}]}
    text = dump(data)
    assert text.startswith(f"? {key}\n:\n  a: 1\n")
    assert load(text) == data


@pytest.mark.parametrize("value", [None, "x", 1, 1.5, True])
def test_top_level_must_be_a_collection(value):
    with pytest.raises(TypeError):
        dump(value)


@pytest.mark.parametrize(
    "data", [{1: "a"}, {None: "a"}, {"a": object()}, {"a": (1, 2)}, {"a": b"x"}, [{"a"}]]
)
def test_not_json_like_is_refused(data):
    with pytest.raises(TypeError):
        dump(data)


def test_ruamel_scalar_subclasses_are_written_as_their_value():
    """The loader hands over ruamel's round-trip scalars (0x1F as HexInt, etc.)."""
    rt = YAML(typ="rt").load("i: 0x1F\nf: 1.50\nb: &x true\ns: 'q'\n")
    data = {key: rt[key] for key in rt}
    assert dump(data) == "i: 31\nf: 1.5\nb: true\ns: q\n"


@pytest.mark.parametrize("string", ADVERSARIAL)
def test_adversarial_strings_round_trip(string):
    data = {string: string, "list": [string, {string: [string]}]}
    text = dump(data)
    assert load(text) == data, text
    assert load_yaml_1_1(text) == data, text


def random_string(rng: random.Random) -> str:
    if rng.random() < 0.4:
        return rng.choice(ADVERSARIAL)
    alphabet = "abcXYZ019_./@:+- #'\"\\\t\n!&*%`|>?,[]{}=~é日\x00\x7f\x85\u2028\ufeff😀"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))


def random_scalar(rng: random.Random):
    kind = rng.randrange(6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, 1, -1, 7, 10**20, rng.randint(-(10**6), 10**6)])
    if kind == 3:
        return rng.choice([0.0, -0.0, 0.5, 1e-7, 1e22, math.inf, -math.inf, rng.uniform(-1e6, 1e6)])
    return random_string(rng)


def random_value(rng: random.Random, depth: int):
    kind = rng.randrange(10) if depth < 4 else 9
    if kind < 2:
        return {random_string(rng): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if kind < 4:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return random_scalar(rng)


def test_random_values_round_trip():
    rng = random.Random(20240611)
    for _ in range(1500):
        data = random_value(rng, 0)
        if not isinstance(data, dict | list):
            data = [data]
        text = dump(data)
        assert load(text) == data, text
        assert load_yaml_1_1(text) == data, text


def test_output_is_deterministic_and_newline_terminated():
    rng = random.Random(7)
    data = {"x": [random_value(rng, 0) for _ in range(50)]}
    assert dump(data) == dump(data)
    assert dump(data).endswith("\n") and not dump(data).endswith("\n\n")


@pytest.mark.parametrize("string", ["{{ x }}", "a{%b", "{#", "pw {{ lookup('pipe', 'id') }}"])
def test_ansible_files_tag_templates_unsafe(string):
    # Ansible templates every variable: a Jinja delimiter must come with !unsafe.
    text = dump({"v": string, "n": [string]}, ansible=True)
    assert text.count("!unsafe ") == 2
    loader = YAML(typ="safe", pure=True)
    loader.constructor.add_constructor("!unsafe", type(loader.constructor).construct_scalar)
    assert loader.load(text) == {"v": string, "n": [string]}
    assert "!unsafe" not in dump({"v": string})  # the executor's YAML has no Ansible tags
    assert "!unsafe" not in dump({"v": "{x} {"}, ansible=True)
