"""Deploy: turn the validated inventory into an Ansible run through ansible-runner.

The Ansible inventory and variables are generated from the qsetup model; the
files installed are exactly what ``render_all`` renders. Secrets go to a 0700
scratch directory (in RAM where possible) that is removed when the run ends, so
the runner's data directory never holds one in plain text. The run itself, and
reading its events into a result, is :mod:`qsetup.remote.runner`.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qsetup.artifacts.ansible_data import dump_inventory, dump_vars_file
from qsetup.artifacts.plan import PARTS, build_ansible_inventory
from qsetup.artifacts.render import render_all
from qsetup.artifacts.tls import TlsMaterial
from qsetup.artifacts.tls import prepare as prepare_tls
from qsetup.desired.state import ADMIN_SECRET, broker_admin_password
from qsetup.errors import DeployError
from qsetup.inventory.fields import resolve_relative
from qsetup.inventory.loader import LoadedInventory
from qsetup.inventory.model import Inventory, tls_hosts
from qsetup.inventory.secrets import redactor
from qsetup.remote.runner import (
    DeployEvent,
    DeployResult,
    new_run_dir,
    require_ansible_runner,
    run_playbook,
    scratch_dir,
)

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


def _secret_values(loaded: LoadedInventory) -> dict[str, str]:
    values = {name: loaded.secrets.get(name) for name in loaded.secrets.values}
    values.setdefault(ADMIN_SECRET, broker_admin_password(loaded.inventory, loaded.secrets))
    return values


_SKIP = {"__pycache__", ".git", ".qsetup", ".venv", "venv", ".mypy_cache", ".pytest_cache"}


def _stage_app(loaded: LoadedInventory, dest: Path) -> None:
    """Pack the app's code into a reproducible tar: same code, same bytes, no change."""
    source = loaded.inventory.app.source.path
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        if source is None:
            return
        src = resolve_relative(loaded.path, source)
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            if any(part in _SKIP for part in rel.parts) or path.suffix == ".pyc":
                continue
            if path.name.endswith(".secrets.yml") or path.is_symlink():
                continue
            info = tar.gettarinfo(str(path), arcname=str(rel))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o755 if path.is_dir() or info.mode & 0o100 else 0o644
            info.mtime = int(path.stat().st_mtime)
            info.pax_headers = {}
            if path.is_dir():
                tar.addfile(info)
            else:
                with path.open("rb") as fh:
                    tar.addfile(info, fh)


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
    from qsetup.status.ssh import run_round

    hosts = run_round(loaded, 10.0)
    hostnames = {h: hosts[h].hostname for h in tls_hosts(loaded.inventory) if h in hosts}
    return prepare_tls(loaded.path, loaded.inventory, hostnames)


def _run_playbook(
    loaded: LoadedInventory,
    options: DeployOptions,
    playbook: str,
    extra: dict[str, Any],
    progress: Callable[[DeployEvent], None] | None,
) -> DeployResult:
    inv = loaded.inventory
    material = _tls_material(loaded)
    artifacts = render_all(inv, loaded.secrets, material)
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
        for art in artifacts:
            target = files / art.host / str(art.path).lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(art.content)
        _stage_app(loaded, scratch / "app.tar")
        # Checksums (SHA-1, as Ansible's find reports them) of every file to install;
        # kept with the secrets because some files hold passwords.
        sums = {
            f"{a.host}{a.path}": hashlib.sha1(a.content.encode()).hexdigest()  # noqa: S324
            for a in artifacts
        }
        sums["app.tar"] = hashlib.sha1((scratch / "app.tar").read_bytes()).hexdigest()  # noqa: S324
        secrets_file = scratch / "secrets.yml"
        fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(
                dump_vars_file(
                    {"qsetup_secret_values": _secret_values(loaded), "qsetup_file_sums": sums}
                )
            )
        (scratch / "tmp").mkdir(mode=0o700)
        (scratch / "cp").mkdir(mode=0o700)

        ansible_inventory = build_ansible_inventory(
            inv, artifacts, options.tags or PARTS, loaded.path
        )
        # YAML, not JSON: only YAML carries the !unsafe tag that keeps values from being
        # evaluated as templates.
        inv_file = run_dir / "inventory.yml"
        inv_file.write_text(dump_inventory(ansible_inventory), encoding="utf-8")
        inv_file.chmod(0o600)

        # Failure messages quote what hosts said; no secret value ever leaves in one.
        redact = redactor(loaded.secrets, [broker_admin_password(inv, loaded.secrets), *key_lines])
        return run_playbook(
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
