"""``check_status``: the SSH round and the controller's checks at the same time."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import NamedTuple

from qsetup.artifacts.targets import (
    every_read_params,
    host_targets,
    plan_hosts,
    read_hostnames,
    secret_values,
)
from qsetup.artifacts.tls import prepare as prepare_tls
from qsetup.inventory.loader import LoadedInventory
from qsetup.status.background import Background
from qsetup.status.broker import broker_problems, fetch_broker
from qsetup.status.certs import certificate_problems, check_certificates
from qsetup.status.cluster import place_nodes
from qsetup.status.flower import check_flower, flower_problems
from qsetup.status.hosts import assemble_hosts, beat_problems, beat_status, host_problems
from qsetup.status.model import (
    BrokerStatus,
    FlowerStatus,
    HostStatus,
    SystemStatus,
    TlsStatus,
)
from qsetup.status.ssh import ReadRound, effective_timeout, start_reading
from qsetup.status.workers import (
    InspectResult,
    NodeNames,
    broker_connections,
    combine_nodes,
    expected_nodes,
    inspect_workers,
    worker_problems,
)

PING_TIMEOUT = 1.0
"""How long the worker ping waits for another answer while an expected node is missing."""


class _Checks(NamedTuple):
    http: Background[tuple[BrokerStatus, FlowerStatus | None]]
    certs: Background[TlsStatus | None]
    inspections: list[Background[InspectResult]]


def scrub(lines: Iterable[str], secrets: Iterable[str]) -> tuple[str, ...]:
    """Replace any secret value that slipped into a line with ``***``."""
    values = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)
    out = []
    for line in lines:
        for value in values:
            line = line.replace(value, "***")
        out.append(line)
    return tuple(out)


def _refused(error: str, hosts: Mapping[str, HostStatus], host: str | None, role: str) -> str:
    """``error`` (an API's), or what the host's read says when it could not connect."""
    found = hosts.get(host or "")
    if found is None or not error.startswith("cannot connect"):
        return error
    if not found.reachable:
        return "cannot connect, and the host could not be read either (see its line)"
    unit = next((u for u in found.units if u.role == role and not u.ok), None)
    if unit is None:
        return error
    return f"cannot connect: {unit.name} is {unit.active_state} ({unit.sub_state}) there"


def explain_refusals(
    broker: BrokerStatus, flower: FlowerStatus | None, hosts: Mapping[str, HostStatus]
) -> tuple[BrokerStatus, FlowerStatus | None]:
    """A connection refused by a host whose unit the read found stopped says that.

    The API's own reason guesses (the management plugin, the firewall's allow_from);
    the host's read knows when RabbitMQ or Flower is simply not running there, or that
    the host does not answer at all.
    """
    errors = tuple(
        (host, _refused(error, hosts, host, "broker")) for host, error in broker.api_errors
    )
    if errors != broker.api_errors:
        error = errors[0][1] if broker.error is not None and len(errors) == 1 else broker.error
        broker = replace(broker, api_errors=errors, error=error)
    if flower is not None and flower.error is not None:
        flower = replace(flower, error=_refused(flower.error, hosts, flower.host, "flower"))
    return broker, flower


def import_clients(loaded: LoadedInventory) -> None:
    """Import the clients the background checks use, here, before any of them starts.

    Not in their threads: while one thread was halfway through importing Celery (status
    used it then), another's ``isinstance(hook, Callable)`` in requests reached Celery's
    half-defined abstract classes and failed (NameError: CallableSignature), once in a CI
    run. cryptography (the certificates' check, the plan's TLS material) only with TLS on.
    """
    import kombu.pidbox  # noqa: F401
    import kombu.transport.pyamqp  # noqa: F401

    if loaded.inventory.tls.enabled:
        import cryptography.x509  # noqa: F401


def read_hosts(
    loaded: LoadedInventory,
    seconds: float,
    reading: ReadRound | None = None,
    meanwhile: Callable[[], object] | None = None,
) -> dict[str, HostStatus]:
    """Read every host (the one read) and compare it with what a deploy would put there.

    The plan is the deploy's own (:func:`qsetup.artifacts.targets.plan_hosts`), rendered
    with the TLS certificates as they are, or as a deploy would issue them (in memory:
    status writes nothing). ``reading``: the round, started earlier (else started here,
    before the plan, so the hosts' clients connect while it renders). ``meanwhile`` is
    called once the hosts have their parameters, while they read.
    """
    inv = loaded.inventory
    reading = reading or start_reading(loaded, seconds)
    material = prepare_tls(loaded.path, inv, None, write=False, vault=loaded.vault)
    with tempfile.TemporaryDirectory(prefix="qsetup-status-") as tmp:
        plans = plan_hosts(loaded, material, Path(tmp) / "app.tar")
    secrets = secret_values(loaded)
    params = every_read_params(loaded, plans)
    reading.send(params)
    if meanwhile is not None:
        meanwhile()
    outcomes = reading.finish(params)
    hostnames = read_hostnames({h: o.facts for h, o in outcomes.items()})
    return assemble_hosts(inv, outcomes, host_targets(plans, hostnames), secrets)


def check_status(
    loaded: LoadedInventory,
    timeout: float | None = None,
    ping_timeout: float = PING_TIMEOUT,
    reading: ReadRound | None = None,
) -> SystemStatus:
    """Check every host, the broker, the workers and Flower; list every problem.

    The SSH round (all hosts in parallel) runs on this thread while the broker's
    management API, Flower, the TLS endpoints' certificates and one Celery broadcast
    per worker vhost run on their own, so the whole check takes about as long as its
    slowest part. The broker's nodes are
    matched to inventory hosts by the hostnames the SSH round read.

    Args:
        loaded: the loaded inventory and its secrets.
        timeout: seconds per host for SSH connect and for the command, and per HTTP call
            (default: ``ssh.connect_timeout``, at most 5).
        ping_timeout: seconds the worker ping waits for another answer while a node the
            inventory expects has not answered (it ends once all have).
        reading: the SSH round, started by the caller with :func:`start_reading` and
            ``effective_timeout(loaded, timeout)`` (``qsetup status`` starts it before it
            imports this module); else started here.
    """
    inv = loaded.inventory
    seconds = effective_timeout(loaded, timeout)
    started = time.monotonic()
    checked_at = datetime.now(UTC).isoformat(timespec="seconds")

    def http_checks() -> tuple[BrokerStatus, FlowerStatus | None]:
        return fetch_broker(loaded, seconds), check_flower(loaded, seconds)

    if reading is None:
        reading = start_reading(loaded, seconds)
    names = {(user, vhost): NodeNames(inv, user, vhost) for user, vhost in broker_connections(inv)}
    checks: list[_Checks] = []

    def start_checks() -> _Checks:
        """The broker's API, Flower, certificates and broadcasts, started once."""
        if not checks:
            import_clients(loaded)
            checks.append(
                _Checks(
                    Background(http_checks),
                    Background(partial(check_certificates, loaded, seconds)),
                    [
                        Background(
                            partial(
                                inspect_workers,
                                *(loaded, user, vhost, seconds, ping_timeout, expected),
                            )
                        )
                        for (user, vhost), expected in names.items()
                    ],
                )
            )
        return checks[0]

    # The plan first, so the hosts read while the clients import and the checks run.
    hosts = read_hosts(loaded, seconds, reading, start_checks)
    http, certs, inspections = start_checks()
    hostnames = {name: h.hostname for name, h in hosts.items()}
    for expected in names.values():
        expected.learn(hostnames)
    broker, flower = http.result()
    tls = certs.result()
    broker = place_nodes(inv, broker, hostnames)
    broker, flower = explain_refusals(broker, flower, hosts)
    read_drift = next((h.broker_drift for h in hosts.values() if h.broker_drift is not None), None)
    if read_drift is not None and broker is not None and broker.error is None:
        # The read's comparison checks passwords too; the same lines, said once.
        broker = replace(broker, drift=read_drift)
    results: list[InspectResult] = [i.result() for i in inspections]

    nodes = combine_nodes(expected_nodes(inv, hostnames), results)
    unreachable = frozenset(name for name, h in hosts.items() if not h.reachable)
    problems: list[str] = []
    for host in hosts.values():
        problems += host_problems(host)
    beat = beat_status(inv, hosts)
    problems += beat_problems(inv, hosts, beat)
    problems += broker_problems(inv, broker)
    if broker is None or broker.error is not None:  # the API did not answer here; the read did
        problems += [d.line for h in hosts.values() for d in h.differences if d.kind == "broker"]
    problems += worker_problems(nodes, results, inv.broker.host, unreachable)
    problems += flower_problems(flower)
    problems += certificate_problems(tls)
    secrets = list(secret_values(loaded).values())
    return SystemStatus(
        hosts=tuple(hosts.values()),
        broker=broker,
        workers=tuple(nodes),
        flower=flower,
        problems=scrub(dict.fromkeys(problems), secrets),
        checked_at=checked_at,
        seconds=time.monotonic() - started,
        tls=tls,
        beat=beat,
    )
