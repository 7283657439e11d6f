"""The filters that decide what a deploy changes (playbooks/filter_plugins)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from unitdata import playbook_module

from qsetup.converge.broker import broker_apply, broker_passwords
from qsetup.converge.removals import removals as removals_of

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


def plan(**over: Any) -> dict[str, Any]:
    """A worker host's variables as ``hostvars[inventory_hostname]`` gives them."""
    hv: dict[str, Any] = {
        "inventory_hostname": "w1",
        "qsetup_files": [dict(FILE, service="qsetup-worker-a@.service")],
        "qsetup_broker_files": [],
        "qsetup_file_sums": {"h/etc/x": "abc"},
        "qsetup_dirs": [],
        "qsetup_venvs": [],
        "qsetup_ship_code": False,
        "qsetup_code_dir": "/opt/qsetup/apps/proj",
        "qsetup_os_users": [{"user": "celery", "group": "celery"}],
        "qsetup_os_groups": ["celery"],
        "qsetup_services": [
            {"unit": "qsetup-worker-a@1.service", "role": "workers", "celery_argv": []}
        ],
        "qsetup_is_broker": False,
        "qsetup_is_broker_primary": False,
        "qsetup_broker": {},
        "qsetup_broker_nodes": [{"host": "w1", "address": "10.0.0.1"}],
        "qsetup_secret_values": {},
        "qsetup_manifest": MANIFEST,
    }
    hv.update(over)
    return hv


MANIFEST = {"version": 1, "units": [{"unit": "qsetup-worker-a@1.service", "role": "worker"}],
            "files": ["/etc/x"], "venvs": [], "code": []}  # fmt: skip
ACTIVE = {"LoadState": "loaded", "ActiveState": "active", "SubState": "running",
          "UnitFileState": "enabled"}  # fmt: skip


def read(**over: Any) -> dict[str, Any]:
    """What qsetup_host_facts returns on that host when it is as planned."""
    host: dict[str, Any] = {
        "hostname": "w1",
        "found": found(),
        "packages": ["celery"],
        "installed": ["celery"],
        "groups": ["celery"],
        "users": ["celery"],
        "manifest": MANIFEST,
        "units": {"qsetup-worker-a@1.service": dict(ACTIVE)},
    }
    host.update(over)
    return host


def test_a_file_that_matches_is_not_stale() -> None:
    assert filters.qsetup_converge(read(), plan())["stale"] == []


@pytest.mark.parametrize(
    "over", [{"checksum": "zzz"}, {"mode": "0644"}, {"pw_name": "x"}, {"gr_name": "x"}]
)
def test_content_mode_owner_or_group_make_a_file_stale(over: dict[str, Any]) -> None:
    result = filters.qsetup_converge(read(found=found(**over)), plan())
    assert result["stale"] == ["/etc/x"]
    assert result["clean"] is False


def test_a_missing_file_is_stale() -> None:
    assert filters.qsetup_converge(read(found={"files": []}), plan())["stale"] == ["/etc/x"]


def test_dirs_must_exist_as_directories_with_their_mode() -> None:
    d = {"path": "/etc/x", "mode": "0600", "owner": "root", "group": "root"}
    hv = plan(qsetup_dirs=[d], qsetup_files=[])
    assert filters.qsetup_converge(read(found=found(isdir=True)), hv)["stale_dirs"] == []
    assert filters.qsetup_converge(read(), hv)["stale_dirs"] == ["/etc/x"]
    spoiled = read(found=found(isdir=True, mode="0750", gr_name="flower"))
    assert filters.qsetup_converge(spoiled, hv)["stale_dirs"] == ["/etc/x"]


def test_a_venv_is_stale_until_its_marker_matches_and_its_interpreter_is_there() -> None:
    venv = {"name": "w", "path": "/opt/w", "marker": "/etc/x", "marker_sum": "abc"}
    service = {"unit": "qsetup-worker-a@1.service", "role": "workers",
               "celery_argv": ["/opt/w/bin/python", "-m", "celery"]}  # fmt: skip
    hv = plan(qsetup_venvs=[venv], qsetup_files=[], qsetup_services=[service])
    assert filters.qsetup_converge(read(), hv)["stale_venvs"] == []
    assert filters.qsetup_converge(read(found=found(checksum="zzz")), hv)["stale_venvs"] == ["w"]
    gone = read(executables={"/opt/w/bin/python": False})
    assert filters.qsetup_converge(gone, hv)["stale_venvs"] == ["w"]


