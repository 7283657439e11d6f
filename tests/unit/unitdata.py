"""Inventory texts and secrets shared by the unit tests (imported as ``unitdata``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# Line numbers matter: test_inventory_invalid.py derives its cases from this text with
# string edits and asserts FILE:LINE:COL positions.
BASE_INVENTORY = """\
version: 1
hosts:
  rabbit1:
    address: 10.0.0.1
  worker1:
    address: 10.0.0.2
broker:
  host: rabbit1
  vhosts: [orders]
  users:
    - name: orders
      vhost: orders
app:
  module: proj
  source:
    path: app
  broker_user: orders
  vhost: orders
workers:
  - name: default
    hosts: [worker1]
    install: pip
flower:
  host: rabbit1
  basic_auth:
    - name: admin
"""

BASE_SECRETS: dict[str, str] = {
    "rabbitmq-erlang-cookie": "COOKIECOOKIECOOKIECOOKIECOOKIEAB",
    "rabbitmq-user-orders": "orders-pw-0123456789abcdef",
    "rabbitmq-user-flower-monitor": "monitor-pw-0123456789abcdef",
    "flower-user-admin": "admin-pw-0123456789abcdef",
}

# Every option set to something other than its default; the golden render uses it too.
FULL_INVENTORY = """\
version: 1
ssh:
  user: deploy
  port: 2200
  key: keys/id_ed25519
  become: true
hosts:
  mq:
    address: mq.example.org
  w1:
    address: 10.1.0.1
    ssh_port: 22
    ssh_user: root
    become: false
  w2:
    address: "fd00::2"
broker:
  host: mq
  port: 5673
  management_port: 15673
  nofile: 200000
  plugins: [rabbitmq_management, rabbitmq_shovel]
  delete_guest: false
  erlang_cookie_secret: cookie
  vhosts: [shop, reports]
  users:
    - name: Shop
      vhost: shop
    - name: reports
      password_secret: reports-pw
      tags: [monitoring, management]
      permissions:
        - {vhost: reports}
        - {vhost: shop, configure: "^$", write: "^$", read: "^reports\\\\."}
      topic_permissions:
        - {vhost: shop, write: "^$", read: "^orders\\\\."}
  policies:
    - name: ttl
      vhost: shop
      pattern: "^celery$"
      apply_to: quorum_queues
      priority: 5
      definition: {message-ttl: 60000, ha-mode: all, lazy: true}
app:
  name: shop
  module: "shop.celery:app"
  source:
    requirement: "shop==1.2"
  requirements: [requests>=2]
  environment: {SHOP_ENV: prod, EMPTY: ""}
  broker_user: Shop
  vhost: shop
  result_backend: "redis://cache:6379/0"
workers:
  - name: orders
    hosts: [w1, w2]
    install: apt
    instances: 3
    queues: [orders, celery]
    autoscale: [8, 2]
    soft_time_limit: 50
    time_limit: 60
    loglevel: WARNING
  - name: reports
    hosts: [w2]
    install: pip
    celery_version: "==5.4.*"
    node_name: "rep-%i@%h"
    pool: threads
    concurrency: 16
    max_tasks_per_child: 100
    max_memory_per_child: 200000
    user: reporter
    group: reporter
    broker_user: reports
    vhost: reports
beat:
  host: w1
  loglevel: DEBUG
flower:
  host: mq
  port: 8080
  url_prefix: flower
  version: "==2.0.1"
  persistent: false
  broker_api_user: monitor
  broker_api_password_secret: monitor-pw
  basic_auth:
    - name: Admin
    - name: oncall
      password_secret: oncall-pw
