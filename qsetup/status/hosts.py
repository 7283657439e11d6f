"""What the status script finds on a host: the script, its parsing, and the host's problems.

Every host runs the same small shell script: it prints its hostname, lists the
``qsetup-*`` units systemd has loaded or enabled there, prints ``systemctl show`` for
those and for every unit qsetup may run anywhere in the inventory, and the installed
Celery, Flower and rabbitmq-server versions, read from package metadata (starting
Python to ask ``celery --version`` costs a third of a second per executable). The
controller then keeps, per host, the units the desired state puts there, and reports
every other ``qsetup-*`` unit it found as unexpected.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from qsetup.converge.compare import leftover_unit, unit_difference
from qsetup.converge.facts import UnitFact, since_text
from qsetup.desired.state import BEAT_UNIT, UNIT_PREFIX, units_by_host, venv_dir
from qsetup.inventory.model import Inventory
from qsetup.status.model import HostStatus, UnitStatus

_PROPS = "Id,LoadState,ActiveState,SubState,UnitFileState,StateChangeTimestamp,NRestarts"
MARK = "@@"
UNEXPECTED = "unexpected"
"""The role of a ``qsetup-*`` unit the desired state does not put on its host."""


def host_roles(inv: Inventory) -> dict[str, tuple[str, ...]]:
    """The roles each host holds (broker, worker, beat, flower), in that order."""
    return {
        host: tuple(dict.fromkeys(u.role for u in units))
        for host, units in units_by_host(inv).items()
    }


def celery_binaries(inv: Inventory) -> dict[str, list[str]]:
    """The executable each host's Celery units run: the first word of their ExecStart.

    ``/usr/bin/celery``, ``<venv>/bin/celery``, or ``<venv>/bin/python`` (an apt group
    whose app needs more packages runs ``python -m celery`` over Debian's Celery): the
    argv the unit runs (``desired.celery_argv``), never a path built here.
    """
    out: dict[str, list[str]] = {name: [] for name in inv.hosts}
    for host, units in units_by_host(inv).items():
        for unit in units:
            if unit.celery_argv and unit.celery_argv[0] not in out[host]:
                out[host].append(unit.celery_argv[0])
    return out


def _metadata_globs(binary: str) -> str:
    """Shell globs of the celery distribution's metadata an executable imports."""
    prefix = binary.rsplit("/bin/", 1)[0]
    system = "/usr/lib/python3/dist-packages/celery-*-info"
    if prefix == "/usr":
        return system
    # A venv made with --system-site-packages (apt + requirements) may use Debian's celery.
    return f"{shlex.quote(prefix)}/lib/python3*/site-packages/celery-*-info {system}"


def _discovery(prefix: str) -> str:
    """Shell that sets ``$found`` to the ``prefix*`` units systemd has loaded or enabled.

    ``list-units --all`` gives every loaded unit (running, failed, or pulled in by an
    enabled target); ``list-unit-files`` the enabled ones; the ``.wants`` links the
    enabled instances of templates (``x@2.service``), which ``list-unit-files`` shows only
    as their template. Templates themselves (``x@.service``) are unit files, not units.
    """
    assert re.fullmatch(r"[a-z-]+", prefix), prefix  # used unquoted in globs and awk
    # awk: the first field that is a unit name (a failed unit may get a bullet before it).
    return "\n".join(
        [
            "found=$( {",
            f"  systemctl list-units --all --plain --no-legend --full --no-pager '{prefix}*' "
            "2>/dev/null |",
            f'    awk \'{{ for (i = 1; i <= NF; i++) if (index($i, "{prefix}") == 1) '
            "{ print $i; break } }'",
            "  systemctl list-unit-files --plain --no-legend --no-pager "
            f"--state=enabled,enabled-runtime '{prefix}*' 2>/dev/null | awk '{{ print $1 }}'",
            f"  for f in /etc/systemd/system/*.wants/{prefix}* "
            f"/run/systemd/system/*.wants/{prefix}*; do",
            '    [ -L "$f" ] && echo "${f##*/}"',
            "  done",
            "} | grep -v '@[.]' | sort -u | tr '\\n' ' ' )",
        ]
    )


def build_script(inv: Inventory) -> str:
    """The one shell script every host runs (the same everywhere, so one group run)."""
    all_units = list(dict.fromkeys(u.name for us in units_by_host(inv).values() for u in us))
    binaries = list(dict.fromkeys(b for bs in celery_binaries(inv).values() for b in bs))
    # $found is left unquoted on purpose (one word per unit); set -f keeps it unglobbed.
    units = " ".join(shlex.quote(u) for u in all_units) + " $found"
    lines = [
        "export LC_ALL=C SYSTEMD_PAGER= SYSTEMD_COLORS=0",
        'first() { for f in "$@"; do [ -e "$f" ] && { echo "${f##*/}"; return; }; done; echo -; }',
        f'echo "{MARK}hostname $(hostname)"',
        _discovery(UNIT_PREFIX),
        f'echo "{MARK}found $found"',
        "set -f",
        f'echo "{MARK}units"',
        # --timestamp=unix needs systemd 251 (Debian 12 has 252); older ones print local time.
        f"systemctl show --no-pager --timestamp=unix -p {_PROPS} {units} 2>/dev/null "
        f"|| systemctl show --no-pager -p {_PROPS} {units}",
        f'echo "{MARK}end"',
        "set +f",
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


def unit_status(name: str, role: str, props: Mapping[str, str] | None) -> UnitStatus:
    """A unit's status from its ``systemctl show`` properties (None: not reported)."""
    if props is None:
        return UnitStatus(name, role, "unknown", "unknown", "unknown", None, None)
    restarts = props.get("NRestarts", "")
    return UnitStatus(
        name=name,
        role=role,
        load_state=props.get("LoadState", "unknown"),
        active_state=props.get("ActiveState", "unknown"),
        sub_state=props.get("SubState", "unknown"),
        since=since_text(props.get("StateChangeTimestamp", "")),
        restarts=int(restarts) if restarts.isdigit() else None,
        unit_file_state=props.get("UnitFileState") or None,
    )


@dataclass(frozen=True)
class ScriptOutput:
    """What the script printed, parsed."""

    hostname: str | None
    units: dict[str, dict[str, str]]
    celery: dict[str, str | None]
    flower: str | None
    rabbitmq: str | None
    found: tuple[str, ...] = ()
    """The ``qsetup-*`` units systemd has loaded or enabled on the host."""


def parse_script_output(text: str) -> ScriptOutput:
    """Parse the status script's output (see ``build_script``)."""
    hostname: str | None = None
    celery: dict[str, str | None] = {}
    flower: str | None = None
    rabbitmq: str | None = None
    found: tuple[str, ...] = ()
    unit_lines: list[str] = []
    in_units = False
    for line in text.splitlines():
        if line.startswith(MARK):
            tag, _, rest = line[len(MARK) :].partition(" ")
            rest = rest.strip()
            in_units = tag == "units"
            if tag == "hostname":
                hostname = rest or None
            elif tag == "found":
                found = tuple(dict.fromkeys(rest.split()))
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
        hostname, parse_systemctl_show("\n".join(unit_lines)), celery, flower, rabbitmq, found
    )


def _present(props: Mapping[str, str] | None) -> bool:
    """True for a unit that is loaded, active or enabled (not a stale reference)."""
    if props is None:
        return True  # listed by systemd but not shown: report it rather than hide it
    return (
        props.get("LoadState") == "loaded"
        or props.get("ActiveState", "inactive") not in ("inactive", "failed", "")
        or props.get("UnitFileState", "").startswith("enabled")
    )


def _listed_not_found(props: Mapping[str, str] | None) -> bool:
    """True for a unit systemd still lists though its file is gone (a leftover)."""
    return props is not None and props.get("LoadState") == "not-found"


def unexpected_units(parsed: ScriptOutput, expected: Iterable[str]) -> tuple[UnitStatus, ...]:
    """The ``qsetup-*`` units found on a host that the desired state does not put there.

    Loaded, active or enabled ones, and the ones systemd still lists as ``not-found``.
    """
    wanted = set(expected)
    return tuple(
        unit_status(name, UNEXPECTED, parsed.units.get(name))
        for name in sorted(parsed.found)
        if name not in wanted
        and (_present(parsed.units.get(name)) or _listed_not_found(parsed.units.get(name)))
    )


@dataclass(frozen=True)
class Outcome:
    """What one SSH round trip gave for a host: the script's output or why not."""

    address: str
    stdout: str | None
    error: str | None
    same_endpoint: tuple[str, ...] = ()
    """Every inventory host reached through the same SSH endpoint (one machine), in
    inventory order; empty when the host is the only one."""


def assemble_hosts(inv: Inventory, outcomes: Mapping[str, Outcome]) -> dict[str, HostStatus]:
    """One HostStatus per inventory host from its round trip's outcome.

    Hosts that are one machine (the same SSH endpoint) expect each other's units; the
    units none of them expects are reported once, on the first of them.
    """
    units = units_by_host(inv)
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
        machine = outcome.same_endpoint or (name,)
        extra: tuple[UnitStatus, ...] = ()
        if machine[0] == name:
            extra = unexpected_units(parsed, (u.name for h in machine for u in units[h]))
        out[name] = HostStatus(
            name=name,
            address=outcome.address,
            roles=roles[name],
            reachable=True,
            error=None,
            hostname=parsed.hostname,
            units=tuple(unit_status(u.name, u.role, parsed.units.get(u.name)) for u in units[name]),
            celery_versions=tuple((b, parsed.celery.get(b) or "unknown") for b in binaries[name]),
            flower_version=parsed.flower if "flower" in roles[name] else None,
            rabbitmq_version=parsed.rabbitmq if "broker" in roles[name] else None,
            unexpected_units=extra,
        )
    return out


def _fact(unit: UnitStatus, unit_file_state: str) -> UnitFact:
    """The comparison's view of a unit (``unit_file_state`` when systemd reported none)."""
    return UnitFact(
        name=unit.name,
        load_state=unit.load_state,
        active_state=unit.active_state,
        sub_state=unit.sub_state,
        unit_file_state=unit_file_state if unit.unit_file_state is None else unit.unit_file_state,
        since=unit.since,
        restarts=unit.restarts,
    )


def host_problems(host: HostStatus) -> list[str]:
    """One line per problem on a host: unreachable, a unit not running, an unexpected unit.

    An unexpected unit systemd lists as ``not-found`` (its file gone) is the comparison's
    leftover: a line saying how to make systemd forget it.
    """
    if not host.reachable:
        return [f"{host.name}: unreachable ({host.address}): {host.error}"]
    problems = []
    for unit in host.units:
        # The comparison deploy's start step makes too: installed, active and enabled
        # (a unit disabled by hand is a difference that deploy enables again).
        # None: systemd reported no UnitFileState (a unit not found): not judged.
        diff = unit_difference(host.name, _fact(unit, unit_file_state="enabled"))
        if diff is not None:
            problems.append(diff.line)
    for unit in host.unexpected_units:
        leftover = leftover_unit(host.name, _fact(unit, unit_file_state=""))
        if leftover is not None:
            problems.append(leftover.line)
            continue
        enabled = ", enabled" if (unit.unit_file_state or "").startswith("enabled") else ""
        problems.append(
            f"{host.name}: unit {unit.name}: unexpected (the inventory does not put it on "
            f"{host.name}; {unit.active_state} ({unit.sub_state}){enabled}); "
            "the next deploy removes it"
        )
    for binary, version in host.celery_versions:
        if version == "absent":
            problems.append(f"{host.name}: {binary}: missing; run qsetup deploy")
    return problems


def _runs_beat(host: HostStatus) -> bool:
    return any(
        u.name == BEAT_UNIT and u.active_state in ("active", "reloading")
        for u in (*host.units, *host.unexpected_units)
    )


def beat_problems(inv: Inventory, hosts: Mapping[str, HostStatus]) -> list[str]:
    """Exactly one beat across the fleet: two send every scheduled task twice, none never.

    Each machine counts once (hosts on one SSH endpoint list the unit on one of them).
    "None" is only said when the beat host could be read.
    """
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
