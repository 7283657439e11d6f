"""The inventory model: what runs where, validated at the edge and frozen.

``load_inventory(path)`` reads YAML, validates it against these models and the
cross-checks below, and raises ``InventoryError`` with one
``FILE:LINE:COL: field.path: message`` line per problem.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

NAME_RE = r"^[a-z][a-z0-9-]{0,30}$"
SECRET_NAME_RE = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
BROKER_USER_RE = r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$"
VHOST_RE = r"^/?[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$|^/$"
OS_NAME_RE = r"^[a-z_][a-z0-9_-]{0,30}$"
HOSTLIKE_RE = r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252})$"
LISTEN_RE = r"^[A-Za-z0-9.:-]{1,253}$"
# Rendered unquoted into env files: no spaces, quotes, backslashes or line breaks.
BACKEND_URL_RE = r"^[a-z][a-z0-9+.-]*://[^\s\"'\\]*$"

Name = Annotated[str, Field(pattern=NAME_RE)]
SecretName = Annotated[str, Field(pattern=SECRET_NAME_RE)]
BrokerUserName = Annotated[str, Field(pattern=BROKER_USER_RE)]
VhostName = Annotated[str, Field(pattern=VHOST_RE)]
OsName = Annotated[str, Field(pattern=OS_NAME_RE)]
Port = Annotated[int, Field(ge=1, le=65535)]
RegexStr = Annotated[str, Field(max_length=512)]


class Model(BaseModel):
    """Base for every inventory model: unknown keys rejected, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc})") from None
    return value


# --- hosts ------------------------------------------------------------------


class SshDefaults(Model):
    """SSH settings every host inherits unless it overrides them."""

    user: OsName = Field("root", description="SSH login user.")
    port: Port = Field(22, description="SSH port.")
    key: str | None = Field(
        None, description="Private key file; relative paths are relative to the inventory."
    )
    become: bool = Field(False, description="Use sudo for tasks (needed when user is not root).")
    connect_timeout: int = Field(10, ge=1, le=300, description="Seconds to wait for SSH.")
    host_key_checking: Literal["accept-new", "strict", "off"] = Field(
        "accept-new",
        description="accept-new: trust a host's key on first contact, refuse changes; "
        "off: for throw-away test hosts only.",
    )


class Host(Model):
    """A machine qsetup manages; it may hold several roles."""

    address: Annotated[str, Field(pattern=HOSTLIKE_RE)] = Field(
        description="IP address or DNS name the controller connects to."
    )
    ssh_user: OsName | None = Field(None, description="Overrides ssh.user for this host.")
    ssh_port: Port | None = Field(None, description="Overrides ssh.port for this host.")
    ssh_key: str | None = Field(None, description="Overrides ssh.key for this host.")
    become: bool | None = Field(None, description="Overrides ssh.become for this host.")


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
    exchange: str = "amq.topic"
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


class Policy(Model):
    """A RabbitMQ policy (queue type, TTL, max-length, ...)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    vhost: VhostName
    pattern: RegexStr
    apply_to: Literal[
        "all", "queues", "exchanges", "classic_queues", "quorum_queues", "streams"
    ] = "queues"
    priority: int = Field(0, ge=0, le=999)
    definition: dict[str, str | int | bool] = Field(
        description="Policy keys, e.g. {message-ttl: 60000, max-length: 10000}."
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
    listen_address: Annotated[str, Field(pattern=LISTEN_RE)] = Field(
        "0.0.0.0",  # noqa: S104
        description="AMQP listener address.",
    )
    port: Port = Field(5672, description="AMQP port.")
    management_port: Port = Field(15672, description="Management API/UI port.")
    nofile: int = Field(65536, ge=1024, le=1048576, description="File-descriptor limit.")
    plugins: tuple[Annotated[str, Field(pattern=r"^rabbitmq_[a-z0-9_]+$")], ...] = Field(
        ("rabbitmq_management",), description="Plugins to enable (management is on by default)."
    )
    delete_guest: bool = Field(True, description="Delete the default guest user.")
    erlang_cookie_secret: SecretName = Field(
        "rabbitmq-erlang-cookie", description="Secret holding the Erlang cookie."
    )
    vhosts: tuple[VhostName, ...] = Field(("/",), description="Virtual hosts to create.")
    users: tuple[BrokerUser, ...] = ()
    policies: tuple[Policy, ...] = ()


# --- app and workers ------------------------------------------------------------


class AppSource(Model):
    """Where the Celery app's code comes from: a local directory or a pip requirement."""

    path: str | None = Field(
        None, description="Local directory shipped to the workers (relative to the inventory)."
    )
    requirement: str | None = Field(
        None, description="A pip requirement or wheel path that installs the app."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> AppSource:
        if (self.path is None) == (self.requirement is None):
            raise ValueError("give exactly one of path (a local directory) or requirement")
        return self


RESERVED_ENV = frozenset({"CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"})


def _not_reserved(key: str) -> str:
    if key in RESERVED_ENV:
        raise ValueError(f"{key} is set by qsetup from broker_user and vhost; remove it")
    return key


EnvName = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$"), AfterValidator(_not_reserved)]


class App(Model):
    """The Celery application the workers run."""

    name: Name = Field("app", description="Short name; used for paths on the hosts.")
    module: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.:]*$")] = Field(
        description="The -A argument, e.g. proj or proj.celery:app."
    )
    source: AppSource
    requirements: tuple[Annotated[str, Field(min_length=1, max_length=200)], ...] = Field(
        (), description="Extra pip requirements the app needs."
    )
    environment: dict[EnvName, str] = Field(
        default_factory=dict, description="Non-secret environment for workers, beat and Flower."
    )
    broker_user: BrokerUserName = Field(description="The broker user the workers connect as.")
    vhost: VhostName = Field(description="The vhost the workers use.")
    result_backend: Annotated[str, Field(pattern=BACKEND_URL_RE)] = Field(
        "rpc://", description="Celery result backend URL (no secrets; rpc:// uses the broker)."
    )


