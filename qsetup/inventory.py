"""The inventory model: what runs where, validated at the edge and frozen.

``load_inventory(path)`` reads YAML, validates it against these models and the
cross-checks below, and raises ``InventoryError`` with one
``FILE:LINE:COL: field.path: message`` line per problem.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from qsetup.yamlsource import bad_character

NAME_RE = r"^[a-z][a-z0-9-]{0,30}$"
SECRET_NAME_RE = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
BROKER_USER_RE = r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$"
VHOST_RE = r"^/?[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$|^/$"
OS_NAME_RE = r"^[a-z_][a-z0-9_-]{0,30}$"
# A first filter (shape and length); _check_host_address applies the IP and DNS rules.
HOSTLIKE_RE = r"^[A-Za-z0-9:][A-Za-z0-9.:-]{0,252}$"
LISTEN_RE = r"^[A-Za-z0-9.:-]{1,253}$"
# Rendered unquoted into env files: no spaces, quotes, backslashes or line breaks.
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

RESERVED_BROKER_USERS = {
    "guest": "'guest' is RabbitMQ's default user; pick a name",
    "qsetup-admin": "'qsetup-admin' is qsetup's own administrator on the broker; pick a name",
}
ADMIN_SECRET = "rabbitmq-user-qsetup-admin"
"""The secret of qsetup's broker administrator (derived from the cookie when absent)."""
MAX_TIME_LIMIT = 7 * 86400


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Model(BaseModel):
    """Base for every inventory model: unknown keys rejected, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def _check_regex(value: str) -> str:
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


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost names."""
    name = address.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost") or name == "localhost.localdomain":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _same_address(address: str) -> str:
    # DNS names compare as written: `qsetup init` still makes two hosts of one name
    # written in two cases (scaffold.py), and such an inventory must stay valid.
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return address


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


def _dist_port(value: int) -> int:
    if value + DIST_PORT_OFFSET > 65535:
        raise ValueError(
            f"RabbitMQ's inter-node port is this port + {DIST_PORT_OFFSET}, so use at most "
            f"{65535 - DIST_PORT_OFFSET}"
        )
    return value


def _check_local_path(value: str) -> str:
    if any(len(part) > 255 for part in value.split("/")):
        raise ValueError("a path component is longer than 255 characters; shorten it")
    return value


LocalPath = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_check_local_path)]


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


def _not_service_account(value: str, who: str, example: str) -> str:
    if value == "root":
        raise ValueError(f"{who} as root; use a dedicated user such as {example}")
    if value == "rabbitmq":
        raise ValueError(
            f"'rabbitmq' is RabbitMQ's own account (it owns the Erlang cookie); use a dedicated "
            f"user such as {example}"
        )
    return value


# --- hosts ------------------------------------------------------------------


class SshDefaults(Model):
    """SSH settings every host inherits unless it overrides them."""

    user: OsName = Field("root", description="SSH login user.")
    port: Port = Field(22, description="SSH port.")
    key: LocalPath | None = Field(
        None, description="Private key file; relative paths are relative to the inventory."
    )
    become: StrictBool = Field(
        False, description="Use sudo for tasks (needed when user is not root)."
    )
    connect_timeout: StrictInt = Field(10, ge=1, le=300, description="Seconds to wait for SSH.")
    host_key_checking: Literal["accept-new", "strict", "off"] = Field(
        "accept-new",
        description="accept-new: trust a host's key on first contact, refuse changes; "
        "off: for throw-away test hosts only.",
    )


class Host(Model):
    """A machine qsetup manages; it may hold several roles."""

    address: Annotated[
        str, Field(pattern=HOSTLIKE_RE, max_length=253), AfterValidator(_check_host_address)
    ] = Field(description="IP address or DNS name the controller connects to.")
    ssh_user: OsName | None = Field(None, description="Overrides ssh.user for this host.")
    ssh_port: Port | None = Field(None, description="Overrides ssh.port for this host.")
    ssh_key: LocalPath | None = Field(None, description="Overrides ssh.key for this host.")
    become: StrictBool | None = Field(None, description="Overrides ssh.become for this host.")


# --- broker -------------------------------------------------------------------


class Permission(Model):
    """A broker user's configure/write/read rights on one vhost."""

    vhost: VhostName
    configure: RegexStr = ".*"
    write: RegexStr = ".*"
    read: RegexStr = ".*"

    _regexes = field_validator("configure", "write", "read")(_check_regex)


