"""How RabbitMQ's nodes form and keep one cluster, and what stops a broker's deploy.

Pure: input is what ``rabbitmqctl cluster_status --formatter json`` said on each broker
host, and the broker's definitions; output is the plan the cluster play follows (which
node the others join, which must join it, which old incarnations the cluster must
forget first), what keeps a node's view from being whole, and the consumed queues whose
type differs from the inventory's. The playbooks reach these through the filter shims
in ``playbooks/filter_plugins/qsetup_cluster.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any


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


def cluster_plan(nodes: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Decide the cluster's seed, the nodes that join it and the members to forget.

    ``nodes`` lists, in the inventory's order, each broker host as
    ``{"host", "node", "status"}`` where status is the cluster_status JSON text (empty
    when the command failed). The seed is the first node of the largest running cluster
    (ties go to the cluster holding the earlier inventory node), so a rebuilt first
    node joins the others instead of the others being reset into it. A joining node
    that the seed's cluster still lists as a member (a rebuilt host with the same name)
    is forgotten first; members the inventory no longer has are forgotten when stopped.
    ``nodes`` in the plan names every node the inventory expects, in its order.
    """
    entries = list(nodes)
    names = [str(n["node"]) for n in entries]
    views = {}
    for n in entries:
        status = _status(n.get("status"))
        running = set(_names(status.get("running_nodes"))) if status else set()
        members = set(_names(status.get("disk_nodes"))) | set(_names(status.get("ram_nodes")))
        views[str(n["node"])] = (str(n["host"]), running, members)
    best: set[str] = set()
    for _host, running, _members in views.values():
        ours = running & set(names)
        if ours and (len(ours), -min(map(names.index, ours))) > (
            len(best),
            -min(map(names.index, best), default=len(names)),
        ):
            best = ours
    if not best:
        return {
            "nodes": names,
            "seed": None,
            "seed_node": None,
            "join": [],
            "forget": [],
            "problems": ["no RabbitMQ node answers cluster_status (see its journal)"],
        }
    seed_node = min(best, key=names.index)
    _seed_host, seed_running, members = views[seed_node]
    join = [views[n][0] for n in names if n not in best]
    forget = sorted(m for m in members if m in names and m not in best)
    stale = sorted(m for m in members if m not in names)
    problems = [
        f"RabbitMQ node {m} is running in the cluster but is not in broker.hosts; stop "
        "rabbitmq-server there, then deploy again (qsetup then removes it from the cluster)"
        for m in stale
        if m in seed_running
    ]
    return {
        "nodes": names,
        "seed": views[seed_node][0],
        "seed_node": seed_node,
        "join": join,
        "forget": forget + [m for m in stale if m not in seed_running],
        "problems": problems,
    }


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


def queue_type_problems(
    definitions: Any, consumed: Iterable[Mapping[str, Any]], wanted: str
) -> list[str]:
    """Queues the workers consume that exist with another type than the inventory's.

    RabbitMQ cannot change a queue's type, and a worker declaring it with the other type
    is refused (PRECONDITION_FAILED), so such a queue stops the deploy before any change.
    """
    found = {}
    for q in (definitions or {}).get("queues") or []:
        if isinstance(q, dict):
            args = q.get("arguments") or {}
            found[(q.get("vhost"), q.get("name"))] = args.get("x-queue-type", "classic")
    problems = []
    for c in consumed:
        now = found.get((c["vhost"], c["name"]))
        if now is not None and now != wanted:
            problems.append(
                f"queue '{c['name']}' (vhost '{c['vhost']}') is a {now} queue but the "
                f"inventory wants {wanted} queues, and RabbitMQ cannot change a queue's type: "
                f"stop its producers and the {', '.join(c['groups'])} workers, let it drain, "
                f"delete it (rabbitmqctl delete_queue -p {c['vhost']} {c['name']}), then "
                f"deploy again; or set app.queue_type: {now}"
            )
    return problems
