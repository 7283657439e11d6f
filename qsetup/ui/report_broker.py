"""The broker's part of the status report: JSON and table rows (used by report.py)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from qsetup.status.cluster import CLIENT_QUEUES, describe_queue, is_client_queue, summarize
from qsetup.status.model import BrokerNode, BrokerStatus


def broker_json(broker: BrokerStatus) -> dict[str, Any]:
    """The ``broker`` object of ``status --json``."""
    return {
        "host": broker.host,
        "api_url": broker.api_url,
        "error": broker.error,
        "rabbitmq_version": broker.rabbitmq_version,
        "erlang_version": broker.erlang_version,
        "nodes": [
            {
                "name": n.name,
                "running": n.running,
                "mem_alarm": n.mem_alarm,
                "disk_free_alarm": n.disk_free_alarm,
                "mem_used": n.mem_used,
                "mem_limit": n.mem_limit,
                "disk_free": n.disk_free,
                "disk_free_limit": n.disk_free_limit,
                "host": n.host,
                "expected": n.expected,
                "listed": n.listed,
                "partitions": list(n.partitions),
            }
            for n in broker.nodes
        ],
        "vhosts": list(broker.vhosts),
        "users": list(broker.users),
        "drift": [
            {"kind": d.kind, "name": d.name, "state": d.state, "detail": d.detail}
            for d in broker.drift
        ],
        "queues": [
            {
                "vhost": q.vhost,
                "name": q.name,
                "ready": q.ready,
                "unacked": q.unacked,
                "consumers": q.consumers,
            }
            for q in broker.queues
        ],
        "api_host": broker.api_host,
        "api_errors": dict(broker.api_errors),
        "quorum_queues": [
            {
                "vhost": q.vhost,
                "name": q.name,
                "members": list(q.members),
                "online": list(q.online),
                "offline": list(q.offline),
                "leader": q.leader,
                "has_quorum": q.has_quorum,
                "celery_own": is_client_queue(q.name),
            }
            for q in broker.quorum_queues
        ],
    }


def _size(value: int | None) -> str:
    if value is None:
        return "?"
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value} B"


def _node_row(node: BrokerNode, broker: BrokerStatus) -> tuple[Text, str]:
    """State and detail of one RabbitMQ node."""
    read = broker.api_host or broker.host
    if not node.listed:
        return Text("not in cluster", "red"), f"{read}'s management API does not list it"
    alarms = [k for k, on in (("memory", node.mem_alarm), ("disk", node.disk_free_alarm)) if on]
    if not node.running:
        state = Text("not running", "red")
    elif node.partitions:
        state = Text("partitioned", "red")
    elif alarms:
        state = Text("alarm", "red")
    else:
        state = Text("running", "green")
    detail = []
    if node.expected is False:
        detail.append("not in the inventory's broker.hosts")
    if node.partitions:
        detail.append(f"partitioned from {', '.join(node.partitions)}")
    if node.running and node.mem_used is not None:
        detail.append(
            f"memory {_size(node.mem_used)} of {_size(node.mem_limit)}, disk free "
            f"{_size(node.disk_free)} (limit {_size(node.disk_free_limit)}), "
            f"alarms: {', '.join(alarms) or 'none'}"
        )
    elif node.running:
        detail.append("no figures yet (starting?)")
    return state, "; ".join(detail)


def _quorum_rows(table: Table, broker: BrokerStatus) -> None:
    """A row per quorum queue of the inventory's, one for all of Celery's own."""
    ok, bad = "green", "red"
    hosts = {n.name: n.host for n in broker.nodes if n.host}
    read = broker.api_host or broker.host
    own = []
    for q in broker.quorum_queues:
        if is_client_queue(q.name):
            own.append(q)
            continue
        state = (
            Text(f"{len(q.online)} of {len(q.members)} online", ok if not q.offline else bad)
            if q.has_quorum
            else Text("no quorum", bad)
        )
        detail = describe_queue(q).split(", ", 1)[1]
        if q.offline:
            detail += f"; offline {', '.join(q.offline)}"
        host = hosts.get(q.leader or "", read)
        table.add_row("broker", host, f"quorum queue {q.vhost}/{q.name}", state, detail)
    if own:
        summary = summarize(own)
        vhosts = sorted({q.vhost for q in own})
        table.add_row(
            "broker",
            read,
            f"{len(own)} more quorum queues",
            Text(summary or "all members online", bad if summary else ok),
            f"Celery's own ({CLIENT_QUEUES}) in vhost {', '.join(vhosts)}",
        )


def add_broker_rows(table: Table, broker: BrokerStatus) -> None:
    """The management API, each node, drift, the queues and their replicas."""
    ok, bad = "green", "red"
    if broker.error is not None:
        failures = broker.api_errors or ((broker.host, broker.error),)
        for host, error in failures:
            table.add_row("broker", host, "management API", Text("error", bad), error)
        return
    read = broker.api_host or broker.host
    alarms = [
        f"{n.name}: {kind}"
        for n in broker.nodes
        for kind, on in (("memory", n.mem_alarm), ("disk", n.disk_free_alarm))
        if on
    ]
    skipped = "; ".join(f"{h}: {e}" for h, e in broker.api_errors)
    table.add_row(
        "broker",
        read,
        "management API",
        Text(
            "ok" if not broker.drift and not alarms else "attention",
            ok if not broker.drift and not alarms else bad,
        ),
        f"RabbitMQ {broker.rabbitmq_version}, Erlang {broker.erlang_version}, "
        f"{len(broker.vhosts)} vhosts, {len(broker.users)} users, "
        f"alarms: {', '.join(alarms) or 'none'}, drift: {len(broker.drift) or 'none'}"
        + (f"; read here, not on {skipped}" if skipped else ""),
    )
    for node in broker.nodes:
        state, detail = _node_row(node, broker)
        table.add_row("broker", node.host or "?", f"node {node.name}", state, detail)
    for d in broker.drift:
        table.add_row("broker", read, f"{d.kind} {d.name}", Text(d.state, bad), d.detail)
    for q in broker.queues:
        if is_client_queue(q.name):
            continue
        table.add_row(
            "broker",
            read,
            f"queue {q.vhost}/{q.name}",
            Text(f"{q.consumers} consumers", ok if q.consumers else bad),
            f"{q.ready} ready, {q.unacked} unacked",
        )
    _quorum_rows(table, broker)
