"""Finish and verify a wheelhouse that scripts/build_wheelhouse.sh downloaded.

    wheelhouse.py missing REQUIREMENTS OUT [--arch ARCH]
    wheelhouse.py finish OUT --arch ARCH... [--ragfleet-wheel WHEEL]
    wheelhouse.py verify OUT

``missing`` prints the requirement blocks of REQUIREMENTS (a lock's) that OUT holds no file
for yet: one with a hash the block pins, a wheel for ARCH or for any platform (an sdist
without --arch). build_wheelhouse.sh downloads only those, so a rebuild over an earlier
build asks no index anything.

``finish`` adds ragfleet's wheel and a hash-pinned ``ragfleet.txt`` for it, removes every
package file that no lock (build.txt, runtime.txt, nodeps.txt, ragfleet.txt in OUT) pins by
hash or that is built for another architecture (an earlier build's leftovers), then writes
``sbom.cdx.json`` (CycloneDX 1.6 JSON, made and validated with cyclonedx-python-lib: one
component per wheel or sdist, with its sha256) and ``SHA256SUMS`` (every file but itself).
With SOURCE_DATE_EPOCH set, the same files give the same bytes (the SBOM's timestamp and
serial number derive from them), so the deploy role's tar of the wheelhouse is unchanged.

``verify`` checks what a consumer of the wheelhouse relies on: SHA256SUMS matches and
lists every file, the SBOM passes CycloneDX's JSON schema and lists every package file with
that sha256, and every package file is pinned by a lock. Exit 1 with the reasons otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from packaging.utils import parse_sdist_filename, parse_wheel_filename

LOCKS = ("build.txt", "runtime.txt", "nodeps.txt", "ragfleet.txt")
SBOM = "sbom.cdx.json"
SUMS = "SHA256SUMS"
ARCH_PROPERTY = "ragfleet:wheelhouse:architecture"
PYTHON_PROPERTY = "ragfleet:wheelhouse:python"
PLATFORM_PROPERTY = "ragfleet:wheelhouse:platform"
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def log(message: str) -> None:
    print(f"wheelhouse: {message}", file=sys.stderr)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_files(out: Path) -> list[Path]:
    """The wheels and sdists, by name."""
    return sorted(p for p in out.iterdir() if p.name.endswith((".whl", ".tar.gz")))


def name_version(path: Path) -> tuple[str, str]:
    if path.name.endswith(".whl"):
        name, version, _build, _tags = parse_wheel_filename(path.name)
    else:
        name, version = parse_sdist_filename(path.name)
    return str(name), str(version)


def wheel_platforms(path: Path) -> set[str]:
    """A wheel's platform tags ('any' for pure Python); an sdist builds anywhere."""
    if not path.name.endswith(".whl"):
        return {"any"}
    return {tag.platform for tag in parse_wheel_filename(path.name)[3]}


def pinned_hashes(out: Path) -> set[str]:
    hashes: set[str] = set()
    for lock in LOCKS:
        if (out / lock).is_file():
            hashes.update(HASH.findall((out / lock).read_text()))
    return hashes


def requirement_blocks(text: str) -> list[str]:
    """A requirements file's entries, each with its continuation lines (comments dropped)."""
    blocks: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line[0].isalnum():
            blocks.append(line)
        elif blocks:
            blocks[-1] += "\n" + line
    return blocks


def missing(requirements: Path, out: Path, arch: str | None) -> list[str]:
    """The blocks of *requirements* that *out* holds no matching file for."""
    present = set()
    for path in package_files(out):
        platforms = wheel_platforms(path)
        if arch is None or "any" in platforms or any(p.endswith(arch) for p in platforms):
            present.add(sha256(path))
    return [
        block
        for block in requirement_blocks(requirements.read_text())
        if not present & set(HASH.findall(block))
    ]


def add_ragfleet(out: Path, wheel: Path | None) -> None:
    """Put ragfleet's wheel in, pinned by name, version and hash in ragfleet.txt."""
    (out / "ragfleet.txt").unlink(missing_ok=True)
    if wheel is None:
        return
    name, version = name_version(wheel)
    if name != "ragfleet":
        raise SystemExit(f"wheelhouse: {wheel} is not a ragfleet wheel")
    if wheel.resolve() != (out / wheel.name).resolve():
        # A new file, never written over the old one: it may be a hard link to a copy.
        (out / wheel.name).unlink(missing_ok=True)
        shutil.copyfile(wheel, out / wheel.name)
    (out / "ragfleet.txt").write_text(
        "# ragfleet's own wheel, built from the checkout (scripts/build_wheelhouse.sh)\n"
        f"ragfleet=={version} \\\n    --hash=sha256:{sha256(out / wheel.name)}\n"
    )


def prune(out: Path, arches: Iterable[str]) -> list[str]:
    """Remove package files no lock pins, or built for another architecture."""
    pinned, wanted = pinned_hashes(out), set(arches)
    removed = []
    for path in package_files(out):
        platforms = wheel_platforms(path)
        native = "any" in platforms or any(p.endswith(tuple(wanted)) for p in platforms)
        if not native or sha256(path) not in pinned:
            path.unlink()
            removed.append(path.name)
    return removed


