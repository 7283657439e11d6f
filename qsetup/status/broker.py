"""The broker through its management API, compared with what deploy would set up."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from qsetup.artifacts.tls import client_ca_file, ssl_reason, verify_with_ca
from qsetup.converge.broker import Permission, Policy, TopicPermission, compare_broker
from qsetup.desired.state import (
    ADMIN_USER,
    broker_admin_password,
    broker_state,
    consumed_queues,
    management_endpoint,
)
from qsetup.inventory.loader import LoadedInventory
from qsetup.inventory.model import Inventory, queue_type
from qsetup.remote.http import Client, NoAnswer
from qsetup.status.cluster import node_problems, parse_quorum_queues, quorum_problems
from qsetup.status.model import BrokerNode, BrokerStatus, QueueStatus


def api_base(inv: Inventory, host: str | None = None) -> str:
    """The management API's base URL on a broker host (default: the first; no credentials)."""
    address = inv.hosts[host or inv.broker.host].address
    if ":" in address:
        address = f"[{address}]"
    scheme, port = management_endpoint(inv)
    return f"{scheme}://{address}:{port}/api"


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _opt_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def parse_api(
    inv: Inventory,
    overview: Mapping[str, Any],
    nodes: Sequence[Mapping[str, Any]],
    vhosts: Sequence[Mapping[str, Any]],
    users: Sequence[Mapping[str, Any]],
    permissions: Sequence[Mapping[str, Any]],
    queues: Sequence[Mapping[str, Any]],
    topic_permissions: Sequence[Mapping[str, Any]] = (),
    policies: Sequence[Mapping[str, Any]] = (),
    *,
    api_host: str | None = None,
    api_errors: tuple[tuple[str, str], ...] = (),
) -> BrokerStatus:
    """Build the broker status (with drift) from the management API's JSON answers.

    ``api_host`` is the broker host that gave them (default: the first), ``api_errors``
    why the hosts asked before it did not. Nodes are not placed on hosts yet
    (``cluster.place_nodes`` does that once the hostnames are known).
    """
    host = api_host or inv.broker.host
    user_tags: dict[str, frozenset[str]] = {}
    for u in users:
        tags = u.get("tags", [])
        # RabbitMQ 3.8 and older give tags as one comma-separated string.
        tag_list = tags.split(",") if isinstance(tags, str) else list(tags)
        user_tags[str(u["name"])] = frozenset(str(t) for t in tag_list if t)
    perms = [
        Permission(
            str(p["user"]), str(p["vhost"]), str(p["configure"]), str(p["write"]), str(p["read"])
        )
        for p in permissions
    ]
    topics = [
        TopicPermission(
            str(t["user"]), str(t["vhost"]), str(t["exchange"]), str(t["write"]), str(t["read"])
        )
        for t in topic_permissions
    ]
    pols = [
        Policy(
            str(p["vhost"]),
            str(p["name"]),
            str(p.get("pattern", "")),
            str(p.get("apply-to", "all")),
            _int(p.get("priority")),
            dict(p.get("definition") or {}),
        )
        for p in policies
    ]
    vhost_names = [str(v["name"]) for v in vhosts]
    return BrokerStatus(
        host=inv.broker.host,
        api_url=api_base(inv, host),
        error=None,
        rabbitmq_version=_str_or_none(overview.get("rabbitmq_version")),
        erlang_version=_str_or_none(overview.get("erlang_version")),
        nodes=tuple(
            BrokerNode(
                name=str(n.get("name", "?")),
                running=bool(n.get("running", False)),
                mem_alarm=bool(n.get("mem_alarm", False)),
                disk_free_alarm=bool(n.get("disk_free_alarm", False)),
                mem_used=_opt_int(n.get("mem_used")),
                mem_limit=_opt_int(n.get("mem_limit")),
                disk_free=_opt_int(n.get("disk_free")),
                disk_free_limit=_opt_int(n.get("disk_free_limit")),
                partitions=tuple(sorted(str(p) for p in n.get("partitions") or ())),
            )
            for n in nodes
        ),
        vhosts=tuple(sorted(vhost_names)),
        users=tuple(sorted(user_tags)),
        drift=tuple(compare_broker(broker_state(inv), vhost_names, user_tags, perms, topics, pols)),
        queues=tuple(
            sorted(
                (
                    QueueStatus(
                        vhost=str(q.get("vhost", "?")),
                        name=str(q.get("name", "?")),
                        ready=_int(q.get("messages_ready")),
                        unacked=_int(q.get("messages_unacknowledged")),
                        consumers=_int(q.get("consumers")),
                        type=str(q.get("type") or "classic"),
                    )
                    for q in queues
                ),
                key=lambda q: (q.vhost, q.name),
            )
        ),
        api_host=host,
        api_errors=api_errors,
        quorum_queues=parse_quorum_queues(queues),
    )


def _str_or_none(value: Any) -> str | None:
    return str(value) if value is not None else None


def failed_broker(
    inv: Inventory, error: str, api_errors: tuple[tuple[str, str], ...] = ()
) -> BrokerStatus:
    """A broker status for an API that could not be read (``api_errors``: why, per host)."""
    return BrokerStatus(
        inv.broker.host, api_base(inv), error, None, None, (), (), (), (), (), None, api_errors
    )


