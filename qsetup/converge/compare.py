"""The one comparison: what belongs on a host (a target) against what it holds (facts).

Every consumer decides from :func:`compare_host`: the deploy's preflight (through the
playbooks' filter shim) ends a host on which it finds nothing and installs, starts
or removes what it finds; ``deploy --check`` prints its differences; the deploy's
no-op check answers from it without starting Ansible; status reports it. A host is
healthy exactly when it finds nothing (besides what only runtime checks see: ping,
queues, certificates).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from qsetup.converge.broker import broker_changes, compare_definitions, fixable, flags_to_enable
from qsetup.converge.cluster import queue_type_conflicts
from qsetup.converge.facts import FileFact, HostFacts, UnitFact
from qsetup.converge.removals import manifest_pending, removals
from qsetup.converge.target import DirTarget, FileTarget, HostTarget, VenvTarget, hosts_block
from qsetup.desired.epmd import DROPIN_PATH, bind_addresses, render_dropin
from qsetup.desired.firewall import RULESET_PATH, UNIT_PATH, sha1
from qsetup.desired.results import password_hash

LEAVE = "leave"
"""The fix of a difference deploy does not change (something qsetup never installed)."""


@dataclass(frozen=True)
class Difference:
    """One way a host differs from what belongs there, and what fixes it."""

    host: str
    kind: str
    """preflight (the host cannot be deployed: its release, a package version), package,
    os_user, os_group, dir, file, venv, code, unit, removal, manifest, unmanaged,
    leftover, broker, broker_api, feature_flag, cluster, hosts_block, firewall or results."""
    obj: str
    """The object: a path, a unit, a package, a user, a broker object."""
    detail: str
    fix: str
    """What deploy does about it (install, create, build, start, enable, remove,
    record, set, join, write, enable, load; ``refuse`` for a preflight problem), or ``leave``."""

    @property
    def fixable(self) -> bool:
        """Whether a deploy changes it."""
        return self.fix != LEAVE

    @property
    def line(self) -> str:
        """``<host>: <object>: <what>``, the shape of every status problem."""
        return f"{self.host}: {self.obj}: {self.detail}"


def _same_meta(now: FileFact, mode: str, owner: str, group: str) -> bool:
    return now.mode.lstrip("0") == mode.lstrip("0") and (now.owner, now.group) == (owner, group)


def _meta(now: FileFact, mode: str, owner: str, group: str) -> str:
    return (
        f"mode {now.mode} owner {now.owner}:{now.group}, expected mode {mode} owner {owner}:{group}"
    )


def stale_files(files: Iterable[FileTarget], facts: HostFacts) -> list[FileTarget]:
    """Files whose content, mode, owner or group differ from what qsetup renders."""
    out = []
    for f in files:
        now = facts.files.get(f.dest)
        if (
            now is None
            or now.checksum != f.checksum
            or not _same_meta(now, f.mode, f.owner, f.group)
        ):
            out.append(f)
    return out


def stale_dirs(dirs: Iterable[DirTarget], facts: HostFacts) -> list[DirTarget]:
    """Directories that are missing or have another mode, owner or group."""
    out = []
    for d in dirs:
        now = facts.files.get(d.path)
        if now is None or not now.isdir or not _same_meta(now, d.mode, d.owner, d.group):
            out.append(d)
    return out


def stale_venvs(target: HostTarget, facts: HostFacts) -> list[VenvTarget]:
    """Virtualenvs whose marker (what pip installed) differs, or whose interpreter is gone."""
    broken = {
        s.executable
        for s in target.services
        if s.executable and facts.executables.get(s.executable) is False
    }
    return [
        v
        for v in target.venvs
        if (facts.files.get(v.marker) or _NO_FILE).checksum != v.marker_sum
        or any(e.startswith(v.path.rstrip("/") + "/") for e in broken)
    ]


_NO_FILE = FileFact("", "", "", "", False, None)


def code_stale(target: HostTarget, facts: HostFacts) -> bool:
    """Whether the app's code (its archive and unpacked directory) differs or is missing."""
    if target.code_dir is None:
        return False
    tar = facts.files.get(f"{target.code_dir}.tar")
    return tar is None or tar.checksum != target.code_sum or target.code_dir not in facts.files


