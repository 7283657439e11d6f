"""The broker through its management API, compared with what deploy would set up."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qsetup.inventory import Inventory, group_vhost
from qsetup.loader import LoadedInventory

# The same user/permission list deploy applies, so status and deploy cannot disagree.
from qsetup.plan import _broker_vars, broker_admin_password
from qsetup.status.model import BrokerNode, BrokerStatus, Drift, QueueStatus

NOTHING = "^$"
"""RabbitMQ's "matches nothing" pattern: a permission of three of these grants nothing."""


@dataclass(frozen=True)
class ExpectedBroker:
    """The vhosts, users (with tags) and permissions a deployed broker has."""

    vhosts: frozenset[str]
    users: Mapping[str, frozenset[str]]
    permissions: Mapping[tuple[str, str], tuple[str, str, str]]
    """(user, vhost) -> (configure, write, read)."""
    guest_allowed: bool


@dataclass(frozen=True)
class Permission:
    """One permission row as the management API lists it."""

    user: str
    vhost: str
    configure: str
    write: str
    read: str

    @property
    def grants_nothing(self) -> bool:
        """True for ``^$ ^$ ^$`` (what RabbitMQ stores for "no rights")."""
        return self.configure == self.write == self.read == NOTHING


def expected_broker(inv: Inventory) -> ExpectedBroker:
    """What deploy puts on the broker: the inventory's users plus qsetup's own."""
    plan = _broker_vars(inv)
    users: dict[str, frozenset[str]] = {}
    perms: dict[tuple[str, str], tuple[str, str, str]] = {}
    for user in plan["users"]:
        name = str(user["name"])
        users[name] = frozenset(t for t in str(user["tags"]).split(",") if t)
        for p in user["permissions"]:
            perms[(name, str(p["vhost"]))] = (
                str(p["configure_priv"]),
                str(p["write_priv"]),
                str(p["read_priv"]),
            )
    return ExpectedBroker(
        vhosts=frozenset(inv.broker.vhosts),
        users=users,
        permissions=perms,
        guest_allowed=not inv.broker.delete_guest,
    )


def compare_broker(
    expected: ExpectedBroker,
    vhosts: Iterable[str],
    users: Mapping[str, frozenset[str]],
    permissions: Iterable[Permission],
) -> list[Drift]:
    """Every difference between the broker's vhosts, users and permissions and the inventory.

    RabbitMQ's default vhost ``/`` is not drift when the inventory does not list it (the
    server creates it and qsetup leaves it alone); ``guest`` is drift unless
    ``broker.delete_guest`` is false; a permission that grants nothing (``^$`` three
    times) counts as no permission.
    """
    drift: list[Drift] = []
    actual_vhosts = set(vhosts)
    for vhost in sorted(expected.vhosts - actual_vhosts):
        drift.append(Drift("vhost", vhost, "missing", "in the inventory, not on the broker"))
    for vhost in sorted(actual_vhosts - expected.vhosts - {"/"}):
        drift.append(Drift("vhost", vhost, "extra", "on the broker, not in the inventory"))

    for name in sorted(set(expected.users) - set(users)):
        drift.append(Drift("user", name, "missing", "in the inventory, not on the broker"))
    for name in sorted(set(users) - set(expected.users)):
        if name == "guest":
            if not expected.guest_allowed:
                drift.append(
                    Drift(
                        "user", "guest", "extra", "guest is present but broker.delete_guest is true"
                    )
                )
            continue
        drift.append(Drift("user", name, "extra", "on the broker, not in the inventory"))
    for name in sorted(set(expected.users) & set(users)):
        want, have = expected.users[name], users[name]
        if want != have:
            drift.append(
                Drift(
                    "tags",
                    name,
                    "differs",
                    f"tags {_tags(have)} on the broker, {_tags(want)} in the inventory",
                )
            )

    have_perms = {
        (p.user, p.vhost): (p.configure, p.write, p.read)
        for p in permissions
        if p.user in expected.users and not p.grants_nothing
    }
    want_perms = {k: v for k, v in expected.permissions.items() if v != (NOTHING,) * 3}
    for key in sorted(set(want_perms) | set(have_perms)):
        user, vhost = key
        if user not in users or vhost not in actual_vhosts:
            continue  # the missing user or vhost is already one line
        want_perm, have_perm = want_perms.get(key), have_perms.get(key)
        if want_perm == have_perm:
            continue
        name = f"{user}@{vhost}"
        if have_perm is None:
            drift.append(Drift("permission", name, "missing", f"expected {_perm(want_perm)}"))
        elif want_perm is None:
            drift.append(Drift("permission", name, "extra", f"{_perm(have_perm)} on the broker"))
        else:
            drift.append(
                Drift(
                    "permission",
                    name,
                    "differs",
                    f"{_perm(have_perm)} on the broker, {_perm(want_perm)} in the inventory",
                )
            )
    return drift


def _tags(tags: frozenset[str]) -> str:
    return "[" + ", ".join(sorted(tags)) + "]"


def _perm(perm: tuple[str, str, str] | None) -> str:
    if perm is None:
        return "none"
    return f"configure={perm[0]!r} write={perm[1]!r} read={perm[2]!r}"


