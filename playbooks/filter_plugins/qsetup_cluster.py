"""Filters of the cluster play: shims over ``qsetup.converge.cluster``.

That module decides how RabbitMQ's nodes form and keep one cluster (from what
``rabbitmqctl cluster_status --formatter json`` said on each broker host) and which
consumed queues have another type than the inventory's; it and ``qsetup.desired.names``
import only the standard library and are imported on first use.
"""

from __future__ import annotations

from typing import Any


def qsetup_rabbit_node(hostname: str) -> str:
    """The RabbitMQ node name on a host that reports ``hostname``."""
    from qsetup.desired.names import rabbit_node_name

    return rabbit_node_name(str(hostname))


def qsetup_cluster_entry(hostvars: dict[str, Any]) -> dict[str, Any]:
    """One broker host's entry for :func:`qsetup_cluster_plan`, from its host variables."""
    status = hostvars.get("qsetup_cluster_status") or {}
    return {
        "host": hostvars.get("inventory_hostname"),
        "node": qsetup_rabbit_node(hostvars.get("qsetup_hostname", "")),
        "status": status.get("stdout", "") if status.get("rc") == 0 else "",
    }


def qsetup_cluster_plan(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """The cluster's seed, the nodes that join it and the members to forget."""
    from qsetup.converge.cluster import cluster_plan

    return cluster_plan(nodes)


def qsetup_cluster_problems(status: Any, expected: list[str]) -> list[str]:
    """What keeps one node's view of the cluster from being healthy, one line each."""
    from qsetup.converge.cluster import cluster_problems

    return cluster_problems(status, expected)


def qsetup_queue_type_problems(
    definitions: Any, consumed: list[dict[str, Any]], wanted: str
) -> list[str]:
    """Consumed queues that exist with another type than the inventory's, one line each."""
    from qsetup.converge.cluster import queue_type_problems

    return queue_type_problems(definitions, consumed, wanted)


class FilterModule:
    """Ansible's entry point for filter plugins."""

    def filters(self) -> dict[str, Any]:
        """Name the filters."""
        return {
            "qsetup_rabbit_node": qsetup_rabbit_node,
            "qsetup_cluster_entry": qsetup_cluster_entry,
            "qsetup_cluster_plan": qsetup_cluster_plan,
            "qsetup_cluster_problems": qsetup_cluster_problems,
            "qsetup_queue_type_problems": qsetup_queue_type_problems,
        }
