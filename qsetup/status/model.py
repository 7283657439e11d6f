"""The values ``check_status`` returns: frozen, plain, and free of secrets."""

from __future__ import annotations

from dataclasses import dataclass

from qsetup.artifacts.tls import RENEW_DAYS
from qsetup.converge.broker import Drift
from qsetup.converge.compare import Difference


@dataclass(frozen=True)
class UnitStatus:
    """One qsetup-managed systemd unit on one host, as ``systemctl show`` reports it."""

    name: str
    role: str
    """broker, worker, beat or flower; ``unexpected`` for a unit the inventory does not
    put on its host."""
    load_state: str
    active_state: str
    sub_state: str
    since: str | None
    """When the unit entered its current state (ISO 8601, UTC), if known."""
    restarts: int | None
    """How often systemd restarted it automatically (``NRestarts``)."""
    unit_file_state: str | None = None
    """``enabled``, ``disabled``, ... (``UnitFileState``), if known."""

    @property
    def ok(self) -> bool:
        """True when the unit is installed and running (the firewall's oneshot: has run)."""
        done = ("running", "exited") if self.role == "firewall" else ("running",)
        return (
            self.load_state == "loaded" and self.active_state == "active" and self.sub_state in done
        )


@dataclass(frozen=True)
class BeatLog:
    """What a standby beat's current run logged (its host's journal)."""

    running: bool
    """The unit has a current run (an invocation)."""
    holds_lock: bool
    """Its last lock line is redbeat's "Acquired lock" (a beat that loses it exits)."""
    sent: int
    """Tasks it sent within the lock timeout plus one loop interval."""


@dataclass(frozen=True)
class BeatStatus:
    """A standby beat (``beat.hosts``) across its hosts."""

    hosts: tuple[str, ...]
    holders: tuple[str, ...]
    """Beat hosts whose current run holds redbeat's lock (one when all is well)."""
    senders: tuple[str, ...]
    """Beat hosts that sent a task within the lock timeout plus one loop interval."""
    unread: tuple[str, ...]
    """Beat hosts that could not be read."""

    @property
    def holder(self) -> str | None:
        """The one lock holder (None: none, or several)."""
        return self.holders[0] if len(self.holders) == 1 else None


@dataclass(frozen=True)
class ResultsStatus:
    """The managed result backend as qsetup's reader found it on its host."""

    error: str | None
    """Why it did not answer (None when it did)."""
    version: str
    role: str
    """``master`` (replication role; a standby would say ``slave``)."""
    used_memory: str
    aof_enabled: bool
    clients: int | None

    @property
    def ok(self) -> bool:
        """Answered, and keeps every write (AOF)."""
        return self.error is None and self.aof_enabled


@dataclass(frozen=True)
class HostStatus:
    """What one SSH round trip to a host found."""

    name: str
    address: str
    roles: tuple[str, ...]
    reachable: bool
    error: str | None
    """Why the host could not be checked (None when it was)."""
    hostname: str | None
    units: tuple[UnitStatus, ...]
    celery_versions: tuple[tuple[str, str], ...]
    """(celery executable, installed celery version) per executable qsetup runs there."""
    flower_version: str | None
    rabbitmq_version: str | None
    """The rabbitmq-server package version, on the broker host."""
    unexpected_units: tuple[UnitStatus, ...] = ()
    """``qsetup-*`` units loaded, active or enabled there that the inventory does not put
    there (an old group, an extra instance, a moved beat)."""
    differences: tuple[Difference, ...] = ()
    """Every way the host differs from what a deploy would put there (the one comparison)."""
    deprecated_features: tuple[str, ...] = ()
    """On the node that manages the broker's objects: deprecated features in use
    (RabbitMQ 3.13 and later say; a later release may remove them)."""
    results: ResultsStatus | None = None
    """On the managed result backend's host: its ping (role, memory, persistence, clients)."""
    beat_log: BeatLog | None = None
    """On a standby beat's host: its lock and recent sends."""
    broker_drift: tuple[Drift, ...] | None = None
    """On the node that manages the broker's objects: their drift, from the read's
    definitions (passwords checked too); None where not read."""


@dataclass(frozen=True)
class QueueStatus:
    """Message counts and consumers of one queue."""

    vhost: str
    name: str
    ready: int
    unacked: int
    consumers: int
    type: str = "classic"
    """classic, quorum or stream, as the API reports it."""


