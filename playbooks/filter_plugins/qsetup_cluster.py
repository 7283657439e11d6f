"""Filters of the cluster play: shims over ``qsetup.converge.cluster``.

That module decides how RabbitMQ's nodes form and keep one cluster (from what
``rabbitmqctl cluster_status --formatter json`` said on each broker host) and which
consumed queues have another type than the inventory's; it and ``qsetup.desired.names``
import only the standard library and are imported on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def qsetup_rabbit_node(hostname: str) -> str:
    """The RabbitMQ node name on a host that reports ``hostname``."""
    from qsetup.desired.names import rabbit_node_name

    return rabbit_node_name(str(hostname))


def qsetup_cluster_plan(nodes: list[dict[str, Any]], hostvars: Mapping[str, Any]) -> dict[str, Any]:
    """The cluster's seed, the nodes that join it and the members to forget.

    ``nodes`` is ``qsetup_broker_nodes`` (inventory name and address, in order),
    ``hostvars`` every host's variables: each node's hostname (its preflight read),
    its ``qsetup_cluster_status`` (registered only where this play ran: a host this run
    could not reach has none) and the cluster block its comparison built, which names
    a node that was not read.
    """
    from qsetup.converge.cluster import NodeView, cluster_plan, node_hostnames
    from qsetup.desired.names import rabbit_node_name

    hvs = {str(n["host"]): _vars(hostvars, str(n["host"])) for n in nodes}
    names = node_hostnames(
        [(str(n["host"]), str(n["address"])) for n in nodes],
        {h: str(hv["qsetup_hostname"]) for h, hv in hvs.items() if hv.get("qsetup_hostname")},
        [(hv.get("qsetup_converge") or {}).get("hosts_block") for hv in hvs.values()],
    )
    views = []
    for host, hv in hvs.items():
        status = hv.get("qsetup_cluster_status")
        name = names.get(host)
        views.append(
            NodeView(
                host=host,
                node=rabbit_node_name(name) if name else None,
                status=str(status.get("stdout", "")) if status and status.get("rc") == 0 else "",
                read=bool(status),
            )
        )
    return cluster_plan(views)


def qsetup_forget_from(nodes: list[dict[str, Any]], hostvars: Mapping[str, Any], host: str) -> str:
    """The broker host that forgets ``host``'s old incarnation ("" when none runs)."""
    from qsetup.converge.cluster import forget_from

    candidates = []
    for n in nodes:
        read = _vars(hostvars, str(n["host"])).get("qsetup_converge") or {}
        running = bool(read) and not read.get("broker_unit_down") and not read.get("broker_blank")
        candidates.append((str(n["host"]), running))
    return forget_from(host, candidates) or ""


def qsetup_quorum_refusal(nodes: list[dict[str, Any]], away: list[str]) -> str:
    """Why a deploy must stop with the ``away`` hosts unreachable, or "" when it may go on."""
    from qsetup.converge.cluster import quorum_refusal

    return quorum_refusal([str(n["host"]) for n in nodes], away)


def qsetup_restart_refusal(nodes: list[dict[str, Any]], away: list[str]) -> str:
    """Why RabbitMQ must not restart with the ``away`` hosts unreachable, or ""."""
    from qsetup.converge.cluster import restart_refusal

    return restart_refusal([str(n["host"]) for n in nodes], away)


def _vars(hostvars: Mapping[str, Any], host: str) -> Mapping[str, Any]:
    """One host's variables ({} when unknown); Ansible's are a Mapping that may hold none."""
    found = hostvars.get(host) if host in hostvars else None
    return found if isinstance(found, Mapping) else {}


def qsetup_cluster_problems(status: Any, expected: list[str]) -> list[str]:
    """What keeps one node's view of the cluster from being healthy, one line each."""
    from qsetup.converge.cluster import cluster_problems

    return cluster_problems(status, expected)


class FilterModule:
    """Ansible's entry point for filter plugins."""

    def filters(self) -> dict[str, Any]:
        """Name the filters."""
        return {
            "qsetup_rabbit_node": qsetup_rabbit_node,
            "qsetup_cluster_plan": qsetup_cluster_plan,
            "qsetup_forget_from": qsetup_forget_from,
            "qsetup_quorum_refusal": qsetup_quorum_refusal,
            "qsetup_restart_refusal": qsetup_restart_refusal,
            "qsetup_cluster_problems": qsetup_cluster_problems,
        }
