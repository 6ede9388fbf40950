"""Loading, interpolation and merging of configuration layers, with provenance."""

from __future__ import annotations

import pytest
from confdirs import write

from configc.errors import ConfigError, Location
from configc.interpolate import InterpolationError, interpolate
from configc.loader import load_layer
from configc.merge import merge_layers

# -- interpolation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("${A:-d}", {}, "d"),
        ("${A:-d}", {"A": ""}, "d"),  # bash: unset OR empty takes the default
        ("${A}", {"A": ""}, ""),  # set but empty is a value for the plain form
        ("http://${H:-es01}:9200", {}, "http://es01:9200"),
        ("${A}-${B:-b}", {"A": "a"}, "a-b"),
        ("${A:-has:colon and $dollar}", {}, "has:colon and $dollar"),
        ("no reference", {}, "no reference"),
        ("$(rm -rf /) `id`", {}, "$(rm -rf /) `id`"),  # nothing is evaluated
    ],
)
def test_interpolate(text, env, expected):
    assert interpolate(text, env) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${MISSING}", "environment variable MISSING is not set"),
        ("${1BAD}", "bad reference ${1BAD}"),
        ("${A:=x}", "bad reference ${A:=x}"),
        ("${UNCLOSED", "unterminated reference"),
    ],
)
def test_interpolate_errors(text, message):
    with pytest.raises(InterpolationError, match=message.replace("$", r"\$").replace("{", r"\{")):
        interpolate(text, {})


def test_unset_variable_names_file_line_and_key(tmp_path):
    path = write(
        tmp_path / "c.yaml",
        """
        redis:
          db: 1
          password: '${REDIS_PASSWORD}'
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_layer(path, {})
    assert str(info.value) == (
        f"{path}:3:13: redis.password: environment variable REDIS_PASSWORD is not set "
        "(use ${REDIS_PASSWORD:-default} for a default)"
    )


def test_plain_scalars_are_typed_after_substitution_quoted_ones_stay_strings(tmp_path):
    path = write(
        tmp_path / "c.yaml",
        """
        mysql:
          port: ${PORT:-3306}
          name: '${PORT:-3306}'
          flag: ${FLAG:-true}
          url: ${H:-es01}:9200
        """,
    )
    data = load_layer(path, {}).data["mysql"]
    assert data == {"port": 3306, "name": "3306", "flag": True, "url": "es01:9200"}


# -- loading ----------------------------------------------------------------------------------


def test_positions_of_keys_and_list_items(tmp_path):
    path = write(
        tmp_path / "c.yaml",
        """
        hosts:
          - name: a
            roles: [redis, executor]
        """,
    )
    layer = load_layer(path, {}, label="c.yaml")
    assert layer.origins[("hosts",)] == Location("c.yaml", 1, 1)
    assert layer.origins[("hosts", 0)] == Location("c.yaml", 2, 5)
    assert layer.origins[("hosts", 0, "roles")] == Location("c.yaml", 3, 5)
    assert layer.origins[("hosts", 0, "roles", 1)] == Location("c.yaml", 3, 20)


def test_yaml_syntax_error_names_file_line(tmp_path):
    path = write(tmp_path / "c.yaml", "redis:\n  db: [1\n")
    with pytest.raises(ConfigError, match=rf"^{path}:3:1: YAML syntax error"):
        load_layer(path, {})


@pytest.mark.parametrize("text", ["- a list\n", "just a string\n"])
def test_top_level_must_be_a_mapping(tmp_path, text):
    path = write(tmp_path / "c.yaml", text)
    with pytest.raises(ConfigError, match=rf"^{path}:1:1: the file must hold a mapping"):
        load_layer(path, {})


def test_empty_file_is_an_empty_layer(tmp_path):
    assert load_layer(write(tmp_path / "c.yaml", "# only a comment\n"), {}).data == {}


# -- merging ----------------------------------------------------------------------------------


def _merge(tmp_path, *texts):
    layers = [
        load_layer(write(tmp_path / f"l{i}.yaml", t), {}, label=f"l{i}.yaml")
        for i, t in enumerate(texts)
    ]
    return merge_layers(layers)


def test_mappings_deep_merge_scalars_and_lists_replace(tmp_path):
    merged = _merge(
        tmp_path,
        """
        redis:
          db: 1
          host: 'a:1'
        hosts: [x, y]
        """,
        """
        redis:
          db: 2
        hosts: [z]
        """,
    )
    assert merged.data == {"redis": {"db": 2, "host": "a:1"}, "hosts": ["z"]}
    assert merged.origins[("redis", "db")] == Location("l1.yaml", 2, 3)
    assert merged.origins[("redis", "host")] == Location("l0.yaml", 3, 3)
    # The replaced list's old items are forgotten, not attributed to the wrong file.
    assert ("hosts", 1) not in merged.origins
    assert merged.origins[("hosts", 0)].file == "l1.yaml"


def test_replace_tag_replaces_a_mapping_whole(tmp_path):
    merged = _merge(
        tmp_path,
        """
        redis:
          db: 1
          host: 'a:1'
        """,
        """
        redis: !replace
          host: 'b:2'
        """,
    )
    assert merged.data == {"redis": {"host": "b:2"}}
    assert ("redis", "db") not in merged.origins


def test_upstream_shallow_update_would_drop_keys_ours_keeps_them(tmp_path):
    """The complaint that started this: a local override of one key lost the others."""
    merged = _merge(tmp_path, "mysql:\n  user: u\n  password: p\n", "mysql:\n  password: q\n")
    assert merged.data["mysql"] == {"user": "u", "password": "q"}


def test_null_replaces_and_mapping_over_scalar_replaces(tmp_path):
    merged = _merge(tmp_path, "a: 1\nb:\n  c: 1\n", "a:\n  x: 1\nb: ~\n")
    assert merged.data == {"a": {"x": 1}, "b": None}