@dataclass(frozen=True)
class BrokerNode:
    """One RabbitMQ node with its resource alarms."""

    name: str
    running: bool
    mem_alarm: bool
    disk_free_alarm: bool
    mem_used: int | None
    mem_limit: int | None
    disk_free: int | None
    disk_free_limit: int | None
    partitions: tuple[str, ...] = ()
    """The nodes this one is partitioned from (``partitions`` in ``/api/nodes``)."""
    host: str | None = None
    """The inventory host that runs it, matched by the hostname the host reported over
    SSH (None: not placed yet, or a node the inventory's ``broker.hosts`` lacks)."""
    expected: bool | None = None
    """Whether ``broker.hosts`` has it (None: not placed on hosts yet)."""
    listed: bool = True
    """False for a node the inventory expects that the management API does not list."""


@dataclass(frozen=True)
class QuorumQueue:
    """The replicas of one quorum queue, as the management API reports them."""

    vhost: str
    name: str
    members: tuple[str, ...]
    """Nodes that hold a replica."""
    online: tuple[str, ...]
    """Members whose replica runs."""
    leader: str | None
    """The leader, None when the API names none or names a member that is not online."""

    @property
    def offline(self) -> tuple[str, ...]:
        """Members whose replica does not run."""
        return tuple(m for m in self.members if m not in self.online)

    @property
    def has_quorum(self) -> bool:
        """True when a leader runs and a majority of the members are online."""
        return self.leader is not None and len(self.online) > len(self.members) // 2


@dataclass(frozen=True)
class BrokerStatus:
    """The broker as its management API shows it, compared with the inventory."""

    host: str
    api_url: str
    error: str | None
    """Why the management API could not be read (None when it was)."""
    rabbitmq_version: str | None
    erlang_version: str | None
    nodes: tuple[BrokerNode, ...]
    vhosts: tuple[str, ...]
    users: tuple[str, ...]
    drift: tuple[Drift, ...]
    queues: tuple[QueueStatus, ...]
    api_host: str | None = None
    """The broker host whose management API answered (the first of ``broker.hosts``
    that did; None when none did)."""
    api_errors: tuple[tuple[str, str], ...] = ()
    """(broker host, why) for each node asked before ``api_host`` (all, when none answered)."""
    quorum_queues: tuple[QuorumQueue, ...] = ()


@dataclass(frozen=True)
class WorkerNode:
    """A Celery worker node: expected by the inventory, answering, or both."""

    name: str
    host: str | None
    """The inventory host it runs on (None for a node the inventory does not expect)."""
    group: str | None
    unit: str | None
    vhost: str
    expected: bool
    answers_ping: bool
    registered: tuple[str, ...]
    active: int | None


@dataclass(frozen=True)
class FlowerStatus:
    """Whether Flower answers with credentials and refuses without."""

    host: str
    url: str
    without_credentials: int | None
    """HTTP status without credentials (401 expected)."""
    with_credentials: int | None
    """HTTP status as the first basic-auth user (200 expected)."""
    error: str | None

    @property
    def ok(self) -> bool:
        """True when Flower refuses strangers and lets its user in."""
        return self.without_credentials == 401 and self.with_credentials == 200


@dataclass(frozen=True)
class CertStatus:
    """The certificate one TLS endpoint serves, read with a handshake from the controller."""

    host: str
    port: int
    service: str
    """amqps, management (HTTPS) or flower (HTTPS)."""
    not_after: str | None
    """When it expires (ISO 8601, UTC); None when no certificate could be read."""
    days_left: int | None
    """Whole days until it expires (negative: expired), None when unread."""
    error: str | None
    """Why the handshake failed or did not verify against the CA (None: it verified)."""

    @property
    def ok(self) -> bool:
        """True when it verified against the CA and is not due for renewal."""
        return self.error is None and self.days_left is not None and self.days_left >= RENEW_DAYS


@dataclass(frozen=True)
class TlsStatus:
    """Every TLS endpoint's certificate, verified against the CA qsetup's clients use."""

    ca: str
    """The CA certificate file the handshakes verified against."""
    certificates: tuple[CertStatus, ...]
    generated: bool = True
    """True when qsetup made the CA (deploy renews certificates), False for the user's own."""


@dataclass(frozen=True)
class SystemStatus:
    """Everything one ``check_status`` run found, with one line per problem."""

    hosts: tuple[HostStatus, ...]
    broker: BrokerStatus | None
    workers: tuple[WorkerNode, ...]
    flower: FlowerStatus | None
    problems: tuple[str, ...]
    """Each names its host and the unit or object, e.g. ``qs2: unit x@1.service: ...``."""
    checked_at: str
    seconds: float
    tls: TlsStatus | None = None
    """None without ``tls.enabled``."""
    beat: BeatStatus | None = None
    """None without a standby beat (``beat.hosts``)."""

    @property
    def healthy(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def host(self, name: str) -> HostStatus:
        """The status of one inventory host."""
        return next(h for h in self.hosts if h.name == name)