class TopicPermission(Model):
    """A broker user's rights on a topic exchange in one vhost."""

    vhost: VhostName
    exchange: Annotated[str, Field(pattern=EXCHANGE_RE)] = "amq.topic"
    write: RegexStr = ".*"
    read: RegexStr = ".*"

    _regexes = field_validator("write", "read")(_check_regex)


BrokerTag = Literal["none", "management", "monitoring", "policymaker", "administrator"]


class BrokerUser(Model):
    """A RabbitMQ user; its password lives in the secrets file."""

    name: BrokerUserName
    password_secret: SecretName | None = Field(
        None, description="Secret holding the password (default: rabbitmq-user-<name>)."
    )
    tags: tuple[BrokerTag, ...] = Field(("none",), description="RabbitMQ user tags.")
    vhost: VhostName | None = Field(
        None,
        description="The user's own vhost; without explicit permissions it gets full rights "
        "there and nowhere else.",
    )
    permissions: tuple[Permission, ...] | None = Field(
        None, description="Per-vhost rights (default: full rights on the user's own vhost)."
    )
    topic_permissions: tuple[TopicPermission, ...] = ()

    @property
    def secret(self) -> str:
        """The name of the secret that holds this user's password."""
        return self.password_secret or f"rabbitmq-user-{self.name.lower()}"

    @property
    def effective_permissions(self) -> tuple[Permission, ...]:
        """Explicit permissions, or full rights on the user's own vhost."""
        if self.permissions is not None:
            return self.permissions
        if self.vhost is None:
            return ()
        return (Permission(vhost=self.vhost),)

    @property
    def effective_tags(self) -> tuple[str, ...]:
        """Tags as RabbitMQ stores them ("none" means no tag)."""
        return tuple(t for t in self.tags if t != "none")


def _policy_value(value: str | int | bool) -> str | int | bool:
    if isinstance(value, str) and len(value) > 255:
        raise ValueError("must be at most 255 characters long")
    if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value < 2**63:
        raise ValueError(f"must be a whole number from 0 to {2**63 - 1}, got {_short(value)}")
    return value


PolicyValue = Annotated[str | int | bool, AfterValidator(_policy_value)]


class Policy(Model):
    """A RabbitMQ policy (queue type, TTL, max-length, ...)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    vhost: VhostName
    pattern: RegexStr
    apply_to: Literal[
        "all", "queues", "exchanges", "classic_queues", "quorum_queues", "streams"
    ] = "queues"
    priority: StrictInt = Field(0, ge=0, le=999)
    definition: dict[Annotated[str, Field(pattern=POLICY_KEY_RE)], PolicyValue] = Field(
        max_length=32, description="Policy keys, e.g. {message-ttl: 60000, max-length: 10000}."
    )

    _pattern = field_validator("pattern")(_check_regex)

    @field_validator("definition")
    @classmethod
    def _definition_not_empty(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("a policy needs at least one key, e.g. {message-ttl: 60000}")
        return value


class Broker(Model):
    """The RabbitMQ server: one host, its vhosts, users, policies and plugins."""

    host: Name = Field(description="The host that runs RabbitMQ.")
    listen_address: ListenAddress = Field(
        "0.0.0.0",  # noqa: S104
        description="AMQP listener address.",
    )
    port: Annotated[AmqpPort, AfterValidator(_dist_port)] = Field(5672, description="AMQP port.")
    management_port: Annotated[
        Port, _unprivileged("the management plugin runs in RabbitMQ as user rabbitmq")
    ] = Field(15672, description="Management API/UI port.")
    nofile: StrictInt = Field(65536, ge=1024, le=1048576, description="File-descriptor limit.")
    plugins: tuple[Annotated[str, Field(pattern=r"^rabbitmq_[a-z0-9_]+$")], ...] = Field(
        ("rabbitmq_management",), description="Plugins to enable (management is on by default)."
    )
    delete_guest: StrictBool = Field(True, description="Delete the default guest user.")
    erlang_cookie_secret: SecretName = Field(
        "rabbitmq-erlang-cookie", description="Secret holding the Erlang cookie."
    )
    vhosts: tuple[VhostName, ...] = Field(("/",), description="Virtual hosts to create.")
    users: tuple[BrokerUser, ...] = ()
    policies: tuple[Policy, ...] = ()


# --- app and workers ------------------------------------------------------------


class AppSource(Model):
    """Where the Celery app's code comes from: a local directory or a pip requirement."""

    path: LocalPath | None = Field(
        None, description="Local directory shipped to the workers (relative to the inventory)."
    )
    requirement: PipRequirement | None = Field(
        None, description="A pip requirement or wheel path that installs the app."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> AppSource:
        if (self.path is None) == (self.requirement is None):
            raise ValueError("give exactly one of path (a local directory) or requirement")
        return self


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


class App(Model):
    """The Celery application the workers run."""

    name: Name = Field("app", description="Short name; used for paths on the hosts.")
    module: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.:]*$", max_length=200)] = Field(
        description="The -A argument, e.g. proj or proj.celery:app."
    )
    source: AppSource
    requirements: tuple[PipRequirement, ...] = Field(
        (), max_length=100, description="Extra pip requirements the app needs."
    )
    environment: dict[EnvName, EnvValue] = Field(
        default_factory=dict,
        max_length=256,
        description="Non-secret environment for workers, beat and Flower.",
    )
    broker_user: BrokerUserName = Field(description="The broker user the workers connect as.")
    vhost: VhostName = Field(description="The vhost the workers use.")
    result_backend: Annotated[str, Field(pattern=BACKEND_URL_RE, max_length=1024)] = Field(
        "rpc://", description="Celery result backend URL (no secrets; rpc:// uses the broker)."
    )


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


