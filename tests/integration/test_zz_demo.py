"""The README's main job, `qsetup demo`, end to end (last: it rewrites the hosts' secrets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from qsetup.cli import app

pytestmark = pytest.mark.integration


def test_demo_deploys_and_prints_the_task_result(sandbox_hosts: Any, tmp_path: Path) -> None:
    # Earlier modules power hosts off and reboot them; the demo starts from nothing,
    # as on a fresh machine (the session fixture's teardown still runs `down`).
    down = CliRunner().invoke(app, ["sandbox", "down"])
    assert down.exit_code == 0, down.output
    workdir = tmp_path / "qsetup-demo"
    result = CliRunner().invoke(app, ["demo", "--dir", str(workdir)])
    assert result.exit_code == 0, result.output
    assert "proj.tasks.add(2, 3) = 5" in result.output
    assert (workdir / "inventory.yml").is_file()
    assert (workdir / "inventory.secrets.yml").stat().st_mode & 0o077 == 0
    status = CliRunner().invoke(
        app, ["status", "--inventory", str(workdir / "inventory.yml"), "--json"]
    )
    assert status.exit_code == 0, status.output
