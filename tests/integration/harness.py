"""What every integration module shares: the installed ``qsetup`` and how to run it.

The integration tier drives the ``qsetup`` that the README's first command installed
(``pip install .`` into its own virtualenv, no extras), never this checkout through the
test virtualenv: a runtime dependency missing from ``[project.dependencies]`` must fail
here as it fails for a user. ``scripts/test.sh`` exports ``QSETUP_BIN``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

_DEFAULT_BIN = Path("/var/cache/qsetup/venv/bin/qsetup")


def _installed_qsetup() -> str:
    explicit = os.environ.get("QSETUP_BIN")
    if explicit:
        return explicit
    if _DEFAULT_BIN.exists():
        return str(_DEFAULT_BIN)
    found = shutil.which("qsetup")
    if found is None:
        raise RuntimeError("no installed qsetup: run 'bash scripts/bootstrap.sh' first")
    return found


QSETUP = [_installed_qsetup()]


def qsetup(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run the installed qsetup CLI as a user would; fail the test with its output on error."""
    proc = subprocess.run(
        [*QSETUP, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"qsetup {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


class Site:
    """One deployed inventory on sandbox hosts: run qsetup on it, reach its hosts."""

    def __init__(self, inventory: Path, key: Path, addresses: Mapping[str, str]) -> None:
        self.inventory = inventory
        self.key = key
        self.addresses = dict(addresses)

    def qsetup(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run ``qsetup <args> --inventory <this inventory>``; never fails the test itself."""
        return qsetup(*args, "--inventory", str(self.inventory), timeout=timeout, check=False)

    def deploy(self, *args: str) -> tuple[int, dict[str, object]]:
        """``qsetup deploy --json``: exit code and the JSON it printed."""
        import json

        proc = self.qsetup("deploy", "--json", *args)
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            pytest.fail(f"deploy printed no JSON (exit {proc.returncode}):\n{proc.stderr}")
        assert isinstance(data, dict)
        return proc.returncode, data

    def ssh(
        self, host: str, command: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command on a host as root (the sandbox key)."""
        from qsetup.sandbox.host import ssh_args

        return subprocess.run(
            [*ssh_args(self.key, self.addresses[host]), command],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def unit(self, host: str, unit: str) -> dict[str, str]:
        """``systemctl show`` of one unit (LoadState, ActiveState, SubState, MainPID, ...)."""
        props = "LoadState,ActiveState,SubState,Result,MainPID,NRestarts,UnitFileState"
        out = self.ssh(host, f"systemctl show -p {props} -- {unit}").stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def qsetup_units(self, host: str) -> set[str]:
        """qsetup's units systemd knows on a host that are active or enabled."""
        out = self.ssh(
            host, "systemctl list-units --all --plain --no-legend --state=active,activating "
            "'qsetup-*'; ls /etc/systemd/system/multi-user.target.wants/ | grep '^qsetup-'"
        ).stdout  # fmt: skip
        return {line.split()[0] for line in out.splitlines() if line.strip()}