def _time_limit(value: int | None) -> int | None:
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


class WorkerGroup(Model):
    """Celery workers with the same settings on one or more hosts."""

    name: Annotated[Name, AfterValidator(_group_name)]
    hosts: tuple[Name, ...] = Field(min_length=1)
    install: Literal["apt", "pip"] = Field(
        description="apt: Debian's python-celery-common; pip: a virtualenv with celery."
    )
    celery_version: VersionSpec | None = Field(
        None, description="pip only: a version spec such as '==5.4.*' (default: latest 5.x)."
    )
    instances: StrictInt = Field(1, ge=1, le=64, description="Worker processes (units) per host.")
    node_name: str = Field(
        "", description="Node name pattern (default NAME-%i@%h; %i is the instance number)."
    )
    queues: tuple[
        Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$"), AfterValidator(_queue_name)],
        ...,
    ] = Field(("celery",), min_length=1, max_length=64)
    concurrency: StrictInt | None = Field(None, ge=1, le=1024)
    autoscale: (
        tuple[
            Annotated[StrictInt, Field(ge=1, le=1024)], Annotated[StrictInt, Field(ge=0, le=1024)]
        ]
        | None
    ) = Field(None, description="[max, min] processes.")
    pool: Literal["prefork", "threads", "solo", "eventlet", "gevent"] = "prefork"
    max_tasks_per_child: StrictInt | None = Field(None, ge=1, le=1_000_000_000)
    max_memory_per_child: StrictInt | None = Field(None, ge=1, le=2**31, description="KiB.")
    soft_time_limit: StrictInt | None = Field(None, ge=1, description="Seconds.")
    time_limit: StrictInt | None = Field(None, ge=1, description="Seconds.")
    loglevel: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    user: OsName = Field("celery", description="OS user the workers run as (never root).")
    group: OsName = Field("celery", description="OS group of that user.")
    broker_user: BrokerUserName | None = Field(None, description="Default: app.broker_user.")
    vhost: VhostName | None = Field(None, description="Default: app.vhost.")

    @field_validator("user", "group")
    @classmethod
    def _not_root(cls, value: str) -> str:
        return _not_service_account(value, "workers never run", "celery")

    @field_validator("node_name")
    @classmethod
    def _node_name(cls, value: str, info: ValidationInfo) -> str:
        if value:
            hosts = info.data.get("hosts") or ()
            problem = node_name_problem(value, info.data.get("instances", 1), len(hosts))
            if problem:
                raise ValueError(problem)
        return value

    # Field validators (not one model validator) so each problem points at its own line;
    # info.data holds the fields declared above the one being checked.
    @field_validator("celery_version")
    @classmethod
    def _pip_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("install") == "apt":
            raise ValueError("celery_version applies to install: pip only (apt uses Debian's)")
        return value

    @field_validator("autoscale")
    @classmethod
    def _autoscale(cls, value: tuple[int, int] | None, info: ValidationInfo) -> Any:
        if value is None:
            return value
        if info.data.get("concurrency") is not None:
            raise ValueError("set concurrency or autoscale, not both")
        if value[0] < value[1]:
            raise ValueError("autoscale is [max, min]; max must be >= min")
        return value

    @field_validator("soft_time_limit")
    @classmethod
    def _soft_time_limit(cls, value: int | None) -> int | None:
        return _time_limit(value)

    @field_validator("time_limit")
    @classmethod
    def _time_limits(cls, value: int | None, info: ValidationInfo) -> int | None:
        _time_limit(value)
        soft = info.data.get("soft_time_limit")
        if value is not None and soft is not None and soft >= value:
            raise ValueError("soft_time_limit must be lower than time_limit")
        return value

    @property
    def node_pattern(self) -> str:
        """The node name pattern, with the default filled in."""
        return self.node_name or f"{self.name}-%i@%h"

    @property
    def unit_template(self) -> str:
        """The systemd template unit name, e.g. ``qsetup-worker-default@.service``."""
        return f"qsetup-worker-{self.name}@.service"


