"""What belongs where: the one place that decides it, from the validated inventory.

Pure: no disk, no network. render, plan (the Ansible serializer), status and the demo
read these values; none of them works the same facts out again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from qsetup.desired.broker import (
    NO_RIGHTS,
    BrokerAccount,
    BrokerPermission,
    BrokerPolicy,
    BrokerState,
    BrokerTopicPermission,
)
from qsetup.desired.names import expand_node_name
from qsetup.desired.results import RESULTS_UNIT
from qsetup.inventory.fields import ADMIN_SECRET as ADMIN_SECRET
from qsetup.inventory.fields import ADMIN_USER as ADMIN_USER
from qsetup.inventory.fields import resolve_relative
from qsetup.inventory.model import (
    Inventory,
    WorkerGroup,
    group_broker_user,
    group_vhost,
    longest_time_limit,
    managed_results,
    queue_type,
)
from qsetup.inventory.secrets import Secrets

OPT = PurePosixPath("/opt/qsetup")
ETC = PurePosixPath("/etc/qsetup")
UNIT_DIR = PurePosixPath("/etc/systemd/system")
BROKER_UNIT = "rabbitmq-server.service"
BEAT_UNIT = "qsetup-beat.service"
FLOWER_UNIT = "qsetup-flower.service"
UNIT_PREFIX = "qsetup-"
"""Every unit qsetup installs is named qsetup-*; status reports others' as not ours."""


@dataclass(frozen=True)
class SshEndpoint:
    """How the controller reaches one inventory host (host settings override ``ssh``)."""

    name: str
    address: str
    port: int
    user: str
    key: Path | None
    """Absolute: a relative ``ssh.key`` is read against the inventory's folder."""
    become: bool


def ssh_endpoints(inv: Inventory, inventory_path: Path) -> dict[str, SshEndpoint]:
    """Every host's SSH endpoint, keyed by inventory host name."""
    out: dict[str, SshEndpoint] = {}
    for name, host in inv.hosts.items():
        key = host.ssh_key or inv.ssh.key
        out[name] = SshEndpoint(
            name=name,
            address=host.address,
            port=host.ssh_port or inv.ssh.port,
            user=host.ssh_user or inv.ssh.user,
            key=resolve_relative(inventory_path, key) if key else None,
            become=bool(host.become if host.become is not None else inv.ssh.become),
        )
    return out


# --- Debian releases ----------------------------------------------------------------

RELEASES = {"bookworm": "Debian 12 (bookworm)", "trixie": "Debian 13 (trixie)"}
"""Release codenames qsetup supports, as ``/etc/os-release`` names them."""

RABBIT_DATA_DIR = "/var/lib/rabbitmq/mnesia"
RABBIT_DATA_NEEDS = {"trixie": "message_containers"}
"""Per release, a feature flag the release's RabbitMQ needs enabled in a node's data.

trixie's RabbitMQ 4.0.5 starts only on data whose every 3.13 flag was enabled
(message_containers came with 3.13); bookworm's 3.10.8 data has none of them.
"""

_CELERY_APT = {
    # bookworm: the package the notes name; it pulls celery (/usr/bin/celery) and
    # python3-celery 5.2.
    "bookworm": ("python-celery-common",),
    # trixie dropped python-celery-common; celery ships /usr/bin/celery, python3-celery 5.5.
    "trixie": ("python3-celery", "celery"),
}
CELERY_APT_MARK = "@celery"
"""Stands for Debian's Celery packages in a host's package set until its release is known."""


def apt_packages_by_release(packages: set[str]) -> dict[str, list[str]]:
    """Resolve a host's package set per supported release (``@celery`` becomes real names)."""
    out: dict[str, list[str]] = {}
    for release in RELEASES:
        names = set(packages - {CELERY_APT_MARK})
        if CELERY_APT_MARK in packages:
            names.update(_CELERY_APT[release])
        out[release] = sorted(names)
    return out


# --- services -------------------------------------------------------------------------

APP_SHIM = "qsetup_celery"
"""The module every worker and beat loads with ``-A``: it loads the app named by the
``QSETUP_APP`` environment variable and applies the settings of the queue type."""
SHIM_DIR = OPT / "lib"

RABBIT_CONSUMER_TIMEOUT = 1800
"""RabbitMQ's default consumer_timeout (seconds) in 3.10 and 4.0."""


def consumer_timeout(inv: Inventory) -> int | None:
    """The consumer_timeout (seconds) qsetup writes, or None to keep RabbitMQ's default.

    The inventory's value, else one minute more than the longest time_limit when that
    exceeds RabbitMQ's default: an acknowledgement (late acks, ETA tasks held by the
    worker) may then take as long as a task may run.
    """
    if inv.broker.consumer_timeout is not None:
        return inv.broker.consumer_timeout
    longest = longest_time_limit(inv)
    if longest is None or longest[1] + 60 <= RABBIT_CONSUMER_TIMEOUT:
        return None
    return longest[1] + 60


