"""The host firewall: which addresses may reach which of qsetup's ports, per host.

Computed once from the inventory (:func:`firewall_rules`) and rendered into one nftables
file per host (:func:`render_ruleset`): a table of qsetup's own, ``inet qsetup``, that
``nft -f`` replaces atomically without touching any other table (Docker's, ufw's). Its
input chain accepts loopback and established connections, lets each allowed source
reach its ports, and rejects every other source on the protected ports only; SSH and
every port qsetup does not list are left to the host's other rules (policy accept).

Imports only the standard library at run time: the playbooks' filter shim renders the
rules it loads (the union with what an earlier deploy allowed, then exactly these).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from qsetup.desired.epmd import EPMD_PORT

if TYPE_CHECKING:
    from qsetup.inventory.model import Inventory

TABLE = "qsetup"
"""The nftables table qsetup owns (family inet): ``table inet qsetup``."""
RULESET_PATH = "/etc/qsetup/firewall.nft"
FIREWALL_UNIT = "qsetup-firewall.service"
UNIT_PATH = f"/etc/systemd/system/{FIREWALL_UNIT}"
PACKAGE = "nftables"

DIST_PORT = 25672
DIST_PORT_OFFSET = 20000
PROMETHEUS_PORT = 15692

PLUGIN_PORTS: dict[str, tuple[tuple[int, str], ...]] = {
    "rabbitmq_stomp": ((61613, "STOMP"), (61614, "STOMPS")),
    "rabbitmq_mqtt": ((1883, "MQTT"), (8883, "MQTTS")),
    "rabbitmq_web_stomp": ((15674, "Web STOMP"), (15673, "Web STOMP over TLS")),
    "rabbitmq_web_mqtt": ((15675, "Web MQTT"), (15676, "Web MQTT over TLS")),
    "rabbitmq_stream": ((5552, "stream"), (5551, "stream over TLS")),
}
"""The client ports (RabbitMQ's defaults, plain and TLS) of the plugins that listen:
clients of any protocol may reach them as they may reach AMQP."""


@dataclass(frozen=True)
class PortRule:
    """One protected port and every address or network (CIDR) that may reach it."""

    port: int
    what: str
    """What listens there (``AMQP``, ``management API``, ...), for reports."""
    sources: tuple[str, ...]


@dataclass(frozen=True)
class HostFirewall:
    """The protected ports of one host; every other port is left alone."""

    host: str
    rules: tuple[PortRule, ...]

    @property
    def allowed(self) -> dict[int, tuple[str, ...]]:
        """Port -> sources, the shape the manifest records and the renderer reads."""
        out: dict[int, set[str]] = {}
        for rule in self.rules:
            out.setdefault(rule.port, set()).update(rule.sources)
        return {port: tuple(sorted(out[port], key=_source_key)) for port in sorted(out)}


def _source_key(source: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(source, strict=False)
    return net.version, int(net.network_address), net.prefixlen


def _sources(addresses: Iterable[str]) -> tuple[str, ...]:
    """Normalized, deduplicated, sorted; loopback dropped (always accepted)."""
    out = set()
    for address in addresses:
        net = ipaddress.ip_network(address, strict=False)
        if net.network_address.is_loopback:
            continue
        out.add(net.compressed if net.num_addresses > 1 else net.network_address.compressed)
    return tuple(sorted(out, key=_source_key))


def firewall_rules(inv: Inventory) -> dict[str, HostFirewall]:
    """Each broker, Flower and result backend host's protected ports and who may reach them.

    Empty when ``firewall.enabled`` is off. AMQP (AMQPS with TLS): the worker, beat and
    Flower hosts and ``broker.allow_from``; the management API: Flower's host and
    ``broker.allow_from``; Prometheus: ``broker.metrics_allow_from``; the ports of the
    messaging plugins in ``broker.plugins`` (STOMP, MQTT, streams): as AMQP; Erlang distribution
    and epmd: the cluster's other nodes (nobody on a single node); Flower's port:
    ``flower.allow_from``; the result backend's port: the worker, beat and Flower hosts,
    ``broker.allow_from`` (the app's servers) and ``results.allow_from``. Connections
    from the host itself are always accepted.
    """
    if not inv.firewall.enabled:
        return {}
    address = {name: host.address for name, host in inv.hosts.items()}
    broker, flower = inv.broker, inv.flower
    clients = [h for g in inv.workers for h in g.hosts]
    clients += list(inv.beat.hosts) if inv.beat is not None else []
    clients += [flower.host] if flower is not None else []
    amqp = _sources([*(address[h] for h in clients), *broker.allow_from])
    management = _sources(
        [*([address[flower.host]] if flower is not None else []), *broker.allow_from]
    )
    amqp_port = inv.tls.port if inv.tls.enabled else broker.port
    mgmt_port = inv.tls.management_port if inv.tls.enabled else broker.management_port
    rules: dict[str, list[PortRule]] = {}
    for node in broker.hosts:
        peers = _sources(address[h] for h in broker.hosts if h != node)
        node_rules = [
            PortRule(amqp_port, "AMQPS" if inv.tls.enabled else "AMQP", amqp),
            PortRule(mgmt_port, "management API", management),
            PortRule(EPMD_PORT, "epmd", peers),
        ]
        for dist in sorted({DIST_PORT, broker.port + DIST_PORT_OFFSET}):
            node_rules.append(PortRule(dist, "Erlang distribution", peers))
        # Listed in broker.plugins without broker.metrics, Prometheus listens all the same.
        if broker.metrics or "rabbitmq_prometheus" in broker.plugins:
            node_rules.append(
                PortRule(PROMETHEUS_PORT, "Prometheus", _sources(broker.metrics_allow_from))
            )
        for plugin in broker.plugins:
            node_rules.extend(PortRule(p, what, amqp) for p, what in PLUGIN_PORTS.get(plugin, ()))
        rules[node] = node_rules
    if flower is not None:
        rules.setdefault(flower.host, []).append(
            PortRule(flower.port, "Flower", _sources(flower.allow_from))
        )
    results = inv.results
    if results is not None:
        # Celery's clients, and the app servers that send tasks (and read their results).
        readers = [address[h] for h in clients]
        readers += [*broker.allow_from, *results.allow_from]
        rules.setdefault(results.host, []).append(
            PortRule(results.port, "result backend", _sources(readers))
        )
    # A host's own address reaches it over loopback, which is always accepted.
    out = {}
    for host, host_rules in rules.items():
        own = set(_sources([address[host]]))
        kept = (
            replace(r, sources=tuple(x for x in r.sources if x not in own))
            for r in sorted(host_rules, key=lambda x: x.port)
        )
        out[host] = HostFirewall(host, tuple(kept))
    return out


def merge_allowed(*allowed: Mapping[int, Iterable[str]]) -> dict[int, tuple[str, ...]]:
    """The union of several port -> sources maps (what stays open while clients move)."""
    out: dict[int, set[str]] = {}
    for one in allowed:
        for port, sources in one.items():
            out.setdefault(int(port), set()).update(sources)
    return {port: _sources(out[port]) for port in sorted(out)}


def allowed_from_record(record: object) -> dict[int, tuple[str, ...]]:
    """Port -> sources back from the manifest's ``firewall`` entry (ignoring junk)."""
    out: dict[int, tuple[str, ...]] = {}
    if not isinstance(record, Mapping):
        return out
    for port, sources in record.items():
        try:
            number = int(port)
            valid = [str(s) for s in sources if ipaddress.ip_network(str(s), strict=False)]
        except (TypeError, ValueError):
            continue
        if 0 < number < 65536:
            out[number] = _sources(valid)
    return out


def render_ruleset(allowed: Mapping[int, Iterable[str]]) -> str:
    """The nftables file that replaces ``table inet qsetup`` with these rules (atomic).

    The first two commands make sure the table exists, then delete it, so that loading
    the file replaces exactly this table in one transaction, whatever was in it.
    """
    allowed = merge_allowed(allowed)
    by_source: dict[str, list[int]] = {}
    for port, sources in allowed.items():
        for source in sources:
            by_source.setdefault(source, []).append(port)
    lines = [
        "# Managed by qsetup (firewall.enabled); changes here are overwritten on the next deploy.",
        f"# nft -f replaces table inet {TABLE} only; other tables stay as they are.",
        f"table inet {TABLE} {{}}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy accept;",
        '\t\tiif "lo" accept',
        "\t\tct state established,related accept",
    ]
    for source in sorted(by_source, key=_source_key):
        family = "ip6" if ":" in source else "ip"
        ports = ", ".join(str(p) for p in sorted(by_source[source]))
        lines.append(f"\t\t{family} saddr {source} tcp dport {{ {ports} }} accept")
    if allowed:
        ports = ", ".join(str(p) for p in allowed)
        lines.append(f"\t\ttcp dport {{ {ports} }} reject with tcp reset")
    lines += ["\t}", "}", ""]
    return "\n".join(lines)


UNIT_TEXT = f"""\
# Managed by qsetup (firewall.enabled); changes here are overwritten on the next deploy.
[Unit]
Description=qsetup's firewall (nftables table inet {TABLE})
DefaultDependencies=no
Wants=network-pre.target
Before=network-pre.target shutdown.target rabbitmq-server.service epmd.socket
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f {RULESET_PATH}
ExecReload=/usr/sbin/nft -f {RULESET_PATH}
ExecStop=-/usr/sbin/nft delete table inet {TABLE}

[Install]
WantedBy=sysinit.target
"""
"""The oneshot unit that loads the table at boot (before RabbitMQ and epmd listen)."""


def sha1(text: str) -> str:
    """The checksum the read reports for a file holding ``text``."""
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - Ansible's checksum
