"""A rebuilt broker gets its definitions back: backup, rebuild, deploy, restore (issue 13).

On hosts of its own (``harness.SEPARATE["backup"]``: qb1 runs RabbitMQ and Flower, qb2
the workers): after a deploy, the app declares what qsetup does not manage (a durable
topic exchange, a durable queue bound to it, a user of its own) and ``qsetup backup``
exports the definitions. With the broker host powered off, backup and restore exit 3
naming it. ``sandbox up`` then rebuilds the host from scratch (no RabbitMQ), ``qsetup
deploy`` installs an empty broker, and ``qsetup restore`` brings the queue, the exchange,
the binding and the user (its password hash) back, leaves qsetup's own users as deploy
set them, a deploy after it changes nothing on the broker, and tasks flow again; status
is healthy. Durations are printed.
"""

from __future__ import annotations

import json
import secrets as pyrandom
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from harness import SandboxHosts, Site, deployed_site, own_sandbox, wait_for, wait_for_ping

from qsetup.desired.state import ADMIN_USER, broker_admin_password
from qsetup.status.broker import api_base

pytestmark = pytest.mark.integration

QUEUE = "reports"
EXCHANGE = "reports"
ROUTING_KEY = "reports.#"
HAND_USER = "reporter"


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHosts]:
    with own_sandbox("backup", Path(tmp_path_factory.mktemp("backup-hosts"))) as hosts:
        yield hosts


