"""Celery worker nodes: which the inventory expects, which answer, what they run."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from qsetup.inventory import Inventory, group_broker_user, group_vhost
from qsetup.loader import LoadedInventory
from qsetup.render import broker_url
from qsetup.status.hosts import worker_unit
from qsetup.status.model import WorkerNode

_FORMAT_RE = re.compile(r"%([%\w])")


def expand_node_name(pattern: str, instance: int, hostname: str) -> str:
    """The node name a worker gets from its ``-n`` pattern, as systemd and Celery expand it.

    systemd replaces ``%i`` with the instance; Celery then adds ``celery@`` to a name
    without ``@`` (the name becomes the host part) and expands ``%h`` (the host's full
    name), ``%n`` (its first label), ``%d`` (its domain) and ``%%``; other ``%x`` stay.
    """
    name = pattern.replace("%i", str(instance))
    if "@" not in name:
        name = f"celery@{name}"
    short, _, domain = hostname.partition(".")
    keys = {"h": hostname, "n": short, "d": domain, "%": "%"}
    return _FORMAT_RE.sub(lambda m: keys.get(m.group(1), m.group(0)), name)


@dataclass(frozen=True)
class ExpectedNode:
    """A worker node the inventory runs."""

    name: str
    host: str
    group: str
    unit: str
    broker_user: str
    vhost: str


def expected_nodes(inv: Inventory, hostnames: Mapping[str, str | None]) -> list[ExpectedNode]:
    """Every node the inventory runs; ``hostnames`` maps inventory hosts to their hostname.

    A host whose hostname is unknown (unreachable) is assumed to be named as in the
    inventory.
    """
    out = []
    for group in inv.workers:
        user = group_broker_user(inv, group).name
        vhost = group_vhost(inv, group)
        for host in group.hosts:
            hostname = hostnames.get(host) or host
            for i in range(1, group.instances + 1):
                out.append(
                    ExpectedNode(
                        expand_node_name(group.node_pattern, i, hostname),
                        host,
                        group.name,
                        worker_unit(group.name, i),
                        user,
                        vhost,
                    )
                )
    return out


@dataclass(frozen=True)
class InspectResult:
    """The answers of one broadcast round on one vhost."""

    broker_user: str
    vhost: str
    error: str | None = None
    ping: frozenset[str] = frozenset()
    registered: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    active: Mapping[str, int] = field(default_factory=dict)


def broker_connections(inv: Inventory) -> list[tuple[str, str]]:
    """The distinct (broker user, vhost) pairs worker groups connect with."""
    pairs = [(group_broker_user(inv, g).name, group_vhost(inv, g)) for g in inv.workers]
    return list(dict.fromkeys(pairs))


def inspect_workers(
    loaded: LoadedInventory, user: str, vhost: str, timeout: float, ping_timeout: float
) -> InspectResult:
    """Ping every node on a vhost, then ask those that answered for their tasks.

    The ping waits the whole ``ping_timeout`` (a node the inventory does not expect may
    answer too); the follow-up questions return as soon as every answering node replied.
    """
    from celery import Celery

    inv = loaded.inventory
    url = broker_url(inv, loaded.secrets, user, vhost)
    app = Celery("qsetup-status", broker=url, set_as_current=False)
    app.conf.broker_connection_timeout = timeout
    app.conf.broker_connection_retry = False
    # The broadcast's own connection retries after 2 s by default; one try keeps the
    # check within its timeout when the broker is down.
    app.conf.broker_transport_options = {"max_retries": 0}
    try:
        pings = app.control.inspect(timeout=ping_timeout).ping() or {}
        answered = frozenset(pings)
        registered: dict[str, tuple[str, ...]] = {}
        active: dict[str, int] = {}
        if answered:
            follow = app.control.inspect(
                destination=sorted(answered), timeout=timeout, limit=len(answered)
            )
            registered = {n: tuple(sorted(t)) for n, t in (follow.registered() or {}).items()}
            active = {n: len(t) for n, t in (follow.active() or {}).items()}
        return InspectResult(user, vhost, None, answered, registered, active)
    except Exception as exc:  # noqa: BLE001 - any broker failure is a reported problem
        text = str(exc).replace(url, "amqp://***") or type(exc).__name__
        return InspectResult(user, vhost, f"cannot broadcast to the workers: {text}")
    finally:
        app.close()


def combine_nodes(
    expected: Sequence[ExpectedNode], results: Sequence[InspectResult]
) -> list[WorkerNode]:
    """Merge expected nodes with the answers: expected first, then unexpected ones."""
    by_vhost = {(r.broker_user, r.vhost): r for r in results}
    nodes: list[WorkerNode] = []
    known: set[tuple[str, str]] = set()
    for e in expected:
        r = by_vhost.get((e.broker_user, e.vhost))
        answered = r is not None and e.name in r.ping
        nodes.append(
            WorkerNode(
                name=e.name,
                host=e.host,
                group=e.group,
                unit=e.unit,
                vhost=e.vhost,
                expected=True,
                answers_ping=answered,
                registered=r.registered.get(e.name, ()) if r else (),
                active=r.active.get(e.name) if r else None,
            )
        )
        known.add((e.vhost, e.name))
    for r in results:
        for name in sorted(r.ping):
            if (r.vhost, name) in known:
                continue
            known.add((r.vhost, name))
            nodes.append(
                WorkerNode(
                    name,
                    None,
                    None,
                    None,
                    r.vhost,
                    False,
                    True,
                    r.registered.get(name, ()),
                    r.active.get(name),
                )
            )
    return nodes


def worker_problems(
    nodes: Sequence[WorkerNode],
    results: Sequence[InspectResult],
    broker_host: str,
    unreachable: frozenset[str] = frozenset(),
) -> list[str]:
    """One line per node that does not answer, answers unexpectedly, or runs no task.

    Nodes on an unreachable host are left out: the host's own line says why.
    """
    problems = []
    failed = {r.vhost for r in results if r.error is not None}
    for r in results:
        if r.error is not None:
            problems.append(
                f"{broker_host}: broker vhost '{r.vhost}' as '{r.broker_user}': {r.error}"
            )
    for n in nodes:
        if n.expected and n.host in unreachable:
            continue
        if n.expected and not n.answers_ping:
            if n.vhost in failed:
                continue
            problems.append(f"{n.host}: worker node {n.name} ({n.unit}): does not answer ping")
        elif not n.expected:
            problems.append(
                f"{_host_of(n.name)}: worker node {n.name}: answers on vhost '{n.vhost}' "
                "but the inventory does not run it"
            )
        elif not n.registered:
            problems.append(
                f"{n.host}: worker node {n.name} ({n.unit}): registers no tasks "
                "(does the app module import its tasks?)"
            )
    return problems


def _host_of(node: str) -> str:
    return node.partition("@")[2] or node
