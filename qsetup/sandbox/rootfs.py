"""The Debian tree every sandbox host boots from, built once by debootstrap and cached.

The tree is built into a temporary directory and renamed into place only when
complete, so a crashed build never leaves a half tree that looks usable.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qsetup.errors import SandboxError
from qsetup.sandbox.procs import run
from qsetup.sandbox.state import cache_dir

Progress = Callable[[str], None]

# Enough for systemd as PID 1, SSH, and what Ansible's apt/systemd modules need.
INCLUDE = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "iproute2",
    "ca-certificates",
    "sudo",
    "procps",
)
# Units that cannot work in a container without devices or a kernel of its own.
MASKED_UNITS = (
    "systemd-networkd-wait-online.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
)
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
APT_SOURCE_DIRS = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
DEBOOTSTRAP_TIMEOUT = 1800.0
# Bump when _customise changes what goes into the cached tree.
IMAGE_VERSION = "1"


@dataclass(frozen=True)
class AptSource:
    """One ``deb`` source line: URI, suite and components."""

    uri: str
    suite: str
    components: tuple[str, ...]

    def line(self) -> str:
        """Return it as a one-line-style ``deb`` entry."""
        return f"deb {self.uri} {self.suite} {' '.join(self.components)}"


def parse_one_line_sources(text: str) -> list[AptSource]:
    """Parse one-line ``deb URI SUITE COMPONENTS...`` entries (``deb-src`` skipped)."""
    sources: list[AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        line = re.sub(r"\[[^\]]*\]", "", line)
        parts = line.split()
        if len(parts) >= 4:
            sources.append(AptSource(parts[1], parts[2], tuple(parts[3:])))
    return sources


def parse_deb822_sources(text: str) -> list[AptSource]:
    """Parse deb822 ``.sources`` stanzas of type ``deb`` that are enabled."""
    sources: list[AptSource] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for raw in stanza.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0] in " \t" and key:
                fields[key] += " " + raw.strip()
                continue
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        components = tuple(fields.get("components", "").split())
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                sources.append(AptSource(uri, suite, components))
    return sources


def machine_apt_sources() -> list[AptSource]:
    """Return the ``deb`` sources this machine's apt uses (read at runtime)."""
    sources: list[AptSource] = []
    files: list[Path] = []
    for path in APT_SOURCE_DIRS:
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(sorted(path.iterdir()))
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if path.name.endswith(".sources"):
            sources.extend(parse_deb822_sources(text))
        elif path.name.endswith(".list"):
            sources.extend(parse_one_line_sources(text))
    return sources


def sources_for_release(sources: list[AptSource], release: str) -> list[AptSource]:
    """Return the Debian sources for ``release`` (its suite and ``release-*`` suites)."""
    return [
        s
        for s in sources
        if (s.suite == release or s.suite.startswith(f"{release}-"))
        and "main" in s.components
        and not s.uri.startswith(("file:", "cdrom:"))
    ]


def pick_mirror(sources: list[AptSource], release: str) -> str | None:
    """Return the mirror URI serving ``release`` itself, or None for debootstrap's default."""
    for s in sources_for_release(sources, release):
        if s.suite == release:
            return s.uri
    return None


def cache_key(release: str, include: tuple[str, ...] = INCLUDE) -> str:
    """Return the cache directory name for a release and package list."""
    text = IMAGE_VERSION + ":" + ",".join(sorted(include))
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{release}-{digest}"


def rootfs_dir(release: str) -> Path:
    """Return where the cached tree for ``release`` lives (whether built or not)."""
    return cache_dir() / "rootfs" / cache_key(release)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()).rstrip("/") + "/"
    found: list[str] = []
    with Path("/proc/self/mountinfo").open(encoding="utf-8") as fh:
        for line in fh:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix) or point == prefix.rstrip("/"):
                found.append(point)
    return found


