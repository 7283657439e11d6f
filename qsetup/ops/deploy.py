"""Deploy: turn the validated inventory into an Ansible run through ansible-runner.

The Ansible inventory and variables are generated from the qsetup model; the
files installed are exactly what ``render_all`` renders. Secrets go to a 0700
scratch directory (in RAM where possible) that is removed when the run ends, so
the runner's data directory never holds one in plain text. The run itself, and
reading its events into a result, is :mod:`qsetup.remote.runner`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qsetup.artifacts.ansible_data import dump_inventory, dump_vars_file
from qsetup.artifacts.plan import PARTS
from qsetup.artifacts.targets import (
    HostPlans,
    every_read_params,
    host_targets,
    plan_hosts,
    read_hostnames,
    secret_values,
)
from qsetup.artifacts.tls import TlsMaterial
from qsetup.artifacts.tls import prepare as prepare_tls
from qsetup.converge.compare import Difference, host_clean
from qsetup.desired.state import BROKER_UNIT, RELEASES, broker_admin_password
from qsetup.errors import BrokerError, DeployError
from qsetup.inventory.loader import LoadedInventory
from qsetup.inventory.model import Inventory, tls_hosts
from qsetup.inventory.secrets import redactor
from qsetup.inventory.vault import write_private
from qsetup.remote.runner import (
    DeployEvent,
    DeployResult,
    HostResult,
    new_run_dir,
    require_ansible_runner,
    run_playbook,
    scratch_dir,
)

if TYPE_CHECKING:
    from qsetup.status.ssh import ReadRound

TAGS = PARTS


@dataclass(frozen=True)
class DeployOptions:
    """How to run a deploy."""

    check: bool = False
    diff: bool = False
    limit: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    verbose: bool = False


# --- preparing the run ------------------------------------------------------------


def check_options(inv: Inventory, options: DeployOptions) -> None:
    """Refuse unknown hosts or tags before anything runs."""
    for host in options.limit:
        if host not in inv.hosts:
            raise DeployError(
                f"--limit: host '{host}' is not in the inventory (hosts: {', '.join(inv.hosts)})"
            )
    for tag in options.tags:
        if tag not in TAGS:
            raise DeployError(f"--tags: unknown tag '{tag}'; use some of {', '.join(TAGS)}")


# --- running --------------------------------------------------------------------


def run_deploy(
    loaded: LoadedInventory,
    options: DeployOptions,
    progress: Callable[[DeployEvent], None] | None = None,
) -> DeployResult:
    """Run the playbooks against the inventory's hosts and return what happened.

    Raises:
        DeployError: when the run cannot start (bad options, ansible-runner missing).
    """
    check_options(loaded.inventory, options)
    return _run_playbook(loaded, options, "site.yml", {}, progress)


ROLES = ("workers", "flower", "beat", "broker")


def run_restart(
    loaded: LoadedInventory,
    roles: tuple[str, ...],
    limit: tuple[str, ...] = (),
    progress: Callable[[DeployEvent], None] | None = None,
) -> DeployResult:
    """Restart the services of the given roles, one host at a time (rolling).

    Each host's services get a warm shutdown and a start; the next host waits until
    this host's workers answer ping again. A host that does not come back stops the
    rollout there and is reported as failed.

    Raises:
        DeployError: unknown roles or hosts.
    """
    for role in roles:
        if role not in ROLES:
            raise DeployError(f"--role: unknown role '{role}'; use one of {', '.join(ROLES)}")
    options = DeployOptions(limit=limit)
    check_options(loaded.inventory, options)
    if "workers" in roles and "broker" not in roles:
        _refuse_without_broker(loaded)
    return _run_playbook(
        loaded, options, "restart.yml", {"qsetup_restart_roles": list(roles)}, progress
    )


def _refuse_without_broker(loaded: LoadedInventory) -> None:
    """Refuse a worker restart, before any host is touched, when no RabbitMQ node runs.

    A restarted worker answers ping only through the broker: with RabbitMQ stopped on
    every node, the first host's workers went down and the rollout stopped there after
    the gate's 60 s. One read of the broker hosts' RabbitMQ unit (the one read, one SSH
    round trip) decides; one node running is enough, the workers fail over to it.

    Raises:
        BrokerError: no broker node's rabbitmq-server.service is active (exit 3).
    """
    from qsetup.converge.facts import HostFacts
    from qsetup.status.ssh import effective_timeout, read_round

    inv = loaded.inventory
    params = {h: {"releases": dict(RELEASES), "units": [BROKER_UNIT]} for h in inv.broker.hosts}
    why: list[str] = []
    for host, outcome in read_round(loaded, effective_timeout(loaded, None), params).items():
        if outcome.facts is None:
            why.append(f"{host} unreachable ({outcome.error})")
            continue
        state = HostFacts.from_read(outcome.facts).unit(BROKER_UNIT)
        if state.active_state == "active":
            return
        why.append(f"{host} {BROKER_UNIT} {state.active_state} ({state.sub_state})")
    raise BrokerError(
        [
            f"restart --role workers: RabbitMQ runs on no broker node ({'; '.join(why)}); "
            "a restarted worker could not connect, so no worker was restarted; start "
            "RabbitMQ first (qsetup deploy, or qsetup restart --role broker)"
        ]
    )


def _tls_material(loaded: LoadedInventory) -> TlsMaterial | None:
    """With TLS: certificates that name each host as it reports itself (read first)."""
    if not loaded.inventory.tls.enabled:
        return None
    from qsetup.status.ssh import read_round

    wanted = tls_hosts(loaded.inventory)
    read = read_round(loaded, 10.0, {h: {"releases": dict(RELEASES)} for h in wanted})
    hostnames = {
        h: str(o.facts["hostname"]) if o.facts and o.facts.get("hostname") else None
        for h, o in read.items()
    }
    return prepare_tls(loaded.path, loaded.inventory, hostnames, vault=loaded.vault)


def _run_playbook(
    loaded: LoadedInventory,
    options: DeployOptions,
    playbook: str,
    extra: dict[str, Any],
    progress: Callable[[DeployEvent], None] | None,
) -> DeployResult:
    inv = loaded.inventory
    material = _tls_material(loaded)
    key_lines = [
        line
        for pair in (material.hosts.values() if material else ())
        for line in pair.key_pem.splitlines()
        if len(line) >= 16 and not line.startswith("-----")
    ]
    require_ansible_runner()  # refused before anything is written

    run_dir = new_run_dir(loaded.path)
    started = time.monotonic()
    with scratch_dir() as scratch:
        files = scratch / "files"
        reads = playbook == "site.yml" and reads_first(options)
        # The hosts' SSH clients connect while the plan renders.
        reading = start_read(loaded) if reads else None
        plans = plan_hosts(loaded, material, scratch / "app.tar", options.tags or PARTS)
        differences: tuple[Difference, ...] = ()
        views: dict[str, dict[str, Any]] = {}
        unreachable: dict[str, str] = {}
        if reads:
            first = read_differences(loaded, plans, reading)
            differences, views, unreachable = first.differences, first.views, first.unreachable
            if first.complete and host_clean(differences):
                return DeployResult(
                    "successful",
                    0,
                    {h: HostResult(ok=1) for h in loaded.inventory.hosts},
                    (),
                    run_dir,
                    time.monotonic() - started,
                    differences=differences,
                    ansible_ran=False,
                )
        for art in plans.artifacts:
            target = files / art.host / str(art.path).lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(art.content)
        write_host_vars(scratch, loaded, plans, views)
        (scratch / "tmp").mkdir(mode=0o700)
        (scratch / "cp").mkdir(mode=0o700)

        # YAML, not JSON: only YAML carries the !unsafe tag that keeps values from being
        # evaluated as templates.
        inv_file = run_dir / "inventory.yml"
        inventory = dict(plans.ansible_inventory)
        # The hosts Ansible's preflight reads: none when the first read answered for
        # every host (its comparison is in each host's variables), else every host;
        # the hosts the start play runs on: those where something differs, and the
        # configure play: those of them with a step to run (the preflight adds them
        # when it reads).
        unread = {} if views else dict.fromkeys(inventory["all"]["hosts"])
        changing = {h: None for h, v in views.items() if not v["qsetup_converge"]["clean"]}
        configuring = {h: None for h, v in views.items() if v["qsetup_converge"]["steps"]}
        inventory["all"] = {
            **inventory["all"],
            "children": {
                **inventory["all"].get("children", {}),
                UNREAD: {"hosts": unread},
                CHANGING: {"hosts": changing},
                CONFIGURING: {"hosts": configuring},
            },
        }
        inv_file.write_text(dump_inventory(inventory), encoding="utf-8")
        inv_file.chmod(0o600)

        # Failure messages quote what hosts said; no secret value ever leaves in one.
        redact = redactor(loaded.secrets, [broker_admin_password(inv, loaded.secrets), *key_lines])
        result = run_playbook(
            inv,
            loaded.path,
            playbook=playbook,
            run_dir=run_dir,
            scratch=scratch,
            inventory_file=inv_file,
            extravars={
                "qsetup_files_dir": str(files),
                "qsetup_app_tar": str(scratch / "app.tar"),
                **extra,
            },
            started=started,
            limit=options.limit,
            check=options.check,
            diff=options.diff,
            verbose=options.verbose,
            progress=progress,
            redact=redact,
            unreachable_why=unreachable,
        )
        return replace(result, differences=differences)


UNREAD = "qsetup_unread"
"""The inventory group of the hosts Ansible's preflight reads (site.yml)."""
CHANGING = "qsetup_changing"
"""The inventory group of the hosts the start play runs on (site.yml)."""
CONFIGURING = "qsetup_configuring"
"""The inventory group of the hosts the configure play runs on (site.yml)."""