TLS_DIR = ETC / "tls"
CA_FILE = TLS_DIR / "ca.pem"
"""The CA certificate on every host that runs a client (workers, beat, Flower)."""
RABBIT_TLS_DIR = PurePosixPath("/etc/rabbitmq/tls")
FLOWER_TLS_DIR = ETC / "flower" / "tls"


def broker_plugins(inv: Inventory) -> list[str]:
    """The plugins every node enables: management always, prometheus with metrics on."""
    plugins = {"rabbitmq_management", *inv.broker.plugins}
    if inv.broker.metrics:
        plugins.add("rabbitmq_prometheus")
    return sorted(plugins)


def amqp_endpoint(inv: Inventory) -> tuple[str, int]:
    """The scheme and port clients use for AMQP: amqps on tls.port with TLS."""
    return ("amqps", inv.tls.port) if inv.tls.enabled else ("amqp", inv.broker.port)


def management_endpoint(inv: Inventory) -> tuple[str, int]:
    """The scheme and port of the management API on the network (HTTPS with TLS)."""
    if inv.tls.enabled:
        return "https", inv.tls.management_port
    return "http", inv.broker.management_port


FAILOVER_WINDOW = 30
"""Seconds a cluster's clients keep trying the broker's nodes in turn to open a connection."""


def celery_settings(inv: Inventory, ca_file: str = str(CA_FILE)) -> dict[str, object]:
    """Celery settings qsetup adds to the app in every process it runs (and its probes).

    Quorum queues: queues Celery declares (the default one and those named with
    ``--queues``) are quorum queues; the worker detects them and stops using global QoS
    (quorum queues refuse it); publishes wait for the broker's confirm, so a task is
    only sent once a quorum of nodes holds it. (Celery >= 5.5's native delayed delivery
    only helps tasks routed through topic exchanges; Celery's defaults are direct.)
    """
    settings: dict[str, object] = {}
    if inv.tls.enabled:
        # Verify the broker's certificate against the CA, and its name: with several
        # URLs, server_hostname None makes kombu check the one it connects to.
        settings["broker_use_ssl"] = {
            "ca_certs": ca_file,
            "cert_reqs": 2,  # ssl.CERT_REQUIRED
            "server_hostname": None,
        }
    if managed_results(inv):
        assert inv.results is not None
        # Results of the managed backend expire (Redis drops them); rpc:// results go with
        # their reply queue anyway.
        settings["result_expires"] = inv.results.expires
    transport: dict[str, object] = {}
    if queue_type(inv) == "quorum":
        settings.update(
            {
                "task_default_queue_type": "quorum",
                "task_create_missing_queue_type": "quorum",
                "worker_detect_quorum_queues": True,
            }
        )
        transport["confirm_publish"] = True
    if len(inv.broker.hosts) > 1:
        # kombu gives a connection it has to (re)open outside its retry loop (a worker's
        # result or subtask publisher, a client's first send) broker_connection_timeout
        # in all (4 s) to find a node: one node slow to answer, and a task that ran is
        # stored as FAILURE ("OperationalError: timed out"; CI, rolling broker restart).
        # The window covers one node restarting; each try still times out on its own.
        transport["connect_retries_timeout"] = FAILOVER_WINDOW
    if transport:
        settings["broker_transport_options"] = transport
    return settings


def consumed_queues(inv: Inventory) -> dict[tuple[str, str], tuple[str, ...]]:
    """The queues worker groups consume, as (vhost, queue), with the groups that do."""
    out: dict[tuple[str, str], list[str]] = {}
    for group in inv.workers:
        for name in group.queues:
            out.setdefault((group_vhost(inv, group), name), []).append(group.name)
    return {key: tuple(groups) for key, groups in out.items()}


def probe_transport_options(inv: Inventory) -> dict[str, object]:
    """Connection options for qsetup's own short-lived clients (status, the demo's task).

    One try per broker node, without pauses: each retry fails over to the next node's
    URL, so a dead node of a cluster is skipped and a dead broker fails at once.
    """
    return {
        "max_retries": len(inv.broker.hosts) - 1,
        "interval_start": 0,
        "interval_step": 0,
        "interval_max": 0,
    }


def broker_nodes(inv: Inventory, client: str | None = None) -> tuple[tuple[str, str], ...]:
    """(inventory host, address) of every RabbitMQ node, in the inventory's order.

    With ``client`` (the host a worker, beat or Flower runs on), the order that host's
    clients try them in: a broker node's own clients start with it, other hosts start
    one node further each, so a cluster's clients spread over its nodes and one node's
    loss stalls only the clients connected to it.
    """
    nodes = tuple((h, inv.hosts[h].address) for h in inv.broker.hosts)
    if client is None or len(nodes) < 2:
        return nodes
    if client in inv.broker.hosts:
        start = inv.broker.hosts.index(client)
    else:
        others = [h for h in inv.hosts if h not in inv.broker.hosts]
        start = others.index(client) % len(nodes) if client in others else 0
    return nodes[start:] + nodes[:start]


