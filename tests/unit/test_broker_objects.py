"""The broker module (playbooks/library/qsetup_broker_objects.py) with the comparison.

A fake management API keeps definitions the way RabbitMQ reports them; after the
module applies what broker_apply (qsetup.converge's comparison) found, the
comparison of the definitions read again finds nothing.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from test_playbook_filters import NO_DRIFT, SECRETS, WANTED, definitions

from qsetup.converge.broker import broker_apply, broker_passwords

_ROOT = Path(__file__).resolve().parents[2] / "playbooks"


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


objects = _load("qsetup_broker_objects", _ROOT / "library" / "qsetup_broker_objects.py")


class FakeApi:
    """Definitions changed by the calls the module makes, as RabbitMQ's API would."""

    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.calls: list[tuple[str, str]] = []

    def call(self, method: str, path: str, body: Any = None) -> Any:
        self.calls.append((method, path))
        parts = [unquote(p) for p in path.strip("/").split("/")]
        d = self.defs
        if parts[0] == "vhosts":
            d["vhosts"] = [v for v in d["vhosts"] if v["name"] != parts[1]]
            if method == "PUT":
                d["vhosts"].append({"name": parts[1]})
        elif parts[0] == "users" and len(parts) == 3:
            key = "permissions" if parts[2] == "permissions" else "topic_permissions"
            return [p for p in d[key] if p["user"] == parts[1]]
        elif parts[0] == "users":
            old = [u for u in d["users"] if u["name"] == parts[1]]
            d["users"] = [u for u in d["users"] if u["name"] != parts[1]]
            if method == "PUT":
                salt = os.urandom(4)
                digest = hashlib.sha256(salt + body["password"].encode()).digest()
                tags = [t for t in body["tags"].split(",") if t]
                pw = base64.b64encode(salt + digest).decode()
                d["users"].append({"name": parts[1], "password_hash": pw, "tags": tags})
            elif not old:
                return objects.GONE
        elif parts[0] in ("permissions", "topic-permissions"):
            key = "permissions" if parts[0] == "permissions" else "topic_permissions"
            vhost, user = parts[1], parts[2]
            d[key] = [p for p in d[key] if (p["vhost"], p["user"]) != (vhost, user)]
            if method == "PUT":
                d[key].append({"vhost": vhost, "user": user, **body})
        elif parts[0] == "policies":
            kept = [p for p in d["policies"] if (p["vhost"], p["name"]) != (parts[1], parts[2])]
            if method == "DELETE" and len(kept) == len(d["policies"]):
                return objects.GONE
            d["policies"] = kept
            if method == "PUT":
                d["policies"].append({"vhost": parts[1], "name": parts[2], **body})
        return None


def _converge(defs: dict[str, Any], removals: dict[str, Any] | None = None) -> FakeApi:
    api = FakeApi(defs)
    removals = removals or {}
    changes = broker_apply({"definitions": defs}, WANTED, SECRETS, removals)
    passwords = broker_passwords(changes, WANTED, SECRETS)
    assert all(pw not in repr(changes) for pw in SECRETS.values()), "no password in changes"
    objects.apply_changes(api, changes, passwords)
    return api


def test_an_empty_broker_converges_in_one_call() -> None:
    defs: dict[str, Any] = {
        "vhosts": [{"name": "/"}],
        "users": [{"name": "guest", "password_hash": "x", "tags": ["administrator"]}],
        "permissions": [],
        "topic_permissions": [],
        "policies": [],
    }
    _converge(defs)
    assert broker_apply({"definitions": defs}, WANTED, SECRETS, {}) == NO_DRIFT
    assert {u["name"] for u in defs["users"]} == {"app", "ops"}


def test_every_kind_of_drift_converges_and_a_matching_broker_gets_no_call() -> None:
    defs = definitions()
    defs["users"][0]["password_hash"] = "stale"
    defs["users"][1]["tags"] = []
    defs["permissions"].append(
        {"user": "app", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
    )
    defs["policies"][0]["definition"] = {"max-length": 11}
    _converge(defs)
    assert broker_apply({"definitions": defs}, WANTED, SECRETS, {}) == NO_DRIFT
    assert [p["vhost"] for p in defs["permissions"] if p["user"] == "app"] == ["app"]
    assert _converge(defs).calls == []


def test_dropped_objects_are_deleted_once_and_the_administrator_never() -> None:
    defs = definitions()
    defs["users"].append({"name": "old", "password_hash": "x", "tags": []})
    removals = {"broker_users": ["old", "qsetup-admin"], "broker_policies": ["app/gone"]}
    wanted = {**WANTED, "admin_user": "qsetup-admin"}
    changes = broker_apply({"definitions": defs}, wanted, SECRETS, removals)
    assert changes["delete_users"] == ["old"]
    api = FakeApi(defs)
    assert objects.apply_changes(api, changes, {}) == ["user old deleted"]
    assert objects.apply_changes(api, changes, {}) == [], "already gone: nothing done"


def test_a_refused_call_names_the_call_not_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error
    import urllib.request

    def refuse(req: Any, timeout: float) -> Any:
        raise urllib.error.HTTPError(req.full_url, 400, "Bad", {}, None)  # type: ignore[arg-type]

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    api = objects.Api(15672, "qsetup-admin", "admin-pw")
    changes = {"users": [{"name": "app", "tags": "", "permissions": None}]}
    with pytest.raises(RuntimeError) as err:
        objects.apply_changes(api, changes, {"app": "pw-app"})
    assert "PUT /api/users/app: HTTP 400" in str(err.value)
    assert "pw-app" not in str(err.value) and "admin-pw" not in str(err.value)


FLAGS = [
    {"name": "stream_filtering", "state": "disabled", "stability": "stable"},
    {"name": "khepri_db", "state": "disabled", "stability": "experimental"},
    {"name": "quorum_queue", "state": "enabled", "stability": "required"},
    {"name": "message_containers", "state": "disabled", "stability": "stable"},
]


def test_stable_flags_left_disabled_are_enabled_once_every_node_runs() -> None:
    defs = definitions()
    up = [{"name": f"rabbit@n{i}", "running": True} for i in range(3)]
    read = {"definitions": defs, "feature_flags": FLAGS, "nodes": up}
    changes = broker_apply(read, WANTED, SECRETS, {}, 3)
    assert changes["enable_flags"] == ["message_containers", "stream_filtering"]
    api = FakeApi(defs)
    assert objects.apply_changes(api, changes, {}) == [
        "feature flag message_containers enabled",
        "feature flag stream_filtering enabled",
    ]
    assert api.calls == [
        ("PUT", "/feature-flags/message_containers/enable"),
        ("PUT", "/feature-flags/stream_filtering/enable"),
    ]
    down = [*up[:2], {"name": "rabbit@n2", "running": False}]
    for nodes in (down, up[:2]):
        read = {"definitions": defs, "feature_flags": FLAGS, "nodes": nodes}
        assert broker_apply(read, WANTED, SECRETS, {}, 3)["enable_flags"] == []