def write_host_vars(
    scratch: Path, loaded: LoadedInventory, plans: HostPlans, views: dict[str, dict[str, Any]]
) -> Path:
    """Each host's variables file for the run, in the private scratch directory.

    The secrets and the checksums (SHA-1, as Ansible's find reports them) of every file
    to install, kept with the secrets because some files hold passwords, and, when the
    first read answered everywhere, the host's read and comparison (``views``). Ansible
    reads it through the vars plugin playbooks/vars_plugins/qsetup_run.py (the runner
    names the directory in QSETUP_RUN_VARS_DIR); never in the run directory.
    """
    out = scratch / "vars"
    out.mkdir(mode=0o700)
    common = {"qsetup_secret_values": secret_values(loaded), "qsetup_file_sums": dict(plans.sums)}
    for host in plans.ansible_inventory["all"]["hosts"]:
        text = dump_vars_file({**common, **views.get(host, {})})
        write_private(out / f"{host}.yml", text.encode("utf-8"))
    return out


def reads_first(options: DeployOptions) -> bool:
    """Whether a deploy reads every host and compares before starting Ansible.

    Not with ``--tags`` or ``--limit`` (the plan or the hosts are a part; Ansible's
    preflight judges those) nor ``--verbose`` (Ansible's own detail was asked for).
    """
    return not (options.tags or options.limit or options.verbose)