def _file_differences(target: HostTarget, facts: HostFacts) -> list[Difference]:
    out = []
    for d in stale_dirs(target.dirs, facts):
        now = facts.files.get(d.path)
        if now is None or not now.isdir:
            detail = "missing" if now is None else "not a directory"
            out.append(
                Difference(target.host, "dir", d.path, f"{detail}; run qsetup deploy", "create")
            )
        else:
            out.append(
                Difference(target.host, "dir", d.path, _meta(now, d.mode, d.owner, d.group), "set")
            )
    for f in stale_files(target.files, facts):
        now = facts.files.get(f.dest)
        if now is None:
            detail = "missing; run qsetup deploy"
        elif now.checksum != f.checksum:
            detail = "content differs from what qsetup renders; run qsetup deploy"
        else:
            detail = _meta(now, f.mode, f.owner, f.group)
        out.append(Difference(target.host, "file", f.dest, detail, "install"))
    for v in stale_venvs(target, facts):
        marker = facts.files.get(v.marker)
        detail = (
            "missing" if marker is None else "holds other packages than the plan"
        ) + "; run qsetup deploy"
        if marker is not None and marker.checksum == v.marker_sum:
            detail = "its interpreter is missing; run qsetup deploy"
        out.append(Difference(target.host, "venv", v.path, detail, "build"))
    if code_stale(target, facts):
        assert target.code_dir is not None
        missing = target.code_dir not in facts.files
        detail = "missing" if missing else "differs from the app's code"
        out.append(
            Difference(
                target.host, "code", target.code_dir, f"{detail}; run qsetup deploy", "install"
            )
        )
    return out


def _account_differences(target: HostTarget, facts: HostFacts) -> list[Difference]:
    out = []
    for p in sorted(set(facts.packages) - facts.installed):
        out.append(Difference(target.host, "package", f"package {p}", "not installed", "install"))
    for g in sorted(set(target.os_groups) - facts.groups):
        out.append(Difference(target.host, "os_group", f"group {g}", "missing", "create"))
    for u in sorted(set(target.os_users) - facts.users):
        out.append(Difference(target.host, "os_user", f"user {u}", "missing", "create"))
    return out


def unit_difference(host: str, unit: UnitFact) -> Difference | None:
    """How a unit that should run differs from running and enabled (None: it does not)."""
    name = f"unit {unit.name}"
    if unit.load_state == "not-found":
        return Difference(host, "unit", name, "not installed; run qsetup deploy", "install")
    if unit.active_state != "active":
        since = f" since {unit.since}" if unit.since else ""
        restarts = f", {unit.restarts} automatic restarts" if unit.restarts else ""
        return Difference(
            host,
            "unit",
            name,
            f"{unit.active_state} ({unit.sub_state}){since}{restarts}; expected active (running)",
            "start",
        )
    if unit.unit_file_state != "enabled":
        state = unit.unit_file_state or "not enabled"
        return Difference(
            host, "unit", name, f"{state}; expected enabled (started at boot)", "enable"
        )
    return None


def leftover_unit(host: str, unit: UnitFact) -> Difference | None:
    """A unit systemd still lists as ``not-found`` with nothing running (None: it is not one).

    Its file is gone but systemd remembers the name (``not-found inactive (dead)`` in
    ``systemctl list-units --all``): deploy has nothing left to remove, only the host's
    systemd can forget it. Callers pass only units the inventory does not put on ``host``.
    """
    if unit.load_state != "not-found" or unit.present:
        return None
    detail = (
        f"left in systemd (not-found, {unit.active_state} ({unit.sub_state})) though its "
        f"unit file is gone and the inventory does not put it on {host}; run "
        f"`systemctl daemon-reload` and `systemctl reset-failed {unit.name}` there"
    )
    return Difference(host, "leftover", f"unit {unit.name}", detail, LEAVE)


def _unit_differences(
    target: HostTarget, facts: HostFacts, gone: Mapping[str, Any], siblings: frozenset[str]
) -> list[Difference]:
    out = []
    for s in target.services:
        diff = unit_difference(target.host, facts.unit(s.unit))
        if diff is not None:
            out.append(diff)
    expected = {s.unit for s in target.services} | siblings
    removing = {str(u["unit"]) for u in gone["units"]}
    for name in sorted(removing - set(facts.discovered)):
        detail = (
            "recorded in qsetup's manifest, dropped from the inventory; the next deploy removes it"
        )
        out.append(Difference(target.host, "removal", f"unit {name}", detail, "remove"))
    for name in facts.discovered:
        if name in expected:
            continue
        unit = facts.unit(name)
        state = f"{unit.active_state} ({unit.sub_state})" + (", enabled" if unit.enabled else "")
        where = f"the inventory does not put it on {target.host}; {state}"
        if name in removing:
            detail = f"unexpected ({where}); the next deploy removes it"
            out.append(Difference(target.host, "removal", f"unit {name}", detail, "remove"))
        elif (leftover := leftover_unit(target.host, unit)) is not None:
            out.append(leftover)
        else:
            loaded = "" if unit.load_state == "loaded" else f"{unit.load_state}, "
            detail = (
                f"unexpected (the inventory does not put it on {target.host}; {loaded}{state}); "
                "qsetup's manifest does not name it, so deploy leaves it: stop and disable it "
                "by hand if it should go"
            )
            out.append(Difference(target.host, "unmanaged", f"unit {name}", detail, LEAVE))
    return out


