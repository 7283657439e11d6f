"""Where epmd, Erlang's port mapper on a broker node, listens.

Debian's RabbitMQ starts epmd through socket activation (``epmd.socket``, wanted by
``rabbitmq-server.service``, on Debian 12 and 13), which listens on every address.
qsetup's drop-in on that socket binds it to the addresses that need it instead:

- 127.0.0.1, where the node registers itself (Erlang's ``erl_epmd`` registers on IPv4
  loopback);
- what the host's own name resolves to there: ``rabbitmqctl`` reaches the node as
  ``rabbit@<short hostname>`` and asks epmd at that name's address (Debian's /etc/hosts
  often maps it to 127.0.1.1). A fact of the host: the one read reports it, and the
  comparison (``converge.compare.epmd_dropin``) adds it to the list;
- in a cluster, the node's inventory address, where the other nodes ask.

Imports only the standard library at run time: the playbooks' filter shim renders the
drop-in from the desired addresses and the read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qsetup.inventory.model import Inventory

EPMD_PORT = 4369
DROPIN_PATH = "/etc/systemd/system/epmd.socket.d/qsetup-bind.conf"
LOOPBACK = "127.0.0.1"


def epmd_addresses(inv: Inventory) -> dict[str, tuple[str, ...]]:
    """The addresses epmd listens on per broker node, before the host's name is known.

    Loopback on every node; a cluster's node also its inventory address (its peers ask
    there). A single node needs no outside address.
    """
    nodes = inv.broker.hosts
    clustered = len(nodes) > 1
    return {
        node: (LOOPBACK, inv.hosts[node].address) if clustered else (LOOPBACK,) for node in nodes
    }


def bind_addresses(desired: Iterable[str], resolved: Iterable[str]) -> tuple[str, ...]:
    """The desired addresses, then what the host's name resolves to, each once."""
    out: list[str] = []
    for address in [*desired, *sorted(resolved)]:
        normal = str(ipaddress.ip_address(address))
        if normal not in out:
            out.append(normal)
    return tuple(out)


def render_dropin(addresses: Iterable[str]) -> str:
    """The socket's drop-in: Debian's wildcard ``ListenStream`` reset, then each address.

    ``FreeBind=yes``: the socket binds at boot even before the network has set up the
    node's address.
    """
    lines = [
        "# qsetup: epmd listens only where the node's name, its peers and loopback reach it",
        "[Socket]",
        "ListenStream=",
    ]
    for address in addresses:
        host = f"[{address}]" if ":" in address else address
        lines.append(f"ListenStream={host}:{EPMD_PORT}")
    lines.append("FreeBind=yes")
    return "\n".join(lines) + "\n"
