"""Kernel limits the sandbox hosts need: inotify instances and watches, raised before booting.

Every booted host runs systemd, dbus, logind and a getty, which hold 8 inotify instances
and about 30 watches (counted on a bookworm host); nspawn shares no user namespace, so all
of them count against root's ``fs.inotify.max_user_instances`` (Debian: 128). Past that a
host's systemd cannot start and ``wait_ready`` times out after minutes, so ``up`` raises
the limits (never lowers them) or refuses at once with the ``sysctl`` line that fixes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qsetup.errors import SandboxError

PROC = Path("/proc")
PROC_SYS_INOTIFY = Path("/proc/sys/fs/inotify")
# Twice what a freshly booted host holds: services and logins add a few.
INSTANCES_PER_HOST = 16
WATCHES_PER_HOST = 256
# Left free for everything else on the machine (Debian's default instance limit).
INSTANCES_SPARE = 128
WATCHES_SPARE = 8192


@dataclass(frozen=True)
class InotifyUse:
    """Inotify instances and watches open on the machine now (all users: an upper bound)."""

    instances: int
    watches: int


@dataclass(frozen=True)
class LimitChange:
    """One sysctl that must be at least ``needed``; ``current`` is what it is now."""

    name: str
    current: int
    needed: int

    @property
    def fix(self) -> str:
        """Return the command that sets it."""
        return f"sysctl -w fs.inotify.{self.name}={self.needed}"


def read_inotify_use(proc: Path | None = None) -> InotifyUse:
    """Count the inotify instances (open descriptors) and their watches in ``/proc``.

    Descriptors shared between processes are counted once per process, so this errs high.
    """
    proc = PROC if proc is None else proc
    instances = watches = 0
    for fd_dir in proc.glob("[0-9]*/fd"):
        try:
            fds = [fd for fd in fd_dir.iterdir() if fd.readlink().name == "anon_inode:inotify"]
            for fd in fds:
                info = (fd_dir.parent / "fdinfo" / fd.name).read_text(encoding="utf-8")
                instances += 1
                watches += sum(line.startswith("inotify wd:") for line in info.splitlines())
        except OSError:
            continue  # the process exited, or is not ours to read
    return InotifyUse(instances=instances, watches=watches)


def needed_changes(booting: int, use: InotifyUse, current: dict[str, int]) -> list[LimitChange]:
    """Return the limits that are below what ``booting`` more hosts need (raise only).

    Args:
        booting: hosts about to boot.
        use: what is open now (running hosts included).
        current: ``max_user_instances`` and ``max_user_watches`` as they are.
    """
    wanted = {
        "max_user_instances": use.instances + INSTANCES_PER_HOST * booting + INSTANCES_SPARE,
        "max_user_watches": use.watches + WATCHES_PER_HOST * booting + WATCHES_SPARE,
    }
    return [
        LimitChange(name, current[name], need)
        for name, need in wanted.items()
        if current[name] < need
    ]


def write_sysctl(path: Path, value: int) -> None:
    """Write one kernel setting under ``/proc/sys`` (root only; read-only in some containers)."""
    path.write_text(f"{value}\n", encoding="utf-8")


def ensure_inotify_limits(booting: int, progress: Callable[[str], None]) -> list[LimitChange]:
    """Raise the inotify limits so that ``booting`` more hosts can start.

    Returns:
        The limits raised (empty when they were high enough).

    Raises:
        SandboxError: a limit is too low and cannot be written; names the sysctl line.
    """
    if booting < 1:
        return []
    try:
        current = {
            name: int((PROC_SYS_INOTIFY / name).read_text(encoding="utf-8"))
            for name in ("max_user_instances", "max_user_watches")
        }
    except (OSError, ValueError):
        return []  # no such kernel knob to check (not Linux's procfs): boot as before
    changes = needed_changes(booting, read_inotify_use(), current)
    failed: list[tuple[LimitChange, str]] = []
    for change in changes:
        try:
            write_sysctl(PROC_SYS_INOTIFY / change.name, change.needed)
        except OSError as exc:
            failed.append((change, exc.strerror or str(exc)))
            continue
        progress(
            f"raised fs.inotify.{change.name} from {change.current} to {change.needed} "
            f"for {booting} host(s)"
        )
    if failed:
        what = ", ".join(f"fs.inotify.{c.name} is {c.current}" for c, _ in failed)
        raise SandboxError(
            f"{what}, too low to boot {booting} sandbox host(s), and qsetup cannot raise it "
            f"({failed[0][1]}); run: {' && '.join(c.fix for c, _ in failed)}"
        )
    return changes
