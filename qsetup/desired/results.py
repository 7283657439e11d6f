"""The managed result backend (``results:``): Debian's Redis server on one host.

Pure: decides the server's files, its ACL users and what each client kind may do, and
the URL each kind connects with. Imports only the standard library at run time (the
playbooks' comparison reads its names). Celery's Redis backend stores a task's state under
``celery-task-meta-<id>`` (SET with an expiry, GET, MGET, DEL), publishes it on the
channel of the same name (workers) and subscribes to it (a client waiting for a result);
groups and chords keep ``celery-taskset-meta-<id>`` (plus ``.j``/``.t`` for chord
members and counters) and ``chord-unlock-<id>``. Nothing else in the server is theirs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import quote

from qsetup.desired.beat import REDBEAT_SELECTOR

if TYPE_CHECKING:
    from qsetup.inventory.model import Inventory
    from qsetup.inventory.secrets import Secrets

RESULTS_UNIT = "redis-server.service"
RESULTS_PACKAGE = "redis-server"
"""Debian 12 ships Redis 7.0 as redis-server, Debian 13 Redis 8.0 under the same name."""
REDIS_DIR = PurePosixPath("/etc/redis")
CONF_PATH = REDIS_DIR / "redis.conf"
ACL_PATH = REDIS_DIR / "users.acl"
REDIS_TLS_DIR = REDIS_DIR / "tls"
CLIENT_APT = "python3-redis"
"""Celery's Redis backend needs the redis client library beside Debian's Celery."""
CLIENT_PIP = "redis>=4.3,<8"
"""...and in a virtualenv (workers, beat, Flower)."""
ADMIN = "qsetup-admin"
"""qsetup's own user: reads the server's state for status and the deploy's comparison."""

KEYS = ("~celery-task-meta-*", "~celery-taskset-meta-*", "~chord-unlock-*")
CHANNELS = ("&celery-task-meta-*",)
_WRITER = "-@all +@read +@write +@keyspace +@pubsub +@transaction +@connection -@dangerous"
_READER = "-@all +@read +@pubsub +@connection -@dangerous"
_ADMIN = "-@all +ping +info +acl|list"
RULES = {"workers": _WRITER, "app": _READER, "beat": _READER, "flower": _READER}
"""What each client kind may run: workers store, publish and expire results; the app's
own clients (they send tasks and wait for results: ``broker.allow_from``, ``qsetup
demo``), beat (it subscribes to the results of the tasks it sends) and Flower (it reads
them) only read and subscribe."""


@dataclass(frozen=True)
class ResultsUser:
    """One ACL user of the server: a client kind, or qsetup's own reader."""

    name: str
    secret: str
    """The secret holding its password (qsetup's admin: derived, see :func:`user_password`)."""
    rules: str
    """Its keys, channels and commands, as an ACL file line after the password."""


def results_users(inv: Inventory) -> tuple[ResultsUser, ...]:
    """The server's users: qsetup's reader, then one per client kind the inventory has."""
    users = [ResultsUser(ADMIN, ADMIN_SECRET, f"resetchannels {_ADMIN}")]
    kinds = ["workers", "app"]
    if inv.beat is not None:
        kinds.append("beat")
    if inv.flower is not None:
        kinds.append("flower")
    for kind in kinds:
        rules = " ".join((*KEYS, "resetchannels", *CHANNELS, RULES[kind]))
        if kind == "beat" and inv.beat is not None and inv.beat.redbeat:
            rules += f" {REDBEAT_SELECTOR}"
        users.append(ResultsUser(kind, f"results-user-{kind}", rules))
    return tuple(users)


ADMIN_SECRET = f"results-user-{ADMIN}"


def admin_password(inv: Inventory, secrets: Secrets) -> str:
    """Qsetup's reader's password: the secrets file's, else derived from the Erlang cookie.

    Like the broker's qsetup-admin: stable across runs without one more secret to keep.
    """
    if ADMIN_SECRET in secrets.values:
        return secrets.get(ADMIN_SECRET)
    seed = secrets.get(inv.broker.erlang_cookie_secret)
    return hashlib.sha256(f"results:{ADMIN}:{seed}".encode()).hexdigest()[:32]


def user_password(inv: Inventory, secrets: Secrets, user: ResultsUser) -> str:
    """A user's password (qsetup's reader's: :func:`admin_password`)."""
    if user.name == ADMIN:
        return admin_password(inv, secrets)
    return secrets.get(user.secret)


def password_hash(password: str) -> str:
    """The SHA-256 the server keeps of a password (``#<hex>`` in its ACL)."""
    return hashlib.sha256(password.encode()).hexdigest()


def acl_text(inv: Inventory, secrets: Secrets) -> str:
    """The server's users.acl: the default user off, each user with its password's hash."""
    lines = ["user default off resetkeys resetchannels -@all"]
    for user in results_users(inv):
        digest = password_hash(user_password(inv, secrets, user))
        lines.append(f"user {user.name} on #{digest} {user.rules}")
    return "\n".join(lines) + "\n"


def results_address(inv: Inventory) -> str:
    """The address the server binds and clients connect to (the host's own)."""
    assert inv.results is not None
    return inv.hosts[inv.results.host].address


def results_url(inv: Inventory, secrets: Secrets, kind: str, ca_file: str) -> str:
    """The result backend URL a client kind uses (contains its password).

    With TLS: ``rediss://`` checking the server's certificate against qsetup's CA.
    Without the managed backend: ``app.result_backend`` as written.
    """
    from qsetup.inventory.model import managed_results

    if not managed_results(inv):
        return inv.app.result_backend
    assert inv.results is not None
    user = next(u for u in results_users(inv) if u.name == kind)
    password = quote(user_password(inv, secrets, user), safe="")
    address = results_address(inv)
    if ":" in address:
        address = f"[{address}]"
    scheme = "rediss" if inv.tls.enabled else "redis"
    url = f"{scheme}://{kind}:{password}@{address}:{inv.results.port}/0"
    if inv.tls.enabled:
        url += f"?ssl_cert_reqs=CERT_REQUIRED&ssl_ca_certs={quote(ca_file, safe='')}"
    return url