def test_missing_packages_users_and_groups_are_named() -> None:
    result = filters.qsetup_converge(read(installed=[], users=[], groups=[]), plan())
    assert (result["packages"], result["os_users"], result["os_groups"]) == (
        ["celery"],
        ["celery"],
        ["celery"],
    )


def test_code_is_stale_until_its_archive_and_directory_match() -> None:
    hv = plan(qsetup_ship_code=True, qsetup_file_sums={"h/etc/x": "abc", "app.tar": "t1"})
    tar = {"path": "/opt/qsetup/apps/proj.tar", "checksum": "t1", "mode": "0644",
           "pw_name": "root", "gr_name": "root"}  # fmt: skip
    code = {"path": "/opt/qsetup/apps/proj", "isdir": True, "mode": "0755",
            "pw_name": "root", "gr_name": "root"}  # fmt: skip
    shipped = read(found={"files": [*found()["files"], tar, code]})
    assert filters.qsetup_converge(shipped, hv)["code_stale"] is False
    assert filters.qsetup_converge(read(), hv)["code_stale"] is True
    tar["checksum"] = "t0"
    assert filters.qsetup_converge(shipped, hv)["code_stale"] is True


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


NO_DRIFT: dict[str, Any] = {
    "vhosts": [],
    "users": [],
    "policies": [],
    "delete_guest": False,
    "delete_users": [],
    "delete_policies": [],
    "delete_vhosts": [],
    "enable_flags": [],
}
"""What broker_apply gives for a broker that matches the inventory."""


def apply(defs: dict[str, Any] | None, removals: dict[str, Any] | None = None) -> dict[str, Any]:
    read = None if defs is None else {"definitions": defs}
    return dict(broker_apply(read, WANTED, SECRETS, removals or {}))


def test_a_broker_that_matches_has_no_drift() -> None:
    assert apply(definitions()) == NO_DRIFT


def test_each_kind_of_drift_is_found() -> None:
    d = definitions()
    d["vhosts"] = [{"name": "/"}]
    d["users"][0]["password_hash"] = rabbit_hash("old")
    d["users"][1]["tags"] = []
    d["users"].append({"name": "guest", "password_hash": rabbit_hash("guest"), "tags": []})
    d["policies"][0]["definition"] = {"max-length": 11}
    changes = apply(d)
    assert changes["vhosts"] == ["app"]
    # app: its vhost is created, so it is set whole; ops: its tags differ.
    assert [(u["name"], u["permissions"] is not None) for u in changes["users"]] == [
        ("app", True),
        ("ops", True),
    ]
    assert [p["name"] for p in changes["policies"]] == ["p"]
    assert changes["delete_guest"] is True


def test_a_password_alone_sets_the_password_and_tags_only() -> None:
    d = definitions()
    d["users"][0]["password_hash"] = rabbit_hash("old")
    changes = apply(d)
    assert changes["users"] == [
        {"name": "app", "tags": "", "permissions": None, "topic_permissions": None}
    ]
    assert broker_passwords(changes, WANTED, SECRETS) == {"app": "pw-app"}
    assert "pw-app" not in repr(changes)


def test_missing_users_and_changed_permissions_need_the_module() -> None:
    d = definitions()
    d["users"] = d["users"][1:]
    d["permissions"][0]["write"] = "^x"
    d["permissions"].append(
        {"user": "ops", "vhost": "app", "configure": ".*", "write": ".*", "read": ".*"}
    )
    changes = apply(d)
    assert [u["name"] for u in changes["users"]] == ["app", "ops"]
    assert all(u["permissions"] is not None for u in changes["users"])


def test_a_user_without_rights_may_keep_a_row_that_grants_nothing() -> None:
    # community.rabbitmq gave such a user "^$" on "/": that is no drift (definitions()).
    d = definitions()
    d["permissions"] = d["permissions"][:1]
    assert apply(d) == NO_DRIFT


