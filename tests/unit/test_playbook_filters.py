"""The filters that decide what a deploy changes (playbooks/filter_plugins)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from unitdata import playbook_module

filters: Any = playbook_module("filter_plugins/qsetup_filters.py")


def rabbit_hash(password: str, salt: bytes = b"\x01\x02\x03\x04") -> str:
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


FILE = {"src": "h/etc/x", "dest": "/etc/x", "mode": "0600", "owner": "root", "group": "root"}


def found(**over: Any) -> dict[str, Any]:
    entry = {
        "path": "/etc/x",
        "checksum": "abc",
        "mode": "0600",
        "pw_name": "root",
        "gr_name": "root",
    }
    entry.update(over)
    return {"files": [entry]}


def test_a_file_that_matches_is_not_stale() -> None:
    assert filters.qsetup_stale_files([FILE], found(), {"h/etc/x": "abc"}) == []


@pytest.mark.parametrize(
    "over", [{"checksum": "old"}, {"mode": "0644"}, {"pw_name": "celery"}, {"gr_name": "celery"}]
)
def test_content_mode_owner_or_group_make_a_file_stale(over: dict[str, Any]) -> None:
    assert filters.qsetup_stale_files([FILE], found(**over), {"h/etc/x": "abc"}) == ["/etc/x"]


def test_a_missing_file_is_stale() -> None:
    assert filters.qsetup_stale_files([FILE], {"files": []}, {"h/etc/x": "abc"}) == ["/etc/x"]


def test_dirs_must_exist_as_directories_with_their_mode() -> None:
    d = {"path": "/etc/x", "mode": "0750", "owner": "root", "group": "flower"}
    ok = found(isdir=True, mode="0750", gr_name="flower")
    assert filters.qsetup_stale_dirs([d], ok) == []
    assert filters.qsetup_stale_dirs([d], found(isdir=True)) == ["/etc/x"]
    assert filters.qsetup_stale_dirs([d], found(isdir=False, mode="0750", gr_name="flower")) == [
        "/etc/x"
    ]


def test_a_venv_is_stale_until_its_marker_matches() -> None:
    venv = {"name": "w", "marker": "/etc/x", "marker_sum": "abc"}
    assert filters.qsetup_stale_venvs([venv], found()) == []
    assert filters.qsetup_stale_venvs([venv], found(checksum="zzz")) == ["w"]


WANTED = {
    "vhosts": ["app"],
    "users": [
        {
            "name": "app",
            "secret": "s-app",
            "tags": "",
            "permissions": [
                {"vhost": "app", "configure_priv": ".*", "write_priv": ".*", "read_priv": ".*"}
            ],
            "topic_permissions": [],
        },
        {
            "name": "ops",
            "secret": "s-ops",
            "tags": "administrator",
            "permissions": [],
            "topic_permissions": [],
        },
    ],
    "policies": [
        {
            "name": "p",
            "vhost": "app",
            "pattern": "^c",
            "apply_to": "queues",
            "priority": 0,
            "definition": {"max-length": 10},
        }
    ],
    "delete_guest": True,
}
SECRETS = {"s-app": "pw-app", "s-ops": "pw-ops"}


def definitions() -> dict[str, Any]:
    return {
        "vhosts": [{"name": "/"}, {"name": "app"}],
        "users": [
            {"name": "app", "password_hash": rabbit_hash("pw-app"), "tags": []},
            {"name": "ops", "password_hash": rabbit_hash("pw-ops"), "tags": ["administrator"]},
        ],
        "permissions": [
            {"user": "app", "vhost": "app", "configure": ".*", "write": ".*", "read": ".*"},
            {"user": "ops", "vhost": "/", "configure": "^$", "write": "^$", "read": "^$"},
        ],
        "topic_permissions": [],
        "policies": [
            {
                "vhost": "app",
                "name": "p",
                "pattern": "^c",
                "apply-to": "queues",
                "priority": 0,
                "definition": {"max-length": 10},
            }
        ],
    }


NO_DRIFT = {"vhosts": [], "users": [], "passwords": [], "policies": [], "guest": False}


def test_a_broker_that_matches_has_no_drift() -> None:
    assert filters.qsetup_broker_drift(definitions(), WANTED, SECRETS) == NO_DRIFT


def test_each_kind_of_drift_is_found() -> None:
    d = definitions()
    d["vhosts"] = [{"name": "/"}]
    d["users"][0]["password_hash"] = rabbit_hash("old")
    d["users"][1]["tags"] = []
    d["users"].append({"name": "guest", "password_hash": rabbit_hash("guest"), "tags": []})
    d["policies"][0]["definition"] = {"max-length": 11}
    assert filters.qsetup_broker_drift(d, WANTED, SECRETS) == {
        "vhosts": ["app"],
        "users": ["ops"],
        "passwords": ["app"],
        "policies": ["app/p"],
        "guest": True,
    }


def test_missing_users_and_changed_permissions_need_the_module() -> None:
    d = definitions()
    d["users"] = d["users"][1:]
    d["permissions"][1]["write"] = ".*"
    drift = filters.qsetup_broker_drift(d, WANTED, SECRETS)
    assert drift["users"] == ["app", "ops"]
    assert drift["passwords"] == []


def test_nothing_read_means_everything_is_applied() -> None:
    drift = filters.qsetup_broker_drift(None, WANTED, SECRETS)
    assert drift["vhosts"] == ["app"] and drift["users"] == ["app", "ops"]


# --- exact gates (issue 10) -------------------------------------------------------

PING_BOTH = """->  apt-workers-1@qs3: OK
        pong
