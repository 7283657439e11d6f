"""Rotating the app's broker password on real sandbox hosts (issue 6).

The new password applies, the old one is refused, every service reconnects with the new
one (no connection made with the old password stays open), Flower keeps working, and a
second deploy changes nothing. The module deploys its own copy of the shared sandbox
inventory and rotates the password in that copy's secrets only.

Then, on the same copy (no second deploy of a fresh copy, to save the tier's time),
secrets at rest and `qsetup secrets rotate` (issue 21): after `qsetup secrets encrypt`,
no secret value and no private key's body is anywhere under the inventory's folder (run
folders included), a missing or wrong vault password stops every command before any
host, and deploy, status, backup and restore work with the password. Rotating Flower's
broker API password changes it on the broker (the new one logs in, the old one is
refused), restarts Flower and nothing else, and status is healthy.
"""

from __future__ import annotations

import json
import secrets as pyrandom
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from harness import (
    SandboxHosts,
    Site,
    celery_client,
    changed_by_host,
    deployed_site,
    qsetup,
    wait_for,
    wait_for_ping,
)

from qsetup.artifacts.render import broker_url
from qsetup.desired.state import broker_admin_password
from qsetup.inventory.vault import PASSWORD_ENV, is_encrypted

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site(sandbox_hosts: SandboxHosts, tmp_path_factory: pytest.TempPathFactory) -> Site:
    return deployed_site(sandbox_hosts, Path(tmp_path_factory.mktemp("rotation")))


def test_password_rotation_applies_refuses_the_old_and_reconnects(
    site: Site, sandbox_hosts: SandboxHosts
) -> None:
    from kombu import Connection

    old = site.loaded()
    inv = old.inventory
    assert inv.flower is not None
    secret_name = f"rabbitmq-user-{inv.app.broker_user}"
    old_url = broker_url(inv, old.secrets, inv.app.broker_user, inv.app.vhost)
    values = yaml.safe_load(site.secrets.read_text())
    values[secret_name] = "Rotated" + pyrandom.token_hex(12)
    site.secrets.write_text(yaml.safe_dump(values))
    rotated_at_ms = time.time() * 1000
    rc, data = site.deploy()
    assert rc == 0, data["failures"]

    with pytest.raises(Exception) as refused:  # noqa: B017 - kombu/amqp raise several kinds
        with Connection(old_url, connect_timeout=10) as conn:
            conn.connect()
    assert "refused" in str(refused.value).lower() or "403" in str(refused.value), refused.value

    new = site.loaded()
    with celery_client(new) as capp:
        for n in range(4):  # lands on either group
            assert capp.send_task("proj.tasks.add", (n, 40)).get(timeout=60) == n + 40
        # Every worker node (both groups) answers with the new password.
        wait_for_ping(site, timeout=60)
        probe = capp.send_task("proj.tasks.add", (1, 1))
        assert probe.get(timeout=60) == 2

    # Every connection of the app's user from the workers and Flower is a new one.
    broker = site.addresses[inv.broker.host]
    ops = next(u for u in inv.broker.users if "administrator" in u.tags)
    admin = (ops.name, new.secrets.get(ops.password_secret))
    api = f"http://{broker}:{inv.broker.management_port}/api"
    service_hosts = {site.addresses[h] for _, h, _ in site.worker_units()}

    def app_connections() -> list[dict[str, Any]] | None:
        # The API lists a connection once its statistics are collected (every 5 s): a
        # worker that answered ping may not be listed yet.
        conns = requests.get(f"{api}/connections", auth=admin, timeout=10).json()
        mine = [c for c in conns if c["user"] == inv.app.broker_user]
        return mine if service_hosts <= {c["peer_host"] for c in mine} else None

    app_conns = wait_for("every worker host's connection listed", app_connections, 30)
    # RabbitMQ keeps connections opened before a password change; the controller's own
    # (this test's earlier clients, from the bridge address) are not qsetup's to close.
    controller = sandbox_hosts.bridge_address
    stale = [
        c["name"]
        for c in app_conns
        if c["connected_at"] < rotated_at_ms and c["peer_host"] != controller
    ]
    assert stale == [], f"service connections made with the old password are still open: {stale}"

    # Flower: same credentials, still answers, and sees both groups and new tasks.
    groups = {g for g, _, _ in site.worker_units()}
    user = inv.flower.basic_auth[0]
    auth = (user.name, new.secrets.get(user.secret))
    base = f"http://{site.addresses[inv.flower.host]}:{inv.flower.port}"
    resp = requests.get(f"{base}/api/workers", params={"refresh": "1"}, auth=auth, timeout=30)
    assert resp.status_code == 200
    assert {w.split("-1@")[0] for w in resp.json()} >= groups, resp.text
    # Flower learns of a task from its events, which are not kept: a task sent before its
    # event consumer reconnected is never seen. Send one per try until Flower knows one.
    with celery_client(new) as capp:

        def flower_sees_a_new_task() -> bool:
            task = capp.send_task("proj.tasks.add", (2, 2))
            assert task.get(timeout=60) == 4
            url = f"{base}/api/task/info/{task.id}"
            for _ in range(5):
                if requests.get(url, auth=auth, timeout=10).status_code == 200:
                    return True
                time.sleep(1)
            return False

        wait_for("Flower to see a task sent after the rotation", flower_sees_a_new_task, 90)

    rc, again = site.deploy()
    assert rc == 0, again["failures"]
    assert changed_by_host(again) == dict.fromkeys(again["hosts"], 0)


