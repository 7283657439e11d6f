"""The broker's definitions: exported to a private file, imported into the deployed broker.

A backup is RabbitMQ's own ``GET /api/definitions`` answer, written unchanged (so the
management UI or ``rabbitmqadmin`` can import it too): vhosts, users with their password
hashes, permissions, topic permissions, policies, queues, exchanges, bindings,
parameters and global parameters. Messages are not definitions and are not in it.

A restore posts such a file to ``/api/definitions`` after leaving out what deploy
manages from the inventory and the secrets file (:func:`prepare_import`): qsetup's own
administrator, the inventory's users and Flower's API user (with their permissions),
the inventory's policies, ``guest`` when the inventory deletes it, and queues and
exchanges of connections that are gone (not durable, or auto-delete).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qsetup.desired import ADMIN_USER, broker_admin_password, broker_state
from qsetup.errors import BrokerError, QsetupError
from qsetup.inventory import Inventory
from qsetup.loader import LoadedInventory
from qsetup.status.broker import api_base
from qsetup.tls import client_ca_file, ssl_reason

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

CONNECT_TIMEOUT = 10.0
TRANSFER_TIMEOUT = 300.0
"""Seconds for the export or the import itself: a large broker takes a while."""

GUEST = "guest"


@dataclass(frozen=True)
class BackupResult:
    """A definitions export written to ``path``."""

    path: Path
    api_host: str
    rabbitmq_version: str | None
    counts: dict[str, int]
    api_errors: tuple[tuple[str, str], ...]
    """(host, why) for each broker node asked before ``api_host`` answered."""
    seconds: float


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


@dataclass(frozen=True)
class RestoreResult:
    """A definitions file imported into the broker through ``api_host``."""

    path: Path
    api_host: str
    rabbitmq_version: str | None
    """The broker's version."""
    source_version: str | None
    """The version of the broker the file was exported from."""
    vhosts: tuple[str, ...]
    queues: tuple[tuple[str, str], ...]
    """(vhost, name) of every queue imported."""
    users: tuple[str, ...]
    counts: dict[str, int]
    """How many of each list were imported."""
    left_out: tuple[LeftOut, ...]
    api_errors: tuple[tuple[str, str], ...]
    seconds: float


# --- the file ---------------------------------------------------------------------------


def default_backup_path(inventory: Path, now: datetime.datetime) -> Path:
    """``<inventory stem>.backup-<UTC time>.json`` beside the inventory."""
    stamp = now.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return inventory.with_name(f"{inventory.stem}.backup-{stamp}.json")


def backup_target(inventory: Path, out: Path | None, now: datetime.datetime) -> Path:
    """Where a backup goes.

    ``out``; the default name inside ``out`` when it is a folder; or the default name
    beside the inventory.

    Raises:
        QsetupError: the folder it would go into does not exist.
    """
    if out is None:
        target = default_backup_path(inventory, now)
    elif out.is_dir():
        target = out / default_backup_path(inventory, now).name
    else:
        target = out
    if not target.parent.is_dir():
        raise QsetupError(
            f"cannot write {target}: folder {target.parent} does not exist; "
            "create it or choose another --out"
        )
    return target


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte.

    The text goes into a new file in the same folder that only its owner can open
    (``mkstemp`` creates it 0600, whatever the umask) and then replaces ``path``, so
    neither a reader nor an existing file's wider mode ever sees the contents.

    Raises:
        QsetupError: the file cannot be written.
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise QsetupError(f"cannot write {path} ({exc.strerror}); choose another --out") from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except OSError as exc:
        with suppress(OSError):
            Path(tmp).unlink()
        raise QsetupError(f"cannot write {path} ({exc.strerror}); choose another --out") from None


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


def read_backup(path: Path) -> dict[str, Any]:
    """A definitions file's contents, refused unless private and a RabbitMQ export.

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
        text = path.read_text(encoding="utf-8")
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


# --- the management API -----------------------------------------------------------------


@contextmanager
def _admin_session(loaded: LoadedInventory) -> Iterator[Any]:
    """A requests session as ``qsetup-admin``, checking the CA with TLS (as status does)."""
    import requests

    inv = loaded.inventory
    with requests.Session() as session:
        session.auth = (ADMIN_USER, broker_admin_password(inv, loaded.secrets))
        if inv.tls.enabled:
            session.verify = str(client_ca_file(loaded.path, inv))
            # REQUESTS_CA_BUNDLE in the environment would win over session.verify.
            session.trust_env = False
        yield session


class _NoAnswer(Exception):
    """One node's API did not give a usable answer; the message says why."""


def _error_reason(resp: Any, hashes: tuple[str, ...] = ()) -> str:
    """HTTP status and RabbitMQ's reason, on one line, without any password hash."""
    reason = ""
    with suppress(ValueError, AttributeError):
        body = resp.json()
        if isinstance(body, dict):
            reason = str(body.get("reason") or body.get("error") or "")
    for secret in hashes:
        reason = reason.replace(secret, "***")
    reason = re.sub(r"\s+", " ", reason).strip()
    if len(reason) > 300:
        reason = reason[:297] + "..."
    return f"HTTP {resp.status_code}" + (f": {reason}" if reason else "")


