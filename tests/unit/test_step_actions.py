"""Configure steps that are one task each (playbooks/action_plugins/), their modules faked.

qsetup_files restarts what its files configure and loads the firewall in the same task;
qsetup_definitions reads the broker, compares on the controller and applies what
differs. What the modules would do on a host is their own tests' concern; here: which
modules run, in which order, with what, and what the task's result keeps.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from test_playbook_filters import SECRETS, WANTED, definitions
from unitdata import playbook_module

files_action: Any = playbook_module("action_plugins/qsetup_files.py")
definitions_action: Any = playbook_module("action_plugins/qsetup_definitions.py")

Calls = list[tuple[str, dict[str, Any]]]


def _run(
    monkeypatch: pytest.MonkeyPatch,
    plugin: Any,
    args: dict[str, Any],
    answers: dict[str, dict[str, Any]],
    check: bool = False,
) -> tuple[dict[str, Any], Calls]:
    calls: Calls = []
    action = object.__new__(plugin.ActionModule)
    action._task = SimpleNamespace(args=args, check_mode=check)

    def execute(module_name: str, module_args: dict[str, Any], task_vars: Any) -> Any:
        calls.append((module_name, module_args))
        return {"invocation": {"module_args": module_args}, **answers[module_name]}

    monkeypatch.setattr(action, "_execute_module", execute, raising=False)
    monkeypatch.setattr(plugin.ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    return action.run(task_vars={}), calls


RESTART = {"daemon_reload": True, "restart": ["rabbitmq-server.service"],
           "units": ["rabbitmq-server.service"], "no_block": False}  # fmt: skip
CONF = {"dest": "/etc/rabbitmq/rabbitmq.conf", "content": "listeners.tcp.1 = 5672\n",
        "owner": "root", "group": "rabbitmq", "mode": "0640"}  # fmt: skip
FIREWALL = {"ruleset": "table inet qsetup {}\n", "ruleset_path": "/etc/qsetup/nft.conf",
            "unit": "[Unit]\n", "unit_name": "qsetup-firewall.service"}  # fmt: skip


def test_changed_files_restart_their_service_in_the_same_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {
        "qsetup_files": {"changed": True, "paths": [CONF["dest"]]},
        "qsetup_services": {"changed": True, "started": ["rabbitmq-server.service"]},
    }
    result, calls = _run(monkeypatch, files_action, {"files": [CONF], "restart": RESTART}, answers)
    assert [c[0] for c in calls] == ["qsetup_files", "qsetup_services"]
    assert calls[1][1] == RESTART
    assert result["changed"] and result["restarted"]["started"] == ["rabbitmq-server.service"]
    assert "invocation" not in result and "invocation" not in result["restarted"]


def test_files_already_in_place_restart_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"qsetup_files": {"changed": False}}
    result, calls = _run(monkeypatch, files_action, {"files": [CONF], "restart": RESTART}, answers)
    assert [c[0] for c in calls] == ["qsetup_files"]
    assert not result["changed"] and "restarted" not in result


def test_a_failed_restart_fails_the_task_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {
        "qsetup_files": {"changed": True},
        "qsetup_services": {"failed": True, "msg": "rabbitmq-server.service failed to start"},
    }
    result, _ = _run(monkeypatch, files_action, {"files": [CONF], "restart": RESTART}, answers)
    assert result["failed"] and result["msg"] == "rabbitmq-server.service failed to start"


def test_the_firewall_loads_after_the_packages_and_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """The packages go in the files module's own run (one Python start on the host)."""
    answers = {
        "qsetup_files": {"changed": True, "installed": ["nftables"]},
        "qsetup_firewall": {"changed": True},
    }
    args = {"packages": ["nftables"], "files": [CONF], "firewall": FIREWALL}
    result, calls = _run(monkeypatch, files_action, args, answers)
    assert [c[0] for c in calls] == ["qsetup_files", "qsetup_firewall"]
    assert calls[0][1]["packages"] == ["nftables"]
    assert calls[1][1] == FIREWALL
    assert result["changed"] and result["firewall"] == {"changed": True}
    assert result["installed"] == ["nftables"]


