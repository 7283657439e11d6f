"""The demo topology on Debian 13 (trixie) hosts (issue 9): apt and pip workers, Flower.

trixie has no ``python-celery-common``: an ``install: apt`` group gets ``python3-celery``
and ``celery`` there, chosen from the release the preflight reads on the host. The
hosts are a separate sandbox (own state, subnet, bridge and names) so the bookworm
hosts of the other modules are untouched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_sandbox_machine
from harness import qsetup

from qsetup.loader import load_inventory
from qsetup.roundtrip import send_task

pytestmark = pytest.mark.integration

TRIXIE_ENV = {
    "QSETUP_SANDBOX_SUBNET": "10.213.10.0/24",
    "QSETUP_SANDBOX_BRIDGE": "qsbrx",
}


@pytest.fixture(scope="module")
def trixie(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    require_sandbox_machine()
    base = tmp_path_factory.mktemp("trixie")
    env = {**TRIXIE_ENV, "QSETUP_SANDBOX_DIR": str(base / "state")}
    inventory = base / "inventory.yml"
    try:
        qsetup("sandbox", "up", "--names", "tx1,tx2,tx3", "--release", "trixie",
               "--inventory-out", str(inventory), env=env, timeout=900)  # fmt: skip
        yield inventory, env
    finally:
        qsetup("sandbox", "down", env=env, timeout=300, check=False)


def test_demo_topology_deploys_on_trixie(trixie: tuple[Path, dict[str, str]]) -> None:
    inventory, env = trixie
    first = json.loads(
        qsetup("deploy", "--inventory", str(inventory), "--json", env=env, timeout=1200).stdout
    )
    assert first["ok"] is True, first["failures"]
    loaded = load_inventory(inventory)
    seen = {send_task(loaded, "proj.tasks.add", (2, 3), timeout=60).result for _ in range(3)}
    assert seen == {5}

    status = json.loads(
        qsetup("status", "--inventory", str(inventory), "--json", env=env, timeout=120).stdout
    )
    assert status["healthy"] is True, status["problems"]
    versions = {
        path: version
        for host in status["hosts"].values()
        for path, version in host["celery_versions"].items()
    }
    # The apt group runs Debian 13's Celery (5.5), the pip group a virtualenv's.
    assert versions["/usr/bin/celery"].startswith("5.5"), versions
    assert status["broker"]["rabbitmq_version"].startswith("4."), status["broker"]

    second = json.loads(
        qsetup("deploy", "--inventory", str(inventory), "--json", env=env, timeout=600).stdout
    )
    assert {h: v["changed"] for h, v in second["hosts"].items()} == dict.fromkeys(
        second["hosts"], 0
    )
