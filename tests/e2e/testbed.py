"""Real Debian 12 hosts for the deployment e2e test: systemd-nspawn containers on a bridge.

A plain module (the fixture is in test_deploy.py). ``Testbed`` boots one container per host of
the topology, each an overlayfs over one cached pristine rootfs, on the bridge ``rfe2e0``
(10.213.0.1/24), with systemd as PID 1, sshd, and apt going through an apt-cacher-ng that
listens only on the bridge address. Everything it starts is undone on exit, even on failure,
and a run that was killed (SIGKILL) is cleaned up by the next one: its nspawn and apt-cacher-ng
processes (by the pid files it left), overlay mounts and the bridge.

Kept between runs in ``CACHE_DIR`` (/var/cache/ragfleet-e2e, outside the repository): the
rootfs tarball (debootstrap, ~135 MB) and its unpacked tree, and apt-cacher-ng's downloads.
Traffic stays on this machine, except Debian package downloads (debootstrap, and
apt-cacher-ng fetching for the hosts) through the ordinary clients.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

CACHE_DIR = Path(os.environ.get("RAGFLEET_E2E_CACHE", "/var/cache/ragfleet-e2e"))
WORK_ROOT = Path("/var/tmp/ragfleet-e2e")
TIMINGS_FILE = CACHE_DIR / "last-run-timings.json"
BRIDGE = "rfe2e0"
BRIDGE_ADDRESS = "10.213.0.1"
BRIDGE_MAC = "02:52:46:00:00:01"
PREFIX_LENGTH = 24
APT_PROXY_PORT = 3142
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
ROOTFS_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "sudo",
    "iproute2",
)
# Bump when the rootfs customisation below changes: the cache key includes it.
ROOTFS_REVISION = "1"
# Timers that would run apt or disk jobs in the middle of a test.
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "e2scrub_reap.service",
)
REQUIRED_TOOLS = (
    "systemd-nspawn",
    "debootstrap",
    "apt-cacher-ng",
    "ip",
    "ssh",
    "ssh-keygen",
    "zstd",
    "tar",
    "mount",
    "umount",
    "chroot",
)
DATA_DISK = "/srv/data"
"""Where every test host has a real file system mounted (see _boot)."""
SETUP_HINT = "run scripts/setup.sh (it installs scripts/system-packages.txt)"


class TestbedUnavailable(RuntimeError):
    """The machine cannot run the testbed (not root, a tool missing, the subnet taken)."""


@dataclass(frozen=True)
class HostSpec:
    """One container: its name (hostname and nspawn machine name) and bridge address."""

    name: str
    address: str


def log(message: str) -> None:
    """Progress on stderr with a timestamp (pytest shows it for a failing test)."""
    print(f"[e2e {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(argv: Sequence[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command, raise with its output when it fails."""
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=False, **kwargs
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, argv))} exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result


def require_environment() -> None:
    """Raise TestbedUnavailable unless this machine can boot the testbed."""
    if os.geteuid() != 0:
        raise TestbedUnavailable("the e2e testbed needs root (systemd-nspawn, mounts, a bridge)")
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise TestbedUnavailable(f"missing tools: {', '.join(missing)}: {SETUP_HINT}")
    routes = run(["ip", "-o", "-4", "addr", "show"]).stdout
    for line in routes.splitlines():
        if f" {BRIDGE_ADDRESS.rsplit('.', 1)[0]}." in line and f" {BRIDGE} " not in line:
            raise TestbedUnavailable(f"the testbed subnet is already in use here: {line.strip()}")


# -- stale state of a killed run ------------------------------------------------------------


def _pid_files() -> Iterator[Path]:
    yield from WORK_ROOT.glob("*.pid") if WORK_ROOT.is_dir() else iter(())


def write_pid_file(name: str, pid: int) -> None:
    """Remember a process this harness started, for clean-up after a killed run."""
    (WORK_ROOT / f"{name}.pid").write_text(f"{pid}\n")