# --- issue 21: secrets at rest, qsetup secrets rotate ------------------------------------


def key_bodies(folder: Path) -> list[str]:
    """Base64 lines holding each private key's secret part (the last holds public bytes)."""
    lines = []
    for key in [*folder.glob("*.ca-key.pem"), *folder.glob("*.tls/*.key")]:
        body = [ln for ln in key.read_text().splitlines() if ln and not ln.startswith("-----")]
        lines += body[:-1]
    return lines


def found_in(folder: Path, needles: list[str]) -> list[str]:
    """``file: needle-prefix`` for every needle found in any file under ``folder``."""
    hits = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            text = path.read_bytes().decode("utf-8", "replace")
            hits += [f"{path}: {n[:4]}..." for n in needles if n in text]
    return hits


def active_since(site: Site) -> dict[str, str]:
    """``unit@host`` -> when systemd last started it, for every service the inventory runs."""
    inv = site.loaded().inventory
    units = {(host, unit) for _, host, unit in site.worker_units()}
    units |= {(h, "rabbitmq-server.service") for h in inv.broker.hosts}
    if inv.beat is not None:
        units.add((inv.beat.host, "qsetup-beat.service"))
    if inv.flower is not None:
        units.add((inv.flower.host, "qsetup-flower.service"))
    return {
        f"{unit}@{host}": site.unit(host, unit)["ActiveEnterTimestampMonotonic"]
        for host, unit in sorted(units)
    }


