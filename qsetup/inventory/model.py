"""The inventory model: what runs where, validated at the edge and frozen.

``qsetup.inventory.loader.load_inventory(path)`` reads YAML, validates it against these
models (built from the field types in ``qsetup.inventory.fields``) and the cross-section
checks in ``qsetup.inventory.crosscheck``, and raises ``InventoryError`` with one
``FILE:LINE:COL: field.path: message`` line per problem. The helpers at the end
(``queue_type``, ``tls_hosts``, ...) read choices off a validated inventory.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from qsetup.inventory.fields import (
    BACKEND_URL_RE,
    EXCHANGE_RE,
    MODULE_RE,
    POLICY_KEY_RE,
    ApiUserName,
    BrokerPort,
    BrokerUserName,
    Cidr,
    EnvName,
    EnvValue,
    FlowerPort,
    GroupName,
    HostAddress,
    ListenAddress,
    LocalPath,
    ManagementPort,
    Name,
    OsName,
    PipRequirement,
    PolicyValue,
    Port,
    QueueName,
    RegexStr,
    SecretName,
    VersionSpec,
    VhostName,
    check_regex,
    check_service_account,
    check_time_limit,
    node_name_problem,
)


class Model(BaseModel):
    """Base for every inventory model: unknown keys rejected, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


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

    address: HostAddress = Field(description="IP address or DNS name the controller connects to.")
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

    _regexes = field_validator("configure", "write", "read")(check_regex)


