"""qsetup status on real sandbox hosts: healthy after deploy, then one fault at a time.

The module deploys its own copy of the shared sandbox inventory; each test restores
what it broke, so the tests need no order and the hosts stay deployed and healthy.
(A powered-off host is test_failures' subject: powering off needs hosts of its own.)
"""

from __future__ import annotations

import secrets as pyrandom
from pathlib import Path

import pytest
from harness import SandboxHosts, Site, deployed_site, wait_for_ping

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def system(sandbox_hosts: SandboxHosts, tmp_path_factory: pytest.TempPathFactory) -> Site:
    """The sandbox inventory, deployed; broker objects made by hand elsewhere are removed.

    The deploy already removes what an earlier deploy of another inventory recorded (its
    vhosts and users); objects nobody recorded would be drift here, so they go too.
    """
    site = deployed_site(sandbox_hosts, Path(tmp_path_factory.mktemp("status")))
    _, data, _ = site.status()
    broker = site.loaded().inventory.broker.host
    for d in (data["broker"] or {}).get("drift", []):
        if d["state"] == "extra" and d["kind"] in ("user", "vhost"):
            site.ssh(broker, f"rabbitmqctl delete_{d['kind']} '{d['name']}'")
    return site


def test_healthy_after_deploy(system: Site) -> None:
    code, data, wall = system.status()
    assert code == 0, data["problems"]
    assert data["healthy"] is True and data["problems"] == []
    inv = system.loaded().inventory
    assert set(data["hosts"]) == set(inv.hosts)
    # The sandbox's inventory turns the firewall on: the broker host holds its unit.
    assert "qsetup-firewall.service" in data["hosts"][inv.broker.host]["units"]
    for name, host in data["hosts"].items():
        assert host["reachable"] is True, name
        assert host["hostname"] == name  # sandbox hosts are named as in the inventory
        for unit, state in host["units"].items():
            # The firewall's unit is a oneshot: it loaded the table and stays active.
            running = "exited" if state["role"] == "firewall" else "running"
            assert (state["active_state"], state["sub_state"]) == ("active", running), unit
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


def test_the_table_ends_with_a_healthy_verdict(system: Site) -> None:
    proc = system.qsetup("status", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().splitlines()[-1].startswith("healthy:")
    secrets = system.loaded().secrets
    for value in secrets.values:
        assert secrets.get(value) not in proc.stdout


def test_a_user_added_by_hand_is_drift(system: Site) -> None:
    broker = system.loaded().inventory.broker.host
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


def test_a_stopped_worker_unit_is_exit_3_naming_host_and_unit(system: Site) -> None:
    group = system.loaded().inventory.workers[0]
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
    wait_for_ping(system)
