"""What the status script finds on a host: the script, its parsing, and the host's problems.

Every host runs the same small shell script: it prints its hostname, ``systemctl
show`` for every unit qsetup may run anywhere in the inventory, and the installed
Celery, Flower and rabbitmq-server versions, read from package metadata (starting
Python to ask ``celery --version`` costs a third of a second per executable). The
controller then keeps, per host, the units the inventory puts there.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from qsetup.desired import units_by_host, venv_dir
from qsetup.inventory import Inventory
from qsetup.status.model import HostStatus, UnitStatus

BROKER_UNIT = "rabbitmq-server.service"
BEAT_UNIT = "qsetup-beat.service"
FLOWER_UNIT = "qsetup-flower.service"
_PROPS = "Id,LoadState,ActiveState,SubState,StateChangeTimestamp,NRestarts"
MARK = "@@"


@dataclass(frozen=True)
class ExpectedUnit:
    """A unit the inventory puts on a host."""

    host: str
    unit: str
    role: str
    group: str | None = None
    instance: int | None = None


def worker_unit(group_name: str, instance: int) -> str:
    """The unit name of one worker instance, e.g. ``qsetup-worker-orders@2.service``."""
    return f"qsetup-worker-{group_name}@{instance}.service"


def expected_units(inv: Inventory) -> dict[str, list[ExpectedUnit]]:
    """The units the inventory puts on each host, in a stable order."""
    units: dict[str, list[ExpectedUnit]] = {name: [] for name in inv.hosts}
    units[inv.broker.host].append(ExpectedUnit(inv.broker.host, BROKER_UNIT, "broker"))
    for group in inv.workers:
        for host in group.hosts:
            for i in range(1, group.instances + 1):
                units[host].append(
                    ExpectedUnit(host, worker_unit(group.name, i), "worker", group.name, i)
                )
    if inv.beat is not None:
        units[inv.beat.host].append(ExpectedUnit(inv.beat.host, BEAT_UNIT, "beat"))
    if inv.flower is not None:
        units[inv.flower.host].append(ExpectedUnit(inv.flower.host, FLOWER_UNIT, "flower"))
    return units


def host_roles(inv: Inventory) -> dict[str, tuple[str, ...]]:
    """The roles each host holds (broker, worker, beat, flower), in that order."""
    roles: dict[str, tuple[str, ...]] = {}
    for host, units in expected_units(inv).items():
        seen = dict.fromkeys(u.role for u in units)
        roles[host] = tuple(seen)
    return roles


def celery_binaries(inv: Inventory) -> dict[str, list[str]]:
    """The celery each host's units run, named ``<where its packages live>/bin/celery``."""
    out: dict[str, list[str]] = {name: [] for name in inv.hosts}
    for host, units in units_by_host(inv).items():
        for unit in units:
            if unit.celery_argv and unit.runtime_prefix:
                binary = f"{unit.runtime_prefix}/bin/celery"
                if binary not in out[host]:
                    out[host].append(binary)
    return out


def _metadata_globs(binary: str) -> str:
    """Shell globs of the celery distribution's metadata an executable imports."""
    prefix = binary.removesuffix("/bin/celery")
    system = "/usr/lib/python3/dist-packages/celery-*-info"
    if prefix == "/usr":
        return system
    # A venv made with --system-site-packages (apt + requirements) may use Debian's celery.
    return f"{shlex.quote(prefix)}/lib/python3*/site-packages/celery-*-info {system}"


def build_script(inv: Inventory) -> str:
    """The one shell script every host runs (the same everywhere, so one group run)."""
    all_units = list(dict.fromkeys(u.unit for us in expected_units(inv).values() for u in us))
    binaries = list(dict.fromkeys(b for bs in celery_binaries(inv).values() for b in bs))
    units = " ".join(shlex.quote(u) for u in all_units)
    lines = [
        "export LC_ALL=C SYSTEMD_PAGER= SYSTEMD_COLORS=0",
        'first() { for f in "$@"; do [ -e "$f" ] && { echo "${f##*/}"; return; }; done; echo -; }',
        f'echo "{MARK}hostname $(hostname)"',
        f'echo "{MARK}units"',
        # --timestamp=unix needs systemd 251 (Debian 12 has 252); older ones print local time.
        f"systemctl show --no-pager --timestamp=unix -p {_PROPS} {units} 2>/dev/null "
        f"|| systemctl show --no-pager -p {_PROPS} {units}",
        f'echo "{MARK}end"',
    ]
    for binary in binaries:
        q, globs = shlex.quote(binary), _metadata_globs(binary)
        lines.append(
            f'if [ -x {q} ]; then echo "{MARK}celery {binary} $(first {globs})"; '
            f'else echo "{MARK}celery {binary} absent"; fi'
        )
    if inv.flower is not None:
        flower_meta = f"{venv_dir('flower')}/lib/python3*/site-packages/flower-*-info"
        lines.append(f'echo "{MARK}flower $(first {flower_meta})"')
    lines.append(
        f"echo \"{MARK}rabbitmq $(dpkg-query -W -f '${{Version}}' rabbitmq-server "
        '2>/dev/null || echo -)"'
    )
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


