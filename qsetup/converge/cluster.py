"""How RabbitMQ's nodes form and keep one cluster, and what stops a broker's deploy.

Pure: input is what ``rabbitmqctl cluster_status --formatter json`` said on each broker
host, and the broker's definitions; output is the plan the cluster play follows (which
node the others join, which must join it, which old incarnations the cluster must
forget first), what keeps a node's view from being whole, and the consumed queues whose
type differs from the inventory's. The playbooks reach these through the filter shims
in ``playbooks/filter_plugins/qsetup_cluster.py``.

A node this run could not reach (powered off) is part of the plan too: it is neither
joined nor forgotten, and a deploy goes on only while a majority of ``broker.hosts`` is
reachable (:func:`quorum_refusal`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qsetup.converge.facts import HostFacts
from qsetup.converge.target import ConsumedQueue, HostTarget, block_names


@dataclass(frozen=True)
class NodeView:
    """One broker host as the cluster play found it."""

    host: str
    node: str | None
    """Its RabbitMQ node name (``rabbit@<short hostname>``); None when nothing names it."""
    status: str = ""
    """What ``rabbitmqctl cluster_status --formatter json`` said there ("" when it failed)."""
    read: bool = True
    """False when this run could not reach the host (powered off, unreachable)."""


def node_hostnames(
    nodes: Sequence[tuple[str, str]],
    read: Mapping[str, str | None],
    blocks: Iterable[str | None],
) -> dict[str, str | None]:
    """Each broker host's hostname: as this run read it, else as the cluster's block names it.

    ``nodes`` are the broker hosts as (inventory name, address), ``read`` the hostname
    each host's read found (missing or None: not read), ``blocks`` the cluster's
    /etc/hosts blocks of the nodes that were read. A node this run did not read keeps the
    name those blocks hold for its address; one named nowhere is None (it never joined).
    """
    known: dict[str, str] = {}
    for block in blocks:
        for address, name in block_names(block).items():
            known.setdefault(address, name)
    return {host: read.get(host) or known.get(address) for host, address in nodes}


def _status(stdout: Any) -> dict[str, Any]:
    try:
        data = json.loads(str(stdout or ""))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _names(value: Any) -> list[str]:
    if isinstance(value, dict):  # {"disc": [...], "ram": [...]} in some releases
        return [str(n) for group in value.values() for n in (group or [])]
    return [str(n) for n in (value or [])]


def cluster_plan(nodes: Iterable[NodeView]) -> dict[str, Any]:
    """Decide the cluster's seed, the nodes that join it and the members to forget.

    ``nodes`` lists each broker host in the inventory's order. The seed is the first
    node of the largest running cluster (ties go to the node whose cluster lists more of
    the inventory's nodes, then to the cluster holding the earlier inventory node), so a
    rebuilt first node joins the others instead of the others being reset into it, and
    a lone survivor is never reset into blank nodes rebuilt beside it. A joining node
    that the seed's cluster still lists as a member (a rebuilt host with the same name)
    is forgotten first; members the inventory no longer has are forgotten when stopped.
    ``nodes`` in the plan names every node the inventory expects, in its order; ``up``
    those this run read, which must run in the cluster when the play ends.

    A node this run did not read (powered off) is neither joined nor forgotten: the
    cluster keeps it as a member and it comes back as it was. While such a node has no
    known name, no member is taken for one the inventory dropped.
    """
    entries = list(nodes)
    names = [n.node for n in entries if n.node]
    unread = {n.node for n in entries if n.node and not n.read}
    unnamed = any(not n.node for n in entries)
    up = [n for n in names if n not in unread]
    views = {}
    for n in entries:
        if not n.node or n.node in unread:
            continue
        status = _status(n.status)
        running = set(_names(status.get("running_nodes"))) if status else set()
        members = set(_names(status.get("disk_nodes"))) | set(_names(status.get("ram_nodes")))
        views[n.node] = (n.host, running, members)
    # The largest running cluster; among equals, the one whose database knows the most
    # of the inventory's nodes (a survivor of a cluster, never a blank node), then the
    # one holding the earlier inventory node.
    best: set[str] = set()
    best_key: tuple[int, int, int] = (0, 0, -len(names))
    for _host, running, members in views.values():
        ours = running & set(names)
        key = (len(ours), len(members & set(names)), -min(map(names.index, ours), default=0))
        if ours and key > best_key:
            best, best_key = ours, key
    if not best:
        return {
            "nodes": names,
            "up": up,
            "seed": None,
            "seed_node": None,
            "join": [],
            "forget": [],
            "problems": ["no RabbitMQ node answers cluster_status (see its journal)"],
        }
    seed_node = min(best, key=names.index)
    _seed_host, seed_running, members = views[seed_node]
    join = [views[n][0] for n in up if n not in best]
    forget = sorted(m for m in members if m in up and m not in best)
    stale = [] if unnamed else sorted(m for m in members if m not in names)
    problems = [
        f"RabbitMQ node {m} is running in the cluster but is not in broker.hosts; stop "
        "rabbitmq-server there, then deploy again (qsetup then removes it from the cluster)"
        for m in stale
        if m in seed_running
    ]
    return {
        "nodes": names,
        "up": up,
        "seed": views[seed_node][0],
        "seed_node": seed_node,
        "join": join,
        "forget": forget + [m for m in stale if m not in seed_running],
        "problems": problems,
    }


def blank_node(target: HostTarget, facts: HostFacts) -> bool:
    """Whether a node of a cluster is blank: its first start is still to come.

    RabbitMQ is not installed on its host, or it is but does not run and its data
    directory holds no node's data (wiped by hand).

    Its first start must come after the cluster forgot the old incarnation of its name
    (a host rebuilt empty): the others still list it as a member and connect to it as
    soon as its Erlang node is up, and its boot then hangs in ``global`` sync (seen on
    RabbitMQ 3.10: "Global hang workaround: global state on rabbit@... seems broken")
    until systemd's 600 s start timeout.
    """
    package = "rabbitmq-server"
    if not (target.broker_node and target.cluster_size > 1 and package in facts.packages):
        return False
    if package not in facts.installed:
        return True
    running = facts.unit("rabbitmq-server.service").active_state == "active"
    return facts.rabbit_data is False and not running


def forget_from(host: str, candidates: Sequence[tuple[str, bool]]) -> str | None:
    """The broker host that forgets ``host``'s old incarnation: the first other that runs.

    ``candidates`` are the broker hosts in order with whether their read found RabbitMQ
    running (and not blank); None when no other node runs (nothing to forget it from).
    """
    return next((h for h, running in candidates if h != host and running), None)


def quorum_refusal(hosts: Sequence[str], away: Iterable[str]) -> str:
    """Why a deploy must not go on with the ``away`` broker hosts unreachable ("" if it may).

    ``hosts`` are ``broker.hosts``. A cluster's deploy goes on while a majority of them is
    reachable: those nodes keep the quorum queues' quorum, and nothing changes on the
    others. With half or more away, joins and definitions could act on a minority, so
    nothing is changed. Hosts that are not broker nodes do not count.
    """
    gone = set(away)
    missing = [h for h in hosts if h in gone]
    if len(hosts) < 2 or not missing or (len(hosts) - len(missing)) * 2 > len(hosts):
        return ""
    return (
        f"not changed: {len(missing)} of the cluster's {len(hosts)} broker nodes are "
        f"unreachable ({', '.join(missing)}); a deploy needs a majority of broker.hosts "
        "reachable: power them on or check their SSH access, then deploy again"
    )


def restart_refusal(hosts: Sequence[str], away: Iterable[str]) -> str:
    """Why RabbitMQ must not be restarted while the ``away`` broker hosts are unreachable.

    Taking one node of a cluster down while another is already away could leave the
    quorum queues without a majority (and the wait for the node to rejoin would time
    out): a broker restart goes on only with every node of ``hosts`` reachable.
    """
    gone = set(away)
    missing = [h for h in hosts if h in gone]
    if len(hosts) < 2 or not missing:
        return ""
    return (
        f"not restarted: RabbitMQ on {', '.join(missing)} is unreachable, and taking "
        "another node down could leave the cluster without a majority: power it on or "
        "check its SSH access, then restart again"
    )


def cluster_problems(status: Any, expected: Iterable[str]) -> list[str]:
    """What keeps one node's view of the cluster from being healthy, one line each.

    Nodes not running, partitions, alarms; empty when every expected node runs.
    """
    data = _status(status)
    if not data:
        return ["cluster_status gave no answer"]
    running = set(_names(data.get("running_nodes")))
    problems = [f"{n} is not running in the cluster" for n in expected if n not in running]
    partitions = data.get("partitions") or {}
    if partitions:
        problems.append(f"network partitions: {json.dumps(partitions, sort_keys=True)}")
    for alarm in data.get("alarms") or []:
        problems.append(f"alarm: {json.dumps(alarm, sort_keys=True)}")
    return problems


def queue_type_conflicts(
    definitions: Any, consumed: Iterable[ConsumedQueue], wanted: str
) -> list[tuple[ConsumedQueue, str]]:
    """Queues the workers consume that exist with another type than the inventory's.

    Each with the type it has. RabbitMQ cannot change a queue's type, and a worker
    declaring it with the other type is refused (PRECONDITION_FAILED), so such a queue
    stops the deploy before any change (``compare.queue_type_refusals``).
    """
    found = {}
    for q in (definitions or {}).get("queues") or []:
        if isinstance(q, dict):
            args = q.get("arguments") or {}
            found[(q.get("vhost"), q.get("name"))] = args.get("x-queue-type", "classic")
    conflicts = []
    for c in consumed:
        now = found.get((c.vhost, c.name))
        if now is not None and now != wanted:
            conflicts.append((c, str(now)))
    return conflicts
