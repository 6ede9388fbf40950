"""The Redis users of an ACL fleet, compiled into Redis's ``aclfile`` rather than redis.conf.

Why a file of its own: ``CONFIG REWRITE`` (the sentinels' at every failover, the redis role's
after ``REPLICAOF``) copies every ``user`` line it finds in the configuration into
``redis.conf`` after the fragment's ``include``, and Redis 7.0 then refuses to start on the
second definition of each user (``Duplicate user found``). With an ``aclfile`` the rewrite
writes no ``user`` line. Redis ignores ``requirepass`` once an ACL file is loaded, so the
default user is defined there too, with the same rules ``requirepass`` gives it.

Redis 7.0 reads the file split at spaces, without quotes, so the passwords go in as SHA-256
hashes (``#`` and 64 hex digits: also no plaintext password on the host); in vault mode the
hash is Ansible's ``hash('sha256')`` of the password's variable.
"""

from __future__ import annotations

import hashlib
from typing import Any

from executor.settings_spec import REDIS_ACL_COMMANDS, REDIS_ACL_KEYS

from .templated import Placeholders

# Where the redis role installs it (its default redis_aclfile); the fragment names it.
ACL_FILE = "/etc/redis/ragfleet-users.acl"
# What `requirepass` gives the default user (ACL LIST on Redis 7.0 shows the same rules).
DEFAULT_RULES = ("~*", "&*", "+@all")


def password_rule(password: str, variable: str, placeholders: Placeholders | None) -> str:
    """The ACL rule that sets *password*: its SHA-256 (in vault mode the token of *variable*,
    which templated.py turns into the hash of that variable)."""
    if placeholders is not None and password:
        return "#" + placeholders.token(variable, password)
    return "#" + hashlib.sha256(password.encode("utf-8")).hexdigest()


def acl_users(
    default_password: str,
    users: list[tuple[str, str, str]],
    placeholders: Placeholders | None = None,
) -> list[dict[str, Any]]:
    """The aclfile's users: the default user with *default_password*, then each of *users*
    (name, password, vault variable) with the queue's commands and keys only."""
    queue_rules = (
        "resetchannels",
        *(f"~{key}" for key in REDIS_ACL_KEYS),
        "-@all",
        *(f"+{command}" for command in REDIS_ACL_COMMANDS),
    )
    # No password: the default user needs none, as without `requirepass`.
    default = (
        password_rule(default_password, "ragfleet_redis_password", placeholders)
        if default_password
        else "nopass"
    )
    out = [{"name": "default", "password": default, "rules": DEFAULT_RULES}]
    for name, password, variable in users:
        rule = password_rule(password, variable, placeholders)
        out.append({"name": name, "password": rule, "rules": queue_rules})
    return out
