"""One desired state, converged both ways (issue 10), on real sandbox hosts.

Each test drives the installed CLI and checks what an operator cares about: what the
inventory dropped is gone from the hosts and the broker (one beat, never two); a bad
code push restarts nothing and says why; a crash-looped unit comes back on the next
deploy; the rolling gate waits for this host's own node, never a neighbour's.
The module deploys its own inventory (a group on two hosts); the last test leaves the
hosts deployed with it, and any later module's deploy converges them to its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from harness import SandboxHosts, Site, wait_for_ping

from qsetup.inventory.loader import load_inventory
from qsetup.remote.roundtrip import send_task

pytestmark = pytest.mark.integration


def _write(site: Site, data: dict[str, Any]) -> None:
    site.inventory.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def site(sandbox_hosts: SandboxHosts, tmp_path_factory: pytest.TempPathFactory) -> Site:
    site = sandbox_hosts.site(Path(tmp_path_factory.mktemp("converge")))
    data = yaml.safe_load(site.inventory.read_text())
    broker, w1, w2 = sorted(data["hosts"])
    data["workers"] = [
        {"name": "apt-workers", "hosts": [w1], "install": "apt", "instances": 2},
        {"name": "shared", "hosts": [w1, w2], "install": "pip", "instances": 2},
    ]
    data["beat"] = {"host": w1}
    _write(site, data)
    code, result = site.deploy()
    assert code == 0, result["failures"]
    return site


def _data(site: Site) -> dict[str, Any]:
    data = yaml.safe_load(site.inventory.read_text())
    assert isinstance(data, dict)
    return data


def test_what_the_inventory_drops_leaves_the_hosts_and_the_broker(site: Site) -> None:
    data = _data(site)
    w1, w2 = data["workers"][1]["hosts"]
    broker = data["broker"]["host"]
    ops_password = yaml.safe_load(site.inventory.with_name("inventory.secrets.yml").read_text())[
        "rabbitmq-user-ops"
    ]
    api = f"http://{site.addresses[broker]}:15672/api/whoami"
    assert requests.get(api, auth=("ops", ops_password), timeout=10).status_code == 200
    assert "qsetup-beat.service" in site.qsetup_units(w1)
    old_nodes = site.expected_nodes()

    data["workers"][0]["instances"] = 1  # apt-workers@2 goes
    # Renamed and lowered in one edit: shared@1 and shared@2 go on both hosts, renamed@1 comes.
    data["workers"][1]["name"] = "renamed"
    data["workers"][1]["instances"] = 1
    data["beat"] = {"host": w2}  # beat moves
    data["broker"]["users"] = [u for u in data["broker"]["users"] if u["name"] != "ops"]
    _write(site, data)
    code, result = site.deploy()
    assert code == 0, result["failures"]

    on_w1, on_w2 = site.qsetup_units(w1), site.qsetup_units(w2)
    assert "qsetup-worker-apt-workers@2.service" not in on_w1
    assert not {u for u in on_w1 | on_w2 if u.startswith("qsetup-worker-shared@")}
    assert "qsetup-beat.service" not in on_w1 and "qsetup-beat.service" in on_w2
    assert {"qsetup-worker-renamed@1.service"} <= on_w1 & on_w2
    assert "qsetup-worker-renamed@2.service" not in on_w1 | on_w2
    # systemd forgot the removed units on every host after this one deploy (none is left
    # listed as "not-found inactive dead"), and their nodes no longer answer ping.
    for host in (w1, w2):
        left = site.ssh(host, "systemctl list-units --all --plain --no-legend "
                        "'qsetup-worker-shared*' 'qsetup-worker-apt-workers@2*'")  # fmt: skip
        assert left.returncode == 0 and left.stdout.strip() == "", f"{host}: {left.stdout}"
    dropped_nodes = old_nodes - site.expected_nodes()
    assert len(dropped_nodes) == 5, dropped_nodes  # shared-1, shared-2 on both hosts; apt-workers-2
    assert not dropped_nodes & wait_for_ping(site), dropped_nodes
    for host in (w1, w2):
        gone = site.ssh(host, "ls /etc/systemd/system/qsetup-worker-shared@.service "
                        "/etc/qsetup/worker-shared.env /opt/qsetup/venvs/shared")  # fmt: skip
        assert gone.returncode != 0 and gone.stdout == "", gone.stdout
    assert site.ssh(w1, "ls /etc/qsetup/beat.env").returncode != 0
    # The dropped broker user no longer logs in.
    assert requests.get(api, auth=("ops", ops_password), timeout=10).status_code == 401

    loaded = load_inventory(site.inventory)
    assert send_task(loaded, "proj.tasks.add", (1, 2), timeout=60).result == 3
    status = site.qsetup("status", "--json", timeout=120)
    assert status.returncode == 0, status.stdout
    again_code, again = site.deploy()
    assert again_code == 0
    assert all(h["changed"] == 0 for h in again["hosts"].values()), again["hosts"]


def test_a_bad_push_restarts_nothing_and_shows_the_error(site: Site) -> None:
    data = _data(site)
    workers = sorted({h for g in data["workers"] for h in g["hosts"]})
    units = {h: sorted(u for u in site.qsetup_units(h) if u.startswith("qsetup-worker-")
                       and "@" in u and not u.endswith("@.service")) for h in workers}  # fmt: skip
    pids = {(h, u): site.unit(h, u)["MainPID"] for h in workers for u in units[h]}
    tasks = site.inventory.parent / "app" / "proj" / "tasks.py"
    good = tasks.read_text()
    tasks.write_text(good + "\ndef broken(:\n")
    try:
        code, result = site.deploy()
    finally:
        tasks.write_text(good)
    assert code == 3
    messages = " ".join(f["message"] for f in result["failures"])  # type: ignore[union-attr]
    assert "SyntaxError" in messages and "proj/tasks.py" in messages
    assert {(h, u): site.unit(h, u)["MainPID"] for (h, u) in pids} == pids
    for host in workers:
        live = site.ssh(host, "cat /opt/qsetup/apps/proj/proj/tasks.py").stdout
        assert "def broken" not in live
    loaded = load_inventory(site.inventory)
    assert send_task(loaded, "proj.tasks.add", (2, 2), timeout=60).result == 4
    # The fixed code (here: the old code again) deploys.
    code, result = site.deploy()
    assert code == 0, result["failures"]


def test_a_unit_at_its_start_limit_comes_back_on_the_next_deploy(site: Site) -> None:
    data = _data(site)
    host = data["workers"][0]["hosts"][0]
    unit = "qsetup-worker-apt-workers@1.service"
    # Restarting faster than StartLimitBurst allows leaves the unit failed (start-limit-hit).
    site.ssh(host, f"for i in $(seq 12); do systemctl restart {unit} || true; done")
    assert site.unit(host, unit)["ActiveState"] == "failed"
    code, result = site.deploy()
    assert code == 0, result["failures"]
    assert site.unit(host, unit)["ActiveState"] == "active"


def test_the_rolling_gate_waits_for_this_hosts_own_node(site: Site) -> None:
    data = _data(site)
    group = data["workers"][1]
    first, second = group["hosts"]
    unit = f"qsetup-worker-{group['name']}@1.service"
    dropin = f"/etc/systemd/system/qsetup-worker-{group['name']}@.service.d"
    # On the first host the group's worker can no longer start; on the second host the
    # same group's node (same name before the '@') answers ping all along.
    override = "[Service]\\nExecStart=\\nExecStart=/bin/sleep 600\\n"
    site.ssh(first, f"mkdir -p {dropin} && printf '{override}' > {dropin}/broken.conf "
             "&& systemctl daemon-reload")  # fmt: skip
    before = site.unit(second, unit)["MainPID"]
    try:
        proc = site.qsetup("restart", "--role", "workers", "--json", timeout=600)
    finally:
        site.ssh(first, f"rm -rf {dropin} && systemctl daemon-reload && systemctl restart {unit}")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"@{first}" in proc.stdout and "does not answer ping" in proc.stdout
    # The roll stopped at the first host: the second host's worker was not restarted.
    assert site.unit(second, unit)["MainPID"] == before
