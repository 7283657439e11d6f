"""The start play's one task (playbooks/action_plugins/qsetup_start.py), its modules faked."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from unitdata import playbook_module

start: Any = playbook_module("action_plugins/qsetup_start.py")

WORKER = {"unit": "qsetup-worker-a@1.service", "role": "workers", "code": True, "venv": "",
          "files_of": "qsetup-worker-a@.service", "node_pattern": "a-%i@%h",
          "python": "/usr/bin/python3", "user": "celery",
          "env_file": "/etc/qsetup/a.env"}  # fmt: skip
FLOWER = {"unit": "qsetup-flower.service", "role": "flower", "code": False, "venv": "f",
          "files_of": "qsetup-flower.service", "node_pattern": ""}  # fmt: skip


def _run(
    monkeypatch: pytest.MonkeyPatch, args: dict[str, Any], answers: dict[str, Any],
    check: bool = False, task_vars: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:  # fmt: skip
    calls: list[tuple[str, dict[str, Any]]] = []
    action = object.__new__(start.ActionModule)
    action._task = SimpleNamespace(args=args, check_mode=check)

    def execute(module_name: str, module_args: dict[str, Any], task_vars: Any) -> Any:
        calls.append((module_name, module_args))
        return dict(answers[module_name])

    monkeypatch.setattr(action, "_execute_module", execute, raising=False)
    monkeypatch.setattr(start.ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    return action.run(task_vars=task_vars or {}), calls


BASE = {"services": [WORKER, FLOWER], "hostname": "w1.example", "shim": "qsetup_shim",
        "flower": {"host": "0.0.0.0", "port": 5555}, "code_changed": False,
        "changed_venvs": [], "changed_services": []}  # fmt: skip


def test_started_workers_are_waited_for_by_their_exact_node_names_in_the_same_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = dict(BASE, units=[WORKER["unit"]])
    answers = {
        "qsetup_services": {
            "changed": True,
            "started": [WORKER["unit"]],
            "launched": [WORKER["unit"]],
            "answered": ["a-1@w1.example"],
        },
    }
    result, calls = _run(monkeypatch, args, answers)
    assert [c[0] for c in calls] == ["qsetup_services"]  # one module run on the host
    assert calls[0][1]["wait"] == {
        "units": [{"unit": WORKER["unit"], "python": "/usr/bin/python3", "user": "celery",
                   "env_file": "/etc/qsetup/a.env", "node": "a-1@w1.example"}],
        "shim": "qsetup_shim",
        "listen": {"host": "0.0.0.0", "port": 5555, "unit": FLOWER["unit"]},
    }  # fmt: skip
    assert result["changed"] and result["answered"] == ["a-1@w1.example"]
    assert "add_group" not in result  # it runs the new code already


def test_an_app_that_does_not_load_on_another_host_stops_this_one_before_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The code gate: w2's app check failed, so w1 (new code, a unit to start) swaps
    nothing and starts nothing; a host whose check passed or did not run does not count."""
    task_vars = {
        "ansible_play_hosts_all": ["w1", "w2", "w3", "mq"],
        "ansible_play_hosts": ["w1", "w3", "mq"],  # w2 failed its check
        "hostvars": {
            "w1": {"qsetup_service_files": {"problems": []}},
            "w2": {"qsetup_service_files": {"failed": True, "problems": ["the app does not load"]}},
            "w3": {"qsetup_service_files": {"skipped": True}},
            "mq": {},
        },
    }
    read: list[str] = []

    class _HostVars(dict[str, Any]):
        def __getitem__(self, host: str) -> Any:
            read.append(host)
            return super().__getitem__(host)

    task_vars["hostvars"] = _HostVars(task_vars["hostvars"])
    args = dict(BASE, code_dir="/opt/qsetup/app", units=[WORKER["unit"]], code_changed=True)
    result, calls = _run(monkeypatch, args, {}, task_vars=task_vars)
    assert read == ["w2"]  # only the host no longer in the play
    assert calls == []
    assert result["failed"] and not result["changed"]
    assert result["msg"] == (
        "not restarted: the app does not load on w2; the old code keeps running"
    )
    assert "add_group" not in result
    # w2 failed for another reason (its packages): the app check does not stop w1
    task_vars["hostvars"]["w2"] = {"qsetup_service_files": {"problems": []}}
    answers = {"qsetup_services": {"changed": True, "started": [], "launched": []}}
    result, calls = _run(monkeypatch, args, answers, task_vars=task_vars)
    assert [c[0] for c in calls] == ["qsetup_services"] and not result.get("failed")


def test_a_running_service_whose_code_changed_queues_the_host_without_a_round_trip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result, calls = _run(monkeypatch, dict(BASE, code_changed=True), {})
    assert calls == []
    assert result["restart"] == [WORKER["unit"]] and result["add_group"] == "qsetup_rolling"


def test_a_failed_start_is_reported_and_nothing_is_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {"qsetup_services": {"failed": True, "msg": "Unable to start service x"}}
    result, calls = _run(monkeypatch, dict(BASE, units=[FLOWER["unit"]]), answers)
    assert [c[0] for c in calls] == ["qsetup_services"]
    assert result["failed"] and result["msg"] == "Unable to start service x"


def test_check_mode_waits_for_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"qsetup_services": {"changed": True, "started": [FLOWER["unit"]]}}
    _, calls = _run(monkeypatch, dict(BASE, units=[FLOWER["unit"]]), answers, check=True)
    assert [c[0] for c in calls] == ["qsetup_services"] and "wait" not in calls[0][1]


def test_a_running_unit_that_was_only_disabled_is_enabled_and_still_restarted_onto_new_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {
        "qsetup_services": {
            "changed": True,
            "started": [WORKER["unit"]],
            "launched": [],
            "answered": ["a-1@w1.example"],
        },
    }
    result, _ = _run(monkeypatch, dict(BASE, units=[WORKER["unit"]], code_changed=True), answers)
    assert result["restart"] == [WORKER["unit"]] and result["add_group"] == "qsetup_rolling"
