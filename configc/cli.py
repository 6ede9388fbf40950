"""``configc``: compile conf/ into per-host files for Ansible and systemd.

Exit codes (scripts can rely on them): 0 success; 1 ``diff`` found changes; 2 the
configuration is invalid or the command line is wrong; 3 the output could not be written.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import click

from executor.version import version_callback

from .config import LOCAL_FILE, Config, load_config
from .errors import ConfigError
from .explain import explain_lines
from .init import write_local_template
from .output import diff_tree, manifest_file, write_tree
from .render import OutputFile
from .secrets import SecretStore
from .vault import Vault, seal_files

EXIT_CHANGES, EXIT_INVALID, EXIT_WRITE = 1, 2, 3

CONF_ARG = click.argument(
    "conf", type=click.Path(file_okay=False, path_type=Path), metavar="CONF_DIR"
)


def overlay_option(func: Callable) -> Callable:
    return click.option(
        "--overlay",
        "overlays",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        metavar="FILE",
        help="Extra YAML layer merged after CONF_DIR's files (repeatable; later wins).",
    )(func)


def vault_option(func: Callable) -> Callable:
    return click.option(
        "--vault-password-file",
        "vault_file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        metavar="FILE",
        help="Vault mode: no secret in plaintext under OUTPUT or conf/ (ansible-vault "
        "encrypted host_vars and TLS private keys, templated host files); give Ansible the "
        "same file. "
        "See docs/security.md.",
    )(func)


def _vault(vault_file: Path | None) -> Vault | None:
    if vault_file is None:
        return None
    try:
        return Vault.from_file(vault_file)
    except OSError as exc:
        click.echo(f"configc: {exc}", err=True)
        sys.exit(EXIT_INVALID)


def _report(exc: ConfigError) -> NoReturn:
    for problem in exc.problems:
        click.echo(f"error: {problem}", err=True)
    count = len(exc.problems)
    click.echo(f"configc: {count} problem{'s' * (count != 1)} found", err=True)
    sys.exit(EXIT_INVALID)


def _load(
    conf: Path,
    overlays: Sequence[Path],
    vault: Vault | None = None,
    strict: bool = False,
    keep_tls: bool = False,
) -> Config:
    """Load or exit 2, printing every problem as file:line:col: key.path: message.

    *strict*: the generated passwords must be readable (build and diff use them; check,
    explain and init only need to know the configuration is valid). Only ``build``
    (*keep_tls*) writes the CA and certificates it needs into CONF_DIR/tls."""
    try:
        store = SecretStore(conf, vault, strict) if conf.is_dir() else None
        return load_config(conf, overlays, store=store, vault=vault is not None, keep_tls=keep_tls)
    except ConfigError as exc:
        _report(exc)


def _compile(config: Config, out_dir: Path, vault: Vault | None) -> list[OutputFile]:
    try:
        files, notes = seal_files(out_dir, config.files, vault)
    except ConfigError as exc:
        _report(exc)
    for note in notes:
        click.echo(f"configc: {note}", err=True)
    return [*files, manifest_file(files, config.input_files)]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=version_callback("configc"),
    help="Show the version and the commit it was built from, and exit.",
)
def main() -> None:
    """Compile a ragfleet configuration directory into everything a fleet needs.

    CONF_DIR holds service_conf.yaml (shipped defaults) and optionally
    local.service_conf.yaml (your site), merged in that order, then any --overlay
    files. Mappings merge key by key; scalars and lists replace; a mapping tagged
    !replace replaces the earlier one whole. ${VAR} and ${VAR:-default} are taken from
    the environment. See docs/configuration.md.

    Exit codes: 0 ok, 1 diff found changes, 2 invalid configuration or usage,
    3 output not writable.
    """


@main.command()
@CONF_ARG
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the compiled tree (created if missing).",
)
@overlay_option
@vault_option
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def build(
    conf: Path, out_dir: Path, overlays: tuple[Path, ...], vault_file: Path | None, quiet: bool
) -> None:
    """Validate CONF_DIR and write the compiled tree to OUTPUT.

    \b
    OUTPUT/inventory.yml          Ansible inventory (groups redis, mysql,
                                  elasticsearch, executor)
    OUTPUT/host_vars/NAME.yml     secrets the roles need (mode 0600)
    OUTPUT/hosts/NAME/...         the exact files to install on host NAME
    OUTPUT/manifest.json          mode of every file, sha256 of the public ones,
                                  input digests

    Only changed files are rewritten; files an earlier build wrote and this one
    does not are removed. Nothing else in OUTPUT is touched. A vault-encrypted
    host_vars file is never rewritten in plaintext. On a single loopback host,
    unset passwords are generated once into CONF_DIR/.secrets.yaml (0600). When
    services speak TLS (tls.mode), the private CA and the certificates it issues are
    made once in CONF_DIR/tls (keys 0600; keep it out of version control) and reused.
    With --vault-password-file, host_vars, generated passwords and every TLS private
    key (in OUTPUT and CONF_DIR/tls) are ansible-vault encrypted.
    """
    vault = _vault(vault_file)
    config = _load(conf, overlays, vault, strict=True, keep_tls=True)
    files = _compile(config, out_dir, vault)
    try:
        config.store.save()
    except OSError as exc:
        click.echo(f"configc: cannot write {config.store.path}: {exc}", err=True)
        sys.exit(EXIT_WRITE)
    try:
        report = write_tree(out_dir, files)
    except OSError as exc:
        click.echo(f"configc: cannot write {out_dir}: {exc}", err=True)
        sys.exit(EXIT_WRITE)
    if not quiet:
        hosts = len(config.document["hosts"])
        click.echo(
            f"configc: {out_dir}: {hosts} host{'s' * (hosts != 1)}, {len(files)} files: "
            f"{len(report.written)} written, {len(report.unchanged)} unchanged, "
            f"{len(report.removed)} removed"
        )


@main.command()
@CONF_ARG
@overlay_option
@vault_option
def check(conf: Path, overlays: tuple[Path, ...], vault_file: Path | None) -> None:
    """Validate CONF_DIR only; exit 0 if valid, 2 with every problem listed if not."""
    config = _load(conf, overlays, _vault(vault_file))
    hosts = len(config.document["hosts"])
    layers = ", ".join(str(p) for p in config.input_files)
    click.echo(f"configc: valid ({layers}; {hosts} host{'s' * (hosts != 1)})")


@main.command()
@CONF_ARG
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path), metavar="OUT_DIR")
@overlay_option
@vault_option
def diff(conf: Path, out_dir: Path, overlays: tuple[Path, ...], vault_file: Path | None) -> None:
    """Show what `build CONF_DIR -o OUT_DIR` would change, without writing anything.

    Exit 0 when OUT_DIR is up to date, 1 when something would change. Secret files
    (mode 0600) are reported as changed but never shown.
    """
    vault = _vault(vault_file)
    config = _load(conf, overlays, vault, strict=True)
    files = _compile(config, out_dir, vault)
    changed = False
    for line in diff_tree(out_dir, files):
        click.echo(line)
        changed = True
    if not changed:
        click.echo(f"configc: {out_dir} is up to date")
    sys.exit(EXIT_CHANGES if changed else 0)


@main.command()
@CONF_ARG
@click.argument("key")
@overlay_option
def explain(conf: Path, key: str, overlays: tuple[Path, ...]) -> None:
    """Show the final value of KEY and the file:line:col that set it.

    KEY is a dotted path such as redis.host, executor.instances or
    hosts[0].address; a section shows every value under it. models.KIND (chat_model,
    embedding_model, ...) shows the resolved default model. Secrets are masked.
    """
    config = _load(conf, overlays)
    try:
        lines = explain_lines(config, key)
    except KeyError as exc:
        click.echo(f"configc: {exc.args[0]}", err=True)
        sys.exit(EXIT_INVALID)
    for line in lines:
        click.echo(line)


@main.command()
@click.argument(
    "conf", type=click.Path(file_okay=False, path_type=Path), default="conf", metavar="[CONF_DIR]"
)
@click.option("--force", is_flag=True, help=f"Overwrite an existing {LOCAL_FILE}.")
def init(conf: Path, force: bool) -> None:
    """Write a commented CONF_DIR/local.service_conf.yaml to start a site's settings from.

    The file restates the current values of the settings sites change most, so
    building with it changes nothing until you edit it. An existing file is left
    alone (exit 0) unless --force.
    """
    target = conf / LOCAL_FILE
    if target.exists() and not force:
        click.echo(f"configc: {target} exists; left unchanged (use --force to overwrite)")
        return
    config = _load(conf, ())
    write_local_template(target, config)
    click.echo(f"configc: wrote {target}")