_PATHS: tuple[tuple[str, dict[str, str] | None], ...] = (
    ("overview", {"columns": "rabbitmq_version,erlang_version"}),
    (
        "nodes",
        {
            "columns": "name,running,mem_alarm,disk_free_alarm,mem_used,mem_limit,disk_free,"
            "disk_free_limit,partitions"
        },
    ),
    ("vhosts", {"columns": "name"}),
    ("users", {"columns": "name,tags"}),
    ("permissions", None),
    ("topic-permissions", None),
    ("policies", None),
    (
        "queues",
        {
            "columns": "vhost,name,type,messages_ready,messages_unacknowledged,consumers,"
            "members,online,leader"
        },
    ),
)


def _read_api(client: Client, base: str, timeout: float) -> dict[str, Any] | str:
    """Every answer status needs from one node's API, or why it could not be read."""
    answers: dict[str, Any] = {}
    try:
        for path, params in _PATHS:
            resp = client.get(f"{base}/{path}", params=params, timeout=timeout)
            if resp.status_code == 401:
                return "qsetup-admin is refused (HTTP 401); run qsetup deploy to restore it"
            if resp.status_code != 200:
                return f"GET /api/{path} answered HTTP {resp.status_code}"
            answers[path] = resp.json()
    except NoAnswer as exc:
        if exc.kind == "timeout":
            return f"no answer within {timeout:g} s"
        if exc.kind == "tls":
            return f"TLS handshake failed ({ssl_reason(exc)})"
        return "cannot connect (is RabbitMQ's management plugin running?)"
    except ValueError:
        return "the management API answered something that is not JSON"
    return answers


def api_client(loaded: LoadedInventory) -> Client:
    """An HTTP client as ``qsetup-admin``, checking the CA with TLS (status)."""
    inv = loaded.inventory
    cafile = str(client_ca_file(loaded.path, inv)) if inv.tls.enabled else None
    return Client((ADMIN_USER, broker_admin_password(inv, loaded.secrets)), cafile)


@contextmanager
def admin_session(loaded: LoadedInventory) -> Iterator[Any]:
    """A requests session as ``qsetup-admin``, checking the CA with TLS (backup, restore)."""
    import requests

    with requests.Session() as session:
        session.auth = (ADMIN_USER, broker_admin_password(loaded.inventory, loaded.secrets))
        verify_with_ca(session, loaded.path, loaded.inventory)
        yield session


def fetch_broker(loaded: LoadedInventory, timeout: float) -> BrokerStatus:
    """Read what status compares and shows, as ``qsetup-admin``.

    Overview, nodes, vhosts, users, permissions, topic permissions, policies and queues,
    all from the first broker host (in ``broker.hosts`` order) whose API answers them,
    so a node that is down does not hide the rest of the cluster.
    """
    inv = loaded.inventory
    failures: list[tuple[str, str]] = []
    with api_client(loaded) as client:
        for host in inv.broker.hosts:
            answers = _read_api(client, api_base(inv, host), timeout)
            if isinstance(answers, str):
                failures.append((host, answers))
                continue
            return parse_api(
                inv,
                answers["overview"],
                answers["nodes"],
                answers["vhosts"],
                answers["users"],
                answers["permissions"],
                answers["queues"],
                answers["topic-permissions"],
                answers["policies"],
                api_host=host,
                api_errors=tuple(failures),
            )
    if inv.firewall.enabled:
        # Status asks from this machine: with the firewall on, it needs broker.allow_from.
        hint = " (firewall.enabled: is this machine's address in broker.allow_from?)"
        failures = [(h, e + hint if e.startswith("cannot connect") else e) for h, e in failures]
    if len(failures) == 1:
        return failed_broker(inv, failures[0][1], tuple(failures))
    return failed_broker(inv, "no broker node's management API answered", tuple(failures))


def broker_problems(inv: Inventory, broker: BrokerStatus) -> list[str]:
    """One line per broker problem.

    The API down (on every node), a node not running, missing, extra, partitioned or in
    alarm, drift, a worker queue missing or without consumers, quorum queue replicas
    offline.
    """
    if broker.error is not None:
        if not broker.api_errors:
            return [f"{broker.host}: broker management API {broker.api_url}: {broker.error}"]
        return [
            f"{host}: broker management API {api_base(inv, host)}: {error}"
            for host, error in broker.api_errors
        ]
    host = broker.api_host or broker.host
    problems = node_problems(broker)
    for d in broker.drift:
        problems.append(f"{host}: broker {d.kind} '{d.name}': {d.state} ({d.detail})")
    queues = {(q.vhost, q.name): q for q in broker.queues}
    wanted = queue_type(inv)
    for (vhost, name), groups in consumed_queues(inv).items():
        queue = queues.get((vhost, name))
        who = "worker group" + ("s " if len(groups) > 1 else " ") + ", ".join(groups)
        if queue is None:
            problems.append(f"{host}: broker queue '{name}' (vhost '{vhost}'): missing ({who})")
        elif queue.type != wanted:
            # The host's comparison names it, as the refusal a deploy stops on
            # (converge.compare.queue_type_refusals): said once.
            continue
        elif queue.consumers == 0 and queue.ready > 0:
            # Not "no consumers" alone: the API's counts lag up to 5 s (its statistics
            # interval), so a worker that just started may not be counted yet. Messages
            # waiting with nobody to take them is the symptom that matters.
            problems.append(
                f"{host}: broker queue '{name}' (vhost '{vhost}'): {queue.ready} messages "
                f"ready and no consumers ({who} should consume it)"
            )
    problems += quorum_problems(broker)
    return list(dict.fromkeys(problems))
