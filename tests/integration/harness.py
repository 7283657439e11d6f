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