def test_packages_builds_and_files_are_one_module_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The module installs the packages, waits for the virtualenv builds, then writes the
    files and each build's marker; a build still running makes the action ask again,
    without the packages."""
    job = {"ansible_job_id": "j1", "results_file": "/root/.ansible_async/j1",
           "item": {"name": "flower", "marker": "/opt/qsetup/venvs/flower/.qsetup",
                    "marker_content": "x\n"}}  # fmt: skip
    answers = {"qsetup_files": {"changed": True, "venvs_changed": ["flower"],
                                "installed": ["python3-requests"]}}  # fmt: skip
    args = {"packages": ["python3-requests"], "files": [CONF], "wait_jobs": [job]}
    result, calls = _run(monkeypatch, files_action, args, answers)
    assert [c[0] for c in calls] == ["qsetup_files"]
    sent = calls[0][1]
    assert sent["packages"] == ["python3-requests"]
    assert sent["jobs"] == [{"jid": "j1", "results_file": "/root/.ansible_async/j1",
                             "name": "flower",
                             "marker": {"dest": "/opt/qsetup/venvs/flower/.qsetup",
                                        "owner": "root", "group": "root", "mode": "0644",
                                        "content": "eAo="}}]  # fmt: skip
    assert result["installed"] == ["python3-requests"] and result["venvs_changed"] == ["flower"]

    rounds = iter([{"pending": True, "installed": ["python3-requests"], "changed": True},
                   {"changed": False, "venvs_changed": []}])  # fmt: skip
    calls.clear()
    action = object.__new__(files_action.ActionModule)
    action._task = SimpleNamespace(args=args, check_mode=False)

    def execute(module_name: str, module_args: dict[str, Any], task_vars: Any) -> Any:
        calls.append((module_name, dict(module_args)))
        return next(rounds)

    monkeypatch.setattr(action, "_execute_module", execute, raising=False)
    result = action.run(task_vars={})
    assert [c[1]["packages"] for c in calls] == [["python3-requests"], []]
    assert result["changed"] and result["installed"] == ["python3-requests"]


def test_the_code_is_sent_staged_once_and_its_temporary_directory_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The archive goes into a temporary directory of its own, the module stages it in
    its first call (a build still running makes the action ask again, told the code is
    staged) and the directory goes; in check mode nothing is sent."""
    done: list[tuple[str, Any]] = []
    action = object.__new__(files_action.ActionModule)
    action._task = SimpleNamespace(
        args={"files": [CONF], "code": {"src": "/scratch/app.tar", "code_dir": "/opt/app"},
              "check": {"services": [], "code_dir": "/opt/app.next"}},
        check_mode=False,
    )  # fmt: skip
    action._connection = SimpleNamespace(
        _shell=SimpleNamespace(tmpdir=None, join_path=lambda *p: "/".join(p))
    )
    rounds = iter([{"pending": True, "changed": True, "staged": "/opt/app.next"},
                   {"changed": True, "problems": []}])  # fmt: skip
    calls: Calls = []

    def execute(module_name: str, module_args: dict[str, Any], task_vars: Any) -> Any:
        calls.append((module_name, json.loads(json.dumps(module_args))))
        return next(rounds)

    monkeypatch.setattr(action, "_execute_module", execute, raising=False)
    monkeypatch.setattr(action, "_make_tmp_path", lambda: "/tmp/ansible-tmp-1", raising=False)
    monkeypatch.setattr(action, "_transfer_file", lambda s, d: done.append(("sent", (s, d))),
                        raising=False)  # fmt: skip
    monkeypatch.setattr(action, "_fixup_perms2", lambda paths: None, raising=False)
    monkeypatch.setattr(action, "_remove_tmp_path", lambda p: done.append(("removed", p)),
                        raising=False)  # fmt: skip
    monkeypatch.setattr(files_action.ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    result = action.run(task_vars={})
    assert done == [("sent", ("/scratch/app.tar", "/tmp/ansible-tmp-1/app.tar")),
                    ("removed", "/tmp/ansible-tmp-1")]  # fmt: skip
    first, second = (c[1] for c in calls)
    assert first["code"] == {"archive": "/tmp/ansible-tmp-1/app.tar", "code_dir": "/opt/app"}
    assert "code" not in second and second["staged"] is True
    assert second["check"] == {"services": [], "code_dir": "/opt/app.next"}
    assert result["staged"] == "/opt/app.next" and result["code_sent"]

    result, calls = _run(
        monkeypatch, files_action, {"code": {"src": "/x.tar", "code_dir": "/opt/app"}},
        {"qsetup_files": {"changed": False}}, check=True,
    )  # fmt: skip
    assert "code" not in calls[0][1] and "staged" not in result
    assert result["code_sent"] and result["changed"]  # a change, though nothing was sent


def test_a_firewall_nft_refuses_fails_the_task_and_no_files_means_no_files_trip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {"qsetup_firewall": {"failed": True, "msg": "nft refused qsetup's ruleset: x"}}
    result, calls = _run(monkeypatch, files_action, {"firewall": FIREWALL}, answers)
    assert [c[0] for c in calls] == ["qsetup_firewall"]
    assert result["failed"] and result["msg"] == "nft refused qsetup's ruleset: x"


def test_failed_files_load_no_firewall(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"qsetup_files": {"failed": True, "msg": "unknown owner"}}
    result, calls = _run(
        monkeypatch, files_action, {"files": [CONF], "firewall": FIREWALL}, answers
    )
    assert [c[0] for c in calls] == ["qsetup_files"] and result["failed"]


DEFINITIONS_ARGS = {"port": 15672, "user": "qsetup-admin", "password": "pw-admin", "wait": 0,
                    "unit": "rabbitmq-server.service", "broker": WANTED, "secrets": SECRETS,
                    "removals": {}, "cluster_size": 1}  # fmt: skip


def _drifted() -> dict[str, Any]:
    """The broker's definitions with the app user's password changed by hand."""
    defs = definitions()
    app = next(u for u in defs["users"] if u["name"] == "app")
    app["password_hash"] = "not-the-password"
    return defs


def test_definitions_that_differ_are_applied_and_the_result_holds_no_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {
        "qsetup_broker_admin": {"changed": False, "definitions": _drifted(), "nodes": None},
        "qsetup_broker_objects": {"changed": True, "done": ["user app"]},
    }
    result, calls = _run(monkeypatch, definitions_action, DEFINITIONS_ARGS, answers)
    assert [c[0] for c in calls] == ["qsetup_broker_admin", "qsetup_broker_objects"]
    assert calls[0][1] == {
        k: DEFINITIONS_ARGS[k] for k in ("port", "user", "password", "wait", "unit")
    }
    applied = calls[1][1]
    assert [u["name"] for u in applied["changes"]["users"]] == ["app"]
    assert applied["passwords"] == {"app": "pw-app"} and applied["login_password"] == "pw-admin"
    assert result["changed"] and result["done"] == ["user app"]
    text = json.dumps(result)
    assert "pw-app" not in text and "pw-admin" not in text and "password_hash" not in text


def test_definitions_as_inventoried_cost_one_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"qsetup_broker_admin": {"changed": False, "definitions": definitions()}}
    result, calls = _run(monkeypatch, definitions_action, DEFINITIONS_ARGS, answers)
    assert [c[0] for c in calls] == ["qsetup_broker_admin"]
    assert not result["changed"] and result["done"] == []


def test_an_unread_broker_fails_outside_check_mode_and_is_assumed_empty_in_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {"qsetup_broker_admin": {"failed": True, "msg": "the API did not answer"}}
    result, calls = _run(monkeypatch, definitions_action, DEFINITIONS_ARGS, answers)
    assert result["failed"] and result["msg"] == "the API did not answer"
    assert [c[0] for c in calls] == ["qsetup_broker_admin"]
    result, calls = _run(monkeypatch, definitions_action, DEFINITIONS_ARGS, answers, check=True)
    assert not result.get("failed") and result["changed"]  # everything would be applied
    assert [c[0] for c in calls] == ["qsetup_broker_admin"]  # check mode applies nothing
    assert "app" in [u["name"] for u in result["changes"]["users"]]
