"""Celery worker nodes: which the inventory expects, which answer, what they run."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qsetup.artifacts.render import broker_url
from qsetup.artifacts.tls import client_ca_file
from qsetup.desired.state import celery_settings, probe_transport_options, units_by_host
from qsetup.inventory.loader import LoadedInventory
from qsetup.inventory.model import Inventory
from qsetup.status.model import WorkerNode


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

    A host whose hostname is unknown (unreachable, or not read yet) is assumed to be
    named as in the inventory.
    """
    out = []
    for host, units in units_by_host(inv).items():
        hostname = hostnames.get(host) or host
        for unit in units:
            if unit.role != "worker":
                continue
            assert unit.group and unit.broker_user and unit.vhost, unit
            out.append(
                ExpectedNode(
                    unit.node_name(hostname),
                    host,
                    unit.group,
                    unit.name,
                    unit.broker_user,
                    unit.vhost,
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
    """The distinct (broker user, vhost) pairs the worker units connect with."""
    pairs = [
        (u.broker_user, u.vhost)
        for units in units_by_host(inv).values()
        for u in units
        if u.role == "worker" and u.broker_user and u.vhost
    ]
    return list(dict.fromkeys(pairs))


class NodeNames:
    """The node names the inventory expects on one vhost, by the hostnames known so far.

    The ping starts before the SSH round is back, so until then a host is taken to be
    named as in the inventory (the usual case); ``learn`` swaps in the hostnames the
    hosts reported. Readers on the ping's thread see either set (one reference swap).
    """

    def __init__(self, inv: Inventory, user: str, vhost: str) -> None:
        self._units = [
            (host, u)
            for host, units in units_by_host(inv).items()
            for u in units
            if u.role == "worker" and (u.broker_user, u.vhost) == (user, vhost)
        ]
        self._names = self._expand({})

    def _expand(self, hostnames: Mapping[str, str | None]) -> frozenset[str]:
        return frozenset(u.node_name(hostnames.get(host) or host) for host, u in self._units)

    def learn(self, hostnames: Mapping[str, str | None]) -> None:
        """Use the hostnames the hosts reported (None: unknown, the inventory name)."""
        self._names = self._expand(hostnames)

    def __call__(self) -> frozenset[str]:
        """The expected node names."""
        return self._names


class _AllAnswered(Exception):
    """Raised from the ping's reply callback: kombu has no other way to stop collecting."""


def control_mailbox(connection: Any) -> Any:
    """Celery's control mailbox (``celery.pidbox``, fanout) on ``connection``, as kombu's.

    The settings are Celery's defaults for its ``app.control`` (``control_exchange``,
    JSON, the reply queue's ttl 300 s and expiry 10 s), so workers see exactly what
    ``celery inspect`` sends; status imports kombu only, not Celery (about 40 ms).
    """
    from kombu.pidbox import Mailbox

    mailbox = Mailbox(  # type: ignore[no-untyped-call]
        "celery",
        type="fanout",
        accept=["json"],
        serializer="json",
        queue_ttl=300.0,
        reply_queue_ttl=300.0,
        queue_expires=10.0,
        queue_exclusive=False,
        queue_durable=False,
        reply_queue_expires=10.0,
    )
    return mailbox(connection)


def ask(
    mailbox: Any,
    command: str,
    arguments: Mapping[str, Any],
    timeout: float,
    callback: Callable[[Mapping[str, Any]], None] | None = None,
    destination: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Broadcast a remote-control question, as Celery's ``inspect`` does; node -> answer.

    kombu collects replies until ``timeout`` passes without one, or (with
    ``destination``) until each named node answered.
    """
    replies = mailbox._broadcast(  # noqa: SLF001 - Celery's Control calls it too
        command,
        dict(arguments),
        list(destination) if destination is not None else None,
        True,
        timeout,
        len(destination) if destination is not None else None,
        callback,
    )
    out: dict[str, Any] = {}
    for reply in replies or []:
        if isinstance(reply, Mapping):
            out.update(reply)
    return out


def ping_nodes(
    mailbox: Any,
    ping_timeout: float,
    expected: Callable[[], Collection[str]],
    replies: dict[str, Any] | None = None,
) -> frozenset[str]:
    """Ask every node for its tasks; stop as soon as every node in ``expected()`` answered.

    The question is ``registered``, not ``ping``: a node that answers one answers the
    other, and this reply names the node's tasks as well, which status reports, so one
    broadcast does the work of two. ``replies`` (when given) gets each node's answer.

    Without that stop, kombu collects until no reply came for ``ping_timeout`` seconds,
    so a healthy fleet always cost that second. The trade-off: a node the inventory does
    not expect is reported only when it answers before the last expected one. Replies
    come within milliseconds of each other, so a running stray is usually among them,
    but not always; a stray that runs as a ``qsetup-*`` unit on an inventory host is
    reported by that host's unit list anyway. While an expected node is missing, the
    ping waits as before and catches every stray that answers meanwhile.

    ``expected`` is asked at every reply, so hostnames learnt meanwhile count. Before
    the SSH round is back it guesses inventory names (``NodeNames``): a machine whose
    hostname is another host's inventory name, running that host's node names, could
    end the ping early, and the real host's nodes would then read as silent.
    """
    answered: set[str] = set()
    stopped = False

    def on_reply(reply: Mapping[str, Any]) -> None:
        nonlocal stopped
        answered.update(reply)
        if replies is not None:
            replies.update(reply)
        wanted = set(expected())
        # Once only: a reply arriving while kombu cancels the consumer comes here too,
        # and raising again would abort that cancel (the channel then closes with the
        # cancel's answer still on its way, and py-amqp logs a warning).
        if not stopped and wanted and wanted <= answered:
            stopped = True
            raise _AllAnswered

    try:
        ask(mailbox, "registered", {"taskinfoitems": []}, ping_timeout, on_reply)
    except _AllAnswered:
        pass
    return frozenset(answered)


def inspect_workers(
    loaded: LoadedInventory,
    user: str,
    vhost: str,
    timeout: float,
    ping_timeout: float,
    expected: Callable[[], Collection[str]] = frozenset,
) -> InspectResult:
    """Ask every node on a vhost for its tasks, then those that answered for what runs.

    The first question ends once every node in ``expected()`` answered, else after
    ``ping_timeout`` without a reply (see ``ping_nodes``); the follow-up question
    (``active``) returns as soon as every answering node replied. The connection is
    the one Celery would make from the workers' settings: the broker URL (every node,
    failover), TLS checked against the CA, and one quick try per node.
    """
    from kombu.connection import Connection

    inv = loaded.inventory
    url = broker_url(inv, loaded.secrets, user, vhost)
    ssl: object = False
    if inv.tls.enabled:
        ssl = celery_settings(inv, str(client_ca_file(loaded.path, inv)))["broker_use_ssl"]
    # The connection's own retries: one quick try per broker node keeps the check within
    # its timeout when the broker is down.
    connection = Connection(  # type: ignore[no-untyped-call]
        url,
        ssl=ssl,
        connect_timeout=timeout,
        transport_options=probe_transport_options(inv),
    )
    try:
        mailbox = control_mailbox(connection)
        replies: dict[str, Any] = {}
        answered = ping_nodes(mailbox, ping_timeout, expected, replies)
        registered = {
            n: tuple(sorted(str(x) for x in t)) if isinstance(t, list) else ()
            for n, t in replies.items()
        }
        active: dict[str, int] = {}
        if answered:
            running = ask(mailbox, "active", {"safe": None}, timeout, None, sorted(answered))
            active = {n: len(t) for n, t in running.items() if isinstance(t, list)}
        return InspectResult(user, vhost, None, answered, registered, active)
    except Exception as exc:  # noqa: BLE001 - any broker failure is a reported problem
        text = str(exc).replace(url, "amqp://***") or type(exc).__name__
        return InspectResult(user, vhost, f"cannot broadcast to the workers: {text}")
    finally:
        connection.release()  # type: ignore[no-untyped-call]


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