class WorkerGroup(Model):
    """Celery workers with the same settings on one or more hosts."""

    name: Name
    hosts: tuple[Name, ...] = Field(min_length=1)
    install: Literal["apt", "pip"] = Field(
        description="apt: Debian's python-celery-common; pip: a virtualenv with celery."
    )
    celery_version: str | None = Field(
        None, description="pip only: a version spec such as '==5.4.*' (default: latest 5.x)."
    )
    instances: int = Field(1, ge=1, le=64, description="Worker processes (units) per host.")
    node_name: str = Field(
        "", description="Node name pattern (default NAME-%i@%h; %i is the instance number)."
    )
    queues: tuple[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")], ...] = ("celery",)
    concurrency: int | None = Field(None, ge=1, le=1024)
    autoscale: tuple[int, int] | None = Field(None, description="[max, min] processes.")
    pool: Literal["prefork", "threads", "solo", "eventlet", "gevent"] = "prefork"
    max_tasks_per_child: int | None = Field(None, ge=1)
    max_memory_per_child: int | None = Field(None, ge=1, description="KiB.")
    soft_time_limit: int | None = Field(None, ge=1, description="Seconds.")
    time_limit: int | None = Field(None, ge=1, description="Seconds.")
    loglevel: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    user: OsName = Field("celery", description="OS user the workers run as (never root).")
    group: OsName = Field("celery", description="OS group of that user.")
    broker_user: BrokerUserName | None = Field(None, description="Default: app.broker_user.")
    vhost: VhostName | None = Field(None, description="Default: app.vhost.")

    @field_validator("user", "group")
    @classmethod
    def _not_root(cls, value: str) -> str:
        if value == "root":
            raise ValueError("workers never run as root; use a dedicated user such as celery")
        return value

    @field_validator("node_name")
    @classmethod
    def _node_name(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9_.%@-]{1,128}", value):
            raise ValueError("use letters, digits, - _ . and the placeholders %i %h %n %d")
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

    @field_validator("time_limit")
    @classmethod
    def _time_limits(cls, value: int | None, info: ValidationInfo) -> int | None:
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
        if value == "root":
            raise ValueError("beat never runs as root; use a dedicated user such as celery")
        return value


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


class Flower(Model):
    """Flower, the web monitor, on one host."""

    host: Name
    listen_address: Annotated[str, Field(pattern=LISTEN_RE)] = "0.0.0.0"  # noqa: S104
    port: Port = 5555
    url_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_/-]{0,64}$")] = ""
    version: str | None = Field(None, description="pip version spec for flower.")
    basic_auth: tuple[FlowerUser, ...] = Field(
        min_length=1, description="Users allowed into Flower; it refuses everyone else."
    )
    persistent: bool = Field(True, description="Keep task history across restarts.")
    broker_api_user: BrokerUserName = Field(
        "flower-monitor",
        description="Monitoring-tagged broker user qsetup creates for Flower's broker API.",
    )
    broker_api_password_secret: SecretName | None = Field(
        None, description="Default: rabbitmq-user-<broker_api_user>."
    )
    user: OsName = "flower"
    group: OsName = "flower"

    @property
    def broker_api_secret(self) -> str:
        """The secret holding the monitoring user's password."""
        return self.broker_api_password_secret or f"rabbitmq-user-{self.broker_api_user.lower()}"


# --- the whole inventory ------------------------------------------------------


class Inventory(Model):
    """A complete qsetup inventory."""

    version: Literal[1] = Field(1, description="Inventory format version.")
    ssh: SshDefaults = Field(default_factory=SshDefaults)
    hosts: dict[Name, Host] = Field(min_length=1)
    broker: Broker
    app: App
    workers: tuple[WorkerGroup, ...] = Field(min_length=1)
    beat: Beat | None = None
    flower: Flower | None = None


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


def has_rights(user: BrokerUser, vhost: str) -> bool:
    """True when the user may configure, write and read something on the vhost."""
    return any(
        p.vhost == vhost and p.configure and p.write and p.read for p in user.effective_permissions
    )


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
        if user.name == "guest":
            problems.append(
                (("broker", "users", i, "name"), "'guest' is RabbitMQ's default user; pick a name")
            )
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
    return problems


def resolve_relative(inventory_path: Path, value: str) -> Path:
    """Resolve a path from the inventory relative to the inventory's directory."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = inventory_path.resolve().parent / path
    return path
