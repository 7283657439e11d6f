"""What belongs on each host, computed once for deploy, its no-op check and status.

:func:`plan_hosts` renders every file, packs the app's code, checksums both and builds
the deploy plan's per-host variables; :func:`host_targets` turns that into the typed
targets :func:`qsetup.converge.compare.compare_host` reads, and :func:`read_params`
into the parameters of the one read (``playbooks/module_utils/qsetup_read.py``). The
deploy writes the same plan into its Ansible inventory, so what status compares a
host with is what a deploy would put there.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qsetup.artifacts.plan import PARTS, build_ansible_inventory
from qsetup.artifacts.readparams import read_params as read_params
from qsetup.artifacts.render import Artifact, render_all
from qsetup.artifacts.tls import TlsMaterial
from qsetup.converge.target import HostTarget
from qsetup.desired.results import ADMIN_SECRET as RESULTS_ADMIN_SECRET
from qsetup.desired.results import admin_password
from qsetup.desired.state import ADMIN_SECRET, broker_admin_password
from qsetup.inventory.fields import resolve_relative
from qsetup.inventory.loader import LoadedInventory

_SKIP = {"__pycache__", ".git", ".qsetup", ".venv", "venv", ".mypy_cache", ".pytest_cache"}


def secret_values(loaded: LoadedInventory) -> dict[str, str]:
    """Every secret by name, the broker's and the result backend's admin passwords included."""
    values = {name: loaded.secrets.get(name) for name in loaded.secrets.values}
    values.setdefault(ADMIN_SECRET, broker_admin_password(loaded.inventory, loaded.secrets))
    if loaded.inventory.results is not None:
        values.setdefault(RESULTS_ADMIN_SECRET, admin_password(loaded.inventory, loaded.secrets))
    return values


def stage_app(loaded: LoadedInventory, dest: Path) -> None:
    """Pack the app's code into a reproducible tar: same code, same bytes, no change."""
    source = loaded.inventory.app.source.path
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        if source is None:
            return
        src = resolve_relative(loaded.path, source)
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            if any(part in _SKIP for part in rel.parts) or path.suffix == ".pyc":
                continue
            if path.name.endswith(".secrets.yml") or path.is_symlink():
                continue
            info = tar.gettarinfo(str(path), arcname=str(rel))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o755 if path.is_dir() or info.mode & 0o100 else 0o644
            info.mtime = int(path.stat().st_mtime)
            info.pax_headers = {}
            if path.is_dir():
                tar.addfile(info)
            else:
                with path.open("rb") as fh:
                    tar.addfile(info, fh)


def file_sums(artifacts: Iterable[Artifact], app_tar: Path) -> dict[str, str]:
    """SHA-1 (what the read and Ansible report) of every rendered file and of the app's tar."""
    sums = {
        f"{a.host}{a.path}": hashlib.sha1(a.content.encode()).hexdigest()  # noqa: S324
        for a in artifacts
    }
    sums["app.tar"] = hashlib.sha1(app_tar.read_bytes()).hexdigest()  # noqa: S324
    return sums


@dataclass(frozen=True)
class HostPlans:
    """The rendered files, the plan's variables and the files' checksums of one run."""

    artifacts: tuple[Artifact, ...]
    ansible_inventory: Mapping[str, Any]
    sums: Mapping[str, str]

    @property
    def common(self) -> Mapping[str, Any]:
        """The variables every host shares."""
        return dict(self.ansible_inventory["all"]["vars"])

    def hostvars(self, host: str) -> Mapping[str, Any]:
        """One host's plan variables."""
        return dict(self.ansible_inventory["all"]["hosts"][host])


def plan_hosts(
    loaded: LoadedInventory,
    material: TlsMaterial | None,
    app_tar: Path,
    parts: Iterable[str] = PARTS,
) -> HostPlans:
    """Render, pack the code into ``app_tar`` and plan every host: the one derivation."""
    artifacts = render_all(loaded.inventory, loaded.secrets, material)
    stage_app(loaded, app_tar)
    return HostPlans(
        tuple(artifacts),
        build_ansible_inventory(loaded.inventory, artifacts, parts, loaded.path),
        file_sums(artifacts, app_tar),
    )


def every_read_params(
    loaded: LoadedInventory, plans: HostPlans, preflight: bool = False
) -> dict[str, dict[str, Any]]:
    """Each inventory host's read parameters, with the admin passwords the read needs.

    ``preflight``: the deploy's read, which also asks whether apt can install a missing
    package and checks minimum versions (``readparams.read_params``).

    What status and the deploy's first read (its no-op check) ask every host; the
    preflight asks the same through the plan's ``qsetup_read_params``.
    """
    secrets = secret_values(loaded)
    return {
        h: read_params(
            plans.hostvars(h),
            plans.common,
            secrets[ADMIN_SECRET],
            preflight=preflight,
            results_password=secrets.get(RESULTS_ADMIN_SECRET),
        )
        for h in loaded.inventory.hosts
    }


def host_targets(
    plans: HostPlans, hostnames: Mapping[str, str | None] | None = None
) -> dict[str, HostTarget]:
    """What belongs on each host, typed for the comparison.

    ``hostnames``: what each host's read found (a cluster's /etc/hosts lines name them).
    """
    common = plans.common
    return {
        host: HostTarget.from_plan(host, plans.hostvars(host), common, plans.sums, hostnames)
        for host in plans.ansible_inventory["all"]["hosts"]
    }


def read_hostnames(facts: Mapping[str, Mapping[str, Any] | None]) -> dict[str, str | None]:
    """Each host's hostname from its read (None where the read did not answer)."""
    return {h: (str(f.get("hostname") or "") or None) if f else None for h, f in facts.items()}
