"""Field types the inventory models share, each with its own check.

Names, addresses, ports, paths, versions, requirements, environment entries and node name
patterns: an ``Annotated`` type per kind of value, so each problem points at its own field.
The models in ``qsetup.inventory.model`` are built from these;
``qsetup.inventory.crosscheck`` compares fields across sections.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import AfterValidator, Field, StrictInt

from qsetup.inventory.yamlsource import bad_character

NAME_RE = r"^[a-z][a-z0-9-]{0,30}$"
SECRET_NAME_RE = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
BROKER_USER_RE = r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$"
VHOST_RE = r"^/?[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$|^/$"
OS_NAME_RE = r"^[a-z_][a-z0-9_-]{0,30}$"
# A first filter (shape and length); _check_host_address applies the IP and DNS rules.
HOSTLIKE_RE = r"^[A-Za-z0-9:][A-Za-z0-9.:-]{0,252}$"
LISTEN_RE = r"^[A-Za-z0-9.:-]{1,253}$"
# Rendered unquoted into env files: no spaces, quotes, backslashes or line breaks.
MODULE_RE = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(:[A-Za-z_][A-Za-z0-9_]*)?$"
"""A dotted Python module path, optionally ``:attribute`` (Celery's ``-A``)."""
BACKEND_URL_RE = r"^[a-z][a-z0-9+.-]*://[^\s\"'\\]*$"

EXCHANGE_RE = r"^[A-Za-z0-9_.:-]{1,255}$"
POLICY_KEY_RE = r"^[a-z][a-z0-9-]{0,63}$"

Name = Annotated[str, Field(pattern=NAME_RE)]
SecretName = Annotated[str, Field(pattern=SECRET_NAME_RE)]
BrokerUserName = Annotated[str, Field(pattern=BROKER_USER_RE)]
VhostName = Annotated[str, Field(pattern=VHOST_RE)]
OsName = Annotated[str, Field(pattern=OS_NAME_RE)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
RegexStr = Annotated[str, Field(max_length=512)]

ADMIN_USER = "qsetup-admin"
"""qsetup's own administrator on the broker (deploy manages users and policies as it)."""
ADMIN_SECRET = f"rabbitmq-user-{ADMIN_USER}"
"""The secret of qsetup's broker administrator (derived from the cookie when absent)."""
RESERVED_BROKER_USERS = {
    "guest": "'guest' is RabbitMQ's default user; pick a name",
    ADMIN_USER: f"'{ADMIN_USER}' is qsetup's own administrator on the broker; pick a name",
}
MAX_TIME_LIMIT = 7 * 86400


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_regex(value: str) -> str:
    """Refuse a string that is not a valid regular expression."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc})") from None
    return value


# --- addresses, ports, paths and versions -------------------------------------


def _dns_problem(name: str) -> str | None:
    """Why ``name`` is not a DNS host name (RFC 1123 labels), or None."""
    if len(name) > 253:
        return "longer than 253 characters"
    labels = name.split(".")
    if any(label == "" for label in labels):
        return "an empty label: no dot at the start or end, no two dots in a row"
    for label in labels:
        if len(label) > 63:
            return "a label longer than 63 characters"
        if not re.fullmatch(r"[A-Za-z0-9-]+", label):
            return "only letters, digits, '-' and dots between labels"
        if label.startswith("-") or label.endswith("-"):
            return "a label starts or ends with '-'"
    if labels[-1].isdigit():
        return "all-numeric like an IPv4 address, but not a valid one"
    return None


def _address_problem(value: str, port_field: str, example: str) -> str | None:
    """Why ``value`` is not an IP address or DNS name, with the fix; or None."""
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    host, sep, port = value.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return (
            f"{_short(value)} holds a port; write the address alone, and the port as "
            f"{port_field}: {port}"
        )
    if ":" in value:
        return f"{_short(value)} is not a valid IPv6 address; use e.g. {example}"
    problem = _dns_problem(value)
    if problem:
        return f"{_short(value)} is not an IP address or a DNS name ({problem}); use e.g. {example}"
    return None


def _check_host_address(value: str) -> str:
    problem = _address_problem(value, "ssh_port", "10.0.0.5 or mq1.example.org")
    if problem:
        raise ValueError(problem)
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return value
    if ip.is_unspecified or ip.is_multicast or str(ip) == "255.255.255.255":
        raise ValueError(f"{value} is not the address of one machine; use the host's own address")
    return value


def _check_listen_address(value: str) -> str:
    problem = _address_problem(value, "port", "0.0.0.0 (all addresses) or 10.0.0.5")
    if problem:
        raise ValueError(problem)
    return value


HostAddress = Annotated[
    str, Field(pattern=HOSTLIKE_RE, max_length=253), AfterValidator(_check_host_address)
]


def _check_cidr(value: str) -> str:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        try:
            wide = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(
                f"{_short(value)} is not an IP address or network; use e.g. 10.0.0.5 or 10.0.0.0/24"
            ) from None
        raise ValueError(
            f"{value} has host bits set; write the network as {wide.with_prefixlen}"
        ) from None
    if net.num_addresses == 1 and "/" not in value:
        return net.network_address.compressed
    return net.compressed


Cidr = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_check_cidr)]
"""An IPv4 or IPv6 address or network (CIDR), normalized (``10.0.0.0/24``, ``::1``)."""


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost names."""
    name = address.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost") or name == "localhost.localdomain":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def normalize_address(address: str) -> str:
    """Return the form two spellings of one address share: a compressed IP, a lowercase name.

    DNS names are case-insensitive (RFC 4343): ``MQ.Example.ORG`` is ``mq.example.org``.
    """
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return address.lower()


def _unprivileged(who: str) -> Any:
    def check(value: int) -> int:
        if value < 1024:
            raise ValueError(f"ports below 1024 need root, and {who}; use a port from 1024 up")
        return value

    return AfterValidator(check)


AmqpPort = Annotated[Port, _unprivileged("RabbitMQ runs as user rabbitmq")]
ListenAddress = Annotated[str, Field(pattern=LISTEN_RE), AfterValidator(_check_listen_address)]
DIST_PORT_OFFSET = 20000
"""RabbitMQ's inter-node (Erlang distribution) port is the AMQP port + 20000."""
EPMD_PORT = 4369
PROMETHEUS_PORT = 15692
"""Where rabbitmq_prometheus serves /metrics (its default)."""
QUORUM_CELERY = "5.5"
"""The first Celery release that declares and consumes quorum queues."""


def _dist_port(value: int) -> int:
    if value + DIST_PORT_OFFSET > 65535:
        raise ValueError(
            f"RabbitMQ's inter-node port is this port + {DIST_PORT_OFFSET}, so use at most "
            f"{65535 - DIST_PORT_OFFSET}"
        )
    return value


BrokerPort = Annotated[AmqpPort, AfterValidator(_dist_port)]
ManagementPort = Annotated[
    Port, _unprivileged("the management plugin runs in RabbitMQ as user rabbitmq")
]
FlowerPort = Annotated[
    Port,
    _unprivileged("Flower runs as an unprivileged user (put a proxy in front for 80 or 443)"),
]


def _check_local_path(value: str) -> str:
    if any(len(part) > 255 for part in value.split("/")):
        raise ValueError("a path component is longer than 255 characters; shorten it")
    return value


LocalPath = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_check_local_path)]


