"""Node names: how a Celery worker's and a RabbitMQ node's names follow from a host.

Kept free of qsetup's other modules (and their imports) because the playbooks' filters
import it in every Ansible worker process that computes a node name.
"""

from __future__ import annotations

import re

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


def rabbit_node_name(hostname: str) -> str:
    """The RabbitMQ node name on a host that reports ``hostname`` (Debian: short names)."""
    return f"rabbit@{hostname.split('.')[0]}"