def _our_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and Path(cmdline[0].decode()).name in ("systemd-nspawn", "apt-cacher-ng")


def _mounts_under(root: Path) -> list[Path]:
    mounts = []
    for line in Path("/proc/mounts").read_text().splitlines():
        target = Path(line.split()[1].replace("\\040", " "))
        if target == root or root in target.parents:
            mounts.append(target)
    return sorted(mounts, key=lambda p: len(p.parts), reverse=True)


def clean_stale() -> None:
    """Undo what a killed earlier run left: its processes, mounts, bridge and work files."""
    for pid_file in _pid_files():
        pid = int(pid_file.read_text().strip() or 0)
        if pid and _our_process(pid):
            log(f"killing process {pid} left by an earlier run ({pid_file.name})")
            terminate(pid, timeout=10)
        pid_file.unlink()
    for mount in _mounts_under(WORK_ROOT):
        subprocess.run(["umount", "-l", str(mount)], check=False)
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        subprocess.run(["ip", "link", "del", BRIDGE], check=False)
    if WORK_ROOT.exists():
        shutil.rmtree(WORK_ROOT, ignore_errors=True)


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM a process (we started it), wait up to *timeout*, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except (OSError, IndexError):
        return True


@contextlib.contextmanager
def exclusive_lock() -> Iterator[None]:
    """One testbed at a time on this machine (the bridge and addresses are fixed)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "testbed.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TestbedUnavailable("another e2e testbed is running on this machine") from None
        yield


# -- the pristine rootfs --------------------------------------------------------------------


def rootfs_key() -> str:
    """Cache key of the rootfs: suite, mirror, packages and the customisation revision."""
    text = "\n".join((SUITE, MIRROR, ROOTFS_REVISION, *ROOTFS_PACKAGES))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def pristine_rootfs() -> Path:
    """The unpacked pristine rootfs (read-only lower dir), built or unpacked when missing."""
    key = rootfs_key()
    tree = CACHE_DIR / f"rootfs-{SUITE}-{key}"
    tarball = CACHE_DIR / f"rootfs-{SUITE}-{key}.tar.zst"
    if (tree / ".complete").exists():
        return tree
    if not tarball.exists():
        _build_rootfs_tarball(tarball)
    log(f"unpacking {tarball.name}")
    partial = tree.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(tree, ignore_errors=True)
    partial.mkdir(parents=True)
    run(["tar", "--zstd", "--numeric-owner", "-xpf", tarball, "-C", partial])
    partial.rename(tree)
    (tree / ".complete").touch()
    return tree


def _build_rootfs_tarball(tarball: Path) -> None:
    build = tarball.with_name(tarball.name + ".build")
    shutil.rmtree(build, ignore_errors=True)
    log(f"debootstrap {SUITE} (about a minute; cached as {tarball.name})")
    run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(ROOTFS_PACKAGES)}",
            SUITE,
            build,
            MIRROR,
        ]
    )
    _customise_rootfs(build)
    partial = tarball.with_name(tarball.name + ".partial")
    run(["tar", "--zstd", "--numeric-owner", "-cpf", partial, "-C", build, "."])
    partial.rename(tarball)
    shutil.rmtree(build, ignore_errors=True)


def _customise_rootfs(root: Path) -> None:
    """What every host shares: networkd on, noisy timers masked, no host identity."""
    for key in root.glob("etc/ssh/ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    systemd = root / "etc/systemd/system"
    for unit in MASKED_UNITS:
        for link in systemd.glob(f"*.wants/{unit}"):
            link.unlink()
        _symlink(systemd / unit, Path("/dev/null"))
    _symlink(
        systemd / "multi-user.target.wants/systemd-networkd.service",
        Path("/lib/systemd/system/systemd-networkd.service"),
    )
    _symlink(
        systemd / "sockets.target.wants/systemd-networkd.socket",
        Path("/lib/systemd/system/systemd-networkd.socket"),
    )
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)


def _symlink(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


# -- the bridge and the apt cache -----------------------------------------------------------


@contextlib.contextmanager
def bridge() -> Iterator[str]:
    """The bridge, with this machine's address on it; deleted on exit."""
    # A fixed MAC: otherwise the bridge takes the lowest MAC of its ports, changing as hosts
    # join, and the hosts' ARP entries for this machine go stale.
    run(["ip", "link", "add", BRIDGE, "address", BRIDGE_MAC, "type", "bridge"])
    try:
        run(["ip", "addr", "add", f"{BRIDGE_ADDRESS}/{PREFIX_LENGTH}", "dev", BRIDGE])
        run(["ip", "link", "set", BRIDGE, "up"])
        yield BRIDGE
    finally:
        subprocess.run(["ip", "link", "del", BRIDGE], check=False)


