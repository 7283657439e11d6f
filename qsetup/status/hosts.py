"""What the one read found on each host, compared with what belongs there.

Every host runs the one read (``playbooks/module_utils/qsetup_read.py``, see
:mod:`qsetup.status.ssh`); what it found is compared with the host's target (the
deploy's plan, :mod:`qsetup.artifacts.targets`) by the one comparison,
:func:`qsetup.converge.compare.compare_host`, which the deploy's preflight uses too.
A host's problems are exactly its differences (and being unreachable); the host's
units and the Celery, Flower and RabbitMQ versions it runs come from the same read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qsetup.converge.broker import compare_definitions
from qsetup.converge.compare import compare_host
from qsetup.converge.facts import HostFacts, UnitFact
from qsetup.converge.target import HostTarget
from qsetup.desired.state import BEAT_UNIT, units_by_host
from qsetup.inventory.model import Inventory
from qsetup.status.model import BeatLog, BeatStatus, HostStatus, ResultsStatus, UnitStatus

UNEXPECTED = "unexpected"
"""The role of a ``qsetup-*`` unit the desired state does not put on its host."""

_MACHINE_KINDS = frozenset({"unmanaged", "leftover", "removal", "manifest"})
"""Differences of a whole machine: reported once when inventory hosts share one."""


def host_roles(inv: Inventory) -> dict[str, tuple[str, ...]]:
    """The roles each host holds (broker, worker, beat, flower), in that order."""
    return {
        host: tuple(dict.fromkeys(u.role for u in units))
        for host, units in units_by_host(inv).items()
    }


def unit_status(role: str, fact: UnitFact) -> UnitStatus:
    """A unit's status line from what the read found."""
    return UnitStatus(
        name=fact.name,
        role=role,
        load_state=fact.load_state,
        active_state=fact.active_state,
        sub_state=fact.sub_state,
        since=fact.since,
        restarts=fact.restarts,
        unit_file_state=fact.unit_file_state or None,
    )


@dataclass(frozen=True)
class Outcome:
    """What one SSH round trip gave for a host: the read's answer or why not."""

    address: str
    facts: Mapping[str, Any] | None
    error: str | None
    same_endpoint: tuple[str, ...] = ()
    """Every inventory host reached through the same SSH endpoint (one machine), in
    inventory order; empty when the host is the only one."""


def _versions(target: HostTarget, facts: HostFacts) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for s in target.services:
        exe = s.executable
        if exe is None or s.role == "flower" or exe in out:
            continue
        if facts.executables.get(exe) is False:
            out[exe] = "absent"
        else:
            out[exe] = facts.dists.get((exe.rsplit("/bin/", 1)[0], "celery")) or "unknown"
    return tuple(out.items())


def _flower_version(facts: HostFacts) -> str | None:
    return next((v for (_, name), v in facts.dists.items() if name == "flower" and v), None)


def _results(facts: HostFacts) -> ResultsStatus | None:
    have = facts.results
    if have is None:
        return None
    return ResultsStatus(
        have.error, have.version, have.role, have.used_memory, have.aof_enabled, have.clients
    )


def _beat_log(data: object) -> BeatLog | None:
    if not isinstance(data, Mapping):
        return None
    sent = data.get("sent")
    return BeatLog(
        running=bool(data.get("invocation")),
        holds_lock=bool(data.get("invocation")) and data.get("lock") == "acquired",
        sent=sent if isinstance(sent, int) else 0,
    )


def assemble_hosts(
    inv: Inventory,
    outcomes: Mapping[str, Outcome],
    targets: Mapping[str, HostTarget],
    secrets: Mapping[str, str],
) -> dict[str, HostStatus]:
    """One HostStatus per inventory host: its read compared with its target.

    Hosts that are one machine (the same SSH endpoint) expect each other's units; what
    belongs to the machine as a whole (units none of them expects, the manifest) is
    reported once, on the first of them.
    """
    roles = host_roles(inv)
    out: dict[str, HostStatus] = {}
    for name, outcome in outcomes.items():
        if outcome.facts is None:
            out[name] = HostStatus(
                name,
                outcome.address,
                roles[name],
                False,
                outcome.error or "unknown error",
                None,
                (),
                (),
                None,
                None,
            )
            continue
        facts = HostFacts.from_read(outcome.facts)
        target = targets[name]
        machine = outcome.same_endpoint or (name,)
        siblings = frozenset(s.unit for h in machine if h != name for s in targets[h].services)
        differences = compare_host(target, facts, secrets, siblings)
        first = machine[0] == name
        if not first:
            differences = tuple(d for d in differences if d.kind not in _MACHINE_KINDS)
        expected = {s.unit for s in target.services} | siblings
        extra = tuple(
            unit_status(UNEXPECTED, facts.unit(u))
            for u in facts.discovered
            if first
            and u not in expected
            and (facts.unit(u).present or facts.unit(u).load_state == "not-found")
        )
        drift = None
        if target.broker is not None and facts.definitions:
            drift = tuple(compare_definitions(target.broker, facts.definitions, secrets))
        out[name] = HostStatus(
            name=name,
            address=outcome.address,
            roles=roles[name],
            reachable=True,
            error=None,
            hostname=facts.hostname or None,
            units=tuple(unit_status(s.role, facts.unit(s.unit)) for s in target.services),
            celery_versions=_versions(target, facts),
            flower_version=_flower_version(facts) if "flower" in roles[name] else None,
            rabbitmq_version=(
                facts.deb_versions.get("rabbitmq-server") if "broker" in roles[name] else None
            ),
            unexpected_units=extra,
            differences=differences,
            deprecated_features=facts.deprecated_used or () if target.broker else (),
            broker_drift=drift,
            results=_results(facts),
            beat_log=_beat_log(outcome.facts.get("beat_log")),
        )
    return out