"""

FULL_SECRETS = {
    "cookie": "C" * 32,
    "rabbitmq-user-shop": "shop-password-xxxxxxxxxxxx",
    "reports-pw": "r3p@rts/pass%word:x y",  # needs quoting in a URL
    "monitor-pw": "monitor-password-xxxxxxxxx",
    "flower-user-admin": "admin-password-xxxxxxxxxxx",
    "oncall-pw": "oncall-password-xxxxxxxxxx",
}


WriteInventory = Callable[..., Path]


def write_secrets(path: Path, values: Mapping[str, str], mode: int = 0o600) -> Path:
    lines = [f"{name}: {value!r}" if value else f"{name}: ''" for name, value in values.items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    path.chmod(mode)
    return path


def playbook_module(relpath: str) -> Any:
    """Import a file under playbooks/ (a module in library/, a plugin) as a Python module."""
    import importlib.util
    import sys

    playbooks = Path(__file__).resolve().parents[2] / "playbooks"
    # Modules import their shared host code as Ansible ships it: ansible.module_utils.<name>.
    for shared in sorted((playbooks / "module_utils").glob("*.py")):
        name = f"ansible.module_utils.{shared.stem}"
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, shared)
            assert spec is not None and spec.loader is not None
            sys.modules[name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(sys.modules[name])
    path = playbooks / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rabbit_hash(password: str, salt: bytes = b"salt") -> str:
    """RabbitMQ's salted SHA-256 password hash (what /api/definitions lists)."""
    import base64
    import hashlib

    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def as_deployed(target: Any, secrets: Mapping[str, str]) -> dict[str, Any]:
    """The one read's answer from a host that holds exactly ``target`` (a HostTarget).

    Every file, directory, virtualenv marker and the app's code with the planned
    checksum, mode and owner; every unit running and enabled; the manifest a deploy
    records; on the managing broker node the broker's definitions as planned (the
    passwords hashed from ``secrets``).
    """
    from qsetup.converge.removals import manifest_pending, removals
    from qsetup.desired.epmd import DROPIN_PATH, bind_addresses, render_dropin
    from qsetup.desired.firewall import sha1

    files: list[dict[str, Any]] = []

    def entry(path: str, mode: str, owner: str, group: str, isdir: bool, checksum: Any) -> None:
        files.append({"path": path, "mode": mode, "pw_name": owner, "gr_name": group,
                      "isdir": isdir, "checksum": checksum})  # fmt: skip

    for d in target.dirs:
        entry(d.path, d.mode, d.owner, d.group, True, None)
    for f in target.files:
        entry(f.dest, f.mode, f.owner, f.group, False, f.checksum)
    for v in target.venvs:
        entry(v.marker, "0644", "root", "root", False, v.marker_sum)
    if target.epmd is not None:
        # Debian's /etc/hosts maps the host's name to 127.0.1.1: epmd listens there too.
        dropin = render_dropin(bind_addresses(target.epmd, ["127.0.1.1"]))
        entry(DROPIN_PATH, "0644", "root", "root", False, sha1(dropin))
    if target.code_dir is not None:
        entry(f"{target.code_dir}.tar", "0644", "root", "root", False, target.code_sum)
        entry(target.code_dir, "0755", "root", "root", True, None)
    units = {
        s.unit: {"Id": s.unit, "LoadState": "loaded", "ActiveState": "active",
                 "SubState": "running", "UnitFileState": "enabled", "NRestarts": "0"}
        for s in target.services
    }  # fmt: skip
    read: dict[str, Any] = {
        "hostname": target.host,
        "release": "bookworm",
        "problems": [],
        "packages": [],
        "installed": [],
        "users": list(target.os_users),
        "groups": list(target.os_groups),
        "found": {"files": files},
        "units": units,
        "discovered": [u for u in units if u.startswith("qsetup-")],
        "manifest": manifest_pending(target.manifest, removals(target.manifest, target.manifest)),
        "executables": {s.executable: True for s in target.services if s.executable},
        "dists": [],
        "deb_versions": {},
    }
    if target.epmd is not None:
        read["name_addresses"] = {
            "name": target.host,
            "addresses": ["127.0.1.1"],
            "own": ["127.0.1.1"],
        }
    if target.broker is not None:
        b = target.broker
        read["definitions"] = {
            "vhosts": [{"name": v} for v in ("/", *b.vhosts)],
            "users": [
                {"name": u.name, "tags": list(u.tags),
                 "password_hash": rabbit_hash(secrets[u.secret])}
                for u in b.users
            ],
            "permissions": [
                {"user": u.name, "vhost": p.vhost, "configure": p.configure, "write": p.write,
                 "read": p.read}
                for u in b.users for p in u.permissions
            ],
            "topic_permissions": [
                {"user": u.name, "vhost": t.vhost, "exchange": t.exchange, "write": t.write,
                 "read": t.read}
                for u in b.users for t in u.topic_permissions
            ],
            "policies": [
                {"vhost": p.vhost, "name": p.name, "pattern": p.pattern, "apply-to": p.apply_to,
                 "priority": p.priority, "definition": dict(p.definition)}
                for p in b.policies
            ],
        }  # fmt: skip
    if target.firewall is not None:
        from qsetup.desired.firewall import RULESET_PATH, UNIT_PATH

        entry(RULESET_PATH, "0644", "root", "root", False, target.firewall.ruleset_sum)
        entry(UNIT_PATH, "0644", "root", "root", False, target.firewall.unit_sum)
        read["firewall"] = {"loaded": True, "live": "same", "file": "same", "error": None}
    if target.broker_node:
        read["cluster"] = [
            {"name": f"rabbit@n{i}", "running": True} for i in range(target.cluster_size)
        ]
    return read


class ModuleExit(Exception):
    """Raised by :class:`FakeModule` where AnsibleModule would exit the process."""


class FakeModule:
    """AnsibleModule's face to a module under test: its params, and what it exits with."""

    def __init__(self, params: dict[str, Any], check_mode: bool = False) -> None:
        self.params = params
        self.check_mode = check_mode
        self._diff = False
        self.result: dict[str, Any] = {}

    def exit_json(self, **result: Any) -> None:
        self.result = result
        raise ModuleExit

    def fail_json(self, **result: Any) -> None:
        self.result = {"failed": True, **result}
        raise ModuleExit


def run_module(monkeypatch: Any, module: Any, params: dict[str, Any]) -> FakeModule:
    """Run ``module.main()`` (a file of library/) with ``params``; the fake it exited through."""
    import pytest

    fake = FakeModule(params)
    monkeypatch.setattr(module, "AnsibleModule", lambda **_kw: fake)
    with pytest.raises((ModuleExit, SystemExit)):
        module.main()
    return fake
