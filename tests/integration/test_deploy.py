"""Deploy on real sandbox hosts (broker, apt and pip workers, Flower): what a user cares about."""

from __future__ import annotations

import json
import secrets as pyrandom
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from harness import SandboxHosts, Site, qsetup

from qsetup.inventory.loader import LoadedInventory, load_inventory
from qsetup.remote.roundtrip import send_task

pytestmark = pytest.mark.integration

CANARY = "Canary" + pyrandom.token_hex(12)


@dataclass
class Deployed:
    """The module's site, deployed twice: what each deploy printed."""

    site: Site
    first: dict[str, Any]
    first_output: str
    second: dict[str, Any]

    @property
    def inventory(self) -> Path:
        return self.site.inventory

    @property
    def loaded(self) -> LoadedInventory:
        """The inventory and secrets as they are now (a test may rotate a password)."""
        return self.site.loaded()

    def address(self, host: str) -> str:
        return self.loaded.inventory.hosts[host].address


def _prepare_site(hosts: SandboxHosts, folder: Path) -> Site:
    """Copy the sandbox inventory, add a second vhost and user, and plant a canary password."""
    site = hosts.site(folder)
    data = yaml.safe_load(site.inventory.read_text())
    data["broker"]["vhosts"].append("other")
    data["broker"]["users"].append(
        {"name": "other", "vhost": "other", "password_secret": "rabbitmq-user-other"}
    )
    site.inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    secrets = yaml.safe_load(site.secrets.read_text())
    secrets["rabbitmq-user-other"] = pyrandom.token_hex(16)
    secrets[f"rabbitmq-user-{data['app']['broker_user']}"] = CANARY
    site.secrets.write_text(yaml.safe_dump(secrets))
    site.secrets.chmod(0o600)
    return site