def api_base(inv: Inventory) -> str:
    """The management API's base URL (no credentials)."""
    address = inv.hosts[inv.broker.host].address
    if ":" in address:
        address = f"[{address}]"
    return f"http://{address}:{inv.broker.management_port}/api"


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
) -> BrokerStatus:
    """Build the broker status (with drift) from the management API's JSON answers."""
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
    vhost_names = [str(v["name"]) for v in vhosts]
    return BrokerStatus(
        host=inv.broker.host,
        api_url=api_base(inv),
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
            )
            for n in nodes
        ),
        vhosts=tuple(sorted(vhost_names)),
        users=tuple(sorted(user_tags)),
        drift=tuple(compare_broker(expected_broker(inv), vhost_names, user_tags, perms)),
        queues=tuple(
            sorted(
                (
                    QueueStatus(
                        vhost=str(q.get("vhost", "?")),
                        name=str(q.get("name", "?")),
                        ready=_int(q.get("messages_ready")),
                        unacked=_int(q.get("messages_unacknowledged")),
                        consumers=_int(q.get("consumers")),
                    )
                    for q in queues
                ),
                key=lambda q: (q.vhost, q.name),
            )
        ),
    )


def _str_or_none(value: Any) -> str | None:
    return str(value) if value is not None else None


def failed_broker(inv: Inventory, error: str) -> BrokerStatus:
    """A broker status for an API that could not be read."""
    return BrokerStatus(inv.broker.host, api_base(inv), error, None, None, (), (), (), (), ())


def fetch_broker(loaded: LoadedInventory, timeout: float) -> BrokerStatus:
    """Read overview, nodes, vhosts, users, permissions and queues as ``qsetup-admin``."""
    import requests

    inv = loaded.inventory
    base = api_base(inv)
    answers: dict[str, Any] = {}
    with requests.Session() as session:
        session.auth = ("qsetup-admin", broker_admin_password(loaded))
        try:
            for path, params in (
                ("overview", {"columns": "rabbitmq_version,erlang_version"}),
                ("nodes", None),
                ("vhosts", {"columns": "name"}),
                ("users", {"columns": "name,tags"}),
                ("permissions", None),
                (
                    "queues",
                    {"columns": "vhost,name,messages_ready,messages_unacknowledged,consumers"},
                ),
            ):
                resp = session.get(f"{base}/{path}", params=params, timeout=timeout)
                if resp.status_code == 401:
                    return failed_broker(
                        inv, "qsetup-admin is refused (HTTP 401); run qsetup deploy to restore it"
                    )
                if resp.status_code != 200:
                    return failed_broker(inv, f"GET /api/{path} answered HTTP {resp.status_code}")
                answers[path] = resp.json()
        except requests.Timeout:
            return failed_broker(inv, f"no answer within {timeout:g} s")
        except requests.ConnectionError:
            return failed_broker(inv, "cannot connect (is RabbitMQ's management plugin running?)")
        except ValueError:
            return failed_broker(inv, "the management API answered something that is not JSON")
    return parse_api(
        inv,
        answers["overview"],
        answers["nodes"],
        answers["vhosts"],
        answers["users"],
        answers["permissions"],
        answers["queues"],
    )


def broker_problems(inv: Inventory, broker: BrokerStatus) -> list[str]:
    """One line per broker problem: API down, a node not running, an alarm, drift, no consumer."""
    host = broker.host
    if broker.error is not None:
        return [f"{host}: broker management API {broker.api_url}: {broker.error}"]
    problems = []
    for node in broker.nodes:
        if not node.running:
            problems.append(f"{host}: broker node {node.name}: not running")
        if node.mem_alarm:
            problems.append(
                f"{host}: broker node {node.name}: memory alarm (publishers are blocked)"
            )
        if node.disk_free_alarm:
            problems.append(
                f"{host}: broker node {node.name}: disk free alarm (publishers are blocked)"
            )
    for d in broker.drift:
        problems.append(f"{host}: broker {d.kind} '{d.name}': {d.state} ({d.detail})")
    queues = {(q.vhost, q.name): q for q in broker.queues}
    consumers: dict[tuple[str, str], list[str]] = {}
    for group in inv.workers:
        for name in group.queues:
            consumers.setdefault((group_vhost(inv, group), name), []).append(group.name)
    for (vhost, name), groups in consumers.items():
        queue = queues.get((vhost, name))
        who = "worker group" + ("s " if len(groups) > 1 else " ") + ", ".join(groups)
        if queue is None:
            problems.append(f"{host}: broker queue '{name}' (vhost '{vhost}'): missing ({who})")
        elif queue.consumers == 0 and queue.ready > 0:
            # Not "no consumers" alone: the API's counts lag up to 5 s (its statistics
            # interval), so a worker that just started may not be counted yet. Messages
            # waiting with nobody to take them is the symptom that matters.
            problems.append(
                f"{host}: broker queue '{name}' (vhost '{vhost}'): {queue.ready} messages "
                f"ready and no consumers ({who} should consume it)"
            )
    return list(dict.fromkeys(problems))