class Api:
    """The broker's management API as ``qsetup-admin`` (or another user)."""

    def __init__(self, site: Site, user: tuple[str, str] | None = None) -> None:
        loaded = site.loaded()
        self.base = api_base(loaded.inventory)
        self.auth = user or (ADMIN_USER, broker_admin_password(loaded.inventory, loaded.secrets))
        self.vhost = quote(loaded.inventory.app.vhost, safe="")

    def call(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(
            method, f"{self.base}/{path}", auth=self.auth, json=body, timeout=30
        )

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        resp = self.call(method, path, body)
        assert resp.status_code in (200, 201, 204), (method, path, resp.status_code, resp.text)
        return resp.json() if resp.status_code == 200 else None

    def bindings(self) -> list[tuple[str, str, str]]:
        rows = self.ok("GET", f"exchanges/{self.vhost}/{EXCHANGE}/bindings/source")
        return [(b["source"], b["destination"], b["routing_key"]) for b in rows]


def run_timed(site: Site, *args: str) -> tuple[int, str, str, float]:
    started = time.monotonic()
    proc = site.qsetup(*args)
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


def test_backup_rebuild_deploy_restore_brings_the_apps_definitions_back(
    hosts: SandboxHosts, tmp_path: Path
) -> None:
    from qsetup.remote.roundtrip import send_task

    site = deployed_site(hosts, tmp_path / "site")
    inv = site.loaded().inventory
    broker_host = inv.broker.host
    api = Api(site)
    vh = api.vhost

    # What the app declares itself, beside the `celery` queue the workers declare.
    api.ok("PUT", f"exchanges/{vh}/{EXCHANGE}", {"type": "topic", "durable": True})
    api.ok("PUT", f"queues/{vh}/{QUEUE}", {"durable": True, "arguments": {}})
    api.ok("POST", f"bindings/{vh}/e/{EXCHANGE}/q/{QUEUE}", {"routing_key": ROUTING_KEY})
    hand_password = pyrandom.token_hex(16)
    api.ok("PUT", f"users/{HAND_USER}", {"password": hand_password, "tags": "management"})
    api.ok("PUT", f"permissions/{vh}/{HAND_USER}", {"configure": "^$", "write": "^$",
                                                     "read": f"^{QUEUE}$"})  # fmt: skip
    assert send_task(site.loaded()).result == 5

    # Backup: the default file beside the inventory, 0600, RabbitMQ's export.
    code, out, err, backup_wall = run_timed(site, "backup", "--json")
    assert code == 0, err
    result = json.loads(out)
    path = Path(result["path"])
    assert path.parent == site.inventory.parent and path.name.startswith("inventory.backup-")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    exported = json.loads(path.read_text())
    assert {(q["vhost"], q["name"]) for q in exported["queues"]} >= {
        (inv.app.vhost, QUEUE),
        (inv.app.vhost, "celery"),
    }
    users = {u["name"]: u for u in exported["users"]}
    assert users[HAND_USER]["password_hash"]
    assert "guest" not in users  # deploy deleted it
    assert all(u["password_hash"] not in out + err for u in exported["users"])
    assert result["counts"]["bindings"] == len(exported["bindings"])
    print(
        f"backup: {backup_wall:.2f} s wall ({result['elapsed_seconds']:.2f} s in qsetup), "
        f"counts {result['counts']}"
    )

    # The broker host goes away: backup and restore say so, exit 3, naming the host.
    hosts.power_off(broker_host)
    try:
        code, out, err, wall = run_timed(site, "backup", "--out", str(tmp_path / "none.json"))
        assert code == 3, out + err
        assert err.startswith(f"{broker_host}: broker management API "), err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert not (tmp_path / "none.json").exists()
        code, out, err, _ = run_timed(site, "restore", str(path))
        assert code == 3 and err.startswith(f"{broker_host}: "), out + err
        print(f"backup with the broker powered off: exit 3 after {wall:.2f} s: {err.strip()}")
    finally:
        hosts.up_again()  # a dead host is rebuilt from scratch
    fresh = site.ssh(broker_host, "test -e /etc/rabbitmq/rabbitmq.conf && echo kept || echo gone")
    assert fresh.stdout.strip() == "gone", "the broker host was not rebuilt empty"

    code, data = site.deploy()
    assert code == 0, data["failures"]
    assert api.call("GET", f"queues/{vh}/{QUEUE}").status_code == 404  # an empty broker

    # A backup others can read is refused, nothing changes.
    loose = tmp_path / "loose.json"
    loose.write_text(path.read_text())
    loose.chmod(0o644)
    code, out, err, _ = run_timed(site, "restore", str(loose))
    assert code == 1 and f"chmod 600 {loose}" in err, out + err
    assert api.call("GET", f"queues/{vh}/{QUEUE}").status_code == 404

    code, out, err, restore_wall = run_timed(site, "restore", str(path), "--json")
    assert code == 0, out + err
    restored = json.loads(out)
    assert restored["api_host"] == broker_host
    assert {"vhost": inv.app.vhost, "name": QUEUE} in restored["imported"]["queues"]
    assert restored["imported"]["users"] == [HAND_USER]
    left = {o["name"]: o["managed"] for o in restored["left_out"] if o["kind"] == "user"}
    assert inv.flower is not None
    managed = {ADMIN_USER, inv.flower.broker_api_user, *(u.name for u in inv.broker.users)}
    assert left == dict.fromkeys(managed, True)
    assert all(u["password_hash"] not in out + err for u in exported["users"])
    transient = {o["name"] for o in restored["left_out"] if o["kind"] == "queue"}
    assert any(name.endswith(".celery.pidbox") for name in transient), transient
    print(
        f"restore: {restore_wall:.2f} s wall ({restored['elapsed_seconds']:.2f} s in qsetup), "
        f"imported {restored['imported']['counts']}"
    )

    # The app's queue, exchange and binding are back, and its user logs in as before.
    queue = api.ok("GET", f"queues/{vh}/{QUEUE}")
    assert queue["durable"] is True
    exchange = api.ok("GET", f"exchanges/{vh}/{EXCHANGE}")
    assert (exchange["type"], exchange["durable"]) == ("topic", True)
    assert (EXCHANGE, QUEUE, ROUTING_KEY) in api.bindings()
    assert Api(site, (HAND_USER, hand_password)).call("GET", "whoami").status_code == 200
    assert api.call("GET", "whoami").status_code == 200  # qsetup-admin was not touched

    # A second restore is harmless; its line names what it imported.
    proc = site.qsetup("restore", str(path))
    assert proc.returncode == 0, proc.stderr
    assert f"{inv.app.vhost}/{QUEUE}" in proc.stdout and "left as deploy set them" in proc.stdout

    # Deploy after a restore: nothing on the broker differs from the inventory. On the
    # worker host it may start a worker again: Debian's Celery 5.2 worker that reconnects
    # between RabbitMQ's start and the creation of its user gets ACCESS_REFUSED and exits
    # 0, which Restart=on-failure leaves dead (not a restore matter).
    code, data = site.deploy()
    assert code == 0, data["failures"]
    assert data["hosts"][broker_host]["changed"] == 0, data
    print(
        f"deploy after restore: changed { ({h: d['changed'] for h, d in data['hosts'].items()}) }"
    )
    wait_for_ping(site, timeout=240)
    trip = wait_for("a task round trip", lambda: _roundtrip(site, send_task), 120, every=2)
    assert trip.result == 5
    print(f"round trip after restore: {trip.seconds:.2f} s (worker on {trip.worker_host})")

    # The hand-made user is drift for status; without it, everything is healthy.
    api.ok("DELETE", f"users/{HAND_USER}")
    code, report, _ = site.status()
    assert code == 0, report["problems"]


def _roundtrip(site: Site, send_task: Any) -> Any:
    from qsetup.errors import QsetupError

    try:
        return send_task(site.loaded(), timeout=20)
    except QsetupError:
        return None
