"""``configc init``: a commented local.service_conf.yaml, written with ruamel round-trip."""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from .config import Config

HEADER = """\
local.service_conf.yaml: this site's settings, merged over service_conf.yaml.
Mappings merge key by key; scalars and lists replace; tag a mapping !replace to
replace it whole. ${VAR} and ${VAR:-default} come from the environment at build time.
Check with `configc check conf/`, see a value's origin with `configc explain conf/ KEY`."""

# (section, key, comment): the settings sites change most.
SETTINGS = (
    ("executor", "instances", "executor processes per host (hosts[].executor_instances overrides)"),
    ("executor", "max_concurrent_tasks", "tasks one process runs at once"),
    ("executor", "drain_timeout", "seconds a stopping executor lets running tasks finish"),
    ("executor", "doc_engine", "embedded | elasticsearch | opensearch"),
    ("executor", "db_type", "sqlite (single host) | mysql | postgres"),
    ("executor", "log_level", "DEBUG | INFO | WARNING | ERROR"),
)


def write_local_template(target: Path, config: Config) -> None:
    """Write *target* restating the current values, so a build with it changes nothing."""
    root = CommentedMap()
    for section, key, comment in SETTINGS:
        block = root.setdefault(section, CommentedMap())
        block[key] = config.document[section][key]
        block.yaml_add_eol_comment(comment, key)
    root.yaml_set_start_comment(HEADER)
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    with target.open("w", encoding="utf-8") as stream:
        yaml.dump(root, stream)
