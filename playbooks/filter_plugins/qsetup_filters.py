"""Filters of the playbooks: shims over the one comparison, and helpers that format.

Whether anything on a host differs from the plan is decided by ``qsetup.converge`` alone
(the same comparison ``deploy --check`` and status use): :func:`qsetup_converge` turns the
preflight's read and the host's plan variables into what the roles act on (the broker's
definitions are compared in the qsetup_definitions action plugin). The others pick
items or name things (a worker's exact node name). They return names and paths, never
a secret. ``qsetup.converge`` and ``qsetup.desired.names`` import only the standard
library and are imported on first use, so an Ansible worker that loads this file pays
for neither pydantic nor the comparison until it runs one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _hostnames(hv: Mapping[str, Any], hostvars: Mapping[str, Any] | None) -> dict[str, str | None]:
    """Each broker host's hostname as its preflight read found it (None: not read)."""
    names: dict[str, str | None] = {}
    for node in hv.get("qsetup_broker_nodes") or ():
        host = str(node["host"])
        other = (hostvars or {}).get(host) if hostvars is not None and host in hostvars else None
        read = (other or {}).get("qsetup_host") or {}
        names[host] = str(read["hostname"]) if read.get("hostname") else None
    return names


def qsetup_converge(
    read: Mapping[str, Any], hv: Mapping[str, Any], hostvars: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What the preflight's read shows differs on this host: ``converge.view.host_view``.

    ``read`` is what qsetup_host_facts returned; ``hv`` the host's variables
    (``hostvars[inventory_hostname]``: the plan's, the files' checksums
    ``qsetup_file_sums`` and the secrets ``qsetup_secret_values``); ``hostvars`` every
    host's, for the hostnames the other broker nodes' reads found (the cluster's lines
    in /etc/hosts). The deploy computes the same from its own first read when it can
    (then Ansible does not read the host and this filter does not run).
    """
    from qsetup.converge.facts import HostFacts
    from qsetup.converge.target import HostTarget
    from qsetup.converge.view import host_view

    host = str(hv.get("inventory_hostname") or read.get("hostname") or "")
    target = HostTarget.from_plan(
        host, hv, hv, hv.get("qsetup_file_sums") or {}, _hostnames(hv, hostvars)
    )
    secrets = hv.get("qsetup_secret_values") or {}
    return host_view(target, HostFacts.from_read(read), secrets, hv)


def qsetup_services_of_stale(files: list[dict[str, Any]], stale: list[str]) -> list[str]:
    """The services (unit or unit template) whose installed files were stale."""
    stale_set = set(stale)
    return sorted({f["service"] for f in files if f["dest"] in stale_set})


def qsetup_node_name(pattern: str, hostname: str) -> str:
    """The exact Celery node name of a unit (``%i`` already filled) on a host."""
    from qsetup.desired.names import expand_node_name

    return expand_node_name(str(pattern), 1, str(hostname))


def qsetup_manifest_pending(new: dict[str, Any], removals: dict[str, Any]) -> dict[str, Any]:
    """The manifest to record before removals: the new one plus what is still to remove."""
    from qsetup.converge.removals import manifest_pending

    return manifest_pending(new, removals)


class FilterModule:
    """Ansible's entry point for filter plugins."""

    def filters(self) -> dict[str, Any]:
        """Name the filters."""
        return {
            "qsetup_converge": qsetup_converge,
            "qsetup_manifest_pending": qsetup_manifest_pending,
            "qsetup_services_of_stale": qsetup_services_of_stale,
            "qsetup_node_name": qsetup_node_name,
        }