def start_read(loaded: LoadedInventory) -> ReadRound:
    """The deploy's first read of every host, connecting (its parameters follow).

    The read may refresh apt's lists on a host that misses a package (the preflight's
    question: can apt install it?), so its deadline allows for that; a host that does
    not connect still fails within ``ssh.connect_timeout``.
    """
    from qsetup.status.ssh import ReadRound

    inv = loaded.inventory
    return ReadRound(
        loaded, float(min(inv.ssh.connect_timeout, 10)), inv.hosts, extra_seconds=APT_SECONDS
    )


APT_SECONDS = 300.0
"""How long the first read may take beyond connecting: apt-get update on a fresh host."""


@dataclass(frozen=True)
class FirstRead:
    """What the deploy's first read found, by the one read and the one comparison."""

    differences: tuple[Difference, ...]
    complete: bool
    """Every host answered (one that did not is judged by Ansible's run, which says why)."""
    views: dict[str, dict[str, Any]]
    """Each host's read and comparison for the roles (``write_host_vars``); empty unless
    every host answered, something differs and no host is refused."""
    unreachable: dict[str, str] = field(default_factory=dict)
    """Why the read could not reach a host (its SSH client's words, e.g. the address does
    not resolve): Ansible's run says the same host is unreachable, often without why."""


def read_differences(
    loaded: LoadedInventory, plans: HostPlans, reading: ReadRound | None = None
) -> FirstRead:
    """Every host's differences from the plan, by the one read and the one comparison.

    The read asks what the preflight asks (whether apt can install a missing package,
    minimum versions); status makes the same read without those. ``reading``: the
    round, started before the plan (else started here).
    """
    from qsetup.converge.facts import HostFacts
    from qsetup.converge.view import host_view
    from qsetup.status.hosts import Outcome, assemble_hosts

    inv = loaded.inventory
    secrets = secret_values(loaded)
    params = every_read_params(loaded, plans, preflight=True)
    outcomes: dict[str, Outcome] = (reading or start_read(loaded)).finish(params)
    hostnames = read_hostnames({h: o.facts for h, o in outcomes.items()})
    targets = host_targets(plans, hostnames)
    hosts = assemble_hosts(inv, outcomes, targets, secrets)
    differences = tuple(d for h in hosts.values() for d in h.differences)
    complete = all(h.reachable for h in hosts.values())
    views: dict[str, dict[str, Any]] = {}
    # Only for Ansible: a deploy that finds nothing to change answers without it.
    if complete and not host_clean(differences):
        for name, outcome in outcomes.items():
            facts = dict(outcome.facts or {})
            hv = {**plans.common, **plans.hostvars(name)}
            view = host_view(targets[name], HostFacts.from_read(facts), secrets, hv)
            views[name] = {
                "qsetup_host": facts,
                "qsetup_release": facts.get("release"),
                "qsetup_hostname": facts.get("hostname"),
                "qsetup_converge": view,
            }
        if any(v["qsetup_converge"]["refusals"] for v in views.values()):
            views = {}  # Ansible's preflight reports them, host by host, and stops
    unreachable = {n: h.error for n, h in hosts.items() if not h.reachable and h.error}
    return FirstRead(differences, complete, views, unreachable)
