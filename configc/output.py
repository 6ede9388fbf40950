"""Write the compiled tree to disk, describe it in manifest.json, and diff it against a rebuild."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .render import PUBLIC, SECRET, OutputFile

MANIFEST = "manifest.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_file(files: Sequence[OutputFile], inputs: Sequence[Path]) -> OutputFile:
    """manifest.json: every output with its mode and, unless it is secret (0600: private
    keys, passwords), its digest; and digests of the inputs."""
    manifest = {
        "generator": f"configc {__version__}",
        "inputs": [{"path": str(p), "sha256": sha256(p.read_bytes())} for p in inputs],
        "files": [_manifest_entry(f) for f in files],
    }
    body = (json.dumps(manifest, indent=2) + "\n").encode()
    return OutputFile(MANIFEST, body, PUBLIC)


def _manifest_entry(file: OutputFile) -> dict[str, str]:
    # A digest of a secret file would let anyone who reads the manifest (0644) confirm a
    # guess of it offline: a secret file is listed by path and mode only.
    if file.mode == SECRET:
        return {"path": file.path, "mode": f"{file.mode:04o}"}
    return {"path": file.path, "sha256": sha256(file.content), "mode": f"{file.mode:04o}"}


def previous_outputs(out_dir: Path) -> set[str]:
    """The files a previous build wrote into *out_dir*, per its manifest (empty if none)."""
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
        return {entry["path"] for entry in manifest["files"]} | {MANIFEST}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


@dataclass
class WriteReport:
    written: list[str]
    unchanged: list[str]
    removed: list[str]


def write_tree(out_dir: Path, files: Sequence[OutputFile]) -> WriteReport:
    """Write *files* under *out_dir*, each atomically with its exact mode.

    Files a previous build wrote and this one does not are removed; nothing else in
    *out_dir* is touched, so pointing -o at the wrong directory destroys nothing.
    """
    report = WriteReport([], [], [])
    stale = previous_outputs(out_dir) - {f.path for f in files}
    made: set[Path] = set()  # directories known to exist, so each is created only once
    for file in files:
        target = out_dir / file.path
        if _is_current(target, file):
            report.unchanged.append(file.path)
            continue
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        _write_atomic(target, file)
        report.written.append(file.path)
    for path in sorted(stale):
        (out_dir / path).unlink(missing_ok=True)
        report.removed.append(path)
    return report


def _is_current(target: Path, file: OutputFile) -> bool:
    try:
        return target.stat().st_mode & 0o7777 == file.mode and target.read_bytes() == file.content
    except OSError:
        return False


def _write_atomic(target: Path, file: OutputFile) -> None:
    """Write *file* to a temp name beside *target*, then rename it over *target*.

    There is deliberately no fsync (it cost about 1 ms per file, most of a 1,000-host
    build's write time): the tree is reproducible from conf/, the atomic rename already
    keeps readers from ever seeing a partial file, and whatever a crash leaves behind is
    repaired by building again (a file whose bytes or mode differ is rewritten).
    """
    temp = target.with_name(f".{target.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, file.mode)  # exact mode whatever the umask; secrets never wider than 0600
        os.write(fd, file.content)
    finally:
        os.close(fd)
    os.replace(temp, target)


def diff_tree(out_dir: Path, files: Sequence[OutputFile]) -> Iterator[str]:
    """Lines describing what writing *files* to *out_dir* would change; none if nothing."""
    wanted = {f.path for f in files}
    for file in files:
        target = out_dir / file.path
        if not target.exists():
            yield f"+ {file.path} (new, mode {file.mode:04o})"
            continue
        mode = target.stat().st_mode & 0o7777
        if mode != file.mode:
            yield f"~ {file.path}: mode {mode:04o} -> {file.mode:04o}"
        old = target.read_bytes()
        if old == file.content:
            continue
        if file.path == MANIFEST:
            yield f"~ {MANIFEST}: input or output digests change"
            continue
        if file.mode == SECRET or mode == SECRET:
            yield f"~ {file.path}: content changes (secret file: not shown)"
            continue
        yield f"~ {file.path}:"
        yield from difflib.unified_diff(
            old.decode(errors="replace").splitlines(),
            file.content.decode().splitlines(),
            f"a/{file.path}",
            f"b/{file.path}",
            lineterm="",
        )
    for path in sorted(previous_outputs(out_dir) - wanted):
        yield f"- {path} (removed)"
