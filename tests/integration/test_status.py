"""qsetup status on real sandbox hosts: healthy after deploy, then one fault at a time.

Tests run in file order; each restores what it broke, except the last one, which
powers a host off (the session's ``sandbox down`` cleans dead hosts).
"""

from __future__ import annotations

import json
import secrets as pyrandom
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import QSETUP, qsetup

from qsetup.loader import LoadedInventory, load_inventory

pytestmark = pytest.mark.integration


@dataclass
class System:
    inventory: Path
    loaded: LoadedInventory
    key: Path

    def address(self, host: str) -> str:
        return self.loaded.inventory.hosts[host].address

    def ssh(self, host: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", "-i", str(self.key), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
             "-o", "ConnectTimeout=5", f"root@{self.address(host)}", command],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def status(self, *args: str) -> tuple[int, dict[str, Any], float]:
        """Run ``qsetup status --json`` as a user would; return exit code, JSON, wall time."""
        started = time.monotonic()
        proc = subprocess.run(
            [*QSETUP, "status", "--inventory", str(self.inventory), "--json", *args],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        wall = time.monotonic() - started
        assert proc.returncode in (0, 3), proc.stdout + proc.stderr
        return proc.returncode, json.loads(proc.stdout), wall


@pytest.fixture(scope="module")
def system(sandbox_hosts: Any, tmp_path_factory: pytest.TempPathFactory) -> System:
    """The sandbox inventory, deployed; broker objects other test modules added are removed."""
    src = Path(sandbox_hosts.inventory)
    dest = tmp_path_factory.mktemp("status")
    shutil.copytree(src.parent / "app", dest / "app")
    shutil.copy(src, dest / "inventory.yml")
    shutil.copy(src.with_name(f"{src.stem}.secrets.yml"), dest / "inventory.secrets.yml")
    inv = dest / "inventory.yml"
    qsetup("deploy", "--inventory", str(inv), "--json", timeout=900)
    loaded = load_inventory(inv)
    sys_ = System(inv, loaded, Path(str(loaded.inventory.ssh.key)))
    # Another module's deploy (test_deploy adds a vhost and a user) leaves extras behind.
    _, data, _ = sys_.status()
    broker = loaded.inventory.broker.host
    for d in (data["broker"] or {}).get("drift", []):
        if d["state"] == "extra" and d["kind"] in ("user", "vhost"):
            sys_.ssh(broker, f"rabbitmqctl delete_{d['kind']} '{d['name']}'")
    return sys_


def test_healthy_after_deploy(system: System) -> None:
    code, data, wall = system.status()
    assert code == 0, data["problems"]
    assert data["healthy"] is True and data["problems"] == []
    inv = system.loaded.inventory
    assert set(data["hosts"]) == set(inv.hosts)
    for name, host in data["hosts"].items():
        assert host["reachable"] is True, name
        assert host["hostname"] == name  # sandbox hosts are named as in the inventory
        for unit, state in host["units"].items():
            assert (state["active_state"], state["sub_state"]) == ("active", "running"), unit
            assert state["since"] and state["restarts"] == 0
    broker = data["broker"]
    assert broker["error"] is None and broker["drift"] == []
    assert broker["rabbitmq_version"] and data["hosts"][inv.broker.host]["rabbitmq_package"]
    # (consumer counts lag up to 5 s behind a worker's start: only the queue is asserted)
    assert any(q["name"] == "celery" for q in broker["queues"]), broker["queues"]
    nodes = data["workers"]
    expected = {n for n, w in nodes.items() if w["expected"]}
    assert len(expected) == sum(len(g.hosts) * g.instances for g in inv.workers)
    for name, node in nodes.items():
        assert node["answers_ping"] and node["expected"], name
        assert "proj.tasks.add" in node["registered"]
    for group in inv.workers:
        for host in group.hosts:
            versions = data["hosts"][host]["celery_versions"]
            assert all(v[0].isdigit() for v in versions.values()), versions
    assert data["flower"]["without_credentials"] == 401
    assert data["flower"]["with_credentials"] == 200
    print(f"status wall time, 3 healthy hosts: {wall:.2f} s (check {data['elapsed_seconds']} s)")


def test_the_table_ends_with_a_healthy_verdict(system: System) -> None:
    proc = subprocess.run(
        [*QSETUP, "status", "--inventory", str(system.inventory)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().splitlines()[-1].startswith("healthy:")
    for value in system.loaded.secrets.values:
        assert system.loaded.secrets.get(value) not in proc.stdout


def test_a_user_added_by_hand_is_drift(system: System) -> None:
    broker = system.loaded.inventory.broker.host
    add = system.ssh(broker, f"rabbitmqctl add_user intruder {pyrandom.token_hex(12)}")
    assert add.returncode == 0, add.stderr
    try:
        code, data, _ = system.status()
        assert code == 3
        drift = [(d["kind"], d["name"], d["state"]) for d in data["broker"]["drift"]]
        assert ("user", "intruder", "extra") in drift
        assert any(
            p.startswith(f"{broker}: broker user 'intruder': extra") for p in data["problems"]
        ), data["problems"]
    finally:
        system.ssh(broker, "rabbitmqctl delete_user intruder")
    code, data, _ = system.status()
    assert code == 0, data["problems"]


def test_a_stopped_worker_unit_is_exit_3_naming_host_and_unit(system: System) -> None:
    group = system.loaded.inventory.workers[0]
    host = group.hosts[0]
    unit = group.unit_template.replace("@.service", "@1.service")
    stop = system.ssh(host, f"systemctl stop {unit}")
    assert stop.returncode == 0, stop.stderr
    try:
        code, data, _ = system.status()
        assert code == 3
        assert data["hosts"][host]["units"][unit]["active_state"] == "inactive"
        assert any(
            p.startswith(f"{host}: unit {unit}: inactive (dead)") for p in data["problems"]
        ), data["problems"]
        node = next(
            n for n, w in data["workers"].items() if w["unit"] == unit and w["host"] == host
        )
        assert data["workers"][node]["answers_ping"] is False
        assert any(p.startswith(f"{host}: worker node {node}") for p in data["problems"])
    finally:
        system.ssh(host, f"systemctl start {unit}")


def test_a_powered_off_host_is_unreachable_within_its_timeout(system: System) -> None:
    inv = system.loaded.inventory
    victim = inv.workers[-1].hosts[-1]
    assert victim != inv.broker.host
    system.ssh(victim, "systemctl poweroff", timeout=30)
    deadline = time.monotonic() + 60
    while system.ssh(victim, "true", timeout=30).returncode == 0:
        assert time.monotonic() < deadline, f"{victim} did not power off"
        time.sleep(1)
    timeout = 3.0
    code, data, wall = system.status("--timeout", str(timeout))
    assert code == 3
    assert data["hosts"][victim]["reachable"] is False
    assert data["hosts"][victim]["error"]
    assert any(p.startswith(f"{victim}: unreachable") for p in data["problems"]), data["problems"]
    # The check itself is bounded by the timeout (plus the 1 s worker ping running alongside).
    assert data["elapsed_seconds"] <= timeout + 1.5, data["elapsed_seconds"]
    print(f"status with {victim} powered off: {wall:.2f} s wall, {data['elapsed_seconds']} s check")
    for name, host in data["hosts"].items():
        if name == victim:
            continue
        assert host["reachable"] is True, name
        assert host["units"] and all(u["ok"] for u in host["units"].values()), host["units"]
    assert data["broker"]["error"] is None
