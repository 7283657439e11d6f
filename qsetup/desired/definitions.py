"""A RabbitMQ definitions export: checked, counted, and trimmed for a restore.

Pure: a whole-broker export (``GET /api/definitions``) is recognised by
:func:`definitions_problem` and :func:`read_backup` (which also refuses a file others
can read), and :func:`prepare_import` leaves out what deploy manages from the inventory
and the secrets file (qsetup's own administrator, the inventory's users and Flower's API
user with their permissions, the inventory's policies), ``guest`` when the inventory
deletes it, and queues and exchanges of connections that are gone (not durable, or
auto-delete).
"""

from __future__ import annotations

import json
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qsetup.desired.state import ADMIN_USER, broker_state
from qsetup.errors import QsetupError
from qsetup.inventory.model import Inventory
from qsetup.inventory.vault import Vault

COUNTED = (
    "vhosts",
    "users",
    "permissions",
    "topic_permissions",
    "policies",
    "queues",
    "exchanges",
    "bindings",
    "parameters",
    "global_parameters",
)
"""The lists of a definitions export, in the order results show their counts."""

REQUIRED_LISTS = ("vhosts", "users", "permissions", "queues", "exchanges", "bindings")
"""Lists every whole-broker export has (a single vhost's export lacks vhosts and users)."""

_KEYS = {
    "vhosts": ("name",),
    "users": ("name",),
    "permissions": ("user", "vhost"),
    "topic_permissions": ("user", "vhost"),
    "policies": ("vhost", "name"),
    "queues": ("vhost", "name"),
    "exchanges": ("vhost", "name"),
    "bindings": ("vhost", "source", "destination", "destination_type"),
}
"""Fields each entry of a list must have as strings (RabbitMQ refuses entries without)."""

GUEST = "guest"


@dataclass(frozen=True)
class LeftOut:
    """An object of the file a restore did not import, and why."""

    kind: str
    """``user`` (with its permissions and topic permissions), ``policy``, ``queue`` or
    ``exchange`` (with their bindings)."""
    name: str
    """The user's name, or ``vhost/name``."""
    reason: str
    managed: bool
    """Deploy sets it up from the inventory (and keeps it so); False: left out altogether."""


def definitions_problem(data: object) -> str | None:
    """Why ``data`` is not a whole-broker RabbitMQ definitions export, or None."""
    if not isinstance(data, dict):
        return "it is not a JSON object"
    if not isinstance(data.get("rabbitmq_version", data.get("rabbit_version")), str):
        return "it has no rabbitmq_version"
    for key in COUNTED:
        if key in data and not isinstance(data[key], list):
            return f"{key} is not a list"
    missing = [k for k in REQUIRED_LISTS if k not in data]
    if missing:
        hint = (
            "; a single vhost's export cannot be restored: export the whole broker"
            if "vhosts" in missing or "users" in missing
            else ""
        )
        return f"it has no {', '.join(missing)} list{'s' if len(missing) > 1 else ''}{hint}"
    for key in COUNTED:
        for i, entry in enumerate(data.get(key) or ()):
            if not isinstance(entry, dict):
                return f"{key}[{i}] is not an object"
            for field in _KEYS.get(key, ()):
                if not isinstance(entry.get(field), str):
                    return f"{key}[{i}] has no {field}"
    return None