def resolve_relative(inventory_path: Path, value: str) -> Path:
    """Resolve a path from the inventory relative to the inventory's directory."""
    path = Path(value)
    try:
        path = path.expanduser()
    except RuntimeError:
        pass  # "~someone" without a home directory here: keep it as written
    if not path.is_absolute():
        path = inventory_path.resolve().parent / path
    return path


def _check_version_spec(value: str) -> str:
    # Appended to the package name for pip: "5.4" would ask for a package "celery5.4".
    try:
        spec = SpecifierSet(value)
        req = Requirement(f"pkg{value}")
        ok = bool(str(spec)) and req.name == "pkg" and req.specifier == spec
        ok = ok and not req.extras and req.marker is None and req.url is None
    except (InvalidSpecifier, InvalidRequirement):
        ok = False
    if not ok:
        raise ValueError(
            f"{_short(value)} is not a PEP 440 version specifier; write e.g. '==5.4.*' or "
            "'>=5.3,<6'"
        )
    return value


VersionSpec = Annotated[
    str, Field(min_length=1, max_length=100), AfterValidator(_check_version_spec)
]


def _check_requirement(value: str) -> str:
    if value.lstrip().startswith("-") or re.search(r"\s-", value):
        raise ValueError(
            "pip options (-e, -r, --index-url, ...) are not requirements; list packages only, "
            "e.g. requests>=2 (configure package indexes in pip.conf on the hosts)"
        )
    try:
        Requirement(value)
    except InvalidRequirement:
        if not re.fullmatch(r"[^\s]*[/\\][^\s]*", value):
            raise ValueError(
                f"{_short(value)} is not a pip requirement; write e.g. requests>=2, a wheel "
                "path or a URL"
            ) from None
    return value