def remove_tree(path: Path) -> None:
    """Remove a directory tree after unmounting anything mounted inside it.

    debootstrap mounts /proc and /sys inside the tree it builds; a killed build can
    leave them mounted, and deleting through them would be disastrous.
    """
    if not path.exists():
        return
    for point in sorted(_mounts_under(path), key=len, reverse=True):
        run(["umount", "--lazy", point], timeout=30, check=False)
    if _mounts_under(path):
        raise SandboxError(f"cannot unmount everything under {path}; unmount it by hand")
    shutil.rmtree(path)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def install_extra_cas(root: Path) -> bool:
    """Copy the machine's extra CA certificates into ``root`` if they differ.

    Returns:
        True if anything was copied (then ``update-ca-certificates`` must run in ``root``).
    """
    if not EXTRA_CA_DIR.is_dir():
        return False
    changed = False
    target = root / "usr/local/share/ca-certificates"
    for src in sorted(EXTRA_CA_DIR.rglob("*.crt")):
        dst = target / src.relative_to(EXTRA_CA_DIR)
        data = src.read_bytes()
        if dst.is_file() and dst.read_bytes() == data:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)
        dst.chmod(0o644)
        changed = True
    return changed


def update_ca_certificates(root: Path) -> None:
    """Run ``update-ca-certificates`` inside ``root`` (a chroot; no mounts needed)."""
    run(["chroot", str(root), "update-ca-certificates"], timeout=120)


def _customise(root: Path, release: str, progress: Progress) -> None:
    """Turn a fresh debootstrap tree into a bootable, host-neutral sandbox image."""
    progress("configuring the cached tree (apt sources, CA certificates, sshd)")
    sources = sources_for_release(machine_apt_sources(), release)
    if sources:
        _write(
            root / "etc/apt/sources.list",
            "# written by qsetup sandbox from the machine's apt sources\n"
            + "".join(f"{s.line()}\n" for s in sources),
        )
    if install_extra_cas(root):
        update_ca_certificates(root)
    # Each host gets its own host key and machine id at preparation time.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    _write(root / "etc/machine-id", "")
    _write(
        root / "etc/ssh/sshd_config.d/qsetup-sandbox.conf",
        "# qsetup sandbox: key-only root login, one host key per host\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "UseDNS no\n",
    )
    # No name server is reachable; an empty resolv.conf fails lookups at once.
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    _write(resolv, "# qsetup sandbox: names come from /etc/hosts; packages via the proxy\n")
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        if not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/dev/null")


def ensure_rootfs(release: str, progress: Progress) -> Path:
    """Return the cached tree for ``release``, building it with debootstrap if missing.

    Args:
        release: Debian release name, e.g. ``bookworm``.
        progress: called with one line per step.

    Returns:
        The directory of the complete tree.

    Raises:
        SandboxError: debootstrap failed (the message names its log).
    """
    final = rootfs_dir(release)
    if final.is_dir():
        progress(f"using cached Debian {release} tree {final}")
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    # Sandboxes with other state dirs share the cache: one build at a time.
    fd = os.open(final.parent / ".build.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if final.is_dir():
            progress(f"using cached Debian {release} tree {final}")
            return final
        return _build(final, release, progress)
    finally:
        os.close(fd)


def _build(final: Path, release: str, progress: Progress) -> Path:
    for stale in final.parent.glob(f".tmp-{final.name}-*"):
        progress(f"removing an unfinished build {stale}")
        remove_tree(stale)
    tmp = final.parent / f".tmp-{final.name}-build"
    log = final.parent / f"{final.name}.debootstrap.log"
    mirror = pick_mirror(machine_apt_sources(), release)
    args = ["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}", release, str(tmp)]
    if mirror:
        args.append(mirror)
    progress(
        f"building the Debian {release} tree with debootstrap (about a minute; "
        f"mirror {mirror or 'debootstrap default'}; log {log})"
    )
    proc = run(args, timeout=DEBOOTSTRAP_TIMEOUT, check=False)
    log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        remove_tree(tmp)
        raise SandboxError(
            f"debootstrap of {release} failed (exit {proc.returncode}); see {log} and check "
            "that the machine can reach its Debian mirror (`apt-get update`)"
        )
    _customise(tmp, release, progress)
    tmp.rename(final)
    progress(f"cached the Debian {release} tree at {final}")
    return final