def build_time() -> datetime:
    """SOURCE_DATE_EPOCH (reproducible builds), else now."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    return datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)


def schema_error(text: str) -> object | None:
    """What CycloneDX 1.6's JSON schema says about *text* (None: valid)."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    return JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)


def make_sbom(out: Path, arches: list[str]) -> str:
    """The CycloneDX JSON of the wheelhouse's package files."""
    # Imported here: cyclonedx takes seconds to import, and `missing` runs often.
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    components = []
    for path in package_files(out):
        name, version = name_version(path)
        digest = sha256(path)
        components.append(
            Component(
                type=ComponentType.LIBRARY,
                name=name,
                version=version,
                bom_ref=path.name,
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=digest)],
                purl=PackageURL("pypi", None, name, version, {"file_name": path.name}),
                properties=[Property(name="ragfleet:wheelhouse:file", value=path.name)],
            )
        )
    ragfleet = [c.version for c in components if c.name == "ragfleet"]
    root = Component(
        type=ComponentType.APPLICATION,
        name="ragfleet-wheelhouse",
        version=ragfleet[0] if ragfleet else None,
        bom_ref="ragfleet-wheelhouse",
        description="ragfleet and its locked dependencies for Debian 12's CPython 3.11",
    )
    properties = [Property(name=ARCH_PROPERTY, value=arch) for arch in sorted(arches)]
    properties += [
        Property(name=PYTHON_PROPERTY, value="cp311"),
        Property(name=PLATFORM_PROPERTY, value="debian-12"),
    ]
    # The same files give the same serial number: the SBOM (and the tar holding it) is
    # reproducible, as the deploy role's idempotence needs.
    identity = json.dumps(sorted((c.bom_ref.value, str(c.version)) for c in components))
    identity += json.dumps(sorted(arches)) + "".join(sha256(p) for p in package_files(out))
    bom = Bom(
        serial_number=uuid.uuid5(uuid.NAMESPACE_URL, "ragfleet-wheelhouse:" + identity),
        metadata=BomMetaData(component=root, timestamp=build_time(), properties=properties),
        components=components,
    )
    bom.register_dependency(root, components)
    text = JsonV1Dot6(bom).output_as_string(indent=2) + "\n"
    error = schema_error(text)
    if error is not None:
        raise SystemExit(f"wheelhouse: the SBOM fails CycloneDX's schema: {error}")
    return text


def write_sums(out: Path) -> None:
    files = sorted(p for p in out.iterdir() if p.is_file() and p.name != SUMS)
    (out / SUMS).write_text("".join(f"{sha256(p)}  {p.name}\n" for p in files))


def finish(out: Path, arches: list[str], wheel: Path | None) -> None:
    add_ragfleet(out, wheel)
    for name in prune(out, arches):
        log(f"removed {name} (no lock pins it, or another architecture)")
    (out / SBOM).write_text(make_sbom(out, arches))
    write_sums(out)
    count = len(package_files(out))
    log(f"{out}: {count} files for Debian 12, CPython 3.11, {', '.join(arches)}")


def verify(out: Path) -> list[str]:
    """What is wrong with the wheelhouse (nothing: an empty list)."""
    problems = []
    sums = {}
    for line in (out / SUMS).read_text().splitlines():
        digest, _, name = line.partition("  ")
        sums[name] = digest
    files = {p.name for p in out.iterdir() if p.is_file() and p.name != SUMS}
    problems += [f"{name}: not in {SUMS}" for name in sorted(files - sums.keys())]
    problems += [f"{name}: in {SUMS}, missing" for name in sorted(sums.keys() - files)]
    for name in sorted(files & sums.keys()):
        if sha256(out / name) != sums[name]:
            problems.append(f"{name}: its sha256 is not the one in {SUMS}")
    text = (out / SBOM).read_text()
    error = schema_error(text)
    if error is not None:
        problems.append(f"{SBOM}: fails CycloneDX's JSON schema: {error}")
    listed = {
        c["bom-ref"]: {h["content"] for h in c.get("hashes", []) if h["alg"] == "SHA-256"}
        for c in json.loads(text).get("components", [])
    }
    pinned = pinned_hashes(out)
    for path in package_files(out):
        digest = sha256(path)
        if digest not in listed.get(path.name, set()):
            problems.append(f"{path.name}: not in {SBOM} with its sha256")
        if digest not in pinned:
            problems.append(f"{path.name}: no lock pins its sha256")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    done = commands.add_parser("finish")
    done.add_argument("out", type=Path)
    done.add_argument("--arch", nargs="+", required=True, choices=["x86_64", "aarch64"])
    done.add_argument("--ragfleet-wheel", type=Path)
    lack = commands.add_parser("missing")
    lack.add_argument("requirements", type=Path)
    lack.add_argument("out", type=Path)
    lack.add_argument("--arch", choices=["x86_64", "aarch64"])
    check = commands.add_parser("verify")
    check.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "missing":
        blocks = missing(args.requirements, args.out, args.arch)
        print("".join(block + "\n" for block in blocks), end="")
        return 0
    if args.command == "finish":
        finish(args.out, args.arch, args.ragfleet_wheel)
        return 0
    problems = verify(args.out)
    for problem in problems:
        log(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
