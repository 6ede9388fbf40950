"""ansible-vault, through ansible-core's own VaultLib: encrypt, decrypt, recognise.

ansible-core is imported only when a vault password is given (it is in the ``deploy``
extra); recognising an encrypted file needs only its header.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from . import yamlout
from .errors import ConfigError, Location, Problem

if TYPE_CHECKING:  # render imports pki, which reads vault-encrypted keys through this module
    from .render import OutputFile

VAULT_HEADER = b"$ANSIBLE_VAULT;"


def is_encrypted(data: bytes) -> bool:
    """Whether *data* is an ansible-vault file (ansible-vault encrypt's, or configc's)."""
    return data.lstrip().startswith(VAULT_HEADER)


class Vault:
    """One vault password (ansible-vault's default vault id)."""

    def __init__(self, secret: Any) -> None:
        """*secret*: an ansible ``VaultSecret``, loaded."""
        from ansible.parsing.vault import VaultLib

        self._lib = VaultLib([("default", secret)])

    @classmethod
    def from_file(cls, path: Path) -> Vault:
        """The password in *path*, read by ansible-core as ansible-playbook
        --vault-password-file reads it (a file's content, stripped, or an executable's
        output)."""
        try:
            from ansible.errors import AnsibleError
            from ansible.parsing.dataloader import DataLoader
            from ansible.parsing.vault import get_file_vault_secret
        except ImportError as exc:  # pragma: no cover: the deploy extra is missing
            raise OSError(
                f"vault mode needs ansible-core (pip install '.[deploy]'): {exc}"
            ) from exc
        try:
            secret = get_file_vault_secret(filename=str(path), loader=DataLoader())
            secret.load()
        except AnsibleError as exc:
            raise OSError(f"{path}: {exc}") from exc
        if not secret.bytes:
            raise OSError(f"{path} is empty: it must hold the vault password")
        return cls(secret)

    is_encrypted = staticmethod(is_encrypted)

    def encrypt(self, text: str) -> bytes:
        return self._lib.encrypt(text.encode())

    def decrypt(self, data: bytes) -> str:
        """The plaintext of *data*; OSError if this password does not open it."""
        try:
            return self._lib.decrypt(data).decode()
        except Exception as exc:  # AnsibleError and its subclasses, whatever the version
            raise OSError(f"cannot decrypt with this vault password: {exc}") from exc


def unseal(data: bytes, vault: Vault | None) -> bytes:
    """*data* in plaintext: decrypted with *vault* if it is an ansible-vault file; OSError
    saying why it cannot be (no vault password, or another one)."""
    if not is_encrypted(data):
        return data
    if vault is None:
        raise OSError("is vault-encrypted: pass --vault-password-file to read it")
    return vault.decrypt(data).encode()


def read_secret_file(path: Path, vault: Vault | None) -> dict[str, str]:
    """The mapping in conf/.secrets.yaml (decrypted with *vault* if it is encrypted); {} if
    the file does not exist. ConfigError if it cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise _file_problem(path, f"cannot read: {exc.strerror}") from None
    if is_encrypted(data):
        if vault is None:
            raise _file_problem(
                path, "is vault-encrypted: pass --vault-password-file to read it"
            ) from None
        try:
            text = vault.decrypt(data)
        except OSError as exc:
            raise _file_problem(path, str(exc)) from None
    else:
        text = data.decode(errors="replace")
    try:
        values = YAML(typ="safe", pure=True).load(text) or {}
    except YAMLError:
        values = None
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise _file_problem(
            path, "must map key paths to generated passwords; delete it to start over"
        )
    return {str(k): v for k, v in values.items()}


def write_secret_file(path: Path, values: dict[str, Any], vault: Vault | None) -> None:
    """Write *values* to *path* with mode 0600 (encrypted with *vault* if given), atomically."""
    text = (
        "# Passwords configc generated for this single-host configuration; never commit this\n"
        "# file. Delete a line to have configc generate that password again.\n"
        + yamlout.dump(dict(sorted(values.items())))
    )
    data = vault.encrypt(text) if vault else text.encode()
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(temp, path)


def _file_problem(path: Path, message: str) -> ConfigError:
    return ConfigError([Problem(message, location=Location(str(path), 1, 1))])


HOST_VARS = "host_vars/"
KEY_SUFFIX = ".key"
"""The TLS private keys of the compiled tree (hosts/<name>/etc/.../<stem>.key, render.py)."""


def _sealed(path: str) -> bool:
    """Whether *path* of the compiled tree is vault-encrypted in vault mode."""
    return path.startswith(HOST_VARS) or (path.startswith("hosts/") and path.endswith(KEY_SUFFIX))


def seal_files(
    out_dir: Path, files: list[OutputFile], vault: Vault | None
) -> tuple[list[OutputFile], list[str]]:
    """The files as they must be written, and notes for the operator.

    With *vault*, each host_vars file and TLS private key is vault-encrypted; an encrypted
    file already in *out_dir* that holds the same plaintext is kept byte for byte
    (encryption is salted, so re-encrypting would rewrite it on every build). Without, an
    encrypted host_vars file found there (``ansible-vault encrypt out/host_vars/*.yml``) is
    never replaced by plaintext: it is kept as it is. An encrypted key found there without
    the vault password is a ConfigError: kept, it might not be the key of the new
    certificate; replaced, it would be plaintext.
    """
    sealed: list[OutputFile] = []
    notes: list[str] = []
    problems: list[Problem] = []
    for file in files:
        if _sealed(file.path):
            try:
                file, note = _seal(out_dir / file.path, file, vault)
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            if note:
                notes.append(note)
        sealed.append(file)
    if problems:
        raise ConfigError(problems)
    return sealed, notes


def _seal(target: Path, file: OutputFile, vault: Vault | None) -> tuple[OutputFile, str]:
    try:
        existing = target.read_bytes()
    except OSError:
        existing = b""
    if is_encrypted(existing):
        if vault is None:
            if file.path.endswith(KEY_SUFFIX):
                raise _file_problem(
                    target,
                    "is vault-encrypted (a vault-mode build wrote it): pass "
                    "--vault-password-file, or delete it to build in plaintext",
                )
            return replace(file, content=existing), (
                f"{file.path} is vault-encrypted: left as it is (pass --vault-password-file "
                "to update it)"
            )
        try:
            if vault.decrypt(existing) == file.content.decode():
                return replace(file, content=existing), ""
        except OSError:
            return replace(file, content=vault.encrypt(file.content.decode())), (
                f"{file.path} was encrypted with another vault password: re-encrypted"
            )
    if vault is None:
        return file, ""
    return replace(file, content=vault.encrypt(file.content.decode())), ""