->  apt-workers-1@qs2.example: OK
        pong
"""


def test_ping_counts_only_the_exact_node() -> None:
    assert filters.qsetup_ping_answered(PING_BOTH, "apt-workers-1@qs3")
    # A neighbour with the same prefix never answers for this host.
    assert not filters.qsetup_ping_answered(PING_BOTH, "apt-workers-1@qs2")
    assert not filters.qsetup_ping_answered(PING_BOTH, "apt-workers-1@qs")
    assert not filters.qsetup_ping_answered("->  w-1@qs2: ERROR\n", "w-1@qs2")
    assert not filters.qsetup_ping_answered("Error: No nodes replied within time constraint", "w")


def test_node_name_uses_the_hostname_the_host_reports() -> None:
    assert (
        filters.qsetup_node_name("orders-2@%h", "web1.example.org") == "orders-2@web1.example.org"
    )
    assert filters.qsetup_node_name("orders-2@%n", "web1.example.org") == "orders-2@web1"
    assert filters.qsetup_node_name("solo", "h1") == "celery@solo"


def test_silent_units_and_their_python_error() -> None:
    unit = {"unit": "qsetup-worker-a@1.service", "node_pattern": "a-1@%h"}
    other = {"unit": "qsetup-worker-a@2.service", "node_pattern": "a-2@%h"}
    ping = {
        "results": [
            {"item": unit, "stdout": "->  a-1@qs3: OK\n"},  # a neighbour answered, not us
            {"item": other, "stdout": "->  a-2@qs2: OK\n"},
            {"item": other, "skipped": True},
        ]
    }
    silent = filters.qsetup_silent_units(ping, "qs2")
    assert [s["unit"] for s in silent] == ["qsetup-worker-a@1.service"]
    assert silent[0]["node"] == "a-1@qs2"
    journal = "\n".join(
        [
            "Started qsetup-worker-a@1.service - Celery worker a #1 (proj).",
            "Traceback (most recent call last):",
            '  File "/usr/lib/python3/dist-packages/celery/app/utils.py", line 1, in x',
            '  File "/opt/qsetup/apps/proj/proj/tasks.py", line 26',
            "    def broken(:",
            "SyntaxError: invalid syntax",
            "qsetup-worker-a@1.service: Main process exited, code=exited, status=1/FAILURE",
            "qsetup-worker-a@1.service: Failed with result 'exit-code'.",
        ]
    )
    lines = filters.qsetup_journal_tail({"results": [{"item": silent[0], "stdout": journal}]})
    assert len(lines) == 1
    assert "a-1@qs2" in lines[0] and "SyntaxError: invalid syntax" in lines[0]
    assert "proj/tasks.py" in lines[0]


# --- converge both ways (issue 10) ------------------------------------------------

OLD_MANIFEST = {
    "version": 1,
    "units": [
        {"unit": "qsetup-beat.service", "role": "beat"},
        {"unit": "qsetup-worker-a@1.service", "role": "worker"},
        {"unit": "qsetup-worker-a@2.service", "role": "worker"},
        {"unit": "qsetup-worker-old@1.service", "role": "worker"},
        {"unit": "sshd.service", "role": "worker"},  # never qsetup's: never removed
    ],
    "files": [
        "/etc/qsetup/beat.env",
        "/etc/qsetup/worker-old.env",
        "/etc/systemd/system/qsetup-worker-old@.service",
        "/etc/passwd",  # outside qsetup's places: never removed
        "/opt/qsetup/",
    ],
    "venvs": ["/opt/qsetup/venvs/old"],
    "code": ["/opt/qsetup/apps/proj"],
    "broker": {"users": ["proj", "ops", "qsetup-admin"], "vhosts": ["proj", "gone"],
               "policies": ["proj/limits", "gone/x"]},
}  # fmt: skip

NEW_MANIFEST = {
    "version": 1,
    "units": [{"unit": "qsetup-worker-a@1.service", "role": "worker"}],
    "files": ["/etc/systemd/system/qsetup-worker-a@.service"],
    "venvs": [],
    "code": ["/opt/qsetup/apps/proj"],
    "broker": {"users": ["proj", "qsetup-admin"], "vhosts": ["proj"], "policies": ["proj/limits"]},
}


def test_removals_are_what_the_manifest_recorded_and_the_inventory_dropped() -> None:
    removals = filters.qsetup_removals(OLD_MANIFEST, NEW_MANIFEST)
    assert [u["unit"] for u in removals["units"]] == [
        "qsetup-beat.service",
        "qsetup-worker-a@2.service",
        "qsetup-worker-old@1.service",
    ]
    assert removals["files"] == [
        "/etc/qsetup/beat.env",
        "/etc/qsetup/worker-old.env",
        "/etc/systemd/system/qsetup-worker-old@.service",
    ]
    assert removals["venvs"] == ["/opt/qsetup/venvs/old"]
    assert removals["code"] == []
    assert removals["broker_users"] == ["ops"]
    assert removals["broker_vhosts"] == ["gone"]
    assert removals["broker_policies"] == ["gone/x"]
    assert removals["any"] is True


def test_no_manifest_means_nothing_to_remove() -> None:
    removals = filters.qsetup_removals({}, NEW_MANIFEST)
    assert removals["any"] is False
    assert filters.qsetup_removals(NEW_MANIFEST, NEW_MANIFEST)["any"] is False


def test_pending_manifest_keeps_what_is_still_to_remove() -> None:
    removals = filters.qsetup_removals(OLD_MANIFEST, NEW_MANIFEST)
    pending = filters.qsetup_manifest_pending(NEW_MANIFEST, removals)
    units = {u["unit"] for u in pending["units"]}
    assert {"qsetup-worker-a@1.service", "qsetup-worker-old@1.service"} <= units
    assert "/opt/qsetup/venvs/old" in pending["venvs"]
    assert "ops" in pending["broker"]["users"]
    # A failed run before the removals leaves them recorded: the next deploy removes them.
    again = filters.qsetup_removals(pending, NEW_MANIFEST)
    assert [u["unit"] for u in again["units"]] == [u["unit"] for u in removals["units"]]


def test_services_of_stale_files() -> None:
    unit = "qsetup-worker-a@.service"
    files = [
        {"dest": f"/etc/systemd/system/{unit}", "service": unit},
        {"dest": "/etc/qsetup/worker-a.env", "service": unit},
        {"dest": "/etc/qsetup/flower.env", "service": "qsetup-flower.service"},
    ]
    assert filters.qsetup_services_of_stale(files, ["/etc/qsetup/worker-a.env"]) == [
        "qsetup-worker-a@.service"
    ]
    assert filters.qsetup_services_of_stale(files, []) == []


def test_unit_states_decide_what_a_deploy_starts() -> None:
    services = [{"unit": "a@1.service"}, {"unit": "a@2.service"}, {"unit": "b.service"}]
    states = {
        "a@1.service": {"ActiveState": "active", "UnitFileState": "enabled"},
        "a@2.service": {"ActiveState": "failed", "UnitFileState": "enabled"},
        "b.service": {"ActiveState": "active", "UnitFileState": "disabled"},
    }
    assert filters.qsetup_units_in_state(services, states, "failed") == ["a@2.service"]
    assert [s["unit"] for s in filters.qsetup_units_not_running(services, states)] == [
        "a@2.service",
        "b.service",
    ]
    # Nothing known (a first deploy): every service is started.
    assert len(filters.qsetup_units_not_running(services, {})) == 3


# --- a no-op deploy ends after the preflight on clean hosts --------------------------


def _clean_case() -> tuple[dict[str, Any], dict[str, Any]]:
    files = [dict(FILE, service="qsetup-worker-a@.service")]
    manifest = {"version": 1, "units": [{"unit": "qsetup-worker-a@1.service", "role": "worker"}],
                "files": ["/etc/x"], "venvs": [], "code": []}  # fmt: skip
    host = {
        "found": found(),
        "packages": ["celery"],
        "installed": ["celery"],
        "groups": ["celery"],
        "users": ["celery"],
        "manifest": manifest,
        "units": {"qsetup-worker-a@1.service": {"ActiveState": "active",
                                               "UnitFileState": "enabled"}},
    }  # fmt: skip
    plan = {
        "files": files,
        "broker_files": [],
        "sums": {"h/etc/x": "abc"},
        "dirs": [],
        "venvs": [],
        "ship_code": False,
        "code_dir": "/opt/qsetup/apps/proj",
        "os_users": [{"user": "celery", "group": "celery"}],
        "os_groups": ["celery"],
        "services": [{"unit": "qsetup-worker-a@1.service"}],
        "is_broker": False,
        "broker": {},
        "secrets": {},
        "manifest": manifest,
        "removals": filters.qsetup_removals(manifest, manifest),
    }
    return host, plan


def test_a_host_where_nothing_differs_is_clean() -> None:
    host, plan = _clean_case()
    assert filters.qsetup_host_clean(host, plan) is True


@pytest.mark.parametrize(
    "spoil",
    [
        lambda h, p: h["found"]["files"][0].update(checksum="other"),  # a file changed
        lambda h, p: h.update(installed=[]),  # a package is missing
        lambda h, p: h.update(users=[]),  # the service user is missing
        lambda h, p: h["units"]["qsetup-worker-a@1.service"].update(ActiveState="failed"),
        lambda h, p: h.update(manifest={}),  # no manifest recorded yet
        lambda h, p: p.update(ship_code=True),  # the code was never shipped
        lambda h, p: p.update(is_broker=True),  # broker: no definitions read
    ],
)
def test_anything_that_differs_makes_a_host_dirty(spoil: Any) -> None:
    host, plan = _clean_case()
    spoil(host, plan)
    assert filters.qsetup_host_clean(host, plan) is False


def _broker_case(cluster: list[dict[str, Any]], size: int) -> bool:
    host, plan = _clean_case()
    host["definitions"] = definitions()
    host["cluster"] = cluster
    host["units"]["rabbitmq-server.service"] = {"ActiveState": "active",
                                                "UnitFileState": "enabled"}  # fmt: skip
    plan.update(is_broker=True, broker=WANTED, secrets=SECRETS, cluster_size=size)
    return bool(filters.qsetup_host_clean(host, plan))


def test_a_broker_node_is_clean_only_when_its_whole_cluster_runs() -> None:
    three = [{"name": f"rabbit@m{i}", "running": True} for i in (1, 2, 3)]
    assert _broker_case(three, 3) is True
    assert _broker_case([{"name": "rabbit@m1", "running": True}], 1) is True
    down = [dict(n, running=n["name"] != "rabbit@m2") for n in three]
    assert _broker_case(down, 3) is False  # a node is down
    assert _broker_case(three[:2], 3) is False  # a node left (or was never joined)
    assert _broker_case([], 3) is False  # the API did not answer
