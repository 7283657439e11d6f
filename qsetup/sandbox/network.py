"""The private bridge, one network namespace and veth pair per host.

Nothing here turns on forwarding or NAT: hosts reach only the bridge (and the
proxy listening on it).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Any

from qsetup.errors import SandboxError
from qsetup.sandbox.procs import run

DEFAULT_SUBNET = "10.213.7.0/24"
BRIDGE = "qsbr0"
FIRST_HOST_OFFSET = 11
IFNAME_MAX = 15


def sandbox_subnet() -> ipaddress.IPv4Network:
    """Return the sandbox's /24 (``QSETUP_SANDBOX_SUBNET`` overrides the default).

    Raises:
        SandboxError: the override is not a private IPv4 /24.
    """
    text = os.environ.get("QSETUP_SANDBOX_SUBNET", DEFAULT_SUBNET)
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise SandboxError(
            f"QSETUP_SANDBOX_SUBNET={text!r} is not an IPv4 network ({exc}); "
            "set it to a private /24 such as 10.213.8.0/24"
        ) from None
    if net.prefixlen != 24 or not net.is_private:
        raise SandboxError(
            f"QSETUP_SANDBOX_SUBNET={text!r} must be a private /24 such as 10.213.8.0/24"
        )
    return net


def bridge_name() -> str:
    """Return the bridge name (``QSETUP_SANDBOX_BRIDGE`` overrides ``qsbr0``).

    Raises:
        SandboxError: the override is not a short interface name.
    """
    name = os.environ.get("QSETUP_SANDBOX_BRIDGE", BRIDGE)
    if not re.fullmatch(r"[a-z][a-z0-9]{0,14}", name):
        raise SandboxError(
            f"QSETUP_SANDBOX_BRIDGE={name!r} is not a valid interface name; use up to 15 "
            "lowercase letters and digits, e.g. qsbr1"
        )
    return name


def bridge_address(net: ipaddress.IPv4Network) -> str:
    """Return the bridge's address (``.1``) in ``net``."""
    return str(net.network_address + 1)


def host_address(net: ipaddress.IPv4Network, index: int) -> str:
    """Return the address of the ``index``-th host (0-based): ``.11``, ``.12``, ...

    Raises:
        SandboxError: the subnet has no room for that many hosts.
    """
    offset = FIRST_HOST_OFFSET + index
    if offset > 254:
        raise SandboxError(f"at most {255 - FIRST_HOST_OFFSET} sandbox hosts fit in {net}")
    return str(net.network_address + offset)


def interface_names(name: str) -> tuple[str, str, str]:
    """Return (netns, bridge-side veth, namespace-side veth) names for host ``name``."""
    names = (f"qs-{name}", f"qsv-{name}", f"qsp-{name}")
    for ifname in names[1:]:
        if len(ifname) > IFNAME_MAX:
            raise SandboxError(
                f"host name {name!r} is too long for an interface name; use at most 10 characters"
            )
    return names


def _ip_json(*args: str) -> list[dict[str, Any]]:
    proc = run(["ip", "-j", *args], timeout=15)
    data = json.loads(proc.stdout or "[]")
    return data if isinstance(data, list) else []


def find_subnet_conflicts(net: ipaddress.IPv4Network, bridge: str) -> list[str]:
    """Return descriptions of addresses or routes on the machine that overlap ``net``.

    Addresses and routes on our own ``bridge`` are not conflicts.
    """
    conflicts: list[str] = []
    for link in _ip_json("-4", "addr", "show"):
        ifname = str(link.get("ifname", "?"))
        if ifname == bridge:
            continue
        for info in link.get("addr_info", []) or []:
            local = info.get("local")
            plen = info.get("prefixlen", 32)
            if local is None:
                continue
            other = ipaddress.IPv4Network(f"{local}/{plen}", strict=False)
            if other.overlaps(net):
                conflicts.append(f"address {local}/{plen} on {ifname}")
    for route in _ip_json("-4", "route", "show", "table", "all"):
        dst = str(route.get("dst", ""))
        dev = str(route.get("dev", ""))
        if dev == bridge or dst in ("", "default") or route.get("type") in ("broadcast", "local"):
            continue
        try:
            other = ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False)
        except ValueError:
            continue
        if other.overlaps(net):
            conflicts.append(f"route {dst} via {dev or '?'}")
    return conflicts