def _request(session: Any, method: str, url: str, **kwargs: Any) -> Any:
    """One API call; a connection problem or 401 becomes :class:`_NoAnswer`."""
    import requests

    try:
        resp = session.request(method, url, timeout=(CONNECT_TIMEOUT, TRANSFER_TIMEOUT), **kwargs)
    except requests.ConnectTimeout:
        raise _NoAnswer(f"no connection within {CONNECT_TIMEOUT:g} s") from None
    except requests.Timeout:
        raise _NoAnswer(f"no answer within {TRANSFER_TIMEOUT:g} s") from None
    except requests.exceptions.SSLError as exc:
        raise _NoAnswer(f"TLS handshake failed ({ssl_reason(exc)})") from None
    except requests.ConnectionError:
        raise _NoAnswer("cannot connect (is RabbitMQ's management plugin running?)") from None
    if resp.status_code == 401:
        raise _NoAnswer(f"{ADMIN_USER} is refused (HTTP 401); run qsetup deploy to restore it")
    return resp


def _json(resp: Any) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise _NoAnswer("the management API answered something that is not JSON") from None


def _unreachable(inv: Inventory, failures: list[tuple[str, str]]) -> BrokerError:
    return BrokerError(
        [f"{host}: broker management API {api_base(inv, host)}: {why}" for host, why in failures]
    )


def run_backup(
    loaded: LoadedInventory, out: Path | None = None, now: datetime.datetime | None = None
) -> BackupResult:
    """Export the definitions from the first broker node whose API answers, to a 0600 file.

    Raises:
        QsetupError: the file cannot be written where ``out`` says (nothing asked).
        BrokerError: no broker node's management API gave the definitions (exit 3).
    """
    inv = loaded.inventory
    started = time.monotonic()
    target = backup_target(loaded.path, out, now or datetime.datetime.now(datetime.UTC))
    failures: list[tuple[str, str]] = []
    with _admin_session(loaded) as session:
        for host in inv.broker.hosts:
            try:
                resp = _request(session, "GET", f"{api_base(inv, host)}/definitions")
                if resp.status_code != 200:
                    raise _NoAnswer(f"GET /api/definitions answered {_error_reason(resp)}")
                data = _json(resp)
                problem = definitions_problem(data)
                if problem is not None:
                    raise _NoAnswer(f"GET /api/definitions answered no definitions ({problem})")
            except _NoAnswer as exc:
                failures.append((host, str(exc)))
                continue
            write_private(target, json.dumps(data, indent=2) + "\n")
            version = data.get("rabbitmq_version", data.get("rabbit_version"))
            return BackupResult(
                path=target,
                api_host=host,
                rabbitmq_version=str(version) if version is not None else None,
                counts=count_definitions(data),
                api_errors=tuple(failures),
                seconds=time.monotonic() - started,
            )
    raise _unreachable(inv, failures)


def run_restore(loaded: LoadedInventory, path: Path) -> RestoreResult:
    """Import a definitions file into the broker through the first node whose API answers.

    Everything about the file is checked before any node is asked, so a refused file
    changes nothing. RabbitMQ applies an import entry by entry: when it refuses one,
    what came before it stays (running the restore again is safe).

    Raises:
        QsetupError: the file is refused (see :func:`read_backup`).
        BrokerError: no node answered, or the broker refused the import (exit 3).
    """
    inv = loaded.inventory
    started = time.monotonic()
    data = read_backup(path)
    payload, left_out = prepare_import(inv, data)
    hashes = tuple(str(u["password_hash"]) for u in data["users"] if u.get("password_hash"))
    failures: list[tuple[str, str]] = []
    with _admin_session(loaded) as session:
        for host in inv.broker.hosts:
            base = api_base(inv, host)
            try:
                resp = _request(
                    session, "GET", f"{base}/overview", params={"columns": "rabbitmq_version"}
                )
                if resp.status_code != 200:
                    raise _NoAnswer(f"GET /api/overview answered {_error_reason(resp)}")
                overview = _json(resp)
            except _NoAnswer as exc:
                failures.append((host, str(exc)))
                continue
            try:
                resp = _request(session, "POST", f"{base}/definitions", json=payload)
            except _NoAnswer as exc:
                raise BrokerError(
                    [
                        f"{host}: broker management API {base}: the import failed ({exc}); "
                        "part of it may be in place: run the same restore again"
                    ]
                ) from None
            if resp.status_code not in (200, 201, 204):
                raise BrokerError(
                    [
                        f"{host}: broker management API {base}: the broker refused the import "
                        f"({_error_reason(resp, hashes)}); entries before the refused one "
                        "may be in place"
                    ]
                )
            version = overview.get("rabbitmq_version") if isinstance(overview, dict) else None
            source = data.get("rabbitmq_version", data.get("rabbit_version"))
            return RestoreResult(
                path=path,
                api_host=host,
                rabbitmq_version=str(version) if version is not None else None,
                source_version=str(source) if source is not None else None,
                vhosts=tuple(str(v["name"]) for v in payload["vhosts"]),
                queues=tuple((str(q["vhost"]), str(q["name"])) for q in payload["queues"]),
                users=tuple(str(u["name"]) for u in payload["users"]),
                counts=count_definitions(payload),
                left_out=left_out,
                api_errors=tuple(failures),
                seconds=time.monotonic() - started,
            )
    raise _unreachable(inv, failures)