def _removal_differences(
    target: HostTarget, facts: HostFacts, gone: Mapping[str, Any]
) -> list[Difference]:
    out = []
    for key, what in (("files", "file"), ("venvs", "venv"), ("code", "code")):
        for path in gone[key]:
            out.append(
                Difference(
                    target.host,
                    "removal",
                    f"{what} {path}",
                    "the inventory dropped it; the next deploy removes it",
                    "remove",
                )
            )
    for key, what in (
        ("broker_users", "user"),
        ("broker_vhosts", "vhost"),
        ("broker_policies", "policy"),
    ):
        for name in gone[key]:
            out.append(
                Difference(
                    target.host,
                    "removal",
                    f"broker {what} '{name}'",
                    "the inventory dropped it; the next deploy deletes it",
                    "remove",
                )
            )
    for port, sources in sorted(gone.get("firewall", {}).items()):
        out.append(
            Difference(
                target.host,
                "removal",
                f"firewall port {port}",
                f"still open to {', '.join(sources)}, which the inventory dropped; the next "
                "deploy closes it once they stopped",
                "remove",
            )
        )
    if not out and manifest_pending(target.manifest, gone) != dict(facts.manifest):
        out.append(
            Difference(
                target.host,
                "manifest",
                "manifest /etc/qsetup/manifest.json",
                "missing or out of date; run qsetup deploy",
                "record",
            )
        )
    return out


def _broker_differences(
    target: HostTarget, facts: HostFacts, secrets: Mapping[str, str]
) -> list[Difference]:
    out: list[Difference] = []
    if target.broker is not None:
        if not facts.definitions:
            up = facts.unit("rabbitmq-server.service").active_state == "active"
            why = "as qsetup-admin" if up else "(rabbitmq-server.service is not running)"
            out.append(
                Difference(
                    target.host,
                    "broker_api",
                    "broker management API",
                    f"its definitions could not be read {why}; run qsetup deploy",
                    "set",
                )
            )
        else:
            for d in compare_definitions(target.broker, facts.definitions, secrets):
                out.append(
                    Difference(
                        target.host,
                        "broker",
                        f"broker {d.kind} '{d.name}'",
                        f"{d.state} ({d.detail})",
                        "set" if fixable(d) else LEAVE,
                    )
                )
        for name in flags_to_enable(facts.feature_flags):
            out.append(
                Difference(
                    target.host,
                    "feature_flag",
                    f"broker feature flag '{name}'",
                    "disabled; run qsetup deploy (it enables every stable flag once all nodes run)",
                    "enable",
                )
            )
    if target.broker_node and target.cluster_size > 1:
        nodes = facts.cluster or ()
        running = [n.name for n in nodes if n.running]
        if len(nodes) != target.cluster_size or len(running) != target.cluster_size:
            out.append(
                Difference(
                    target.host,
                    "cluster",
                    "RabbitMQ cluster",
                    f"{len(running)} of {target.cluster_size} nodes running in this node's "
                    "cluster; run qsetup deploy",
                    "join",
                )
            )
    return out


HOSTS_FILE = "/etc/hosts"


def hosts_block_difference(target: HostTarget, facts: HostFacts) -> Difference | None:
    """How the cluster's block in /etc/hosts differs from the nodes' names (None: it does not).

    Compared on broker nodes whose read looked for the block: a cluster's node needs every
    node's line (hand-edited or missing lines are a difference); a single node needs none.
    """
    if not target.broker_node or not facts.hosts_block_read:
        return None
    want = hosts_block(target, facts.hosts_block)
    have = facts.hosts_block
    if want == have:
        return None
    obj = f"{HOSTS_FILE} (the RabbitMQ cluster's lines)"
    if want is None:
        detail = "holds cluster lines though the broker is a single node; run qsetup deploy"
    elif have is None:
        detail = "missing; the cluster's nodes cannot resolve each other; run qsetup deploy"
    else:
        detail = "differs from the cluster's nodes and addresses; run qsetup deploy"
    return Difference(target.host, "hosts_block", obj, detail, "write")


