"""``qsetup restart`` on real sandbox hosts: a warm, rolling restart loses no running task.

The module deploys its own copy of the shared sandbox inventory and restarts services
(RabbitMQ too; its last test stops it and deploys), so the hosts stay up and deployed
for whichever module runs next.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from harness import SandboxHosts, Site, celery_client, deployed_site, wait_for, wait_for_ping

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site(sandbox_hosts: SandboxHosts, tmp_path_factory: pytest.TempPathFactory) -> Site:
    return deployed_site(sandbox_hosts, Path(tmp_path_factory.mktemp("restart")))


def wait_until_running(capp: Any, task_id: str, timeout: float = 60) -> str:
    """The worker node that is running ``task_id`` (polls ``inspect().active()``)."""

    def running_on() -> str | None:
        active = capp.control.inspect(timeout=2).active() or {}
        for node, tasks in active.items():
            if any(t.get("id") == task_id for t in tasks):
                return str(node)
        return None

    return str(wait_for(f"task {task_id} to start", running_on, timeout))


def test_restart_lets_a_running_20s_task_finish(site: Site) -> None:
    before = site.main_pids()
    with celery_client(site.loaded()) as capp:
        result = capp.send_task("proj.tasks.sleep", (20,))
        node = wait_until_running(capp, result.id)
        picked_up = time.monotonic()
        proc = site.qsetup("restart", "--json", timeout=600)
        restart_done = time.monotonic()
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        assert json.loads(proc.stdout)["failures"] == []
        assert result.get(timeout=120) == 20, f"the task on {node} was lost"
    # The host running the task cannot be done before the task is (warm shutdown).
    assert restart_done - picked_up >= 18, (node, restart_done - picked_up)
    after = site.main_pids()
    assert all(before[u] != after[u] for u in before), (before, after)
    wait_for_ping(site)


def test_restart_limited_to_one_host_leaves_the_others_alone(site: Site) -> None:
    (_, first, unit_a), (_, second, unit_b) = site.worker_units()[:2]
    before = site.main_pids()
    proc = site.qsetup("restart", "--role", "workers", "--limit", first, "--json", timeout=300)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    after = site.main_pids()
    assert before[f"{unit_a}@{first}"] != after[f"{unit_a}@{first}"]
    assert before[f"{unit_b}@{second}"] == after[f"{unit_b}@{second}"]
    wait_for_ping(site)


def test_after_rabbitmq_restarts_the_command_ends_with_every_worker_answering(site: Site) -> None:
    """A broker restart; a broker stopped (no worker restart then), started by deploy, by --tags.

    The workers lose RabbitMQ and retry with Celery's growing backoff (2 s, 4 s, 6 s ...),
    so they came back up to 10 s after the command ended, and a status right after was
    degraded. Now each command waits until every worker answers ping as its own node.
    """
    proc = site.qsetup("restart", "--role", "broker", "--json", timeout=600)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    code, data, _ = site.status()
    assert code == 0, data["problems"]
    assert {n for n, w in data["workers"].items() if w["answers_ping"]} == site.expected_nodes()

    broker = site.loaded().inventory.broker.host
    site.ssh(broker, "systemctl stop rabbitmq-server.service", check=True)

    # With RabbitMQ down a worker restart is refused before any worker stops (it took the
    # first host's workers down, then failed after the gate's 60 s).
    def started() -> list[str]:
        return [
            site.ssh(host, f"systemctl show -p ActiveEnterTimestamp {unit}", check=True).stdout
            for _, host, unit in site.worker_units()
        ]

    before = started()
    proc = site.qsetup("restart", timeout=120)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "RabbitMQ runs on no broker node" in proc.stderr and started() == before
    time.sleep(20)  # the workers' retries are 8 s apart by now
    code, result = site.deploy()
    assert code == 0, result["failures"]
    code, data, _ = site.status()
    assert code == 0, data["problems"]
    assert {n for n, w in data["workers"].items() if w["answers_ping"]} == site.expected_nodes()

    # A deploy of the broker alone plans no worker; the workers that ran still wait.
    site.ssh(broker, "systemctl stop rabbitmq-server.service", check=True)
    time.sleep(20)
    code, result = site.deploy("--tags", "broker")
    assert code == 0, result["failures"]
    code, data, _ = site.status()
    assert code == 0, data["problems"]
    assert {n for n, w in data["workers"].items() if w["answers_ping"]} == site.expected_nodes()
