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
from dataclasses import dataclass, replace
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
from qsetup.desired.state import RELEASES, broker_admin_password
from qsetup.errors import DeployError
from qsetup.inventory.loader import LoadedInventory
from qsetup.inventory.model import Inventory, tls_hosts
from qsetup.inventory.secrets import redactor
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
    return _run_playbook(
        loaded, options, "restart.yml", {"qsetup_restart_roles": list(roles)}, progress
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
        if reads:
            differences, complete = read_differences(loaded, plans, reading)
            if complete and host_clean(differences):
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
        # Checksums (SHA-1, as Ansible's find reports them) of every file to install
        # are kept with the secrets because some files hold passwords.
        secrets_file = scratch / "secrets.yml"
        fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(
                dump_vars_file(
                    {
                        "qsetup_secret_values": secret_values(loaded),
                        "qsetup_file_sums": dict(plans.sums),
                    }
                )
            )
        (scratch / "tmp").mkdir(mode=0o700)
        (scratch / "cp").mkdir(mode=0o700)

        # YAML, not JSON: only YAML carries the !unsafe tag that keeps values from being
        # evaluated as templates.
        inv_file = run_dir / "inventory.yml"
        inv_file.write_text(dump_inventory(dict(plans.ansible_inventory)), encoding="utf-8")
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
                "qsetup_secrets_file": str(secrets_file),
                **extra,
            },
            started=started,
            limit=options.limit,
            check=options.check,
            diff=options.diff,
            verbose=options.verbose,
            progress=progress,
            redact=redact,
        )
        return replace(result, differences=differences)


def reads_first(options: DeployOptions) -> bool:
    """Whether a deploy reads every host and compares before starting Ansible.

    Not with ``--tags`` or ``--limit`` (the plan or the hosts are a part; Ansible's
    preflight judges those) nor ``--verbose`` (Ansible's own detail was asked for).
    """
    return not (options.tags or options.limit or options.verbose)


def start_read(loaded: LoadedInventory) -> ReadRound:
    """The deploy's first read of every host, connecting (its parameters follow)."""
    from qsetup.status.ssh import ReadRound

    inv = loaded.inventory
    return ReadRound(loaded, float(min(inv.ssh.connect_timeout, 10)), inv.hosts)


def read_differences(
    loaded: LoadedInventory, plans: HostPlans, reading: ReadRound | None = None
) -> tuple[tuple[Difference, ...], bool]:
    """Every host's differences from the plan, by the one read and the one comparison.

    Status makes the same read and comparison. The second value is whether every host
    answered: a host that did not is judged by Ansible's run, which says why in one line.
    ``reading``: the round, started before the plan (else started here).
    """
    from qsetup.status.hosts import Outcome, assemble_hosts

    inv = loaded.inventory
    secrets = secret_values(loaded)
    params = every_read_params(loaded, plans)
    outcomes: dict[str, Outcome] = (reading or start_read(loaded)).finish(params)
    hostnames = read_hostnames({h: o.facts for h, o in outcomes.items()})
    hosts = assemble_hosts(inv, outcomes, host_targets(plans, hostnames), secrets)
    differences = tuple(d for h in hosts.values() for d in h.differences)
    return differences, all(h.reachable for h in hosts.values())