def read_backup(path: Path, vault: Vault | None = None) -> dict[str, Any]:
    """A definitions file's contents, refused unless private and a RabbitMQ export.

    A file in ansible-vault's format is decrypted (in memory) through ``vault``.

    Raises:
        QsetupError: the file is missing, open to other users, not JSON or not a
            whole-broker definitions export; the message says how to fix it.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise QsetupError(f"{path}: file not found; give a file qsetup backup wrote") from None
    except OSError as exc:
        raise QsetupError(f"{path}: cannot read it ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise QsetupError(f"{path}: not a file; give a file qsetup backup wrote")
    if stat.S_IMODE(mode) & 0o077:
        raise QsetupError(
            f"{path}: a definitions file holds password hashes and is open to other users "
            f"(mode {stat.S_IMODE(mode):04o}); fix it with: chmod 600 {path}"
        )
    try:
        text = (vault or Vault()).read_text(path)
    except UnicodeDecodeError:
        raise QsetupError(f"{path}: not a RabbitMQ definitions export (not UTF-8 text)") from None
    except OSError as exc:
        raise QsetupError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise QsetupError(
            f"{path}: not a RabbitMQ definitions export "
            f"(not JSON: line {exc.lineno} column {exc.colno}: {exc.msg})"
        ) from None
    problem = definitions_problem(data)
    if problem is not None:
        raise QsetupError(
            f"{path}: not a RabbitMQ definitions export ({problem}); make one with "
            "qsetup backup or the management UI's Export definitions"
        )
    assert isinstance(data, dict)
    return data


def count_definitions(data: Mapping[str, Any]) -> dict[str, int]:
    """How many entries each list of a definitions export has."""
    return {k: len(data.get(k) or ()) for k in COUNTED}


# --- what a restore imports -------------------------------------------------------------


def users_left_out(inv: Inventory) -> dict[str, LeftOut]:
    """Users a restore never imports: those deploy sets up, and ``guest`` if deleted."""
    left: dict[str, LeftOut] = {}
    for account in broker_state(inv).users:
        if account.name == ADMIN_USER:
            why = "qsetup's own administrator: an old hash would lock qsetup out"
        else:
            why = "the inventory manages it: deploy sets its password from the secrets file"
        left[account.name] = LeftOut("user", account.name, why, managed=True)
    if inv.broker.delete_guest and GUEST not in left:
        left[GUEST] = LeftOut(
            "user", GUEST, "the inventory deletes it (broker.delete_guest)", managed=False
        )
    return left


def prepare_import(
    inv: Inventory, data: Mapping[str, Any]
) -> tuple[dict[str, Any], tuple[LeftOut, ...]]:
    """The definitions to post, and what was left out of them.

    Users deploy manages keep what deploy gave them: ``qsetup-admin`` (an old hash
    would lock qsetup out until the next deploy), the inventory's users and Flower's
    API user (an old hash would undo a password changed in the secrets file since the
    backup, and the workers would be refused); their permissions and topic permissions
    stay as the inventory says. ``guest`` is left out when the inventory deletes it.
    The inventory's policies stay as the inventory says. Queues and exchanges that are
    not durable or auto-delete (and bindings to or from them) are left out: they
    belonged to connections that are gone. Everything else is imported.
    """
    skip_users = users_left_out(inv)
    managed_policies = {(p.vhost, p.name) for p in broker_state(inv).policies}
    payload = dict(data)
    dropped: dict[str, None] = {}
    for key, field in (("users", "name"), ("permissions", "user"), ("topic_permissions", "user")):
        if key not in data:
            continue
        kept = []
        for entry in data[key]:
            if entry[field] in skip_users:
                dropped[entry[field]] = None
            else:
                kept.append(entry)
        payload[key] = kept
    left_out = [skip_users[name] for name in dropped]
    if "policies" in data:
        kept = []
        for p in data["policies"]:
            if (p["vhost"], p["name"]) in managed_policies:
                name = f"{p['vhost']}/{p['name']}"
                left_out.append(LeftOut("policy", name, "the inventory manages it", managed=True))
            else:
                kept.append(p)
        payload["policies"] = kept
    gone: dict[str, set[tuple[str, str]]] = {"queue": set(), "exchange": set()}
    for kind, key in (("queue", "queues"), ("exchange", "exchanges")):
        kept = []
        for entry in data[key]:
            if _transient(entry):
                gone[kind].add((entry["vhost"], entry["name"]))
                left_out.append(
                    LeftOut(kind, f"{entry['vhost']}/{entry['name']}", TRANSIENT, managed=False)
                )
            else:
                kept.append(entry)
        payload[key] = kept
    payload["bindings"] = [
        b
        for b in data["bindings"]
        if (b["vhost"], b["source"]) not in gone["exchange"]
        and (b["vhost"], b["destination"])
        not in gone["queue" if b["destination_type"] == "queue" else "exchange"]
    ]
    return payload, tuple(left_out)


TRANSIENT = "transient or auto-delete: it belonged to a connection, which declares it again"


def _transient(entry: Mapping[str, Any]) -> bool:
    """A queue or exchange a broker restart or its clients leaving would remove anyway.

    Celery's pidbox and event queues, rpc reply queues and the like: restored, they
    would sit without a consumer until they expire.
    """
    return entry.get("durable") is False or entry.get("auto_delete") is True