def code_dir(inv: Inventory) -> PurePosixPath:
    """Where the app's code lives on worker and beat hosts."""
    return OPT / "apps" / inv.app.name


def venv_dir(name: str) -> PurePosixPath:
    """Where a worker group's (or beat's, or Flower's) virtualenv lives."""
    return OPT / "venvs" / name


def needs_venv(inv: Inventory, group: WorkerGroup) -> bool:
    """True when a group runs from a virtualenv (pip, or apt plus extra requirements)."""
    return (
        group.install == "pip"
        or bool(inv.app.requirements)
        or inv.app.source.requirement is not None
    )


def celery_argv(inv: Inventory, group: WorkerGroup) -> tuple[str, ...]:
    """The command a group's units run as ``celery``.

    An apt group whose app needs more packages runs Debian's Celery from a virtualenv
    with the system's site-packages: ``python -m celery`` there sees both, and pip
    installs no celery script into that virtualenv.
    """
    if group.install == "pip":
        return (str(venv_dir(group.name) / "bin" / "celery"),)
    if needs_venv(inv, group):
        return (str(venv_dir(group.name) / "bin" / "python"), "-m", "celery")
    return ("/usr/bin/celery",)


@dataclass(frozen=True)
class Unit:
    """One systemd unit qsetup runs on one host, with everything that identifies it."""

    host: str
    name: str
    """The unit as systemctl knows it, e.g. ``qsetup-worker-orders@2.service``."""
    role: str
    """broker, worker, beat or flower."""
    unit_file: str
    """The unit file it comes from (a template for workers), under /etc/systemd/system."""
    group: str | None = None
    instance: int | None = None
    node_pattern: str | None = None
    """Workers: the ``-n`` pattern with ``%i`` filled in; :func:`node_name` expands it."""
    env_file: str | None = None
    user: str | None = None
    celery_argv: tuple[str, ...] = ()
    venv: str | None = None
    """The virtualenv (by name) whose change restarts this unit."""
    code: bool = False
    """True when the unit runs the app's code (a code change restarts it)."""
    runtime_prefix: str | None = None
    """Where the unit's Python packages live (``/usr`` or a virtualenv), for versions."""
    python: str | None = None
    """The interpreter the unit's Celery runs on (checks import the app with it)."""
    broker_user: str | None = None
    vhost: str | None = None

    def node_name(self, hostname: str) -> str:
        """The exact Celery node name on a host that reports ``hostname``."""
        assert self.node_pattern is not None, self.name
        return expand_node_name(self.node_pattern, 1, hostname)


def worker_unit(group_name: str, instance: int) -> str:
    """The unit name of one worker instance, e.g. ``qsetup-worker-orders@2.service``."""
    return f"qsetup-worker-{group_name}@{instance}.service"


def beat_runtime(inv: Inventory, host: str) -> tuple[tuple[str, ...], str | None]:
    """The celery command beat runs on ``host`` and the virtualenv it uses (None: Debian's).

    One beat runs the Celery of a worker group on its host, else beat's own virtualenv.
    A standby beat needs celery-redbeat: always beat's own virtualenv, with the system's
    site-packages when the host's group uses Debian's Celery (see :func:`beat_venv`).
    """
    assert inv.beat is not None
    on_host = [g for g in inv.workers if host in g.hosts]
    if inv.beat.redbeat:
        if on_host and on_host[0].install == "apt":
            return (str(venv_dir("beat") / "bin" / "python"), "-m", "celery"), "beat"
        return (str(venv_dir("beat") / "bin" / "celery"),), "beat"
    if on_host:
        group = on_host[0]
        return celery_argv(inv, group), (group.name if needs_venv(inv, group) else None)
    return (str(venv_dir("beat") / "bin" / "celery"),), "beat"


def beat_venv(inv: Inventory, host: str) -> tuple[str | None, bool]:
    """Beat's own virtualenv on ``host``: its Celery pin, and whether it sees Debian's.

    It sees Debian's packages on a host whose worker group uses Debian's Celery.
    """
    on_host = [g for g in inv.workers if host in g.hosts]
    if not on_host:
        return None, False
    return on_host[0].celery_version, on_host[0].install == "apt"


def _prefix(argv: tuple[str, ...]) -> str:
    return argv[0].rsplit("/bin/", 1)[0]


def _python(argv: tuple[str, ...]) -> str:
    prefix = _prefix(argv)
    return "/usr/bin/python3" if prefix == "/usr" else f"{prefix}/bin/python"