class TopicPermission(Model):
    """A broker user's rights on a topic exchange in one vhost."""

    vhost: VhostName
    exchange: Annotated[str, Field(pattern=EXCHANGE_RE)] = "amq.topic"
    write: RegexStr = ".*"
    read: RegexStr = ".*"

    _regexes = field_validator("write", "read")(check_regex)


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
    priority: StrictInt = Field(0, ge=0, le=999)
    definition: dict[Annotated[str, Field(pattern=POLICY_KEY_RE)], PolicyValue] = Field(
        max_length=32, description="Policy keys, e.g. {message-ttl: 60000, max-length: 10000}."
    )

    _pattern = field_validator("pattern")(check_regex)

    @field_validator("definition")
    @classmethod
    def _definition_not_empty(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("a policy needs at least one key, e.g. {message-ttl: 60000}")
        return value


class Broker(Model):
    """RabbitMQ: one host or a cluster, its vhosts, users, policies and plugins."""

    # Read through the ``host`` and ``hosts`` properties: whichever the inventory gives,
    # both are filled (``host`` is the first node of a cluster).
    single: Name | None = Field(
        None, alias="host", description="The host that runs RabbitMQ (one node)."
    )
    cluster: tuple[Name, ...] | None = Field(
        None,
        alias="hosts",
        max_length=9,
        description="The hosts of a RabbitMQ cluster: one, or an odd number >= 3 "
        "(a quorum survives the loss of a minority).",
    )
    listen_address: ListenAddress = Field(
        "0.0.0.0",  # noqa: S104
        description="AMQP listener address.",
    )
    port: BrokerPort = Field(5672, description="AMQP port.")
    management_port: ManagementPort = Field(15672, description="Management API/UI port.")
    nofile: StrictInt = Field(65536, ge=1024, le=1048576, description="File-descriptor limit.")
    plugins: tuple[Annotated[str, Field(pattern=r"^rabbitmq_[a-z0-9_]+$")], ...] = Field(
        ("rabbitmq_management",), description="Plugins to enable (management is on by default)."
    )
    delete_guest: StrictBool = Field(True, description="Delete the default guest user.")
    metrics: StrictBool = Field(
        True,
        description="Enable rabbitmq_prometheus (metrics on port 15692, over TLS with TLS on).",
    )
    metrics_allow_from: tuple[Cidr, ...] = Field(
        (),
        max_length=256,
        description="With firewall.enabled: addresses or networks (CIDR) that may scrape "
        "metrics on port 15692 (your Prometheus).",
    )
    allow_from: tuple[Cidr, ...] = Field(
        (),
        max_length=256,
        description="With firewall.enabled: addresses or networks (CIDR) besides the "
        "inventory's hosts that may reach AMQP(S) and the management API (the app servers "
        "that publish tasks, the machine that runs qsetup when it is elsewhere).",
    )
    consumer_timeout: StrictInt | None = Field(
        None,
        ge=60,
        le=8 * 86400,
        description="Seconds a delivery may stay unacknowledged (default: RabbitMQ's 30 min, "
        "or a minute more than the longest worker time_limit).",
    )
    erlang_cookie_secret: SecretName = Field(
        "rabbitmq-erlang-cookie", description="Secret holding the Erlang cookie."
    )
    vhosts: tuple[VhostName, ...] = Field(("/",), description="Virtual hosts to create.")
    users: tuple[BrokerUser, ...] = ()
    policies: tuple[Policy, ...] = ()

    @field_validator("cluster")
    @classmethod
    def _cluster_size(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return value
        if len(set(value)) != len(value):
            raise ValueError("a host is listed twice; each node is one host")
        if len(value) % 2 == 0:
            raise ValueError(
                f"{len(value)} nodes: use one host, or an odd number >= 3 (with {len(value)}, "
                "losing one node can take the quorum away)"
            )
        return value

    @model_validator(mode="after")
    def _host_or_hosts(self) -> Broker:
        if self.single is None and self.cluster is None:
            raise ValueError(
                "give broker.host (one RabbitMQ node) or broker.hosts (a cluster: 3, 5, ... hosts)"
            )
        if self.single is not None and self.cluster is not None:
            raise ValueError("give broker.host or broker.hosts, not both")
        return self

    @property
    def hosts(self) -> tuple[str, ...]:
        """Every RabbitMQ node's host, in the inventory's order (one for a single node)."""
        if self.cluster is not None:
            return self.cluster
        assert self.single is not None
        return (self.single,)

    @property
    def host(self) -> str:
        """The first node's host: where qsetup manages users, vhosts and policies."""
        return self.hosts[0]

    @property
    def clustered(self) -> bool:
        """True when RabbitMQ runs as a cluster of several nodes."""
        return len(self.hosts) > 1


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


class App(Model):
    """The Celery application the workers run."""

    name: Name = Field("app", description="Short name; used for paths on the hosts.")
    module: Annotated[str, Field(pattern=MODULE_RE, max_length=200)] = Field(
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
    queue_type: Literal["quorum", "classic"] | None = Field(
        None,
        description="Type of the queues the workers consume (default: quorum with a broker "
        "cluster, classic with one node); quorum needs Celery >= 5.5.",
    )


class WorkerGroup(Model):
    """Celery workers with the same settings on one or more hosts."""

    name: GroupName
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
    queues: tuple[QueueName, ...] = Field(("celery",), min_length=1, max_length=64)
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
        return check_service_account(value, "workers never run", "celery")

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
        return check_time_limit(value)

    @field_validator("time_limit")
    @classmethod
    def _time_limits(cls, value: int | None, info: ValidationInfo) -> int | None:
        check_time_limit(value)
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


BEAT_LOOP_INTERVAL = 5
"""A standby beat's longest sleep between ticks (``beat_max_loop_interval``): each tick
renews the holder's lock, and a standby tries to take the lock this often."""


class Beat(Model):
    """Celery beat: one scheduler on one host, or a standby beat on several hosts."""

    # Read through the ``host`` and ``hosts`` properties, as broker.host/hosts.
    single: Name | None = Field(
        None, alias="host", description="The host that runs beat (Celery's own scheduler)."
    )
    standby: tuple[Name, ...] | None = Field(
        None,
        alias="hosts",
        min_length=2,
        max_length=5,
        description="Hosts that each run beat with celery-redbeat: only the holder of a lock "
        "in the managed result backend (results:) sends; the others wait to take over.",
    )
    lock_timeout: int = Field(
        30,
        ge=15,
        le=3600,
        description="Seconds a standby beat's lock outlives its holder's last tick: a dead "
        f"holder's standby sends within this plus {BEAT_LOOP_INTERVAL} s (beat.hosts only).",
    )
    loglevel: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    user: OsName = "celery"
    group: OsName = "celery"

    @field_validator("user", "group")
    @classmethod
    def _not_root(cls, value: str) -> str:
        return check_service_account(value, "beat never runs", "celery")

    @field_validator("standby")
    @classmethod
    def _distinct(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a host is listed twice; each beat runs on its own host")
        return value

    @model_validator(mode="after")
    def _host_or_hosts(self) -> Beat:
        if self.single is None and self.standby is None:
            raise ValueError("give beat.host (one beat) or beat.hosts (a standby beat: 2+ hosts)")
        if self.single is not None and self.standby is not None:
            raise ValueError("give beat.host or beat.hosts, not both")
        return self

    @property
    def hosts(self) -> tuple[str, ...]:
        """Every host that runs beat, in the inventory's order (one without a standby)."""
        if self.standby is not None:
            return self.standby
        assert self.single is not None
        return (self.single,)

    @property
    def host(self) -> str:
        """The first beat host (the only one without a standby)."""
        return self.hosts[0]

    @property
    def redbeat(self) -> bool:
        """True when beat runs on several hosts with celery-redbeat's lock."""
        return self.standby is not None


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
    listen_address: ListenAddress = "0.0.0.0"  # noqa: S104
    port: FlowerPort = 5555
    url_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_/-]{0,64}$")] = ""
    version: VersionSpec | None = Field(None, description="pip version spec for flower.")
    basic_auth: tuple[FlowerUser, ...] = Field(
        min_length=1,
        max_length=64,
        description="Users allowed into Flower; it refuses everyone else.",
    )
    allow_from: tuple[Cidr, ...] = Field(
        (),
        max_length=256,
        description="With firewall.enabled: addresses or networks (CIDR) that may reach "
        "Flower's port (your operators' network); nothing else may.",
    )
    persistent: StrictBool = Field(True, description="Keep task history across restarts.")
    broker_api_user: ApiUserName = Field(
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
        return check_service_account(value, "Flower never runs", "flower")

    @property
    def broker_api_secret(self) -> str:
        """The secret holding the monitoring user's password."""
        return self.broker_api_password_secret or f"rabbitmq-user-{self.broker_api_user.lower()}"


# --- result backend --------------------------------------------------------------


class Results(Model):
    """A managed result backend: Debian's Redis server on one host (issue 22)."""

    host: Name = Field(description="The host that runs the result backend (redis-server).")
    port: Port = Field(6379, description="The server's port (TLS on it with tls.enabled).")
    expires: StrictInt = Field(
        86400,
        ge=60,
        le=90 * 86400,
        description="Seconds a task's result is kept (Celery's result_expires).",
    )
    allow_from: tuple[Cidr, ...] = Field(
        (),
        max_length=256,
        description="With firewall.enabled: addresses or networks (CIDR) besides the worker, "
        "beat and Flower hosts that may reach the server (the app servers that read results).",
    )


# --- TLS ------------------------------------------------------------------------


class TlsFiles(Model):
    """A host's own certificate and key (PEM files on the machine that runs qsetup)."""

    cert: LocalPath = Field(description="Certificate (PEM), issued by tls.ca_cert.")
    key: LocalPath = Field(description="Its private key (PEM, unencrypted).")


class Tls(Model):
    """TLS on every listener: AMQPS, the management API over HTTPS, Flower over HTTPS."""

    enabled: StrictBool = Field(False, description="Serve and use TLS everywhere.")
    ca_cert: LocalPath | None = Field(
        None,
        description="Your own CA certificate (PEM); then every broker and Flower host needs "
        "tls.certificates. Without it qsetup makes a CA (<stem>.ca.pem beside the inventory).",
    )
    certificates: dict[Name, TlsFiles] = Field(
        default_factory=dict, description="Per host: your own cert and key (with tls.ca_cert)."
    )
    port: BrokerPort = Field(5671, description="AMQPS port.")
    management_port: ManagementPort = Field(15671, description="Management API HTTPS port.")

    @model_validator(mode="after")
    def _own_needs_ca(self) -> Tls:
        if self.certificates and self.ca_cert is None:
            raise ValueError("tls.certificates needs tls.ca_cert (the CA that issued them)")
        return self


# --- firewall -------------------------------------------------------------------


class Firewall(Model):
    """qsetup's own nftables table on broker and Flower hosts, closed by default."""

    enabled: StrictBool = Field(
        False,
        description="Restrict RabbitMQ's and Flower's ports to the hosts and networks that "
        "need them (an nftables table of qsetup's own, loaded at boot; SSH and every other "
        "port are left alone). Absent: off (inventories `qsetup init` writes turn it on).",
    )


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
    results: Results | None = Field(
        None,
        description="A result backend qsetup installs and manages (instead of app.result_backend).",
    )
    tls: Tls = Field(default_factory=Tls)
    firewall: Firewall = Field(default_factory=Firewall)

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_a_number(cls, value: Any) -> Any:
        if isinstance(value, bool):  # Literal[1] would take true as 1
            raise ValueError(f"got {str(value).lower()}; use 1")
        return value


# --- derived views used by render, desired and status ---------------------------


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


def queue_type(inv: Inventory) -> str:
    """Quorum or classic: the inventory's choice, else quorum exactly when clustered."""
    if inv.app.queue_type is not None:
        return inv.app.queue_type
    return "quorum" if inv.broker.clustered else "classic"


def longest_time_limit(inv: Inventory) -> tuple[str, int] | None:
    """The worker group with the longest hard time limit, and that limit (seconds)."""
    limits = [(g.time_limit, g.name) for g in inv.workers if g.time_limit is not None]
    if not limits:
        return None
    limit, name = max(limits)
    return name, limit


def managed_results(inv: Inventory) -> bool:
    """True when qsetup's own result backend serves the app.

    ``results`` is set and ``app.result_backend`` is ``rpc://`` (the default, which
    ``qsetup init`` writes): any other URL written there wins.
    """
    return inv.results is not None and inv.app.result_backend == "rpc://"


def tls_hosts(inv: Inventory) -> tuple[str, ...]:
    """Hosts that serve TLS and need a certificate: broker nodes, Flower's and results' host."""
    if not inv.tls.enabled:
        return ()
    hosts = list(inv.broker.hosts)
    if inv.flower is not None:
        hosts.append(inv.flower.host)
    if inv.results is not None:
        hosts.append(inv.results.host)
    return tuple(dict.fromkeys(hosts))