class Beat(Model):
    """Celery beat: one scheduler on exactly one host."""

    host: Name
    loglevel: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    user: OsName = "celery"
    group: OsName = "celery"

    @field_validator("user", "group")
    @classmethod
    def _not_root(cls, value: str) -> str:
        return _not_service_account(value, "beat never runs", "celery")


class FlowerUser(Model):
    """A basic-auth user of Flower's web UI and API."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]
    password_secret: SecretName | None = Field(
        None, description="Secret holding the password (default: flower-user-<name>)."
    )

    @property
    def secret(self) -> str:
        """The name of the secret that holds this user's password."""
        return self.password_secret or f"flower-user-{self.name.lower()}"


def _api_user(value: str) -> str:
    if value in RESERVED_BROKER_USERS:
        raise ValueError(RESERVED_BROKER_USERS[value])
    return value


class Flower(Model):
    """Flower, the web monitor, on one host."""

    host: Name
    listen_address: ListenAddress = "0.0.0.0"  # noqa: S104
    port: Annotated[
        Port,
        _unprivileged("Flower runs as an unprivileged user (put a proxy in front for 80 or 443)"),
    ] = 5555
    url_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_/-]{0,64}$")] = ""
    version: VersionSpec | None = Field(None, description="pip version spec for flower.")
    basic_auth: tuple[FlowerUser, ...] = Field(
        min_length=1,
        max_length=64,
        description="Users allowed into Flower; it refuses everyone else.",
    )
    persistent: StrictBool = Field(True, description="Keep task history across restarts.")
    broker_api_user: Annotated[BrokerUserName, AfterValidator(_api_user)] = Field(
        "flower-monitor",
        description="Monitoring-tagged broker user qsetup creates for Flower's broker API.",
    )
    broker_api_password_secret: SecretName | None = Field(
        None, description="Default: rabbitmq-user-<broker_api_user>."
    )
    user: OsName = "flower"
    group: OsName = "flower"

    @field_validator("user", "group")
    @classmethod
    def _not_root(cls, value: str) -> str:
        return _not_service_account(value, "Flower never runs", "flower")

    @property
    def broker_api_secret(self) -> str:
        """The secret holding the monitoring user's password."""
        return self.broker_api_password_secret or f"rabbitmq-user-{self.broker_api_user.lower()}"


# --- the whole inventory ------------------------------------------------------


class Inventory(Model):
    """A complete qsetup inventory."""

    version: Literal[1] = Field(1, description="Inventory format version.")
    ssh: SshDefaults = Field(default_factory=SshDefaults)
    hosts: dict[Name, Host] = Field(min_length=1, max_length=1000)
    broker: Broker
    app: App
    workers: tuple[WorkerGroup, ...] = Field(min_length=1, max_length=256)
    beat: Beat | None = None
    flower: Flower | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_a_number(cls, value: Any) -> Any:
        if isinstance(value, bool):  # Literal[1] would take true as 1
            raise ValueError(f"got {str(value).lower()}; use 1")
        return value


# --- derived views used by render and deploy ------------------------------------


def group_broker_user(inv: Inventory, group: WorkerGroup) -> BrokerUser:
    """Return the broker user a worker group connects as (checked to exist)."""
    name = group.broker_user or inv.app.broker_user
    for user in inv.broker.users:
        if user.name == name:
            return user
    raise KeyError(name)


def group_vhost(inv: Inventory, group: WorkerGroup) -> str:
    """Return the vhost a worker group uses."""
    return group.vhost or inv.app.vhost


def app_broker_user(inv: Inventory) -> BrokerUser:
    """Return the broker user beat and Flower's Celery side connect as."""
    for user in inv.broker.users:
        if user.name == inv.app.broker_user:
            return user
    raise KeyError(inv.app.broker_user)


