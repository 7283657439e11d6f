"""The broker as a cluster: its nodes placed on inventory hosts, quorum queue replicas.

Pure: reads what ``broker.fetch_broker`` parsed and the hostnames the SSH round
reported; returns values and problem lines.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from qsetup.desired.names import rabbit_node_name
from qsetup.inventory.model import Inventory
from qsetup.status.model import BrokerNode, BrokerStatus, QuorumQueue

_DELAYED = re.compile(r"^celery_delayed_\d+$")

CLIENT_QUEUES = "celery_delayed_*, celeryev.*, *.pidbox"
"""How problem lines and the table name the queues ``is_client_queue`` picks."""


def is_client_queue(name: str) -> bool:
    """True for queues Celery makes by itself, not named in the inventory.

    Per-node control (``*.pidbox``) and per-connection event (``celeryev.*``) queues, and
    the 28 queues of Celery's native delayed delivery (``celery_delayed_0`` to ``_27``):
    one table row or problem line each would be noise.
    """
    return name.endswith(".pidbox") or name.startswith("celeryev.") or bool(_DELAYED.match(name))


def _names(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def parse_quorum_queues(queues: Iterable[Mapping[str, Any]]) -> tuple[QuorumQueue, ...]:
    """The quorum queues of an ``/api/queues`` answer, sorted by vhost and name.

    RabbitMQ 3.10 to 4.x give ``members``, ``online`` and ``leader`` (``""`` when there
    is none; 4.x may name the last known leader even when its node is down, so a leader
    that is not online counts as none). A queue without ``members`` is left out: its
    replicas are unknown, not missing.
    """
    found = []
    for q in queues:
        if q.get("type") != "quorum":
            continue
        members = tuple(sorted(_names(q.get("members"))))
        if not members:
            continue
        online = tuple(m for m in members if m in _names(q.get("online")))
        leader = q.get("leader")
        found.append(
            QuorumQueue(
                vhost=str(q.get("vhost", "?")),
                name=str(q.get("name", "?")),
                members=members,
                online=online,
                leader=str(leader) if leader and str(leader) in online else None,
            )
        )
    return tuple(sorted(found, key=lambda q: (q.vhost, q.name)))


def place_nodes(
    inv: Inventory, broker: BrokerStatus, hostnames: Mapping[str, str | None]
) -> BrokerStatus:
    """Name each node's inventory host; add the nodes the inventory expects and the API lacks.

    A broker host's node is ``rabbit@<short hostname>`` by the hostname it reported over
    SSH. For a host that did not report one (unreachable) the inventory name stands in;
    if that matches nothing while exactly one listed node matches no host, that node is
    taken to be this host's.
    """
    if broker.error is not None:
        return broker
    expected = {h: rabbit_node_name(hostnames.get(h) or h) for h in inv.broker.hosts}
    listed = {n.name for n in broker.nodes}
    by_name = {name: host for host, name in expected.items()}
    strangers = [n.name for n in broker.nodes if n.name not in by_name]
    unplaced = [h for h, name in expected.items() if name not in listed]
    guessed = [h for h in unplaced if not hostnames.get(h)]
    if len(strangers) == 1 and len(guessed) == 1 and len(unplaced) == 1:
        by_name[strangers[0]] = guessed[0]
        unplaced = []
    nodes = [replace(n, host=by_name.get(n.name), expected=n.name in by_name) for n in broker.nodes]
    for host in unplaced:
        nodes.append(
            BrokerNode(
                name=expected[host],
                running=False,
                mem_alarm=False,
                disk_free_alarm=False,
                mem_used=None,
                mem_limit=None,
                disk_free=None,
                disk_free_limit=None,
                host=host,
                expected=True,
                listed=False,
            )
        )
    order = {h: i for i, h in enumerate(inv.broker.hosts)}
    nodes.sort(key=lambda n: (order.get(n.host or "", len(order)), n.name))
    return replace(broker, nodes=tuple(nodes))


def node_problems(broker: BrokerStatus) -> list[str]:
    """Lines for nodes down, missing, extra, partitioned or in alarm, and APIs that failed.

    A node asked before the one that answered is a line only if the cluster says the
    node runs (otherwise its node line already says what is wrong).
    """
    read = broker.api_host or broker.host
    problems = []
    for node in broker.nodes:
        host = node.host or read
        where = f"{host}: broker node {node.name}"
        if not node.listed:
            problems.append(f"{where}: not in the cluster ({read}'s management API lacks it)")
            continue
        if node.expected is False:
            problems.append(f"{where}: in the cluster but not in the inventory's broker.hosts")
        if not node.running:
            problems.append(f"{where}: not running")
        if node.partitions:
            problems.append(f"{where}: partitioned from {', '.join(node.partitions)}")
        if node.mem_alarm:
            problems.append(f"{where}: memory alarm (publishers are blocked)")
        if node.disk_free_alarm:
            problems.append(f"{where}: disk free alarm (publishers are blocked)")
    running = {n.host for n in broker.nodes if n.running and n.listed and n.host}
    for host, error in broker.api_errors:
        if broker.error is None and host in running:
            problems.append(
                f"{host}: broker management API: {error} (its node runs; status read {read}'s)"
            )
    return problems


def _host_of(nodes: Iterable[str], broker: BrokerStatus) -> str:
    """The one inventory host of these nodes, else the host whose API was read."""
    hosts = {n.host for n in broker.nodes if n.name in set(nodes)}
    if len(hosts) == 1 and None not in hosts:
        return str(next(iter(hosts)))
    return broker.api_host or broker.host


def describe_queue(queue: QuorumQueue) -> str:
    """``2 of 3 online, leader rabbit@mq1`` (and what is offline)."""
    text = f"{len(queue.online)} of {len(queue.members)} online, "
    text += f"leader {queue.leader}" if queue.leader else "no leader"
    return text


def summarize(queues: Sequence[QuorumQueue]) -> str:
    """``27 miss rabbit@mq2; 1 has no quorum`` for many queues ('' when all are fine)."""
    misses: Counter[str] = Counter(m for q in queues if q.has_quorum for m in q.offline)
    parts = [f"{count} miss {member}" for member, count in sorted(misses.items())]
    lost = sum(1 for q in queues if not q.has_quorum)
    if lost:
        parts.append(f"{lost} {'has' if lost == 1 else 'have'} no quorum")
    return "; ".join(parts)


def quorum_problems(broker: BrokerStatus) -> list[str]:
    """A line per quorum queue with a member offline; Celery's own queues summed per vhost.

    A queue without a leader or a majority online takes no messages: its line says so.
    """
    problems = []
    own: dict[str, list[QuorumQueue]] = {}
    for q in broker.quorum_queues:
        if is_client_queue(q.name):
            own.setdefault(q.vhost, []).append(q)
            continue
        where = f"broker queue '{q.name}' (vhost '{q.vhost}')"
        offline = ", ".join(q.offline)
        if not q.has_quorum:
            problems.append(
                f"{_host_of(q.offline, broker)}: {where}: no quorum, takes no messages "
                f"({describe_queue(q)}; offline {offline or 'none'})"
            )
        elif q.offline:
            noun = "member" if len(q.offline) == 1 else "members"
            problems.append(
                f"{_host_of(q.offline, broker)}: {where}: quorum {noun} {offline} offline "
                f"({describe_queue(q)})"
            )
    for vhost, queues in own.items():
        summary = summarize(queues)
        if summary:
            missing = {m for q in queues for m in q.offline}
            problems.append(
                f"{_host_of(missing, broker)}: broker vhost '{vhost}': {len(queues)} quorum "
                f"queues of Celery's own ({CLIENT_QUEUES}): {summary}"
            )
    return problems