PipRequirement = Annotated[
    str, Field(min_length=1, max_length=200), AfterValidator(_check_requirement)
]


# --- services, policies, environment and worker groups ------------------------


def check_service_account(value: str, who: str, example: str) -> str:
    """Refuse root and rabbitmq as the account a service runs as."""
    if value == "root":
        raise ValueError(f"{who} as root; use a dedicated user such as {example}")
    if value == "rabbitmq":
        raise ValueError(
            f"'rabbitmq' is RabbitMQ's own account (it owns the Erlang cookie); use a dedicated "
            f"user such as {example}"
        )
    return value


def _policy_value(value: str | int | bool) -> str | int | bool:
    if isinstance(value, str) and len(value) > 255:
        raise ValueError("must be at most 255 characters long")
    if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value < 2**63:
        raise ValueError(f"must be a whole number from 0 to {2**63 - 1}, got {_short(value)}")
    return value


PolicyValue = Annotated[str | int | bool, AfterValidator(_policy_value)]


RESERVED_ENV = {
    "CELERY_BROKER_URL": "is set by qsetup from broker_user and vhost; remove it",
    "CELERY_RESULT_BACKEND": "is set by qsetup from app.result_backend; set that instead",
    "PYTHONPATH": "is set by qsetup to the app's code directory; remove it",
    "PYTHONUNBUFFERED": "is set by qsetup (logs reach the journal at once); remove it",
    "PYTHONHOME": "would make the services' Python look for its library elsewhere; remove it",
}
# systemd sets these for every service (systemd.exec(5), "Environment variables in spawned
# processes"); an environment file would override them behind systemd's back.
SYSTEMD_ENV = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "INVOCATION_ID",
        "JOURNAL_STREAM",
        "NOTIFY_SOCKET",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "MAINPID",
        "MANAGERPID",
        "SYSTEMD_EXEC_PID",
        "WATCHDOG_PID",
        "WATCHDOG_USEC",
        "RUNTIME_DIRECTORY",
        "STATE_DIRECTORY",
        "LOGS_DIRECTORY",
        "CACHE_DIRECTORY",
        "CONFIGURATION_DIRECTORY",
        "CREDENTIALS_DIRECTORY",
        "TERM",
    }
)