def wait_for_port(host: str, port: int, timeout: float) -> None:
    """Wait until a TCP port accepts connections."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listens on {host}:{port} after {timeout:.0f} s"
                ) from None
            time.sleep(0.2)


@contextlib.contextmanager
def apt_cache(workdir: Path) -> Iterator[str]:
    """apt-cacher-ng bound only to the bridge address, with a private config; yields its URL."""
    conf = workdir / "acng-conf"
    shutil.copytree("/etc/apt-cacher-ng", conf)
    (conf / "backends_debian").write_text(f"{MIRROR}/\n")
    cache, logs = CACHE_DIR / "apt-cacher-ng", workdir / "acng-log"
    cache.mkdir(parents=True, exist_ok=True)
    logs.mkdir()
    argv = [
        "apt-cacher-ng",
        "-c",
        str(conf),
        "ForeGround=1",
        f"BindAddress={BRIDGE_ADDRESS}",
        f"Port={APT_PROXY_PORT}",
        f"CacheDir={cache}",
        f"LogDir={logs}",
        f"SocketPath={workdir / 'acng.socket'}",
        f"PidFile={workdir / 'acng.pidfile'}",
    ]
    with open(workdir / "apt-cacher-ng.out", "w") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    write_pid_file("apt-cacher-ng", process.pid)
    try:
        wait_for_port(BRIDGE_ADDRESS, APT_PROXY_PORT, timeout=15)
        yield f"http://{BRIDGE_ADDRESS}:{APT_PROXY_PORT}"
    finally:
        terminate(process.pid, timeout=10)
        process.wait()


# -- the hosts ------------------------------------------------------------------------------


SSH_OPTIONS = (
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=5",
)


@dataclass
class Host:
    """One booted container."""

    spec: HostSpec
    root: Path
    process: subprocess.Popen[bytes] | None = None
    console: IO[bytes] | None = field(default=None, repr=False)

    @property
    def merged(self) -> Path:
        return self.root / "merged"


def _prepare_overlay(host: Host, lower: Path) -> None:
    for name in ("upper", "work", "merged", "data"):
        (host.root / name).mkdir(parents=True)
    options = f"lowerdir={lower},upperdir={host.root / 'upper'},workdir={host.root / 'work'}"
    run(["mount", "-t", "overlay", "overlay", "-o", options, host.merged])


def _configure_host(host: Host, specs: Sequence[HostSpec], public_key: str, proxy: str) -> None:
    """Identity, network, SSH access and the apt proxy of one host, before it boots."""
    root, spec = host.merged, host.spec
    (root / "etc/hostname").write_text(f"{spec.name}\n")
    hosts = "".join(f"{s.address} {s.name}\n" for s in specs)
    (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n::1 localhost\n{hosts}")
    (root / "etc/machine-id").write_text(run(["systemd-id128", "new"]).stdout)
    run(["chroot", root, "ssh-keygen", "-A"])
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(public_key)
    (ssh_dir / "authorized_keys").chmod(0o600)
    (root / "etc/systemd/network/10-host0.network").write_text(
        "[Match]\nName=host0\n\n[Network]\n"
        f"Address={spec.address}/{PREFIX_LENGTH}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )
    (root / "etc/apt/apt.conf.d/90ragfleet-e2e").write_text(
        f'Acquire::http::Proxy "{proxy}";\n'
        # Test hosts only: fewer packages, a faster converge. The roles do not rely on either.
        'APT::Install-Recommends "false";\n'
        'Acquire::Languages "none";\n'
    )


def _boot(host: Host) -> None:
    argv = [
        "systemd-nspawn",
        "--boot",
        "--register=no",
        "--keep-unit",
        "-q",
        f"--machine={host.spec.name}",
        "-D",
        str(host.merged),
        f"--network-bridge={BRIDGE}",
        # A data disk: node exporter leaves out the overlayfs root, as it should, so without
        # a real file system (this machine's, bound) the disk alert would have nothing to read.
        f"--bind={host.root / 'data'}:{DATA_DISK}",
        "--console=read-only",
        "--link-journal=no",
    ]
    host.console = open(host.root / "console.log", "wb")  # noqa: SIM115 (closed in _halt)
    host.process = subprocess.Popen(argv, stdout=host.console, stderr=subprocess.STDOUT)
    write_pid_file(f"nspawn-{host.spec.name}", host.process.pid)


def _halt(host: Host) -> None:
    if host.process is not None:
        terminate(host.process.pid, timeout=15)
        host.process.wait()
        host.process = None
    if host.console is not None:
        host.console.close()
    for mount in _mounts_under(host.root):
        subprocess.run(["umount", str(mount)], check=False)


class Testbed:
    """The booted hosts, reachable over SSH as root with a throwaway key.

    Use as a context manager; ``__exit__`` halts the hosts and removes everything.
    """

    def __init__(self, specs: Sequence[HostSpec]) -> None:
        self.specs = list(specs)
        self.hosts: dict[str, Host] = {}
        self.key = WORK_ROOT / "id_ed25519"
        self._stack = contextlib.ExitStack()
        self.timings: dict[str, float] = {}

    def __enter__(self) -> Testbed:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        log("tearing the testbed down")
        self._stack.close()

    def _start(self) -> None:
        require_environment()
        self._stack.enter_context(exclusive_lock())
        clean_stale()
        WORK_ROOT.mkdir(parents=True)
        self._stack.callback(shutil.rmtree, WORK_ROOT, ignore_errors=True)
        started = time.monotonic()
        lower = pristine_rootfs()
        self.timings["rootfs"] = time.monotonic() - started
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key])
        public_key = (self.key.with_suffix(".pub")).read_text()
        self._stack.enter_context(bridge())
        proxy = self._stack.enter_context(apt_cache(WORK_ROOT))
        started = time.monotonic()
        for spec in self.specs:
            host = Host(spec, WORK_ROOT / "hosts" / spec.name)
            self._stack.callback(_halt, host)
            _prepare_overlay(host, lower)
            _configure_host(host, self.specs, public_key, proxy)
            _boot(host)
            self.hosts[spec.name] = host
        for spec in self.specs:
            self._wait_until_up(spec)
        self.timings["boot"] = time.monotonic() - started
        log(f"{len(self.specs)} hosts up in {self.timings['boot']:.1f} s")

    def _wait_until_up(self, spec: HostSpec, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            result = self.ssh(spec.name, "systemctl is-system-running --wait", check=False)
            if result.stdout.strip() in ("running", "degraded"):
                return
            host = self.hosts[spec.name]
            if host.process is not None and host.process.poll() is not None:
                console = (host.root / "console.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{spec.name} exited while booting:\n{console}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{spec.name} not up after {timeout:.0f} s: {result.stderr}")
            time.sleep(0.5)

    def ssh(
        self, name: str, command: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command on host *name* as root."""
        address = next(s.address for s in self.specs if s.name == name)
        argv = ["ssh", "-i", str(self.key), *SSH_OPTIONS, f"root@{address}", command]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{name}: {command!r} exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
            )
        return result