def test_encrypted_secrets_leave_nothing_plain_and_every_command_still_works(
    site: Site, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, data = site.deploy()  # converged whatever the test before left
    assert rc == 0, data["failures"]
    folder = site.inventory.parent
    outside = tmp_path_factory.mktemp("outside")
    password = outside / "vault-pass"
    password.write_text(f"vault-{pyrandom.token_hex(8)}\n")
    password.chmod(0o600)
    wrong = outside / "wrong-pass"
    wrong.write_text("not-the-password\n")

    # qsetup's CA and host keys beside the inventory (render issues them; deploy keeps TLS off).
    text = site.inventory.read_text()
    site.inventory.write_text(yaml.safe_dump({**yaml.safe_load(text), "tls": {"enabled": True}}))
    assert site.qsetup("render", "--out", str(outside / "rendered")).returncode == 0
    site.inventory.write_text(text)
    proc = site.qsetup("backup")
    assert proc.returncode == 0, proc.stderr
    [plain_backup] = folder.glob("inventory.backup-*.json")

    loaded = site.loaded()
    values = yaml.safe_load(site.secrets.read_text())
    needles = [*values.values(), broker_admin_password(loaded.inventory, loaded.secrets)]
    bodies = key_bodies(folder)
    assert len(bodies) >= 4  # the CA's key and at least one host key
    needles += bodies
    hashes = [u["password_hash"] for u in json.loads(plain_backup.read_text())["users"]]

    proc = site.qsetup("secrets", "encrypt", "--vault-password-file", str(password))
    assert proc.returncode == 0, proc.stderr
    for path in (site.secrets, folder / "inventory.ca-key.pem", plain_backup):
        assert f"encrypted {path}" in proc.stdout
        assert is_encrypted(path.read_bytes())

    monkeypatch.setenv(PASSWORD_ENV, str(password))  # site.loaded() in this process

    # No password, or a wrong one: one line, exit 1, no host touched (no run started).
    runs = folder / ".qsetup" / "runs"
    runs_before = sorted(runs.iterdir())
    before = active_since(site)
    for args, env, expected in (
        (("deploy",), {PASSWORD_ENV: ""}, f"{site.secrets} is encrypted: give --vault-password"),
        (("status",), {PASSWORD_ENV: ""}, f"{site.secrets} is encrypted: give --vault-password"),
        (
            ("deploy", "--vault-password-file", str(wrong)),
            {},
            f"{site.secrets}: the vault password does not decrypt it",
        ),
    ):
        proc = qsetup(*args, "--inventory", str(site.inventory), env=env, check=False)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert proc.stderr.startswith(expected), proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert sorted(runs.iterdir()) == runs_before
    assert active_since(site) == before

    # With the password: deploy (nothing to change), status, backup and restore.
    site.env = {PASSWORD_ENV: str(password)}
    rc, data = site.deploy()
    assert rc == 0, data["failures"]
    assert changed_by_host(data) == dict.fromkeys(data["hosts"], 0)
    rc, status, _ = site.status()
    assert rc == 0, status["problems"]
    proc = site.qsetup("backup", "--json")
    assert proc.returncode == 0, proc.stderr
    sealed = Path(json.loads(proc.stdout)["path"])
    assert is_encrypted(sealed.read_bytes())
    proc = site.qsetup("restore", str(sealed), "--json")
    assert proc.returncode == 0, proc.stderr

    # Rotate Flower's broker API password: the broker takes the new one, only Flower restarts.
    inv = loaded.inventory
    assert inv.flower is not None
    name = inv.flower.broker_api_secret
    old = values[name]
    proc = site.qsetup("secrets", "rotate", name, "--json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] and result["status"]["healthy"], result["status"]["problems"]
    new = yaml.safe_load(site.qsetup("secrets", "view").stdout)[name]
    assert new != old and len(new) >= 24
    assert old not in proc.stdout and new not in proc.stdout + proc.stderr
    api = f"http://{site.addresses[inv.broker.host]}:{inv.broker.management_port}/api/whoami"
    user = inv.flower.broker_api_user
    assert requests.get(api, auth=(user, new), timeout=10).status_code == 200
    assert requests.get(api, auth=(user, old), timeout=10).status_code == 401
    after = active_since(site)
    restarted = {u for u in after if after[u] != before[u]}
    assert restarted == {f"qsetup-flower.service@{inv.flower.host}"}, restarted
    wait_for_ping(site, timeout=30)
    rc, again = site.deploy()
    assert rc == 0, again["failures"]
    assert changed_by_host(again) == dict.fromkeys(again["hosts"], 0)

    # Nothing plain under the inventory's folder: secrets (old and new), keys, hashes.
    assert [p for p in runs.iterdir() if p not in runs_before]  # an Ansible run happened
    assert found_in(folder, [*needles, new, *hashes]) == []
    proc = subprocess.run(
        ["grep", "-rlF", "-e", new, "-e", old, str(folder)], capture_output=True, text=True
    )
    assert proc.stdout == "", proc.stdout