def units_by_host(inv: Inventory) -> dict[str, tuple[Unit, ...]]:
    """Every unit the inventory puts on each host (every host listed, maybe with none)."""
    units: dict[str, list[Unit]] = {name: [] for name in inv.hosts}
    for node in inv.broker.hosts:
        units[node].append(Unit(node, BROKER_UNIT, "broker", BROKER_UNIT, runtime_prefix=None))
    for group in inv.workers:
        argv = celery_argv(inv, group)
        for host in group.hosts:
            for n in range(1, group.instances + 1):
                units[host].append(
                    Unit(
                        host,
                        worker_unit(group.name, n),
                        "worker",
                        group.unit_template,
                        group=group.name,
                        instance=n,
                        node_pattern=group.node_pattern.replace("%i", str(n)),
                        env_file=str(ETC / f"worker-{group.name}.env"),
                        user=group.user,
                        celery_argv=argv,
                        venv=group.name if needs_venv(inv, group) else None,
                        code=True,
                        runtime_prefix=_prefix(argv),
                        python=_python(argv),
                        broker_user=group_broker_user(inv, group).name,
                        vhost=group_vhost(inv, group),
                    )
                )
    for host in inv.beat.hosts if inv.beat is not None else ():
        assert inv.beat is not None
        argv, venv = beat_runtime(inv, host)
        units[host].append(
            Unit(
                host,
                BEAT_UNIT,
                "beat",
                BEAT_UNIT,
                env_file=str(ETC / "beat.env"),
                user=inv.beat.user,
                celery_argv=argv,
                venv=venv,
                code=True,
                runtime_prefix=_prefix(argv),
                python=_python(argv),
            )
        )
    if inv.flower is not None:
        units[inv.flower.host].append(
            Unit(
                inv.flower.host,
                FLOWER_UNIT,
                "flower",
                FLOWER_UNIT,
                env_file=str(ETC / "flower.env"),
                user=inv.flower.user,
                venv="flower",
                runtime_prefix=str(venv_dir("flower")),
            )
        )
    if inv.results is not None:
        host = inv.results.host
        units[host].append(Unit(host, RESULTS_UNIT, "results", RESULTS_UNIT))
    return {host: tuple(us) for host, us in units.items()}


# --- broker ---------------------------------------------------------------------------


def broker_admin_password(inv: Inventory, secrets: Secrets) -> str:
    """The password of qsetup's own broker administrator (``qsetup-admin``).

    A secrets file may hold it as ``rabbitmq-user-qsetup-admin``; otherwise it is
    derived from the Erlang cookie, which already grants full control of the node,
    so it is stable across runs without asking the user for one more secret.
    """
    if ADMIN_SECRET in secrets.values:
        return secrets.get(ADMIN_SECRET)
    seed = secrets.get(inv.broker.erlang_cookie_secret)
    return hashlib.sha256(f"{ADMIN_USER}:{seed}".encode()).hexdigest()[:32]


def broker_state(inv: Inventory) -> BrokerState:
    """The vhosts, users (tags, permissions, topic permissions) and policies deploy sets up."""
    broker = inv.broker
    users = [
        BrokerAccount(
            ADMIN_USER,
            ADMIN_SECRET,
            ("administrator",),
            # Policies are managed per vhost, so qsetup's administrator needs access.
            tuple(BrokerPermission(v, ".*", ".*", ".*") for v in broker.vhosts),
        )
    ]
    for u in broker.users:
        users.append(
            BrokerAccount(
                u.name,
                u.secret,
                tuple(u.effective_tags),
                tuple(
                    BrokerPermission(p.vhost, p.configure, p.write, p.read)
                    for p in u.effective_permissions
                ),
                tuple(
                    BrokerTopicPermission(t.vhost, t.exchange, t.write, t.read)
                    for t in u.topic_permissions
                ),
            )
        )
    if inv.flower is not None:
        users.append(
            BrokerAccount(
                inv.flower.broker_api_user,
                inv.flower.broker_api_secret,
                ("monitoring",),
                # Vhost access to read queue stats through the API; no message rights.
                (BrokerPermission(inv.app.vhost, NO_RIGHTS, NO_RIGHTS, NO_RIGHTS),),
            )
        )
    return BrokerState(
        vhosts=tuple(broker.vhosts),
        users=tuple(users),
        policies=tuple(
            BrokerPolicy(
                p.name,
                p.vhost,
                p.pattern,
                p.apply_to,
                p.priority,
                tuple(p.definition.items()),
            )
            for p in broker.policies
        ),
        delete_guest=broker.delete_guest,
        port=broker.port,
        management_port=broker.management_port,
        admin_user=ADMIN_USER,
        admin_secret=ADMIN_SECRET,
    )
