"""The README's main job, `qsetup demo`, end to end, in a sandbox of its own.

`qsetup demo` takes the sandbox's state directory, subnet and bridge from the
``QSETUP_SANDBOX_*`` environment, so it runs in ``harness.SEPARATE["demo"]`` as on a
fresh machine and is brought down afterwards. Its host names are fixed (qs1..qs3) and
a host name is the machine's (network namespace ``qs-<name>``, link ``qsv-<name>``), so
it cannot run beside another sandbox that uses those names, such as the session's
shared hosts under the default ``QSETUP_TEST_HOST_NAMES``. Then it runs on the shared
sandbox instead: its ``up`` finds the hosts running and changes nothing, its deploy
converges them to the demo's inventory (every other module deploys its own copy first),
and nothing is taken down. If another sandbox, not the session's, holds the names, the
test skips (fails under CI=true) rather than touch it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import (
    DEFAULT_SANDBOX_DIR,
    SEPARATE,
    SandboxHosts,
    names_in_use,
    qsetup,
    require_sandbox_machine,
)

pytestmark = pytest.mark.integration

DEMO = SEPARATE["demo"]


def _shared_sandbox_names() -> set[str]:
    """Host names the shared sandbox's state records (its dir from the environment)."""
    state = Path(os.environ.get("QSETUP_SANDBOX_DIR") or DEFAULT_SANDBOX_DIR) / "state.json"
    try:
        return {h["name"] for h in json.loads(state.read_text(encoding="utf-8"))["hosts"]}
    except (OSError, ValueError, KeyError):
        return set()


@pytest.fixture
def demo_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Where the demo runs: its own sandbox, or (names taken by it) the shared one."""
    require_sandbox_machine()
    taken = names_in_use(DEMO.names)
    if not taken:
        env = DEMO.env(tmp_path / "state")
        try:
            yield env
        finally:
            qsetup("demo", "--down", env=env, timeout=300, check=False)
            qsetup("sandbox", "down", env=env, timeout=300, check=False)
        return
    if taken <= _shared_sandbox_names():
        shared: SandboxHosts = request.getfixturevalue("sandbox_hosts")
        yield shared.env  # the session's teardown brings these hosts down
        return
    reason = (
        f"`qsetup demo` names its hosts {','.join(DEMO.names)} and another sandbox on this "
        f"machine uses {','.join(sorted(taken))}"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def test_demo_deploys_and_prints_the_task_result(demo_env: dict[str, str], tmp_path: Path) -> None:
    workdir = tmp_path / "qsetup-demo"
    result = qsetup("demo", "--dir", str(workdir), env=demo_env, timeout=1800)
    assert "proj.tasks.add(2, 3) = 5" in result.stdout + result.stderr
    assert (workdir / "inventory.yml").is_file()
    assert (workdir / "inventory.secrets.yml").stat().st_mode & 0o077 == 0
    # The README's promise: after the demo, status on its inventory is healthy (exit 0).
    qsetup("status", "--inventory", str(workdir / "inventory.yml"), "--json", env=demo_env,
           timeout=120)  # fmt: skip