def test_nothing_read_means_everything_is_applied() -> None:
    changes = apply(None)
    assert changes["vhosts"] == ["app"]
    assert [u["name"] for u in changes["users"]] == ["app", "ops"]


def test_dropped_broker_objects_are_deleted_but_never_the_administrator() -> None:
    removals = {"broker_users": ["old", "qsetup-admin"], "broker_vhosts": ["gone"],
                "broker_policies": ["app/x"]}  # fmt: skip
    changes = apply(definitions(), removals)
    assert (changes["delete_users"], changes["delete_vhosts"], changes["delete_policies"]) == (
        ["old"],
        ["gone"],
        ["app/x"],
    )


# --- exact gates (issue 10) -------------------------------------------------------


def test_node_name_uses_the_hostname_the_host_reports() -> None:
    assert (
        filters.qsetup_node_name("orders-2@%h", "web1.example.org") == "orders-2@web1.example.org"
    )
    assert filters.qsetup_node_name("orders-2@%n", "web1.example.org") == "orders-2@web1"
    assert filters.qsetup_node_name("solo", "h1") == "celery@solo"


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
    removals = removals_of(OLD_MANIFEST, NEW_MANIFEST)
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
    removals = removals_of({}, NEW_MANIFEST)
    assert removals["any"] is False
    assert removals_of(NEW_MANIFEST, NEW_MANIFEST)["any"] is False


def test_pending_manifest_keeps_what_is_still_to_remove() -> None:
    removals = removals_of(OLD_MANIFEST, NEW_MANIFEST)
    pending = filters.qsetup_manifest_pending(NEW_MANIFEST, removals)
    units = {u["unit"] for u in pending["units"]}
    assert {"qsetup-worker-a@1.service", "qsetup-worker-old@1.service"} <= units
    assert "/opt/qsetup/venvs/old" in pending["venvs"]
    assert "ops" in pending["broker"]["users"]
    # A failed run before the removals leaves them recorded: the next deploy removes them.
    again = removals_of(pending, NEW_MANIFEST)
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
    services = [{"unit": u, "role": "workers"} for u in ("a@1.service", "a@2.service", "b.service")]
    units = {
        "a@1.service": dict(ACTIVE),
        "a@2.service": dict(ACTIVE, ActiveState="failed", SubState="failed"),
        "b.service": dict(ACTIVE, UnitFileState="disabled"),
    }
    hv = plan(qsetup_services=services, qsetup_worker_services=services)
    result = filters.qsetup_converge(read(units=units), hv)
    assert result["units_failed"] == ["a@2.service"]
    assert result["units_down"] == ["a@2.service", "b.service"]
    # The workers that run wait to answer again when RabbitMQ restarts (site.yml).
    assert result["workers_up"] == ["a@1.service"]
    # Nothing known (a first deploy): every service is started, none waits to reconnect.
    first = filters.qsetup_converge(read(units={}), hv)
    assert len(first["units_down"]) == 3
    assert first["workers_up"] == []
    # --tags broker plans no worker service, but the workers that run still wait.
    broker_only = plan(qsetup_services=[], qsetup_worker_services=services)
    assert filters.qsetup_converge(read(units=units), broker_only)["workers_up"] == ["a@1.service"]


# --- a no-op deploy ends after the preflight on clean hosts --------------------------


def test_a_host_where_nothing_differs_is_clean() -> None:
    result = filters.qsetup_converge(read(), plan())
    assert result["clean"] is True
    assert result["differences"] == []


@pytest.mark.parametrize(
    "spoil",
    [
        lambda h, p: h["found"]["files"][0].update(checksum="other"),  # a file changed
        lambda h, p: h.update(installed=[]),  # a package is missing
        lambda h, p: h.update(users=[]),  # the service user is missing
        lambda h, p: h["units"]["qsetup-worker-a@1.service"].update(ActiveState="failed"),
        lambda h, p: h["units"]["qsetup-worker-a@1.service"].update(UnitFileState="disabled"),
        lambda h, p: h.update(manifest={}),  # no manifest recorded yet
        lambda h, p: p.update(qsetup_ship_code=True),  # the code was never shipped
        lambda h, p: p.update(qsetup_manifest={**MANIFEST, "units": []}),  # a unit dropped
        # the primary broker node: no definitions read
        lambda h, p: p.update(
            qsetup_is_broker=True, qsetup_is_broker_primary=True, qsetup_broker=WANTED
        ),  # fmt: skip
    ],
)
def test_anything_that_differs_makes_a_host_dirty(spoil: Any) -> None:
    host, hv = read(found=found()), plan()
    spoil(host, hv)
    result = filters.qsetup_converge(host, hv)
    assert result["clean"] is False
    assert result["differences"], "a dirty host names what differs"