EPMD_MODE = "0644"


def epmd_dropin(target: HostTarget, facts: HostFacts) -> str | None:
    """The drop-in that binds epmd on this broker node (None: not a broker node here).

    Loopback and, in a cluster, the node's address (the plan's), then what the host's
    name resolves to that is the host's own (the read's): ``rabbitmqctl`` asks epmd there.
    """
    if target.epmd is None:
        return None
    return render_dropin(epmd_bind(target, facts))


def epmd_differences(target: HostTarget, facts: HostFacts) -> list[Difference]:
    """The epmd drop-in: a refusal when the host's name is not the host's, else its file.

    A name that resolves to another host's address would leave ``rabbitmqctl`` asking that
    host's epmd (and the node unreachable by name): deploy refuses before touching it.
    """
    content = epmd_dropin(target, facts)
    if content is None:
        return []
    names = facts.name_addresses
    if names is not None and names.foreign:
        detail = (
            f"its name {names.name} resolves to {', '.join(names.foreign)}, not an address "
            f"of this host (rabbitmqctl reaches rabbit@{names.name} there); map {names.name} "
            "to 127.0.1.1 or to this host's address in its /etc/hosts; deploy refuses this host"
        )
        return [Difference(target.host, "preflight", "host", detail, "refuse")]
    now = facts.files.get(DROPIN_PATH)
    if now is None:
        detail = "missing (epmd listens on every address); run qsetup deploy"
    elif now.checksum != sha1(content):
        bind = ", ".join(epmd_bind(target, facts))
        detail = f"content differs from what qsetup renders (epmd on {bind}); run qsetup deploy"
    elif not _same_meta(now, EPMD_MODE, "root", "root"):
        detail = _meta(now, EPMD_MODE, "root", "root")
    else:
        return []
    return [Difference(target.host, "file", DROPIN_PATH, detail, "install")]


def epmd_bind(target: HostTarget, facts: HostFacts) -> tuple[str, ...]:
    """The addresses the epmd socket listens on (see :func:`epmd_dropin`)."""
    names = facts.name_addresses
    return bind_addresses(target.epmd or (), names.own if names else ())


RESULTS_OBJECT = "result backend"


def results_differences(
    target: HostTarget, facts: HostFacts, secrets: Mapping[str, str]
) -> list[Difference]:
    """How the managed result backend differs from qsetup's (None found: it does not).

    It does not answer, its persistence or eviction policy is not qsetup's, or its ACL
    users are not exactly the inventory's (each on with its password, the default user
    off, no other user).

    Compared on its host when the read asked (with qsetup's reader's password). The fix
    is a restart: the server loads its users.acl and redis.conf again, and the AOF
    keeps every result across it.
    """
    want, have = target.results, facts.results
    if want is None or have is None:
        return []
    host = target.host

    def diff(obj: str, detail: str) -> Difference:
        return Difference(host, "results", obj, f"{detail}; run qsetup deploy", "restart")

    if have.error is not None:
        return [diff(RESULTS_OBJECT, f"does not answer qsetup's reader ({have.error})")]
    out = []
    if not have.aof_enabled:
        out.append(diff(RESULTS_OBJECT, "persistence (appendonly) is off"))
    if have.maxmemory_policy and have.maxmemory_policy != "noeviction":
        out.append(diff(RESULTS_OBJECT, f"maxmemory-policy is {have.maxmemory_policy}"))
    users = {u.name: u for u in have.users}
    default = users.pop("default", None)
    if default is not None and default.enabled:
        out.append(diff(f"{RESULTS_OBJECT} user 'default'", "enabled; expected off"))
    for user in want.users:
        now = users.pop(user.name, None)
        if now is None:
            out.append(diff(f"{RESULTS_OBJECT} user '{user.name}'", "missing"))
        elif not now.enabled:
            out.append(diff(f"{RESULTS_OBJECT} user '{user.name}'", "off; expected on"))
        elif user.secret in secrets and password_hash(secrets[user.secret]) not in now.hashes:
            out.append(diff(f"{RESULTS_OBJECT} user '{user.name}'", "password differs"))
    for name in sorted(users):
        out.append(diff(f"{RESULTS_OBJECT} user '{name}'", "not in the inventory"))
    return out


FIREWALL_OBJECT = "firewall (nftables table inet qsetup)"