@pytest.fixture(scope="module")
def deployed(sandbox_hosts: SandboxHosts, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    site = _prepare_site(sandbox_hosts, Path(tmp_path_factory.mktemp("deploy")))
    first = qsetup("deploy", "--inventory", str(site.inventory), "--json", timeout=900)
    second = qsetup("deploy", "--inventory", str(site.inventory), "--json", timeout=900)
    return Deployed(
        site,
        json.loads(first.stdout),
        first.stdout + first.stderr,
        json.loads(second.stdout),
    )


def test_first_deploy_reports_every_host_ok(deployed: Deployed) -> None:
    assert deployed.first["ok"] is True
    for name, host in deployed.first["hosts"].items():
        assert host["failed"] == 0 and not host["unreachable"], name
        assert host["changed"] > 0, f"{name}: a first deploy must change something"


def test_second_deploy_changes_nothing(deployed: Deployed) -> None:
    assert deployed.second["ok"] is True
    changed = {name: h["changed"] for name, h in deployed.second["hosts"].items()}
    assert changed == dict.fromkeys(changed, 0)


def test_task_round_trip_through_the_deployed_broker(deployed: Deployed) -> None:
    trip = send_task(deployed.loaded, "proj.tasks.add", (2, 3), timeout=60)
    assert trip.result == 5


def test_both_worker_groups_answer_and_list_the_apps_tasks(deployed: Deployed) -> None:
    from celery import Celery

    from qsetup.artifacts.render import broker_url

    inv = deployed.loaded.inventory
    url = broker_url(inv, deployed.loaded.secrets, inv.app.broker_user, inv.app.vhost)
    celery_app = Celery("probe", broker=url)
    try:
        registered = celery_app.control.inspect(timeout=5).registered() or {}
    finally:
        celery_app.close()
    groups = {g.name for g in inv.workers}
    seen = {node.split("-1@")[0] for node in registered}
    assert groups <= seen, registered
    for tasks in registered.values():
        assert "proj.tasks.add" in tasks


def test_guest_cannot_log_in(deployed: Deployed) -> None:
    inv = deployed.loaded.inventory
    broker = deployed.address(inv.broker.host)
    resp = requests.get(
        f"http://{broker}:{inv.broker.management_port}/api/whoami",
        auth=("guest", "guest"),
        timeout=10,
    )
    assert resp.status_code == 401
    users = deployed.site.ssh(inv.broker.host, "rabbitmqctl list_users --quiet --no-table-headers")
    assert users.returncode == 0, users.stderr
    assert "guest" not in users.stdout.split()


def test_epmd_listens_only_on_loopback_and_what_the_nodes_name_resolves_to(
    deployed: Deployed,
) -> None:
    # A single node needs no outside address; the sandbox's /etc/hosts maps the host's
    # name to its address, where rabbitmqctl (above) asks epmd for rabbit@<name>.
    node = deployed.loaded.inventory.broker.host
    out = deployed.site.ssh(node, "ss -ltnH 'sport = :4369' | awk '{print $4}'")
    assert sorted(out.stdout.split()) == sorted(
        ["127.0.0.1:4369", f"{deployed.address(node)}:4369"]
    ), out.stdout


def test_a_vhost_user_cannot_publish_to_another_vhost(deployed: Deployed) -> None:
    from kombu import Connection

    inv = deployed.loaded.inventory
    broker = deployed.address(inv.broker.host)
    password = deployed.loaded.secrets.get("rabbitmq-user-other")
    ok_url = f"amqp://other:{password}@{broker}:{inv.broker.port}/other"
    with Connection(ok_url, connect_timeout=10) as conn:
        conn.connect()  # its own vhost works
    bad_url = f"amqp://other:{password}@{broker}:{inv.broker.port}/{inv.app.vhost}"
    with pytest.raises(Exception) as exc:  # noqa: B017 - kombu/amqp raise several kinds
        with Connection(bad_url, connect_timeout=10) as conn:
            conn.connect()
            conn.default_channel.basic_publish(b"x", exchange="", routing_key="celery")
    assert "refused" in str(exc.value).lower(), exc.value


def test_flower_requires_credentials_and_sees_both_workers(deployed: Deployed) -> None:
    inv = deployed.loaded.inventory
    assert inv.flower is not None
    base = f"http://{deployed.address(inv.flower.host)}:{inv.flower.port}"
    assert requests.get(f"{base}/api/workers", timeout=10).status_code == 401
    user = inv.flower.basic_auth[0]
    auth = (user.name, deployed.loaded.secrets.get(user.secret))
    resp = requests.get(f"{base}/api/workers", params={"refresh": "1"}, auth=auth, timeout=30)
    assert resp.status_code == 200
    groups = {g.name for g in inv.workers}
    assert {name.split("-1@")[0] for name in resp.json()} >= groups, resp.text


def test_workers_run_as_their_user_under_hardened_units(deployed: Deployed) -> None:
    inv = deployed.loaded.inventory
    for group in inv.workers:
        unit = group.unit_template.replace("@.service", "@1.service")
        for host in group.hosts:
            show = deployed.site.ssh(
                host,
                f"systemctl show -p ActiveState,User,NoNewPrivileges,ProtectSystem,MainPID {unit}",
            )
            props = dict(line.split("=", 1) for line in show.stdout.split())
            assert props["ActiveState"] == "active", (host, show.stdout)
            assert props["User"] == group.user
            assert props["NoNewPrivileges"] == "yes"
            assert props["ProtectSystem"] == "strict"
            owner = deployed.site.ssh(host, f"stat -c %U /proc/{props['MainPID']}").stdout.strip()
            assert owner == group.user


def test_the_canary_password_leaks_nowhere(deployed: Deployed) -> None:
    assert CANARY not in deployed.first_output
    runs = deployed.inventory.parent / ".qsetup" / "runs"
    for path in runs.rglob("*"):
        if path.is_file():
            assert CANARY not in path.read_text(errors="replace"), path
    for host in deployed.loaded.inventory.hosts:
        journal = deployed.site.ssh(host, "journalctl --no-pager -o cat", timeout=120)
        assert journal.returncode == 0
        assert CANARY not in journal.stdout, f"canary in the journal of {host}"
        units = deployed.site.ssh(
            host, "cat /etc/systemd/system/qsetup-*.service 2>/dev/null || true"
        )
        assert CANARY not in units.stdout


def test_check_mode_shows_a_unit_change_and_changes_nothing(deployed: Deployed) -> None:
    inv_file = deployed.inventory
    original = inv_file.read_text()
    data = yaml.safe_load(original)
    data["workers"][0]["concurrency"] = 3
    group = data["workers"][0]
    unit = f"/etc/systemd/system/qsetup-worker-{group['name']}@.service"
    host = group["hosts"][0]
    before = deployed.site.ssh(host, f"cat {unit}").stdout
    try:
        inv_file.write_text(yaml.safe_dump(data, sort_keys=False))
        result = qsetup("deploy", "--inventory", str(inv_file), "--check", "--diff", timeout=600)
    finally:
        inv_file.write_text(original)
    output = result.stdout + result.stderr
    assert "+    --concurrency=3" in output
    assert CANARY not in output
    assert deployed.site.ssh(host, f"cat {unit}").stdout == before


def test_a_changed_password_is_applied_without_deleting_the_user(deployed: Deployed) -> None:
    inv = deployed.loaded.inventory
    user = inv.app.broker_user
    deleted, changed = f"Deleted user '{user}'", f"Successfully changed password for user '{user}'"

    def broker_log() -> str:
        return deployed.site.ssh(inv.broker.host, "cat /var/log/rabbitmq/*.log").stdout

    # The shared hosts' broker log may hold earlier deploys' lines: count this one's.
    before = broker_log()
    sec_file = deployed.loaded.secrets_path
    values = yaml.safe_load(sec_file.read_text())
    values[f"rabbitmq-user-{user}"] = "Rotated" + pyrandom.token_hex(10)
    sec_file.write_text(yaml.safe_dump(values))
    qsetup("deploy", "--inventory", str(deployed.inventory), "--json", timeout=900)
    rotated = load_inventory(deployed.inventory)
    for _ in range(3):  # lands on either worker group
        assert send_task(rotated, "proj.tasks.add", (20, 22), timeout=60).result == 42
    log = broker_log()
    assert log.count(deleted) == before.count(deleted)
    assert log.count(changed) > before.count(changed)
