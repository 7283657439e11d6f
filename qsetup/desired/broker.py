"""The broker's objects as deploy sets them up: plain values, standard library only.

``state.broker_state`` builds them from the inventory; ``converge`` compares the broker
with them. Kept apart from ``state`` (which imports the inventory's pydantic models) so
the playbooks' filters can run the comparison in an Ansible worker without pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NO_RIGHTS = "^$"
"""RabbitMQ's "matches nothing" pattern."""

PolicyValue = str | int | bool


@dataclass(frozen=True)
class BrokerPermission:
    """A user's configure/write/read rights on one vhost."""

    vhost: str
    configure: str
    write: str
    read: str


@dataclass(frozen=True)
class BrokerTopicPermission:
    """A user's write/read rights on one topic exchange of one vhost."""

    vhost: str
    exchange: str
    write: str
    read: str


@dataclass(frozen=True)
class BrokerAccount:
    """A broker user as deploy sets it up (its password stays in the secrets file)."""

    name: str
    secret: str
    """The name of the secret holding its password, never the password."""
    tags: tuple[str, ...]
    permissions: tuple[BrokerPermission, ...]
    topic_permissions: tuple[BrokerTopicPermission, ...] = ()


@dataclass(frozen=True)
class BrokerPolicy:
    """A policy on one vhost."""

    name: str
    vhost: str
    pattern: str
    apply_to: str
    priority: int
    definition: tuple[tuple[str, PolicyValue], ...]
    """The policy's keys and values, in the inventory's order."""


@dataclass(frozen=True)
class BrokerState:
    """Everything deploy manages on the broker; status compares the broker with it.

    ``admin_user`` and ``admin_secret`` are qsetup's own administrator (``inventory.fields``).
    """

    vhosts: tuple[str, ...]
    users: tuple[BrokerAccount, ...]
    """qsetup's administrator first, then the inventory's users, then Flower's API user."""
    policies: tuple[BrokerPolicy, ...]
    delete_guest: bool
    port: int
    management_port: int
    admin_user: str
    admin_secret: str


# --- as the playbooks and qsetup_broker_objects read them ------------------------------


def permission_vars(p: BrokerPermission) -> dict[str, str]:
    """A permission as the playbooks' variables and ``qsetup_broker_objects`` hold it."""
    return {
        "vhost": p.vhost,
        "configure_priv": p.configure,
        "write_priv": p.write,
        "read_priv": p.read,
    }


def topic_permission_vars(t: BrokerTopicPermission) -> dict[str, str]:
    """A topic permission as the playbooks' variables and ``qsetup_broker_objects`` hold it."""
    return {"vhost": t.vhost, "exchange": t.exchange, "write_priv": t.write, "read_priv": t.read}


def policy_vars(p: BrokerPolicy) -> dict[str, Any]:
    """A policy as the playbooks' variables and ``qsetup_broker_objects`` hold it."""
    return {
        "name": p.name,
        "vhost": p.vhost,
        "pattern": p.pattern,
        "apply_to": p.apply_to,
        "priority": p.priority,
        "definition": dict(p.definition),
    }
