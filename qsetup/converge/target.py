"""What belongs on a host, typed, as the comparison reads it.

Built from the deploy plan's per-host variables (``qsetup.plan``), the one place that
decides what goes where, and the checksums of the files rendered for this run. The
playbooks' filter shim builds the same object from the same variables, so deploy and
status compare against one description.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qsetup.desired.broker import (
    BrokerAccount,
    BrokerPermission,
    BrokerPolicy,
    BrokerState,
    BrokerTopicPermission,
)
from qsetup.desired.firewall import (
    FIREWALL_UNIT,
    UNIT_TEXT,
    allowed_from_record,
    render_ruleset,
    sha1,
)
from qsetup.desired.results import RESULTS_UNIT


@dataclass(frozen=True)
class FileTarget:
    """A file qsetup renders and installs."""

    dest: str
    checksum: str | None
    mode: str
    owner: str
    group: str
    service: str | None = None
    """The unit (file) a change of this file restarts."""
    secret: bool = False


@dataclass(frozen=True)
class DirTarget:
    """A directory qsetup creates."""

    path: str
    mode: str
    owner: str
    group: str


@dataclass(frozen=True)
class VenvTarget:
    """A virtualenv and the marker recording what pip installed there."""

    name: str
    path: str
    marker: str
    marker_sum: str


@dataclass(frozen=True)
class ServiceTarget:
    """A unit qsetup runs on the host (RabbitMQ included on a broker node)."""

    unit: str
    role: str
    executable: str | None = None
    """What its ExecStart runs first (``/usr/bin/celery``, ``<venv>/bin/python``)."""


@dataclass(frozen=True)
class FirewallTarget:
    """qsetup's nftables table on a host: who may reach which port, and its files."""

    allowed: Mapping[int, tuple[str, ...]]
    ruleset_sum: str
    unit_sum: str

    @classmethod
    def from_plan(cls, allowed: Mapping[str, Any]) -> FirewallTarget:
        """From the plan's ``qsetup_firewall`` (port -> sources)."""
        rules = allowed_from_record(allowed)
        return cls(rules, sha1(render_ruleset(rules)), sha1(UNIT_TEXT))


@dataclass(frozen=True)
class ResultsUserTarget:
    """An ACL user the result backend must have: its password's secret, its patterns."""

    name: str
    secret: str


@dataclass(frozen=True)
class ResultsTarget:
    """The managed result backend on its host: its users (the default user off)."""

    users: tuple[ResultsUserTarget, ...]

    @classmethod
    def from_plan(cls, results: Mapping[str, Any]) -> ResultsTarget:
        """From the plan's ``qsetup_results``."""
        return cls(
            tuple(ResultsUserTarget(str(u["name"]), str(u["secret"])) for u in results["users"])
        )


@dataclass(frozen=True)
class ConsumedQueue:
    """A queue worker groups consume, on its vhost."""

    vhost: str
    name: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class HostTarget:
    """Everything that belongs on one host."""

    host: str
    files: tuple[FileTarget, ...] = ()
    dirs: tuple[DirTarget, ...] = ()
    venvs: tuple[VenvTarget, ...] = ()
    code_dir: str | None = None
    """The app's code directory, when the host runs the app."""
    code_sum: str | None = None
    os_users: tuple[str, ...] = ()
    os_groups: tuple[str, ...] = ()
    services: tuple[ServiceTarget, ...] = ()
    worker_units: tuple[str, ...] = ()
    """Every worker unit the inventory puts on the host, whatever ``--tags`` picked."""
    broker: BrokerState | None = None
    """The broker's objects, on the node that manages them (the first broker node)."""
    broker_node: bool = False
    cluster_size: int = 1
    cluster_hosts: tuple[tuple[str, str | None], ...] = ()
    """On a node of a cluster: each node's (address, hostname) for the cluster's block in
    /etc/hosts; a hostname is None when its host's read is not known (a host that is down)."""
    manifest: Mapping[str, Any] = field(default_factory=dict)
    firewall: FirewallTarget | None = None
    results: ResultsTarget | None = None
    """The managed result backend, on its host."""
    epmd: tuple[str, ...] | None = None
    """On a broker node, where epmd listens besides what the host's name resolves to."""
    queue_type: str | None = None
    """On the node that manages the broker's objects: the type the workers' queues have."""
    consumed_queues: tuple[ConsumedQueue, ...] = ()
    """There too: the queues the workers consume (a queue's type cannot change)."""

    @classmethod
    def from_plan(
        cls,
        host: str,
        hv: Mapping[str, Any],
        common: Mapping[str, Any],
        sums: Mapping[str, str],
        hostnames: Mapping[str, str | None] | None = None,
    ) -> HostTarget:
        """From a host's plan variables, the plan's shared ones and the files' checksums.

        ``hostnames`` maps broker hosts to the hostname their read found (the names the
        cluster's nodes reach each other by); a broker host missing there is unknown.
        """
        files = tuple(
            FileTarget(
                dest=str(f["dest"]),
                checksum=sums.get(str(f["src"])),
                mode=str(f["mode"]),
                owner=str(f["owner"]),
                group=str(f["group"]),
                service=f.get("service") or None,
                secret=bool(f.get("secret")),
            )
            for f in [
                *hv.get("qsetup_files", ()),
                *hv.get("qsetup_broker_files", ()),
                *hv.get("qsetup_results_files", ()),
            ]
        )
        services = [
            ServiceTarget(
                str(s["unit"]),
                str(s["role"]),
                str(s["celery_argv"][0]) if s.get("celery_argv") else None,
            )
            for s in hv.get("qsetup_services", ())
        ]
        is_broker = bool(hv.get("qsetup_is_broker"))
        if is_broker:
            services.insert(0, ServiceTarget("rabbitmq-server.service", "broker"))
        is_results = bool(hv.get("qsetup_is_results")) and bool(common.get("qsetup_results"))
        if is_results:
            services.append(ServiceTarget(RESULTS_UNIT, "results"))
        firewall = hv.get("qsetup_firewall")
        if firewall is not None:
            services.append(ServiceTarget(FIREWALL_UNIT, "firewall"))
        primary = bool(hv.get("qsetup_is_broker_primary"))
        nodes = list(common.get("qsetup_broker_nodes") or ())
        return cls(
            host=host,
            files=files,
            dirs=tuple(
                DirTarget(str(d["path"]), str(d["mode"]), str(d["owner"]), str(d["group"]))
                for d in hv.get("qsetup_dirs", ())
            ),
            venvs=tuple(
                VenvTarget(str(v["name"]), str(v["path"]), str(v["marker"]), str(v["marker_sum"]))
                for v in hv.get("qsetup_venvs", ())
            ),
            code_dir=str(common["qsetup_code_dir"]) if hv.get("qsetup_ship_code") else None,
            code_sum=sums.get("app.tar"),
            os_users=tuple(str(u["user"]) for u in hv.get("qsetup_os_users", ())),
            os_groups=tuple(str(g) for g in hv.get("qsetup_os_groups", ())),
            services=tuple(services),
            worker_units=tuple(str(s["unit"]) for s in hv.get("qsetup_worker_services", ())),
            broker=broker_from_plan(common["qsetup_broker"]) if primary else None,
            broker_node=is_broker,
            cluster_size=max(1, len(nodes)),
            cluster_hosts=tuple(
                (str(n["address"]), (hostnames or {}).get(str(n["host"])) or None) for n in nodes
            )
            if is_broker and len(nodes) > 1
            else (),
            manifest=dict(hv.get("qsetup_manifest") or {}),
            firewall=FirewallTarget.from_plan(firewall) if firewall is not None else None,
            results=ResultsTarget.from_plan(common["qsetup_results"]) if is_results else None,
            epmd=tuple(str(a) for a in hv["qsetup_epmd"])
            if is_broker and hv.get("qsetup_epmd") is not None
            else None,
            queue_type=str(common["qsetup_queue_type"])
            if primary and common.get("qsetup_queue_type")
            else None,
            consumed_queues=tuple(
                ConsumedQueue(str(q["vhost"]), str(q["name"]), tuple(q["groups"]))
                for q in common.get("qsetup_consumed_queues") or ()
            )
            if primary
            else (),
        )