def _not_reserved(key: str) -> str:
    if key in RESERVED_ENV:
        raise ValueError(f"{key} {RESERVED_ENV[key]}")
    if key.startswith("CELERY_BROKER_"):
        raise ValueError(
            f"{key} would change the broker connection qsetup sets from broker_user and vhost; "
            "remove it"
        )
    if key.startswith("FLOWER_"):
        raise ValueError(
            f"{key} would change Flower's settings behind qsetup (which writes them from the "
            "flower section); remove it"
        )
    if key in SYSTEMD_ENV:
        raise ValueError(f"{key} is set by systemd for each service; remove it")
    return key


def _env_value(value: str) -> str:
    what = bad_character(value)
    if what:
        raise ValueError(
            f"contains {what}, which would not reach the services as written (systemd's "
            "environment file); remove it"
        )
    return value


EnvName = Annotated[
    str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$", max_length=128), AfterValidator(_not_reserved)
]
EnvValue = Annotated[str, Field(max_length=4096), AfterValidator(_env_value)]


RESERVED_GROUP_NAMES = {
    "flower": "Flower's virtualenv (/opt/qsetup/venvs/flower)",
    "beat": "beat's own virtualenv (/opt/qsetup/venvs/beat)",
}


def _group_name(value: str) -> str:
    if value in RESERVED_GROUP_NAMES:
        raise ValueError(
            f"'{value}' is taken by {RESERVED_GROUP_NAMES[value]}; pick another group name"
        )
    return value


def _queue_name(value: str) -> str:
    if value.startswith("amq."):
        raise ValueError("RabbitMQ reserves queue names starting with 'amq.'; rename the queue")
    return value


GroupName = Annotated[Name, AfterValidator(_group_name)]
QueueName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$"), AfterValidator(_queue_name)]


def check_time_limit(value: int | None) -> int | None:
    """Refuse a time limit above MAX_TIME_LIMIT (None passes)."""
    if value is not None and value > MAX_TIME_LIMIT:
        raise ValueError(
            f"must be at most {MAX_TIME_LIMIT} seconds (7 days): systemd waits this long plus "
            f"30 s for a stopping worker, got {_short(value)}"
        )
    return value


NODE_PLACEHOLDERS = "hnd"
"""Celery's node name placeholders; %i (the instance) is systemd's, expanded first."""


def node_name_problem(pattern: str, instances: int, hosts: int) -> str | None:
    """Why a worker group's node name pattern cannot name its nodes, or None."""
    if len(pattern) > 128:
        return f"must be at most 128 characters long, got {len(pattern)}"
    if not re.fullmatch(r"[A-Za-z0-9_.%@-]+", pattern):
        return "use letters, digits, - _ . and the placeholders %i %h %n %d"
    for match in re.finditer(r"%(.?)", pattern):
        code = match.group(1)
        if code == "%":
            return "'%%' is not supported (the unit file would break); remove it"
        if code not in ("i", *NODE_PLACEHOLDERS):
            shown = f"'%{code}'" if code else "a '%' at the end"
            return (
                f"{shown} is not a placeholder; use %i (instance number), %h (host name), "
                "%n (its first label) or %d (its domain)"
            )
    name, at, host = pattern.partition("@")
    if not at:
        return "add '@' and a host part, e.g. NAME-%i@%h (Celery names nodes name@host)"
    if "@" in host:
        return "use one '@', between the node's name and its host part"
    if not name or not host:
        return "write a name before '@' and a host part after it, e.g. NAME-%i@%h"
    if instances > 1 and "%i" not in pattern:
        return (
            f"the {instances} instances on a host would share one node name; add %i (the "
            "instance number), e.g. NAME-%i@%h"
        )
    if hosts > 1 and "%h" not in pattern and "%n" not in pattern:
        return "the group's hosts would share node names; add %h (the host name), e.g. NAME-%i@%h"
    return None


def _api_user(value: str) -> str:
    if value in RESERVED_BROKER_USERS:
        raise ValueError(RESERVED_BROKER_USERS[value])
    return value


ApiUserName = Annotated[BrokerUserName, AfterValidator(_api_user)]