def link_exists(ifname: str) -> bool:
    """Return whether a network interface of that name exists on the machine."""
    return Path("/sys/class/net", ifname).exists()


def netns_exists(netns: str) -> bool:
    """Return whether ``/run/netns/<netns>`` exists."""
    return Path("/run/netns", netns).exists()


def create_bridge(bridge: str, address: str) -> None:
    """Create the bridge with ``address``/24 and bring it up (idempotent)."""
    if not link_exists(bridge):
        run(["ip", "link", "add", bridge, "type", "bridge"], timeout=15)
    have = {
        info.get("local")
        for link in _ip_json("-4", "addr", "show", "dev", bridge)
        for info in (link.get("addr_info", []) or [])
    }
    if address not in have:
        run(["ip", "addr", "add", f"{address}/24", "dev", bridge], timeout=15)
    run(["ip", "link", "set", bridge, "up"], timeout=15)


def create_host_network(
    netns: str, veth_host: str, veth_peer: str, bridge: str, address: str, gateway: str
) -> None:
    """Create the host's namespace and veth pair and configure ``eth0`` inside it.

    eth0 gets ``address``/24 and a default route via ``gateway`` (the bridge); as the
    machine does not forward, that route leads nowhere beyond the bridge.
    """
    if link_exists(veth_host):
        # Names are per host, not per sandbox: a link on another bridge means another
        # sandbox (other state dir) uses this host name, and joining it would break both.
        info = _ip_json("link", "show", veth_host)
        master = info[0].get("master") if info else None
        if master not in (None, bridge):
            raise SandboxError(
                f"host name {netns.removeprefix('qs-')!r} is in use by another sandbox "
                f"(link {veth_host} is on bridge {master}); pick other names with --names"
            )
    if not netns_exists(netns):
        run(["ip", "netns", "add", netns], timeout=15)
    if not link_exists(veth_host):
        run(
            ["ip", "link", "add", veth_host, "type", "veth", "peer", "name", veth_peer],
            timeout=15,
        )
        run(["ip", "link", "set", veth_peer, "netns", netns], timeout=15)
        run(["ip", "-n", netns, "link", "set", veth_peer, "name", "eth0"], timeout=15)
    run(["ip", "link", "set", veth_host, "master", bridge, "up"], timeout=15)
    run(["ip", "-n", netns, "link", "set", "lo", "up"], timeout=15)
    run(["ip", "-n", netns, "addr", "replace", f"{address}/24", "dev", "eth0"], timeout=15)
    run(["ip", "-n", netns, "link", "set", "eth0", "up"], timeout=15)
    run(["ip", "-n", netns, "route", "replace", "default", "via", gateway], timeout=15)


def delete_host_network(netns: str, veth_host: str) -> list[str]:
    """Delete the host's veth pair and namespace; return what could not be deleted."""
    problems: list[str] = []
    if link_exists(veth_host):
        proc = run(["ip", "link", "delete", veth_host], timeout=15, check=False)
        if proc.returncode != 0 and link_exists(veth_host):
            problems.append(f"link {veth_host}: {proc.stderr.strip()}")
    if netns_exists(netns):
        proc = run(["ip", "netns", "delete", netns], timeout=15, check=False)
        if proc.returncode != 0 and netns_exists(netns):
            problems.append(f"namespace {netns}: {proc.stderr.strip()}")
    return problems


def netns_pids(netns: str) -> list[int]:
    """Return PIDs of processes living in namespace ``netns`` (empty if none or gone)."""
    if not netns_exists(netns):
        return []
    proc = run(["ip", "netns", "pids", netns], timeout=15, check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def delete_bridge(bridge: str) -> list[str]:
    """Delete the bridge; return what could not be deleted."""
    if not link_exists(bridge):
        return []
    proc = run(["ip", "link", "delete", bridge], timeout=15, check=False)
    if proc.returncode != 0 and link_exists(bridge):
        return [f"bridge {bridge}: {proc.stderr.strip()}"]
    return []