def broker_from_plan(wanted: Mapping[str, Any]) -> BrokerState:
    """The broker's desired state back from the plan's ``qsetup_broker`` variable."""
    return BrokerState(
        vhosts=tuple(wanted.get("vhosts") or ()),
        users=tuple(_account(u) for u in wanted.get("users") or ()),
        policies=tuple(
            BrokerPolicy(
                str(p["name"]),
                str(p["vhost"]),
                str(p["pattern"]),
                str(p["apply_to"]),
                int(p["priority"]),
                tuple((dict(p["definition"]) or {}).items()),
            )
            for p in wanted.get("policies") or ()
        ),
        delete_guest=bool(wanted.get("delete_guest")),
        port=int(wanted.get("port", 5672)),
        management_port=int(wanted.get("management_port", 15672)),
        admin_user=str(wanted.get("admin_user", "qsetup-admin")),
        admin_secret=str(wanted.get("admin_secret", "rabbitmq-user-qsetup-admin")),
    )


def _account(u: Mapping[str, Any]) -> BrokerAccount:
    tags: Sequence[str] | str = u.get("tags") or ()
    return BrokerAccount(
        name=str(u["name"]),
        secret=str(u["secret"]),
        tags=tuple(t for t in (tags.split(",") if isinstance(tags, str) else tags) if t),
        permissions=tuple(
            BrokerPermission(
                str(p["vhost"]), str(p["configure_priv"]), str(p["write_priv"]), str(p["read_priv"])
            )
            for p in u.get("permissions") or ()
        ),
        topic_permissions=tuple(
            BrokerTopicPermission(
                str(t["vhost"]), str(t["exchange"]), str(t["write_priv"]), str(t["read_priv"])
            )
            for t in u.get("topic_permissions") or ()
        ),
    )


def hosts_block(target: HostTarget, current: str | None) -> str | None:
    """The cluster's lines in /etc/hosts (between qsetup's markers), or None for no block.

    One line per node: ``<address> <hostname> [<short name>]`` (nodes reach each other as
    ``rabbit@<short hostname>``). A node whose hostname is unknown (its host is down) keeps
    its line from ``current``, the block the host holds now, so a node that is down for a
    while still resolves when it comes back.
    """
    if not target.cluster_hosts:
        return None
    kept = {line.split()[0]: line for line in (current or "").splitlines() if line.split()}
    lines = []
    for address, name in target.cluster_hosts:
        if name is None:
            if address in kept:
                lines.append(kept[address])
            continue
        short = f" {name.split('.')[0]}" if "." in name else ""
        lines.append(f"{address} {name}{short}")
    return "\n".join(lines)


def block_names(block: str | None) -> dict[str, str]:
    """The hostname each address has in a cluster block (:func:`hosts_block`'s lines)."""
    names: dict[str, str] = {}
    for line in (block or "").splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#"):
            names.setdefault(fields[0], fields[1])
    return names
