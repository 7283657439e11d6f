"""Real sandbox hosts for the integration tier (the helpers live in ``harness``).

``sandbox_hosts`` (session) boots three hosts with ``qsetup sandbox up`` and the
inventory ``--inventory-out`` writes for them; teardown always runs ``down``. Modules
that share them deploy their own copy of that inventory and leave the hosts running.
``isolated_env`` gives tests that stop and kill hosts a second, separate sandbox (own
state dir, subnet and bridge) so they never touch the shared one; modules that need a
whole deployed sandbox of their own use ``harness.own_sandbox``.

Integration tests skip (with the reason) when the machine cannot boot hosts,
except under CI=true, where that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import (  # noqa: F401 - re-exported for the modules
    QSETUP,
    SANDBOX_VARS,
    SandboxHosts,
    boot_sandbox,
    qsetup,
    require_sandbox_machine,
)


@pytest.fixture(scope="session")
def sandbox_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHosts]:
    """Three running sandbox hosts (qs1..qs3) and their inventory; always torn down.

    ``QSETUP_TEST_HOST_NAMES`` (comma-separated, e.g. ``da1,da2,da3``) names the hosts
    instead, so a second sandbox (own ``QSETUP_SANDBOX_DIR``, ``QSETUP_SANDBOX_SUBNET``
    and ``QSETUP_SANDBOX_BRIDGE``, all passed to ``up`` and ``down``) can run beside one
    that already uses qs1..qs3.
    """
    require_sandbox_machine()
    inventory = tmp_path_factory.mktemp("sandbox") / "inventory.yml"
    raw = os.environ.get("QSETUP_TEST_HOST_NAMES", "")
    names = tuple(n.strip() for n in raw.split(",") if n.strip()) or None
    env = {k: os.environ[k] for k in SANDBOX_VARS if os.environ.get(k)}
    try:
        yield boot_sandbox(names, inventory, env)
    finally:
        qsetup("sandbox", "down", env=env, timeout=120)


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