_DIST_RE = re.compile(r"^(?:celery|flower)-(.+?)(?:-py\d[\d.]*)?\.(?:dist|egg)-info$")


def parse_dist_version(name: str) -> str | None:
    """The version in a metadata directory name such as ``celery-5.2.6.egg-info``."""
    match = _DIST_RE.match(name.strip())
    return match.group(1) if match else None


def _since(value: str) -> str | None:
    value = value.strip()
    if not value or value in ("n/a", "0"):
        return None
    if value.startswith("@") and value[1:].isdigit():
        stamp = int(value[1:])
        if stamp == 0:
            return None
        return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")
    return value  # an older systemd's local time, passed on as it printed it


def parse_systemctl_show(text: str) -> dict[str, dict[str, str]]:
    """Split ``systemctl show`` output for several units into properties per unit ``Id``."""
    units: dict[str, dict[str, str]] = {}
    for block in re.split(r"\n\s*\n", text.strip()):
        props: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                props[key.strip()] = value
        if "Id" in props:
            units[props["Id"]] = props
    return units


def unit_status(expected: ExpectedUnit, props: Mapping[str, str] | None) -> UnitStatus:
    """A unit's status from its ``systemctl show`` properties (None: not reported)."""
    if props is None:
        return UnitStatus(expected.unit, expected.role, "unknown", "unknown", "unknown", None, None)
    restarts = props.get("NRestarts", "")
    return UnitStatus(
        name=expected.unit,
        role=expected.role,
        load_state=props.get("LoadState", "unknown"),
        active_state=props.get("ActiveState", "unknown"),
        sub_state=props.get("SubState", "unknown"),
        since=_since(props.get("StateChangeTimestamp", "")),
        restarts=int(restarts) if restarts.isdigit() else None,
    )


@dataclass(frozen=True)
class ScriptOutput:
    """What the script printed, parsed."""

    hostname: str | None
    units: dict[str, dict[str, str]]
    celery: dict[str, str | None]
    flower: str | None
    rabbitmq: str | None


def parse_script_output(text: str) -> ScriptOutput:
    """Parse the status script's output (see ``build_script``)."""
    hostname: str | None = None
    celery: dict[str, str | None] = {}
    flower: str | None = None
    rabbitmq: str | None = None
    unit_lines: list[str] = []
    in_units = False
    for line in text.splitlines():
        if line.startswith(MARK):
            tag, _, rest = line[len(MARK) :].partition(" ")
            rest = rest.strip()
            in_units = tag == "units"
            if tag == "hostname":
                hostname = rest or None
            elif tag == "celery":
                binary, _, meta = rest.partition(" ")
                celery[binary] = "absent" if meta == "absent" else parse_dist_version(meta)
            elif tag == "flower":
                flower = parse_dist_version(rest)
            elif tag == "rabbitmq":
                rabbitmq = rest if rest and rest != "-" else None
        elif in_units:
            unit_lines.append(line)
    return ScriptOutput(
        hostname, parse_systemctl_show("\n".join(unit_lines)), celery, flower, rabbitmq
    )


@dataclass(frozen=True)
class Outcome:
    """What one SSH round trip gave for a host: the script's output or why not."""

    address: str
    stdout: str | None
    error: str | None


def assemble_hosts(inv: Inventory, outcomes: Mapping[str, Outcome]) -> dict[str, HostStatus]:
    """One HostStatus per inventory host from its round trip's outcome."""
    units = expected_units(inv)
    roles = host_roles(inv)
    binaries = celery_binaries(inv)
    out: dict[str, HostStatus] = {}
    for name, outcome in outcomes.items():
        if outcome.stdout is None:
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
        parsed = parse_script_output(outcome.stdout)
        out[name] = HostStatus(
            name=name,
            address=outcome.address,
            roles=roles[name],
            reachable=True,
            error=None,
            hostname=parsed.hostname,
            units=tuple(unit_status(u, parsed.units.get(u.unit)) for u in units[name]),
            celery_versions=tuple((b, parsed.celery.get(b) or "unknown") for b in binaries[name]),
            flower_version=parsed.flower if "flower" in roles[name] else None,
            rabbitmq_version=parsed.rabbitmq if "broker" in roles[name] else None,
        )
    return out


def host_problems(host: HostStatus) -> list[str]:
    """One line per problem on a host: unreachable, or a unit not running."""
    if not host.reachable:
        return [f"{host.name}: unreachable ({host.address}): {host.error}"]
    problems = []
    for unit in host.units:
        if unit.ok:
            continue
        if unit.load_state == "not-found":
            problems.append(f"{host.name}: unit {unit.name}: not installed; run qsetup deploy")
            continue
        since = f" since {unit.since}" if unit.since else ""
        restarts = f", {unit.restarts} automatic restarts" if unit.restarts else ""
        problems.append(
            f"{host.name}: unit {unit.name}: {unit.active_state} ({unit.sub_state}){since}"
            f"{restarts}; expected active (running)"
        )
    for binary, version in host.celery_versions:
        if version == "absent":
            problems.append(f"{host.name}: {binary}: missing; run qsetup deploy")
    return problems
