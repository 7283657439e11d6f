"""What belongs where: the one place that decides it, from the validated inventory.

Pure: no disk, no network. render, plan (the Ansible serializer), status and the demo
read these values; none of them works the same facts out again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qsetup.inventory import Inventory, resolve_relative


@dataclass(frozen=True)
class SshEndpoint:
    """How the controller reaches one inventory host (host settings override ``ssh``)."""

    name: str
    address: str
    port: int
    user: str
    key: Path | None
    """Absolute: a relative ``ssh.key`` is read against the inventory's folder."""
    become: bool


def ssh_endpoints(inv: Inventory, inventory_path: Path) -> dict[str, SshEndpoint]:
    """Every host's SSH endpoint, keyed by inventory host name."""
    out: dict[str, SshEndpoint] = {}
    for name, host in inv.hosts.items():
        key = host.ssh_key or inv.ssh.key
        out[name] = SshEndpoint(
            name=name,
            address=host.address,
            port=host.ssh_port or inv.ssh.port,
            user=host.ssh_user or inv.ssh.user,
            key=resolve_relative(inventory_path, key) if key else None,
            become=bool(host.become if host.become is not None else inv.ssh.become),
        )
    return out


# --- Debian releases ----------------------------------------------------------------

RELEASES = {"bookworm": "Debian 12 (bookworm)", "trixie": "Debian 13 (trixie)"}
"""Release codenames qsetup supports, as ``/etc/os-release`` names them."""

_CELERY_APT = {
    # bookworm: the package the notes name; it pulls celery (/usr/bin/celery) and
    # python3-celery 5.2.
    "bookworm": ("python-celery-common",),
    # trixie dropped python-celery-common; celery ships /usr/bin/celery, python3-celery 5.5.
    "trixie": ("python3-celery", "celery"),
}
CELERY_APT_MARK = "@celery"
"""Stands for Debian's Celery packages in a host's package set until its release is known."""


def apt_packages_by_release(packages: set[str]) -> dict[str, list[str]]:
    """Resolve a host's package set per supported release (``@celery`` becomes real names)."""
    out: dict[str, list[str]] = {}
    for release in RELEASES:
        names = set(packages - {CELERY_APT_MARK})
        if CELERY_APT_MARK in packages:
            names.update(_CELERY_APT[release])
        out[release] = sorted(names)
    return out