def firewall_difference(target: HostTarget, facts: HostFacts) -> Difference | None:
    """How qsetup's nftables table differs from the inventory's rules (None: it does not).

    Missing, loaded from other rules than the inventory's (its file or unit differs), or
    changed by hand (the loaded table is not what its file loads). Compared where the
    plan puts a firewall and the read looked for it.
    """
    want, have = target.firewall, facts.firewall
    if want is None or have is None:
        return None
    ruleset = facts.files.get(RULESET_PATH)
    unit = facts.files.get(UNIT_PATH)
    ports = ", ".join(str(p) for p in want.allowed)
    if not have.loaded:
        why = f" ({have.error})" if have.error else ""
        detail = f"not loaded{why}: ports {ports} are open to every address"
    elif ruleset is None or ruleset.checksum != want.ruleset_sum:
        detail = f"its rules ({RULESET_PATH}) differ from the inventory's"
    elif have.file is None or have.live != have.file:
        detail = f"differs from {RULESET_PATH} (changed by hand?)"
    elif unit is None or unit.checksum != want.unit_sum:
        detail = f"its unit file {UNIT_PATH} is missing or differs (the table may not load at boot)"
    else:
        return None
    return Difference(
        target.host, "firewall", FIREWALL_OBJECT, f"{detail}; run qsetup deploy", "load"
    )


def queue_type_refusals(target: HostTarget, facts: HostFacts) -> list[Difference]:
    """A consumed queue that exists with another type than the inventory's refuses the host.

    On the node that manages the broker's objects, from the definitions its read found:
    RabbitMQ cannot change a queue's type, and the workers would be refused declaring it.
    """
    if target.queue_type is None or not facts.definitions:
        return []
    wanted = target.queue_type
    return [
        Difference(
            target.host,
            "preflight",
            "broker",
            f"queue '{c.name}' (vhost '{c.vhost}') is a {now} queue but the inventory wants "
            f"{wanted} queues, and RabbitMQ cannot change a queue's type: stop its producers "
            f"and the {', '.join(c.groups)} workers, let it drain, delete it (rabbitmqctl "
            f"delete_queue -p {c.vhost} {c.name}), then deploy again; or set "
            f"app.queue_type: {now}",
            "refuse",
        )
        for c, now in queue_type_conflicts(facts.definitions, target.consumed_queues, wanted)
    ]


def refusals(differences: Iterable[Difference]) -> list[str]:
    """Why the host cannot be deployed, one line each (empty: it can).

    The read's problems (release, packages, a file it could not read), a consumed queue of
    the other type, a name that is another host's address: every ``refuse`` difference.
    """
    return [d.detail for d in differences if d.fix == "refuse"]


def compare_host(
    target: HostTarget,
    facts: HostFacts,
    secrets: Mapping[str, str],
    siblings: frozenset[str] = frozenset(),
) -> tuple[Difference, ...]:
    """Every way the host differs from its target, each with the fix deploy applies.

    ``secrets`` maps secret names to values (broker passwords are checked against the
    broker's hashes; nothing secret is in a difference). ``siblings`` are units other
    inventory hosts on the same machine run (not unexpected here).
    """
    gone = removals(facts.manifest, target.manifest)
    refused = tuple(
        Difference(target.host, "preflight", "host", f"{p}; deploy refuses this host", "refuse")
        for p in facts.problems
    )
    hosts = hosts_block_difference(target, facts)
    firewall = firewall_difference(target, facts)
    return (
        *refused,
        *queue_type_refusals(target, facts),
        *epmd_differences(target, facts),
        *_account_differences(target, facts),
        *_file_differences(target, facts),
        *_unit_differences(target, facts, gone, siblings),
        *_removal_differences(target, facts, gone),
        *_broker_differences(target, facts, secrets),
        *([hosts] if hosts else []),
        *([firewall] if firewall else []),
        *results_differences(target, facts, secrets),
    )


def host_clean(differences: Iterable[Difference]) -> bool:
    """Nothing that a deploy would change (what it leaves alone does not count)."""
    return not any(d.fixable for d in differences)


def broker_apply(
    target: HostTarget, facts: HostFacts, secrets: Mapping[str, str]
) -> dict[str, object]:
    """What the broker's objects need (``qsetup_broker_objects``), by status's comparison."""
    assert target.broker is not None
    drift = compare_definitions(target.broker, facts.definitions or {}, secrets)
    return broker_changes(target.broker, drift, removals(facts.manifest, target.manifest))