NODES = [{"host": f"m{i}", "address": f"10.0.0.{i}"} for i in (1, 2, 3)]
BLOCK = "10.0.0.1 m1\n10.0.0.2 m2.example m2\n10.0.0.3 m3"


def _broker_read(cluster: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    units = {"qsetup-worker-a@1.service": dict(ACTIVE), "rabbitmq-server.service": dict(ACTIVE)}
    host = read(definitions=definitions(), cluster=cluster, units=units, hosts_block=BLOCK)
    host.update(over)
    return host


def _broker_plan(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return plan(
        inventory_hostname="m1",
        qsetup_is_broker=True,
        qsetup_is_broker_primary=True,
        qsetup_broker=WANTED,
        qsetup_secret_values=SECRETS,
        qsetup_broker_nodes=nodes,
    )


HOSTVARS = {
    "m1": {"qsetup_host": {"hostname": "m1"}},
    "m2": {"qsetup_host": {"hostname": "m2.example"}},
    "m3": {"qsetup_host": {"hostname": "m3"}},
}


def _broker_case(cluster: list[dict[str, Any]], size: int) -> bool:
    host = _broker_read(cluster, hosts_block=BLOCK if size > 1 else None)
    return bool(filters.qsetup_converge(host, _broker_plan(NODES[:size]), HOSTVARS)["clean"])


def test_a_broker_node_is_clean_only_when_its_whole_cluster_runs() -> None:
    three = [{"name": f"rabbit@m{i}", "running": True} for i in (1, 2, 3)]
    assert _broker_case(three, 3) is True
    assert _broker_case([{"name": "rabbit@m1", "running": True}], 1) is True
    down = [dict(n, running=n["name"] != "rabbit@m2") for n in three]
    assert _broker_case(down, 3) is False  # a node is down
    assert _broker_case(three[:2], 3) is False  # a node left (or was never joined)
    assert _broker_case([], 3) is False  # the API did not answer


def test_the_cluster_block_in_etc_hosts_is_compared() -> None:
    three = [{"name": f"rabbit@m{i}", "running": True} for i in (1, 2, 3)]
    hv = _broker_plan(NODES)
    same = filters.qsetup_converge(_broker_read(three), hv, HOSTVARS)
    assert (same["hosts_block"], same["hosts_block_stale"], same["clean"]) == (BLOCK, False, True)
    edited = BLOCK.replace("10.0.0.3", "10.0.0.9")
    for block in (edited, None):  # hand-edited, or removed
        result = filters.qsetup_converge(_broker_read(three, hosts_block=block), hv, HOSTVARS)
        assert (result["hosts_block"], result["hosts_block_stale"]) == (BLOCK, True)
        assert result["clean"] is False
        assert any("/etc/hosts" in line for line in result["differences"])
    # A single node holds no block: one left behind is removed.
    single = _broker_plan(NODES[:1])
    alone = [three[0]]
    left = filters.qsetup_converge(_broker_read(alone), single, HOSTVARS)
    assert (left["hosts_block"], left["hosts_block_stale"], left["clean"]) == (None, True, False)
    none = filters.qsetup_converge(_broker_read(alone, hosts_block=None), single, HOSTVARS)
    assert (none["hosts_block_stale"], none["clean"]) == (False, True)


def test_a_node_that_is_down_keeps_its_line() -> None:
    three = [{"name": f"rabbit@m{i}", "running": True} for i in (1, 2, 3)]
    unread = {k: v for k, v in HOSTVARS.items() if k != "m3"}  # m3 unreachable: no read
    result = filters.qsetup_converge(_broker_read(three), _broker_plan(NODES), unread)
    assert (result["hosts_block"], result["hosts_block_stale"]) == (BLOCK, False)
    fresh = filters.qsetup_converge(
        _broker_read(three, hosts_block=None), _broker_plan(NODES), unread
    )
    assert fresh["hosts_block"] == "10.0.0.1 m1\n10.0.0.2 m2.example m2"


def test_the_filters_load_neither_pydantic_nor_the_comparison_until_used() -> None:
    code = (
        "import sys; sys.path.insert(0, 'playbooks/filter_plugins'); import qsetup_filters;"
        "loaded = sorted(m for m in sys.modules if m.startswith(('qsetup.', 'pydantic')));"
        "qsetup_filters.qsetup_converge({}, {'inventory_hostname': 'h'});"
        "print(loaded, 'pydantic' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[] False"


# --- the configure play's steps ---------------------------------------------------------


def _steps(result: dict[str, Any]) -> list[str]:
    assert all(s["host"] == "w1" for s in result["steps"])  # no include shared across hosts
    return [f"{s['role']}/{s['tasks']}" for s in result["steps"]]


def test_a_clean_host_has_no_step() -> None:
    assert filters.qsetup_converge(read(), plan())["steps"] == []


def test_an_edited_file_is_the_files_step_only() -> None:
    result = filters.qsetup_converge(read(found=found(checksum="zzz")), plan())
    assert _steps(result) == ["celery/main"]


def test_an_out_of_date_manifest_is_the_users_step() -> None:
    result = filters.qsetup_converge(read(manifest={"version": 1}), plan())
    assert result["manifest_stale"] and _steps(result) == ["host/users"]


def test_a_stopped_unit_needs_no_file_step() -> None:
    stopped = dict(ACTIVE, ActiveState="inactive", SubState="dead")
    result = filters.qsetup_converge(read(units={"qsetup-worker-a@1.service": stopped}), plan())
    assert not result["clean"] and _steps(result) == []  # the start play starts it


def test_a_fresh_pip_host_installs_the_venv_tools_first_then_builds_while_the_rest_installs() -> (
    None
):
    venv = {"name": "w", "path": "/opt/w", "marker": "/etc/w.marker", "marker_sum": "abc",
            "site_packages": False}  # fmt: skip
    service = {"unit": "qsetup-worker-a@1.service", "role": "workers", "code": True,
               "celery_argv": ["/opt/w/bin/python", "-m", "celery"]}  # fmt: skip
    hv = plan(
        qsetup_venvs=[venv],
        qsetup_services=[service],
        qsetup_venv_apt=["python3-venv"],
        qsetup_ship_code=True,
    )
    fresh = read(found={"files": []}, packages=["python3-venv", "nftables"], installed=[], units={})
    # host/users: python3-venv, the build started, then nftables; celery/main: the code
    # staged, the build waited for, the files, the app check (each one module run)
    assert _steps(filters.qsetup_converge(fresh, hv)) == ["host/users", "celery/main"]


def test_a_venv_over_debians_packages_builds_after_them_and_a_broker_sets_up_rabbitmq() -> None:
    venv = {"name": "w", "path": "/opt/w", "marker": "/etc/w.marker", "marker_sum": "abc",
            "site_packages": True}  # fmt: skip
    conf = {"src": "h/etc/r.conf", "dest": "/etc/rabbitmq/rabbitmq.conf", "mode": "0644",
            "owner": "root", "group": "rabbitmq", "service": "rabbitmq-server.service"}  # fmt: skip
    hv = plan(
        qsetup_venvs=[venv],
        qsetup_venv_apt=["python3-venv"],
        qsetup_is_broker=True,
        qsetup_is_broker_primary=True,
        qsetup_broker_files=[conf],
        qsetup_file_sums={"h/etc/x": "abc", "h/etc/r.conf": "def"},
    )
    fresh = read(found={"files": []}, packages=["python3-venv", "celery"], installed=[])
    assert _steps(filters.qsetup_converge(fresh, hv)) == [
        "host/users",
        "celery/venvs_site",
        "broker/main",
        "celery/main",
        "broker/definitions",
    ]
