"""Vault mode's host files: each secret becomes an Ansible variable the roles template in.

In vault mode no compiled file holds a secret in plaintext: ``ragfleet.yaml`` and the Redis
fragment are compiled with ``'{{ ragfleet_..._password }}'`` where a secret goes, the
variables go to the host's ``host_vars`` file (which configc vault-encrypts), and the roles
install those files with ``ansible.builtin.template`` (``ragfleet_vault`` in the inventory)
instead of copying them. The placeholder quotes the value by the file's rules when Ansible
renders it (YAML: single quotes, ' doubled; redis.conf: double quotes, \\ and " escaped);
the loader already refused line breaks and control characters. The rest of such a file
must hold no Jinja syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import Problem
from .schema import SECRET_KEYS

_JINJA = ("{{", "{%", "{#")
# Jinja expressions that write a variable as a quoted scalar of each format.
_QUOTED = {
    "yaml": "'{{ NAME | replace(\"'\", \"''\") }}'",
    "redis": "\"{{ NAME | replace('\\\\', '\\\\\\\\') | replace('\"', '\\\\\"') }}\"",
    # The Redis ACL file holds the password's SHA-256 (configc/redis_acl.py), never the value.
    "acl": "{{ NAME | hash('sha256') }}",
}
_NAME_PART = re.compile(r"[^a-z0-9]+")


def var_name(path: tuple[str, ...], doc: dict[str, Any]) -> str:
    """The Ansible variable of the runtime config's secret at *path*: the one the roles
    already use where there is one (``ragfleet_redis_password``, ``ragfleet_mysql_password``,
    ``ragfleet_elasticsearch_password``), else ``ragfleet_`` and the path."""
    first = {
        "database": doc["executor"]["db_type"],
        "doc_store": doc["executor"]["doc_engine"],
    }.get(path[0], path[0])
    parts = [first, *path[1:]]
    return "ragfleet_" + "_".join(_NAME_PART.sub("_", p.lower()).strip("_") for p in parts)


def _token(name: str) -> str:
    """A bare word in YAML and redis.conf alike (the renderer writes it as it is); the
    upper-case end, which no variable name holds, keeps one token out of another."""
    return f"RAGFLEETVAULT{name}END"


@dataclass
class Placeholders:
    """Secrets swapped for tokens before rendering, and the variables they become after."""

    doc: dict[str, Any]
    variables: dict[str, str] = field(default_factory=dict)  # variable -> secret
    problems: list[Problem] = field(default_factory=list)

    def token(self, name: str, secret: str) -> str:
        self.variables[name] = secret
        return _token(name)

    def swap(
        self,
        data: Any,
        path: tuple[str, ...] = (),
        rename: dict[tuple[str, ...], str] | None = None,
    ) -> Any:
        """A copy of *data* with every secret leaf replaced by its token; *rename* gives the
        variable of a leaf whose default name (:func:`var_name`) belongs to another secret."""
        rename = rename or {}
        if isinstance(data, dict):
            return {k: self._leaf(v, (*path, str(k)), rename) for k, v in data.items()}
        if isinstance(data, list):
            return [self.swap(item, (*path, str(i)), rename) for i, item in enumerate(data)]
        return data

    def _leaf(self, value: Any, path: tuple[str, ...], rename: dict[tuple[str, ...], str]) -> Any:
        if path[-1] in SECRET_KEYS and isinstance(value, str) and value:
            return self.token(rename.get(path) or var_name(path, self.doc), value)
        return self.swap(value, path, rename)

    def template(self, file_path: str, body: bytes, file_format: str) -> bytes:
        """*body* as an Ansible template: tokens become the variable, quoted by the rules of
        *file_format* (``yaml`` or ``redis``)."""
        text = body.decode()
        plain = text
        for name in self.variables:
            plain = plain.replace(_token(name), "")
        for marker in _JINJA:
            if marker in plain:
                self.problems.append(
                    Problem(
                        f"in vault mode {file_path} is an Ansible template, and a value in it "
                        f"holds {marker!r}: Ansible would evaluate it; change that value"
                    )
                )
                break
        for name in self.variables:
            quoted = _QUOTED[file_format].replace("NAME", name)
            # A token inside a quoted argument (redis.conf's ACL rule '">TOKEN"'): the value
            # goes between those quotes, escaped by the same rule.
            if file_format == "redis":
                inside = re.compile(rf'"([^"\s]*){_token(name)}"')
                text = inside.sub(lambda m, q=quoted: f'"{m.group(1)}{q[1:-1]}"', text)
            text = text.replace(_token(name), quoted)
        return text.encode()