def secret_names(inv: Inventory) -> list[tuple[tuple[str | int, ...], str]]:
    """Every secret the inventory refers to, with the field path that names it."""
    names: list[tuple[tuple[str | int, ...], str]] = [
        (("broker", "erlang_cookie_secret"), inv.broker.erlang_cookie_secret)
    ]
    for i, user in enumerate(inv.broker.users):
        names.append((("broker", "users", i, "password_secret"), user.secret))
    if inv.flower is not None:
        for i, fuser in enumerate(inv.flower.basic_auth):
            names.append((("flower", "basic_auth", i, "password_secret"), fuser.secret))
        names.append((("flower", "broker_api_password_secret"), inv.flower.broker_api_secret))
    return names


def grants(regex: str) -> bool:
    """False for a permission regex that grants nothing ('' or '^$', RabbitMQ's "no rights")."""
    return regex.strip() not in ("", "^$")


def has_rights(user: BrokerUser, vhost: str) -> bool:
    """True when the user may configure, write and read something on the vhost."""
    return any(
        p.vhost == vhost and grants(p.configure) and grants(p.write) and grants(p.read)
        for p in user.effective_permissions
    )


FieldPath = tuple[str | int, ...]
Problems = list[tuple[FieldPath, str]]


def check_references(inv: Inventory) -> list[tuple[tuple[str | int, ...], str]]:
    """Cross-check names between sections; return (field path, message) per problem."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    declared = set(inv.hosts)
    hint = ", ".join(sorted(declared))

    def need_host(path: tuple[str | int, ...], name: str) -> None:
        if name not in declared:
            problems.append((path, f"host '{name}' is not declared under hosts (declared: {hint})"))

    need_host(("broker", "host"), inv.broker.host)
    if inv.beat is not None:
        need_host(("beat", "host"), inv.beat.host)
    if inv.flower is not None:
        need_host(("flower", "host"), inv.flower.host)

    vhosts = set(inv.broker.vhosts)
    seen_users: set[str] = set()
    for i, user in enumerate(inv.broker.users):
        if user.name in seen_users:
            problems.append((("broker", "users", i, "name"), f"user '{user.name}' is listed twice"))
        seen_users.add(user.name)
        if user.name in RESERVED_BROKER_USERS:
            problems.append((("broker", "users", i, "name"), RESERVED_BROKER_USERS[user.name]))
        if user.vhost is not None and user.vhost not in vhosts:
            problems.append(
                (
                    ("broker", "users", i, "vhost"),
                    f"vhost '{user.vhost}' is not listed under broker.vhosts",
                )
            )
        for j, perm in enumerate(user.permissions or ()):
            if perm.vhost not in vhosts:
                problems.append(
                    (
                        ("broker", "users", i, "permissions", j, "vhost"),
                        f"vhost '{perm.vhost}' is not listed under broker.vhosts",
                    )
                )
        for j, tperm in enumerate(user.topic_permissions):
            if tperm.vhost not in vhosts:
                problems.append(
                    (
                        ("broker", "users", i, "topic_permissions", j, "vhost"),
                        f"vhost '{tperm.vhost}' is not listed under broker.vhosts",
                    )
                )
    if len(set(inv.broker.vhosts)) != len(inv.broker.vhosts):
        problems.append((("broker", "vhosts"), "a vhost is listed twice"))
    seen_policies: set[tuple[str, str]] = set()
    for i, pol in enumerate(inv.broker.policies):
        if pol.vhost not in vhosts:
            problems.append(
                (
                    ("broker", "policies", i, "vhost"),
                    f"vhost '{pol.vhost}' is not listed under broker.vhosts",
                )
            )
        if (pol.name, pol.vhost) in seen_policies:
            problems.append(
                (("broker", "policies", i, "name"), f"policy '{pol.name}' is listed twice")
            )
        seen_policies.add((pol.name, pol.vhost))

    if inv.app.vhost not in vhosts:
        problems.append(
            (("app", "vhost"), f"vhost '{inv.app.vhost}' is not listed under broker.vhosts")
        )
    users = {u.name: u for u in inv.broker.users}
    if inv.app.broker_user not in users:
        problems.append(
            (
                ("app", "broker_user"),
                f"broker user '{inv.app.broker_user}' is not listed under broker.users",
            )
        )
    if inv.flower is not None:
        for i, user in enumerate(inv.broker.users):
            if user.name == inv.flower.broker_api_user:
                problems.append(
                    (
                        ("broker", "users", i, "name"),
                        f"'{user.name}' is created by qsetup for Flower (flower.broker_api_user); "
                        "remove it from broker.users",
                    )
                )

    seen_groups: set[str] = set()
    for i, group in enumerate(inv.workers):
        if group.name in seen_groups:
            problems.append(
                (("workers", i, "name"), f"worker group '{group.name}' is listed twice")
            )
        seen_groups.add(group.name)
        for j, host in enumerate(group.hosts):
            need_host(("workers", i, "hosts", j), host)
        if len(set(group.hosts)) != len(group.hosts):
            problems.append((("workers", i, "hosts"), "a host is listed twice"))
        user_name = group.broker_user or inv.app.broker_user
        vhost = group.vhost or inv.app.vhost
        group_user = users.get(user_name)
        if group.broker_user is not None and group_user is None:
            problems.append(
                (
                    ("workers", i, "broker_user"),
                    f"broker user '{user_name}' is not listed under broker.users",
                )
            )
        elif group_user is not None and vhost in vhosts and not has_rights(group_user, vhost):
            where: tuple[str | int, ...] = (
                ("workers", i, "broker_user") if group.broker_user else ("app", "broker_user")
            )
            problems.append(
                (
                    where,
                    f"broker user '{user_name}' has no rights on vhost '{vhost}' "
                    f"(worker group '{group.name}'); give it permissions there",
                )
            )
        if group.vhost is not None and group.vhost not in vhosts:
            problems.append(
                (
                    ("workers", i, "vhost"),
                    f"vhost '{group.vhost}' is not listed under broker.vhosts",
                )
            )
    _check_app_user_rights(inv, problems)
    _check_duplicate_rights(inv, problems)
    _check_secret_names(inv, problems)
    _check_node_names(inv, problems)
    _check_addresses(inv, problems)
    _check_ports(inv, problems)
    return problems


def _check_app_user_rights(inv: Inventory, problems: Problems) -> None:
    """Beat and Flower connect as app.broker_user to app.vhost: it needs rights there."""
    users = {u.name: u for u in inv.broker.users}
    user = users.get(inv.app.broker_user)
    who = [name for name, part in (("beat", inv.beat), ("Flower", inv.flower)) if part is not None]
    if not who or user is None or inv.app.vhost not in inv.broker.vhosts:
        return
    if has_rights(user, inv.app.vhost) or any(p == ("app", "broker_user") for p, _ in problems):
        return
    problems.append(
        (
            ("app", "broker_user"),
            f"broker user '{user.name}' has no rights on vhost '{inv.app.vhost}' "
            f"({' and '.join(who)} connect{'s' if len(who) == 1 else ''} as app.broker_user); "
            "give it permissions there",
        )
    )


def _check_duplicate_rights(inv: Inventory, problems: Problems) -> None:
    for i, user in enumerate(inv.broker.users):
        first_perm: dict[str, int] = {}
        for j, perm in enumerate(user.permissions or ()):
            if perm.vhost in first_perm:
                problems.append(
                    (
                        ("broker", "users", i, "permissions", j, "vhost"),
                        f"user '{user.name}' already has permissions on vhost '{perm.vhost}' "
                        f"(permissions[{first_perm[perm.vhost]}]); merge them into one entry",
                    )
                )
            first_perm.setdefault(perm.vhost, j)
        first_topic: dict[tuple[str, str], int] = {}
        for j, tperm in enumerate(user.topic_permissions):
            key = (tperm.vhost, tperm.exchange)
            if key in first_topic:
                problems.append(
                    (
                        ("broker", "users", i, "topic_permissions", j, "vhost"),
                        f"user '{user.name}' already has topic permissions on exchange "
                        f"'{tperm.exchange}' in vhost '{tperm.vhost}' "
                        f"(topic_permissions[{first_topic[key]}]); merge them into one entry",
                    )
                )
            first_topic.setdefault(key, j)


class _SecretOwner(NamedTuple):
    secret: str
    name: str
    name_field: FieldPath
    secret_field: FieldPath | None  # None: the default name, derived from the user's name
    who: str


def _secret_owners(inv: Inventory) -> list[_SecretOwner]:
    owners: list[_SecretOwner] = []
    flower = inv.flower
    if flower is not None:
        # First, so a broker user whose default secret collides with it is the one named.
        owners.append(
            _SecretOwner(
                flower.broker_api_secret,
                flower.broker_api_user,
                ("flower", "broker_api_user"),
                ("flower", "broker_api_password_secret")
                if flower.broker_api_password_secret
                else None,
                f"Flower's broker user '{flower.broker_api_user}'",
            )
        )
    for i, user in enumerate(inv.broker.users):
        if user.name not in RESERVED_BROKER_USERS:  # refused by name already
            owners.append(
                _SecretOwner(
                    user.secret,
                    user.name,
                    ("broker", "users", i, "name"),
                    ("broker", "users", i, "password_secret") if user.password_secret else None,
                    f"user '{user.name}'",
                )
            )
    if flower is not None:
        for i, fuser in enumerate(flower.basic_auth):
            owners.append(
                _SecretOwner(
                    fuser.secret,
                    fuser.name,
                    ("flower", "basic_auth", i, "name"),
                    ("flower", "basic_auth", i, "password_secret")
                    if fuser.password_secret
                    else None,
                    f"Flower user '{fuser.name}'",
                )
            )
    return owners


def _check_secret_names(inv: Inventory, problems: Problems) -> None:
    """Default secret names must be valid and distinct; some secrets must not be shared."""
    if inv.flower is not None:
        first: dict[str, int] = {}
        for i, fuser in enumerate(inv.flower.basic_auth):
            if fuser.name in first:
                problems.append(
                    (
                        ("flower", "basic_auth", i, "name"),
                        f"Flower user '{fuser.name}' is listed twice",
                    )
                )
            first.setdefault(fuser.name, i)
    owners = _secret_owners(inv)
    defaults: dict[str, _SecretOwner] = {}
    for owner in owners:
        if owner.secret_field is None and not re.fullmatch(SECRET_NAME_RE, owner.secret):
            problems.append(
                (
                    owner.name_field,
                    f"the default secret name of {owner.who}, '{owner.secret}', is not a valid "
                    "secret name (lowercase letters, digits, '_', '.' and '-', at most 63); set "
                    "password_secret to one that is",
                )
            )
        elif owner.secret == ADMIN_SECRET:
            problems.append(
                (
                    owner.secret_field or owner.name_field,
                    f"'{ADMIN_SECRET}' holds the password of qsetup's own broker administrator; "
                    f"give {owner.who} another secret",
                )
            )
        elif owner.secret_field is None:
            other = defaults.setdefault(owner.secret, owner)
            if other is not owner and other.name != owner.name:  # same name: refused already
                problems.append(
                    (
                        owner.name_field,
                        f"{owner.who} would share the secret '{owner.secret}' with {other.who} "
                        "(default secret names are lowercased); set password_secret for one of "
                        "them",
                    )
                )
    cookie = inv.broker.erlang_cookie_secret
    if any(owner.secret == cookie for owner in owners):
        problems.append(
            (
                ("broker", "erlang_cookie_secret"),
                f"'{cookie}' is also a password here; the Erlang cookie gives full control of the "
                "broker, so give it a secret of its own",
            )
        )


def _node_name_path(i: int, group: WorkerGroup) -> FieldPath:
    return ("workers", i, "node_name") if group.node_name else ("workers", i, "name")


def _check_node_names(inv: Inventory, problems: Problems) -> None:
    """No two worker nodes may share a name (per host when the pattern names the host)."""
    taken: dict[tuple[str, str], tuple[str, str]] = {}
    for i, group in enumerate(inv.workers):
        pattern = group.node_pattern
        per_host = "%h" in pattern or "%n" in pattern
        names = [pattern.replace("%i", str(n)) for n in range(1, group.instances + 1)]
        clash: str | None = None
        for host in dict.fromkeys(group.hosts):
            for name in names:
                key = (host if per_host else "", name)
                other = taken.get(key)
                if other is not None and other[0] != group.name and clash is None:
                    where = f" on host '{host}'" if per_host else ""
                    clash = (
                        f"node '{name}'{where} would also be a node of worker group "
                        f"'{other[0]}'; give each group its own node_name"
                    )
                taken.setdefault(key, (group.name, host))
        if clash:
            problems.append((_node_name_path(i, group), clash))


def _ssh_port(inv: Inventory, name: str) -> tuple[int, FieldPath, bool]:
    host = inv.hosts[name]
    if host.ssh_port is not None:
        return host.ssh_port, ("hosts", name, "ssh_port"), True
    return inv.ssh.port, ("ssh", "port"), "port" in inv.ssh.model_fields_set


def _check_addresses(inv: Inventory, problems: Problems) -> None:
    seen: dict[tuple[str, int], str] = {}
    for name, host in inv.hosts.items():
        port = _ssh_port(inv, name)[0]
        key = (_same_address(host.address), port)
        if key in seen:
            problems.append(
                (
                    ("hosts", name, "address"),
                    f"host '{name}' has the same address and SSH port as host '{seen[key]}' "
                    f"({host.address}, port {port}); one machine is one host: list its roles "
                    "under one name",
                )
            )
        seen.setdefault(key, name)

    broker = inv.broker
    if broker.host not in inv.hosts:
        return
    clients = [h for g in inv.workers for h in g.hosts]
    clients += [part.host for part in (inv.beat, inv.flower) if part is not None]
    address = inv.hosts[broker.host].address
    # Clients on hosts reached through loopback (SSH port forwards) may be this machine:
    # only a client host with an address of its own is surely elsewhere.
    remote = sorted(
        {
            h
            for h in clients
            if h != broker.host
            and h in inv.hosts
            and not is_loopback(inv.hosts[h].address)
            and _same_address(inv.hosts[h].address) != _same_address(address)
        }
    )
    others = ", ".join(remote[:3]) + (" ..." if len(remote) > 3 else "")
    if is_loopback(broker.listen_address):
        if remote:
            problems.append(
                (
                    ("broker", "listen_address"),
                    f"RabbitMQ would listen on loopback only, but clients on {others} reach it "
                    "over the network; use 0.0.0.0 or the broker host's address",
                )
            )
        elif not is_loopback(address):
            problems.append(
                (
                    ("broker", "listen_address"),
                    f"RabbitMQ would listen on loopback only, but its clients connect to "
                    f"{address}; use 0.0.0.0 or {address}",
                )
            )
    if is_loopback(address) and remote:
        problems.append(
            (
                ("hosts", broker.host, "address"),
                f"the broker's address {address} is loopback, but clients on {others} connect "
                "to it from other machines; use an address they can reach",
            )
        )


PLUGIN_PORTS = {
    "rabbitmq_mqtt": 1883,
    "rabbitmq_stomp": 61613,
    "rabbitmq_stream": 5552,
    "rabbitmq_web_mqtt": 15675,
    "rabbitmq_web_stomp": 15674,
    "rabbitmq_prometheus": 15692,
}
"""Ports the plugins qsetup leaves at their defaults listen on."""


def _check_ports(inv: Inventory, problems: Problems) -> None:
    """No two services (sshd, RabbitMQ's listeners, Flower) on one port of one host."""
    broker, flower = inv.broker, inv.flower
    for name in inv.hosts:
        # (port, what, field, written in the inventory)
        ssh_port, ssh_path, ssh_explicit = _ssh_port(inv, name)
        claims: list[tuple[int, str, FieldPath, bool]] = [
            (ssh_port, "the SSH port", ssh_path, ssh_explicit)
        ]
        if name == broker.host:
            explicit = "port" in broker.model_fields_set
            claims += [
                (EPMD_PORT, "RabbitMQ's epmd port (fixed)", ("broker", "host"), False),
                (broker.port, "RabbitMQ's AMQP port", ("broker", "port"), explicit),
                (
                    broker.port + DIST_PORT_OFFSET,
                    f"RabbitMQ's inter-node port (AMQP port + {DIST_PORT_OFFSET})",
                    ("broker", "port"),
                    explicit,
                ),
                (
                    broker.management_port,
                    "RabbitMQ's management port",
                    ("broker", "management_port"),
                    "management_port" in broker.model_fields_set,
                ),
            ]
            for j, plugin in enumerate(broker.plugins):
                if plugin in PLUGIN_PORTS and plugin not in broker.plugins[:j]:
                    claims.append(
                        (PLUGIN_PORTS[plugin], f"{plugin}'s port", ("broker", "plugins", j), True)
                    )
        if flower is not None and name == flower.host:
            claims.append(
                (
                    flower.port,
                    "Flower's port",
                    ("flower", "port"),
                    "port" in flower.model_fields_set,
                )
            )
        taken: dict[int, tuple[int, str, FieldPath, bool]] = {}
        for claim in claims:
            port, what, path, explicit = claim
            first = taken.setdefault(port, claim)
            if first is claim:
                continue
            where = path if explicit or not first[3] else first[2]
            problems.append(
                (
                    where,
                    f"port {port} on host '{name}' would be both {first[1]} and {what}; "
                    "change one of them",
                )
            )


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
