"""Cross-section checks: what no single field can see, checked on the whole inventory.

Names one section uses and another declares (hosts, vhosts, broker users), rights, secret
names, worker node names, addresses and ports. ``check_references`` returns a
(field path, message) pair per problem; the loader turns the path into FILE:LINE:COL.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

from qsetup.inventory.compat import compat_problems
from qsetup.inventory.fields import (
    ADMIN_SECRET,
    DIST_PORT_OFFSET,
    EPMD_PORT,
    PROMETHEUS_PORT,
    RESERVED_BROKER_USERS,
    SECRET_NAME_RE,
    is_loopback,
    normalize_address,
)
from qsetup.inventory.model import BrokerUser, Inventory, WorkerGroup, managed_results

FieldPath = tuple[str | int, ...]
Problems = list[tuple[FieldPath, str]]


def grants(regex: str) -> bool:
    """False for a permission regex that grants nothing ('' or '^$', RabbitMQ's "no rights")."""
    return regex.strip() not in ("", "^$")


def has_rights(user: BrokerUser, vhost: str) -> bool:
    """True when the user may configure, write and read something on the vhost."""
    return any(
        p.vhost == vhost and grants(p.configure) and grants(p.write) and grants(p.read)
        for p in user.effective_permissions
    )


def secret_names(inv: Inventory) -> list[tuple[tuple[str | int, ...], str]]:
    """Every secret the inventory refers to, with the field path that names it."""
    names: list[tuple[tuple[str | int, ...], str]] = [
        (("broker", "erlang_cookie_secret"), inv.broker.erlang_cookie_secret)
    ]
    for i, user in enumerate(inv.broker.users):
        names.append((("broker", "users", i, "password_secret"), user.secret))
    if inv.flower is not None:
        for i, fuser in enumerate(inv.flower.basic_auth):
            names.append((("flower", "basic_auth", i, "password_secret"), fuser.secret))
        names.append((("flower", "broker_api_password_secret"), inv.flower.broker_api_secret))
    if inv.results is not None:
        for kind in ("workers", "app", "beat", "flower"):
            if kind == "beat" and inv.beat is None or kind == "flower" and inv.flower is None:
                continue
            names.append((("results", "host"), f"results-user-{kind}"))
    return names


def check_references(inv: Inventory) -> list[tuple[tuple[str | int, ...], str]]:
    """Cross-check names between sections; return (field path, message) per problem."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    declared = set(inv.hosts)
    hint = ", ".join(sorted(declared))

    def need_host(path: tuple[str | int, ...], name: str) -> None:
        if name not in declared:
            problems.append((path, f"host '{name}' is not declared under hosts (declared: {hint})"))

    vhosts = set(inv.broker.vhosts)

    def need_vhost(path: tuple[str | int, ...], vhost: str) -> None:
        if vhost not in vhosts:
            problems.append((path, f"vhost '{vhost}' is not listed under broker.vhosts"))

    if inv.broker.cluster is None:
        need_host(("broker", "host"), inv.broker.host)
    for i, node in enumerate(inv.broker.cluster or ()):
        need_host(("broker", "hosts", i), node)
    if inv.beat is not None and inv.beat.standby is None:
        need_host(("beat", "host"), inv.beat.host)
    if inv.beat is not None and inv.beat.standby is not None:
        for i, name in enumerate(inv.beat.standby):
            need_host(("beat", "hosts", i), name)
        if not managed_results(inv):
            why = (
                "app.result_backend is set (the lock needs qsetup's own backend)"
                if inv.results is not None
                else "add results: {host: NAME}"
            )
            problems.append(
                (
                    ("beat", "hosts"),
                    "a standby beat keeps its lock in the managed result backend; "
                    f"{why}, or use beat.host for one beat",
                )
            )
    if inv.flower is not None:
        need_host(("flower", "host"), inv.flower.host)
    if inv.results is not None:
        need_host(("results", "host"), inv.results.host)

    seen_users: set[str] = set()
    for i, user in enumerate(inv.broker.users):
        if user.name in seen_users:
            problems.append((("broker", "users", i, "name"), f"user '{user.name}' is listed twice"))
        seen_users.add(user.name)
        if user.name in RESERVED_BROKER_USERS:
            problems.append((("broker", "users", i, "name"), RESERVED_BROKER_USERS[user.name]))
        if user.vhost is not None:
            need_vhost(("broker", "users", i, "vhost"), user.vhost)
        for j, perm in enumerate(user.permissions or ()):
            need_vhost(("broker", "users", i, "permissions", j, "vhost"), perm.vhost)
        for j, tperm in enumerate(user.topic_permissions):
            need_vhost(("broker", "users", i, "topic_permissions", j, "vhost"), tperm.vhost)
    if len(set(inv.broker.vhosts)) != len(inv.broker.vhosts):
        problems.append((("broker", "vhosts"), "a vhost is listed twice"))
    seen_policies: set[tuple[str, str]] = set()
    for i, pol in enumerate(inv.broker.policies):
        need_vhost(("broker", "policies", i, "vhost"), pol.vhost)
        if (pol.name, pol.vhost) in seen_policies:
            problems.append(
                (("broker", "policies", i, "name"), f"policy '{pol.name}' is listed twice")
            )
        seen_policies.add((pol.name, pol.vhost))

    need_vhost(("app", "vhost"), inv.app.vhost)
    users = {u.name: u for u in inv.broker.users}
    if inv.app.broker_user not in users:
        problems.append(
            (
                ("app", "broker_user"),
                f"broker user '{inv.app.broker_user}' is not listed under broker.users",
            )
        )
    if inv.flower is not None:
        for i, user in enumerate(inv.broker.users):
            if user.name == inv.flower.broker_api_user:
                problems.append(
                    (
                        ("broker", "users", i, "name"),
                        f"'{user.name}' is created by qsetup for Flower (flower.broker_api_user); "
                        "remove it from broker.users",
                    )
                )

    seen_groups: set[str] = set()
    for i, group in enumerate(inv.workers):
        if group.name in seen_groups:
            problems.append(
                (("workers", i, "name"), f"worker group '{group.name}' is listed twice")
            )
        seen_groups.add(group.name)
        for j, host in enumerate(group.hosts):
            need_host(("workers", i, "hosts", j), host)
        if len(set(group.hosts)) != len(group.hosts):
            problems.append((("workers", i, "hosts"), "a host is listed twice"))
        user_name = group.broker_user or inv.app.broker_user
        vhost = group.vhost or inv.app.vhost
        group_user = users.get(user_name)
        if group.broker_user is not None and group_user is None:
            problems.append(
                (
                    ("workers", i, "broker_user"),
                    f"broker user '{user_name}' is not listed under broker.users",
                )
            )
        elif group_user is not None and vhost in vhosts and not has_rights(group_user, vhost):
            where: tuple[str | int, ...] = (
                ("workers", i, "broker_user") if group.broker_user else ("app", "broker_user")
            )
            problems.append(
                (
                    where,
                    f"broker user '{user_name}' has no rights on vhost '{vhost}' "
                    f"(worker group '{group.name}'); give it permissions there",
                )
            )
        if group.vhost is not None:
            need_vhost(("workers", i, "vhost"), group.vhost)
    _check_app_user_rights(inv, problems)
    _check_duplicate_rights(inv, problems)
    _check_secret_names(inv, problems)
    _check_node_names(inv, problems)
    _check_addresses(inv, problems)
    _check_ports(inv, problems)
    _check_firewall(inv, problems)
    problems += compat_problems(inv)
    return problems


def _check_app_user_rights(inv: Inventory, problems: Problems) -> None:
    """Beat and Flower connect as app.broker_user to app.vhost: it needs rights there."""
    users = {u.name: u for u in inv.broker.users}
    user = users.get(inv.app.broker_user)
    who = [name for name, part in (("beat", inv.beat), ("Flower", inv.flower)) if part is not None]
    if not who or user is None or inv.app.vhost not in inv.broker.vhosts:
        return
    if has_rights(user, inv.app.vhost) or any(p == ("app", "broker_user") for p, _ in problems):
        return
    problems.append(
        (
            ("app", "broker_user"),
            f"broker user '{user.name}' has no rights on vhost '{inv.app.vhost}' "
            f"({' and '.join(who)} connect{'s' if len(who) == 1 else ''} as app.broker_user); "
            "give it permissions there",
        )
    )


def _check_duplicate_rights(inv: Inventory, problems: Problems) -> None:
    for i, user in enumerate(inv.broker.users):
        first_perm: dict[str, int] = {}
        for j, perm in enumerate(user.permissions or ()):
            if perm.vhost in first_perm:
                problems.append(
                    (
                        ("broker", "users", i, "permissions", j, "vhost"),
                        f"user '{user.name}' already has permissions on vhost '{perm.vhost}' "
                        f"(permissions[{first_perm[perm.vhost]}]); merge them into one entry",
                    )
                )
            first_perm.setdefault(perm.vhost, j)
        first_topic: dict[tuple[str, str], int] = {}
        for j, tperm in enumerate(user.topic_permissions):
            key = (tperm.vhost, tperm.exchange)
            if key in first_topic:
                problems.append(
                    (
                        ("broker", "users", i, "topic_permissions", j, "vhost"),
                        f"user '{user.name}' already has topic permissions on exchange "
                        f"'{tperm.exchange}' in vhost '{tperm.vhost}' "
                        f"(topic_permissions[{first_topic[key]}]); merge them into one entry",
                    )
                )
            first_topic.setdefault(key, j)


class _SecretOwner(NamedTuple):
    secret: str
    name: str
    name_field: FieldPath
    secret_field: FieldPath | None  # None: the default name, derived from the user's name
    who: str


def _secret_owners(inv: Inventory) -> list[_SecretOwner]:
    owners: list[_SecretOwner] = []
    flower = inv.flower
    if flower is not None:
        # First, so a broker user whose default secret collides with it is the one named.
        owners.append(
            _SecretOwner(
                flower.broker_api_secret,
                flower.broker_api_user,
                ("flower", "broker_api_user"),
                ("flower", "broker_api_password_secret")
                if flower.broker_api_password_secret
                else None,
                f"Flower's broker user '{flower.broker_api_user}'",
            )
        )
    for i, user in enumerate(inv.broker.users):
        if user.name not in RESERVED_BROKER_USERS:  # refused by name already
            owners.append(
                _SecretOwner(
                    user.secret,
                    user.name,
                    ("broker", "users", i, "name"),
                    ("broker", "users", i, "password_secret") if user.password_secret else None,
                    f"user '{user.name}'",
                )
            )
    if flower is not None:
        for i, fuser in enumerate(flower.basic_auth):
            owners.append(
                _SecretOwner(
                    fuser.secret,
                    fuser.name,
                    ("flower", "basic_auth", i, "name"),
                    ("flower", "basic_auth", i, "password_secret")
                    if fuser.password_secret
                    else None,
                    f"Flower user '{fuser.name}'",
                )
            )
    return owners


def _check_secret_names(inv: Inventory, problems: Problems) -> None:
    """Default secret names must be valid and distinct; some secrets must not be shared."""
    if inv.flower is not None:
        first: dict[str, int] = {}
        for i, fuser in enumerate(inv.flower.basic_auth):
            if fuser.name in first:
                problems.append(
                    (
                        ("flower", "basic_auth", i, "name"),
                        f"Flower user '{fuser.name}' is listed twice",
                    )
                )
            first.setdefault(fuser.name, i)
    owners = _secret_owners(inv)
    defaults: dict[str, _SecretOwner] = {}
    for owner in owners:
        if owner.secret_field is None and not re.fullmatch(SECRET_NAME_RE, owner.secret):
            problems.append(
                (
                    owner.name_field,
                    f"the default secret name of {owner.who}, '{owner.secret}', is not a valid "
                    "secret name (lowercase letters, digits, '_', '.' and '-', at most 63); set "
                    "password_secret to one that is",
                )
            )
        elif owner.secret == ADMIN_SECRET:
            problems.append(
                (
                    owner.secret_field or owner.name_field,
                    f"'{ADMIN_SECRET}' holds the password of qsetup's own broker administrator; "
                    f"give {owner.who} another secret",
                )
            )
        elif owner.secret_field is None:
            other = defaults.setdefault(owner.secret, owner)
            if other is not owner and other.name != owner.name:  # same name: refused already
                problems.append(
                    (
                        owner.name_field,
                        f"{owner.who} would share the secret '{owner.secret}' with {other.who} "
                        "(default secret names are lowercased); set password_secret for one of "
                        "them",
                    )
                )
    cookie = inv.broker.erlang_cookie_secret
    if any(owner.secret == cookie for owner in owners):
        problems.append(
            (
                ("broker", "erlang_cookie_secret"),
                f"'{cookie}' is also a password here; the Erlang cookie gives full control of the "
                "broker, so give it a secret of its own",
            )
        )


def _node_name_path(i: int, group: WorkerGroup) -> FieldPath:
    return ("workers", i, "node_name") if group.node_name else ("workers", i, "name")


def _check_node_names(inv: Inventory, problems: Problems) -> None:
    """No two worker nodes may share a name (per host when the pattern names the host)."""
    taken: dict[tuple[str, str], tuple[str, str]] = {}
    for i, group in enumerate(inv.workers):
        pattern = group.node_pattern
        per_host = "%h" in pattern or "%n" in pattern
        names = [pattern.replace("%i", str(n)) for n in range(1, group.instances + 1)]
        clash: str | None = None
        for host in dict.fromkeys(group.hosts):
            for name in names:
                key = (host if per_host else "", name)
                other = taken.get(key)
                if other is not None and other[0] != group.name and clash is None:
                    where = f" on host '{host}'" if per_host else ""
                    clash = (
                        f"node '{name}'{where} would also be a node of worker group "
                        f"'{other[0]}'; give each group its own node_name"
                    )
                taken.setdefault(key, (group.name, host))
        if clash:
            problems.append((_node_name_path(i, group), clash))


def _ssh_port(inv: Inventory, name: str) -> tuple[int, FieldPath, bool]:
    host = inv.hosts[name]
    if host.ssh_port is not None:
        return host.ssh_port, ("hosts", name, "ssh_port"), True
    return inv.ssh.port, ("ssh", "port"), "port" in inv.ssh.model_fields_set


def _check_addresses(inv: Inventory, problems: Problems) -> None:
    seen: dict[tuple[str, int], str] = {}
    for name, host in inv.hosts.items():
        port = _ssh_port(inv, name)[0]
        key = (normalize_address(host.address), port)
        if key in seen:
            problems.append(
                (
                    ("hosts", name, "address"),
                    f"host '{name}' has the same address and SSH port as host '{seen[key]}' "
                    f"({host.address}, port {port}); one machine is one host: list its roles "
                    "under one name",
                )
            )
        seen.setdefault(key, name)

    for node in inv.broker.hosts:
        _check_broker_reach(inv, node, problems)


def _check_broker_reach(inv: Inventory, node: str, problems: Problems) -> None:
    """A broker node's listener and address must be reachable by its clients elsewhere."""
    broker = inv.broker
    if node not in inv.hosts:
        return
    clients = [h for g in inv.workers for h in g.hosts]
    clients += list(inv.beat.hosts) if inv.beat is not None else []
    clients += [inv.flower.host] if inv.flower is not None else []
    address = inv.hosts[node].address
    # Clients on hosts reached through loopback (SSH port forwards) may be this machine:
    # only a client host with an address of its own is surely elsewhere.
    remote = sorted(
        {
            h
            for h in clients
            if h != node
            and h in inv.hosts
            and not is_loopback(inv.hosts[h].address)
            and normalize_address(inv.hosts[h].address) != normalize_address(address)
        }
    )
    others = ", ".join(remote[:3]) + (" ..." if len(remote) > 3 else "")
    if is_loopback(broker.listen_address):
        if remote:
            problems.append(
                (
                    ("broker", "listen_address"),
                    f"RabbitMQ would listen on loopback only, but clients on {others} reach it "
                    "over the network; use 0.0.0.0 or the broker host's address",
                )
            )
        elif not is_loopback(address):
            problems.append(
                (
                    ("broker", "listen_address"),
                    f"RabbitMQ would listen on loopback only, but its clients connect to "
                    f"{address}; use 0.0.0.0 or {address}",
                )
            )
    if is_loopback(address) and remote:
        problems.append(
            (
                ("hosts", node, "address"),
                f"the broker's address {address} is loopback, but clients on {others} connect "
                "to it from other machines; use an address they can reach",
            )
        )


PLUGIN_PORTS = {
    "rabbitmq_mqtt": 1883,
    "rabbitmq_stomp": 61613,
    "rabbitmq_stream": 5552,
    "rabbitmq_web_mqtt": 15675,
    "rabbitmq_web_stomp": 15674,
    "rabbitmq_prometheus": 15692,
}
"""Ports the plugins qsetup leaves at their defaults listen on."""


def _check_ports(inv: Inventory, problems: Problems) -> None:
    """No two services (sshd, RabbitMQ's listeners, Flower) on one port of one host."""
    broker, flower = inv.broker, inv.flower
    for name in inv.hosts:
        # (port, what, field, written in the inventory)
        ssh_port, ssh_path, ssh_explicit = _ssh_port(inv, name)
        claims: list[tuple[int, str, FieldPath, bool]] = [
            (ssh_port, "the SSH port", ssh_path, ssh_explicit)
        ]
        if name in broker.hosts:
            explicit = "port" in broker.model_fields_set
            node_path: FieldPath = (
                ("broker", "host") if broker.cluster is None else ("broker", "hosts")
            )
            claims += [
                (EPMD_PORT, "RabbitMQ's epmd port (fixed)", node_path, False),
                (broker.port, "RabbitMQ's AMQP port", ("broker", "port"), explicit),
                (
                    broker.port + DIST_PORT_OFFSET,
                    f"RabbitMQ's inter-node port (AMQP port + {DIST_PORT_OFFSET})",
                    ("broker", "port"),
                    explicit,
                ),
                (
                    broker.management_port,
                    "RabbitMQ's management port",
                    ("broker", "management_port"),
                    "management_port" in broker.model_fields_set,
                ),
            ]
            if inv.tls.enabled:
                tls = inv.tls
                claims += [
                    (tls.port, "RabbitMQ's AMQPS port", ("tls", "port"), True),
                    (tls.management_port, "RabbitMQ's HTTPS management port",
                     ("tls", "management_port"), True),
                ]  # fmt: skip
            if broker.metrics:
                claims.append(
                    (PROMETHEUS_PORT, "rabbitmq_prometheus's port", ("broker", "metrics"), False)
                )
            for j, plugin in enumerate(broker.plugins):
                if plugin == "rabbitmq_prometheus" and broker.metrics:
                    continue
                if plugin in PLUGIN_PORTS and plugin not in broker.plugins[:j]:
                    claims.append(
                        (PLUGIN_PORTS[plugin], f"{plugin}'s port", ("broker", "plugins", j), True)
                    )
        if flower is not None and name == flower.host:
            claims.append(
                (
                    flower.port,
                    "Flower's port",
                    ("flower", "port"),
                    "port" in flower.model_fields_set,
                )
            )
        if inv.results is not None and name == inv.results.host:
            claims.append(
                (
                    inv.results.port,
                    "the result backend's port",
                    ("results", "port"),
                    "port" in inv.results.model_fields_set,
                )
            )
        taken: dict[int, tuple[int, str, FieldPath, bool]] = {}
        for claim in claims:
            port, what, path, explicit = claim
            first = taken.setdefault(port, claim)
            if first is claim:
                continue
            where = path if explicit or not first[3] else first[2]
            problems.append(
                (
                    where,
                    f"port {port} on host '{name}' would be both {first[1]} and {what}; "
                    "change one of them",
                )
            )


def _check_firewall(inv: Inventory, problems: Problems) -> None:
    """The firewall allows hosts by address: each must be an IP address, not a DNS name.

    A name would be resolved when the rules load (at boot, maybe before DNS answers);
    qsetup refuses it instead of loading rules that lock a host's own workers out.
    """
    # (with the firewall on, every host's address is checked below)
    if inv.results is not None and inv.results.host in inv.hosts and not inv.firewall.enabled:
        address = inv.hosts[inv.results.host].address
        try:
            ipaddress.ip_address(address)
        except ValueError:
            problems.append(
                (
                    ("hosts", inv.results.host, "address"),
                    f"{address} is a DNS name, but the result backend binds to its host's IP "
                    "address; give the host's IP address here",
                )
            )
    if inv.broker.cluster is not None and not inv.firewall.enabled:
        for name in (n for n in inv.broker.hosts if n in inv.hosts):
            address = inv.hosts[name].address
            try:
                ipaddress.ip_address(address)
            except ValueError:
                problems.append(
                    (
                        ("hosts", name, "address"),
                        f"{address} is a DNS name, but a cluster node's epmd and /etc/hosts "
                        "lines need its IP address; give the host's IP address here",
                    )
                )
    if not inv.firewall.enabled:
        return
    for name, host in inv.hosts.items():
        try:
            ipaddress.ip_address(host.address)
        except ValueError:
            problems.append(
                (
                    ("hosts", name, "address"),
                    f"{host.address} is a DNS name, but firewall.enabled allows hosts by IP "
                    "address; give the host's IP address here (or set firewall.enabled: false)",
                )
            )
