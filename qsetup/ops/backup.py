"""The broker's definitions: exported to a private file, imported into the deployed broker.

A backup is RabbitMQ's own ``GET /api/definitions`` answer, written unchanged (so the
management UI or ``rabbitmqadmin`` can import it too): vhosts, users with their password
hashes, permissions, topic permissions, policies, queues, exchanges, bindings,
parameters and global parameters. Messages are not definitions and are not in it.

A restore checks the file and trims it (:mod:`qsetup.desired.definitions`), then posts it to
``/api/definitions`` of the first broker node that answers.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qsetup.artifacts.tls import ssl_reason
from qsetup.desired.definitions import (
    LeftOut,
    count_definitions,
    definitions_problem,
    prepare_import,
    read_backup,
)
from qsetup.desired.state import ADMIN_USER
from qsetup.errors import BrokerError, QsetupError
from qsetup.inventory.loader import LoadedInventory
from qsetup.inventory.model import Inventory
from qsetup.inventory.vault import Vault
from qsetup.inventory.vault import write_private as write_file
from qsetup.status.broker import admin_session, api_base

CONNECT_TIMEOUT = 10.0
TRANSFER_TIMEOUT = 300.0
"""Seconds for the export or the import itself: a large broker takes a while."""


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


def write_private(path: Path, text: str, vault: Vault | None = None) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte.

    With a ``vault`` that encrypts (the secrets file is encrypted), the file is written
    in ansible-vault's format.

    The text goes into a new file in the same folder that only its owner can open
    (``mkstemp`` creates it 0600, whatever the umask) and then replaces ``path``, so
    neither a reader nor an existing file's wider mode ever sees the contents.

    Raises:
        QsetupError: the file cannot be written.
    """
    data = (vault or Vault()).seal(path, text.encode("utf-8"))
    try:
        write_file(path, data)
    except OSError as exc:
        raise QsetupError(f"cannot write {path} ({exc.strerror}); choose another --out") from None


# --- the management API -----------------------------------------------------------------


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
    with admin_session(loaded) as session:
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
            write_private(target, json.dumps(data, indent=2) + "\n", loaded.vault)
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
    data = read_backup(path, loaded.vault)
    payload, left_out = prepare_import(inv, data)
    hashes = tuple(str(u["password_hash"]) for u in data["users"] if u.get("password_hash"))
    failures: list[tuple[str, str]] = []
    with admin_session(loaded) as session:
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
