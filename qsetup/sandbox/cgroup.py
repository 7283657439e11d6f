"""Each sandbox host's own control group, so that no two hosts' systemds share one.

systemd-nspawn puts its container in ``<its own cgroup>/payload``. Started from the
caller's cgroup, every host on the machine (this sandbox's and any other's) lands in the
same ``payload``, and two hosts that run a unit of the same name (a worker group on two
hosts) share that unit's cgroup: stopping it on one host cannot kill or remove the
other host's processes ("Failed to kill control group ... Input/output error"), and
systemd on the host that stopped first never sees the cgroup run empty, so the unit
stays loaded (``not-found inactive dead``) after its file is gone. Starting each nspawn
in ``<hierarchy>/qsetup-sandbox/<host>`` gives each host a tree of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SANDBOX_GROUP = "qsetup-sandbox"


def hierarchies(root: Path = CGROUP_ROOT) -> list[Path]:
    """The hierarchies systemd tracks units in: the unified one and, if mounted, name=systemd."""
    if (root / "cgroup.controllers").exists():
        return [root]
    return [
        path
        for path, marker in ((root / "unified", "cgroup.controllers"), (root / "systemd", "tasks"))
        if (path / marker).exists()
    ]


def host_cgroups(name: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """The host's own cgroup in each hierarchy (host names are unique on the machine)."""
    return [h / SANDBOX_GROUP / name for h in hierarchies(root)]


def prepare(name: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """Create the host's cgroups; return the ``cgroup.procs`` files its nspawn joins."""
    groups = host_cgroups(name, root)
    for group in groups:
        group.mkdir(parents=True, exist_ok=True)
    return [g / "cgroup.procs" for g in groups]


def joining(procs: list[Path], argv: list[str]) -> list[str]:
    """``argv`` run by a shell that first moves itself into ``procs`` (then execs: same PID)."""
    if not procs:
        return argv
    script = 'for f in $1; do echo $$ > "$f" || exit 1; done; shift; exec "$@"'
    return ["/bin/sh", "-c", script, "sh", " ".join(str(p) for p in procs), *argv]


def remove(name: str, root: Path = CGROUP_ROOT) -> None:
    """Remove the host's cgroups once its processes are gone (deepest first; best effort)."""
    for group in host_cgroups(name, root):
        if not group.is_dir():
            continue
        for here, _dirs, _files in os.walk(group, topdown=False):
            try:
                Path(here).rmdir()
            except OSError:
                pass
