"""Real sandbox hosts for the integration tier.

``sandbox_hosts`` (session) boots three hosts with ``qsetup sandbox up`` and the
inventory ``--inventory-out`` writes for them; teardown always runs ``down``.
``isolated_sandbox`` gives tests that stop and kill hosts a second, separate
sandbox (own state dir, subnet and bridge) so they never touch the shared one.

Integration tests skip (with the reason) when the machine cannot boot hosts,
except under CI=true, where that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness import QSETUP, qsetup  # noqa: F401 - re-exported for the modules

UP_TIMEOUT = 900  # a cold cache runs debootstrap first


def _unusable_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "sandbox hosts need Linux"
    if os.geteuid() != 0:
        return "sandbox hosts need root"
    if shutil.which("systemd-nspawn") is None:
        return "systemd-nspawn is missing (apt-get install systemd-container)"
    return None


def require_sandbox_machine() -> None:
    """Skip when the machine cannot run sandbox hosts; under CI=true, fail instead."""
    reason = _unusable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class SandboxHosts:
    """Running sandbox hosts and how to reach them."""

    names: tuple[str, ...]
    addresses: dict[str, str]
    key: Path
    inventory: Path
    secrets: Path
    env: dict[str, str] = field(default_factory=dict)

    def ssh(
        self, name: str, *command: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on a host through ``qsetup sandbox ssh``."""
        return qsetup("sandbox", "ssh", name, "--", *command, env=self.env, timeout=timeout,
                      check=check)  # fmt: skip

    def list(self) -> list[dict[str, object]]:
        """Return ``qsetup sandbox list --json``."""
        data = json.loads(qsetup("sandbox", "list", "--json", env=self.env).stdout)
        assert isinstance(data, list)
        return data


def _up(names_arg: list[str], inventory: Path, env: Mapping[str, str]) -> SandboxHosts:
    qsetup("sandbox", "up", *names_arg, "--inventory-out", str(inventory), env=env,
           timeout=UP_TIMEOUT)  # fmt: skip
    listed = json.loads(qsetup("sandbox", "list", "--json", env=env).stdout)
    state_dir = Path(env.get("QSETUP_SANDBOX_DIR", "/var/lib/qsetup/sandbox"))
    return SandboxHosts(
        names=tuple(h["name"] for h in listed),
        addresses={h["name"]: h["address"] for h in listed},
        key=state_dir / "id_ed25519",
        inventory=inventory,
        secrets=inventory.with_name(f"{inventory.stem}.secrets.yml"),
        env=dict(env),
    )


@pytest.fixture(scope="session")
def sandbox_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHosts]:
    """Three running sandbox hosts (qs1..qs3) and their inventory; always torn down.

    ``QSETUP_TEST_HOST_NAMES`` (comma-separated, e.g. ``da1,da2,da3``) names the hosts
    instead, so a second sandbox (own ``QSETUP_SANDBOX_DIR``, subnet and bridge) can run
    beside one that already uses qs1..qs3.
    """
    require_sandbox_machine()
    inventory = tmp_path_factory.mktemp("sandbox") / "inventory.yml"
    names = os.environ.get("QSETUP_TEST_HOST_NAMES", "").strip()
    # An exported QSETUP_SANDBOX_DIR moves the SSH key too.
    env = {k: v for k, v in os.environ.items() if k == "QSETUP_SANDBOX_DIR"}
    try:
        yield _up(["--names", names] if names else ["--hosts", "3"], inventory, env)
    finally:
        qsetup("sandbox", "down", timeout=120)


ISOLATED_ENV = {
    "QSETUP_SANDBOX_SUBNET": "10.213.9.0/24",
    "QSETUP_SANDBOX_BRIDGE": "qsbrt",
}


@pytest.fixture
def isolated_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for a separate sandbox; whatever a test leaves up is brought down."""
    require_sandbox_machine()
    env = {**ISOLATED_ENV, "QSETUP_SANDBOX_DIR": str(tmp_path / "state")}
    try:
        yield env
    finally:
        qsetup("sandbox", "down", env=env, timeout=120, check=False)