def host_problems(host: HostStatus) -> list[str]:
    """One line per problem on a host: unreachable, or each difference the comparison found.

    The broker's object differences are the broker's lines (``broker.drift``), said once.
    """
    if not host.reachable:
        return [f"{host.name}: unreachable ({host.address}): {host.error}"]
    return [d.line for d in host.differences if d.kind != "broker"]


def _runs_beat(host: HostStatus) -> bool:
    return any(
        u.name == BEAT_UNIT and u.active_state in ("active", "reloading")
        for u in (*host.units, *host.unexpected_units)
    )


def beat_status(inv: Inventory, hosts: Mapping[str, HostStatus]) -> BeatStatus | None:
    """A standby beat's lock holders and senders, from each beat host's read (None: no standby).

    A holder is a beat host whose unit's current run logged redbeat's "Acquired lock" and
    not "Releasing lock" after it: redbeat's beat exits when it cannot renew the lock, so
    a run that took it and still runs holds it. A sender logged "Sending due task" within
    the lock timeout plus one loop interval.
    """
    if inv.beat is None or not inv.beat.redbeat:
        return None
    logs = {h: hosts[h].beat_log for h in inv.beat.hosts if h in hosts}
    read = {h: log for h, log in logs.items() if log is not None and hosts[h].reachable}
    return BeatStatus(
        hosts=inv.beat.hosts,
        holders=tuple(h for h, log in read.items() if log.running and log.holds_lock),
        senders=tuple(h for h, log in read.items() if log.sent > 0),
        unread=tuple(h for h in inv.beat.hosts if h not in read),
    )


def beat_problems(
    inv: Inventory, hosts: Mapping[str, HostStatus], beat: BeatStatus | None = None
) -> list[str]:
    """One beat sends: two send every scheduled task twice, none never.

    Without a standby: exactly one beat unit runs across the fleet. Each machine counts
    once (hosts on one SSH endpoint list the unit on one of them). "None" is only said
    when the beat host could be read. With a standby (``beat``): every beat host runs
    one (the comparison names a stopped one), none runs elsewhere, exactly one holds the
    lock and at most one sent lately.
    """
    if beat is not None:
        assert inv.beat is not None
        # Above INFO, redbeat's lock line is not logged: no holder is not a finding then.
        logs_lock = inv.beat.loglevel in ("DEBUG", "INFO")
        return _standby_problems(hosts, beat, logs_lock)
    where = inv.beat.host if inv.beat is not None else None
    running = [h.name for h in hosts.values() if h.reachable and _runs_beat(h)]
    wanted = f"the inventory puts it on {where}" if where else "the inventory runs no beat"
    if len(running) > 1:
        at = where if where in running else running[0]
        return [
            f"{at}: beat {BEAT_UNIT}: active on {len(running)} hosts ({', '.join(running)}); "
            f"exactly one may run ({wanted})"
        ]
    if where is not None and not running and where in hosts and hosts[where].reachable:
        return [f"{where}: beat {BEAT_UNIT}: active on no host; exactly one must run ({wanted})"]
    return []


def _standby_problems(
    hosts: Mapping[str, HostStatus], beat: BeatStatus, logs_lock: bool
) -> list[str]:
    out = []
    wanted = f"the inventory runs a standby beat on {', '.join(beat.hosts)}"
    for h in hosts.values():
        if h.reachable and h.name not in beat.hosts and _runs_beat(h):
            out.append(f"{h.name}: beat {BEAT_UNIT}: active outside beat.hosts ({wanted})")
    first = beat.hosts[0]
    if len(beat.holders) > 1:
        out.append(
            f"{beat.holders[0]}: beat lock: held by {len(beat.holders)} beats "
            f"({', '.join(beat.holders)}); exactly one may hold it"
        )
    elif not beat.holders and not beat.unread and logs_lock:
        out.append(
            f"{first}: beat lock: no beat holds it, so none sends "
            "(a standby takes it within beat.lock_timeout of its holder's loss)"
        )
    if len(beat.senders) > 1:
        out.append(
            f"{beat.senders[0]}: beat: {len(beat.senders)} beats sent tasks lately "
            f"({', '.join(beat.senders)}); exactly one may send"
        )
    return out
