"""The README's main job, `qsetup demo`, end to end (last: it rewrites the hosts' secrets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness import qsetup

pytestmark = pytest.mark.integration


def test_demo_deploys_and_prints_the_task_result(sandbox_hosts: Any, tmp_path: Path) -> None:
    # Earlier modules power hosts off and reboot them; the demo starts from nothing,
    # as on a fresh machine (the session fixture's teardown still runs `down`).
    qsetup("sandbox", "down", timeout=300)
    workdir = tmp_path / "qsetup-demo"
    result = qsetup("demo", "--dir", str(workdir), timeout=1800)
    assert "proj.tasks.add(2, 3) = 5" in result.stdout + result.stderr
    assert (workdir / "inventory.yml").is_file()
    assert (workdir / "inventory.secrets.yml").stat().st_mode & 0o077 == 0
    # The README's promise: after the demo, status on its inventory is healthy (exit 0).
    qsetup("status", "--inventory", str(workdir / "inventory.yml"), "--json", timeout=120)
