"""Rotating the app's broker password on real sandbox hosts (issue 6).

The new password applies, the old one is refused, every service reconnects with the new
one (no connection made with the old password stays open), Flower keeps working, and a
second deploy changes nothing. The module deploys its own copy of the shared sandbox
inventory and rotates the password in that copy's secrets only.
"""

from __future__ import annotations

import secrets as pyrandom
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
    wait_for,
    wait_for_ping,
)

from qsetup.artifacts.render import broker_url

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
    wait_for(
        "Flower to see a task sent after the rotation (its event consumer reconnected)",
        lambda: (
            requests.get(f"{base}/api/task/info/{probe.id}", auth=auth, timeout=10).status_code
            == 200
        ),
        60,
        every=2,
    )

    rc, again = site.deploy()
    assert rc == 0, again["failures"]
    assert changed_by_host(again) == dict.fromkeys(again["hosts"], 0)
