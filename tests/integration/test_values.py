"""Inventory and secret values are data (issue 9), on real sandbox hosts.

Passwords holding Jinja (``{{ ... }}``, ``{% raw %}``, a ``lookup('pipe', ...)``) are
deployed and each works literally: the broker API, AMQP and Flower accept the literal
value and refuse what a template would have made of it, and the lookup's command never
ran. The inventory names its SSH key by a relative path, as the README allows, and
deploy and status both reach the hosts with it. A host the deploy cannot serve (a
release qsetup does not support) fails the run before any host changes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from harness import SandboxHosts, Site, qsetup

from qsetup.inventory.loader import load_inventory
from qsetup.remote.roundtrip import send_task

pytestmark = pytest.mark.integration


@dataclass
class Hostile:
    """The module's site, whose secrets look like templates, and its first deploy."""

    site: Site
    secrets: dict[str, str]
    canary: Path
    deploy: dict[str, Any]

    @property
    def inventory(self) -> Path:
        return self.site.inventory


@pytest.fixture(scope="module")
def hostile(sandbox_hosts: SandboxHosts, tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    site = sandbox_hosts.site(Path(tmp_path_factory.mktemp("values")))
    dest = site.inventory.parent
    canary = dest / "LOOKUP-RAN"
    data = yaml.safe_load(site.inventory.read_text())
    # The key by a path relative to the inventory's folder.
    (dest / "keys").mkdir()
    shutil.copy(sandbox_hosts.key, dest / "keys" / "id")
    (dest / "keys" / "id").chmod(0o600)
    data["ssh"]["key"] = "keys/id"
    site.inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    secrets = yaml.safe_load(site.secrets.read_text())
    secrets["rabbitmq-user-proj"] = "Ab{{ 7 * 7 }}cd"
    secrets["rabbitmq-user-ops"] = "{% raw %}x{% endraw %}y"
    secrets["flower-user-admin"] = "{{ lookup('pipe', 'touch " + str(canary) + "') }}"
    site.secrets.write_text(yaml.safe_dump(secrets))
    site.secrets.chmod(0o600)
    # Run from elsewhere: the relative key must not depend on the working directory.
    proc = qsetup("deploy", "--inventory", str(site.inventory), "--json", timeout=900)
    return Hostile(site, secrets, canary, json.loads(proc.stdout))


def test_template_like_passwords_work_literally(hostile: Hostile) -> None:
    assert hostile.deploy["ok"] is True
    loaded = load_inventory(hostile.inventory)
    broker = loaded.inventory.hosts[loaded.inventory.broker.host].address
    api = f"http://{broker}:15672/api/whoami"
    ops = hostile.secrets["rabbitmq-user-ops"]
    assert requests.get(api, auth=("ops", ops), timeout=10).status_code == 200
    # What Jinja would have made of it is refused.
    assert requests.get(api, auth=("ops", "xy"), timeout=10).status_code == 401
    # The app's user (no management tag) logs in over AMQP with the literal password.
    assert send_task(loaded, "proj.tasks.add", (40, 2), timeout=60).result == 42
    flower = loaded.inventory.flower
    assert flower is not None
    url = f"http://{loaded.inventory.hosts[flower.host].address}:{flower.port}/api/workers"
    admin = hostile.secrets["flower-user-admin"]
    assert requests.get(url, auth=("admin", admin), timeout=30).status_code == 200
    assert requests.get(url, auth=("admin", ""), timeout=30).status_code == 401


def test_a_lookup_in_a_secret_never_runs(hostile: Hostile) -> None:
    assert not hostile.canary.exists()


def test_no_secret_in_the_run_directory(hostile: Hostile) -> None:
    run_dir = Path(hostile.deploy["run_dir"])
    for path in run_dir.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            for value in hostile.secrets.values():
                assert value not in text, f"{path} holds a secret"


def test_status_and_a_second_deploy_use_the_relative_key(hostile: Hostile) -> None:
    status = qsetup("status", "--inventory", str(hostile.inventory), "--json", check=False,
                    timeout=120)  # fmt: skip
    data = json.loads(status.stdout)
    assert all(h["reachable"] for h in data["hosts"].values()), data["problems"]
    again = json.loads(
        qsetup("deploy", "--inventory", str(hostile.inventory), "--json", timeout=600).stdout
    )
    assert {h: v["changed"] for h, v in again["hosts"].items()} == dict.fromkeys(again["hosts"], 0)


def test_an_unsupported_release_fails_before_any_host_changes(hostile: Hostile) -> None:
    loaded = load_inventory(hostile.inventory)
    worker = loaded.inventory.workers[0].hosts[0]
    # A change the deploy would make everywhere: a new concurrency in every unit.
    data = yaml.safe_load(hostile.inventory.read_text())
    for group in data["workers"]:
        group["concurrency"] = 3
    changed_inv = hostile.inventory.with_name("changed.yml")
    changed_inv.write_text(yaml.safe_dump(data, sort_keys=False))
    shutil.copy(hostile.inventory.with_name("inventory.secrets.yml"),
                changed_inv.with_name("changed.secrets.yml"))  # fmt: skip
    fake = "sed -i 's/^VERSION_CODENAME=.*/VERSION_CODENAME=bullseye/' /etc/os-release"
    assert (
        hostile.site.ssh(worker, f"cp /etc/os-release /root/os-release.qsetup && {fake}").returncode
        == 0
    )
    try:
        proc = qsetup("deploy", "--inventory", str(changed_inv), "--json", check=False, timeout=600)
    finally:
        hostile.site.ssh(worker, "cp /root/os-release.qsetup /etc/os-release")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    lines = [f"{f['host']}: {f['message']}" for f in result["failures"]]
    assert any(line.startswith(f"{worker}: runs ") and "qsetup supports" in line for line in lines)
    assert all(h["changed"] == 0 for h in result["hosts"].values()), result["hosts"]
    for group in loaded.inventory.workers:
        for host in group.hosts:
            unit = hostile.site.ssh(
                host, f"cat /etc/systemd/system/qsetup-worker-{group.name}@.service"
            )
            assert "--concurrency=3" not in unit.stdout
