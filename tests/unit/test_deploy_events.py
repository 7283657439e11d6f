"""The deploy's result collector over recorded ansible-runner events (no hosts, no Ansible).

Each event below has the shape ansible-runner hands ``event_handler``; the collector
turns them into what ``qsetup deploy`` reports: failures with a message a user can act
on (never a secret), the diffs ``--diff`` shows, and per-host stats. The last test
replays the same events through ``run_deploy`` with ansible-runner stubbed out, to the
JSON ``deploy --json`` prints.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from unitdata import WriteInventory

from qsetup.converge.compare import LEAVE, Difference
from qsetup.inventory.loader import load_inventory
from qsetup.ops import deploy
from qsetup.ops.deploy import DeployOptions, run_deploy
from qsetup.remote.runner import DeployEvent, HostResult, TaskFailure, _Collector
from qsetup.ui.report import deploy_json

UNIT = "/etc/systemd/system/qsetup-worker-default@.service"
NO_LOG = (
    "the output has been hidden due to the fact that 'no_log: true' was specified for this result"
)
SECRET = "orders-pw-0123456789abcdef"


def event(kind: str, **data: Any) -> dict[str, Any]:
    return {"uuid": f"{kind}-{len(data)}", "event": kind, "event_data": data}


EVENTS: list[dict[str, Any]] = [
    event("playbook_on_start"),
    event("playbook_on_play_start", play="Deploy qsetup"),
    event("playbook_on_task_start", task="Install the unit files"),
    # changed, with a diff of one file
    event(
        "runner_on_ok",
        host="worker1",
        task="Install the unit files",
        res={
            "changed": True,
            "diff": {
                "before": "[Service]\nExecStart=celery --concurrency=2\n",
                "after": "[Service]\nExecStart=celery --concurrency=3\n",
                "before_header": UNIT,
                "after_header": UNIT,
            },
        },
    ),
    # unchanged: no diff, an "ok" event
    event(
        "runner_on_ok",
        host="rabbit1",
        task="Install the unit files",
        res={"changed": False, "diff": {"before": "same\n", "after": "same\n"}},
    ),
    # a loop: one item changed (its diff), one not
    event(
        "runner_on_ok",
        host="worker1",
        task="Write the environment files",
        res={
            "changed": True,
            "results": [
                {
                    "item": {"dest": "/etc/qsetup/worker-default.env"},
                    "changed": True,
                    "diff": [{"before": "A=1\n", "after": "A=2\n", "after_header": "env"}],
                },
                {"item": {"dest": "/etc/qsetup/beat.env"}, "changed": False, "diff": []},
            ],
        },
    ),
    # no_log: a changed secret file's diff never reaches the result
    event(
        "runner_on_ok",
        host="rabbit1",
        task="Write the broker's secrets",
        res={"censored": NO_LOG, "changed": True},
    ),
    event("runner_on_skipped", host="rabbit1", task="Install Debian's Celery"),
    # a failure whose result no_log censored: the message says so, holds nothing else
    event(
        "runner_on_failed",
        host="rabbit1",
        task="Ensure the broker users exist",
        res={"censored": NO_LOG, "changed": False},
        ignore_errors=None,
    ),
    # a failed loop item names its file
    event(
        "runner_on_failed",
        host="worker1",
        task="Install the app's files",
        res={
            "failed": True,
            "results": [
                {"item": {"dest": "/etc/qsetup/a.env"}, "failed": False, "changed": False},
                {
                    "item": {"dest": "/etc/qsetup/b.env"},
                    "failed": True,
                    "msg": "Destination directory /etc/qsetup does not exist",
                },
            ],
        },
        ignore_errors=None,
    ),
    # a command that failed: the last line of stderr, not the whole traceback
    event(
        "runner_on_failed",
        host="worker1",
        task="Check that the new code imports",
        res={
            "rc": 1,
            "msg": "",
            "stderr": 'Traceback (most recent call last):\n  File "proj/tasks.py", line 3\n'
            "SyntaxError: invalid syntax\n",
        },
        ignore_errors=None,
    ),
    # a block's rescue repeating that failure to stop the host: named once
    event(
        "runner_on_failed",
        host="worker1",
        task="Report the failure",
        res={"msg": "Check that the new code imports: SyntaxError: invalid syntax"},
        ignore_errors=None,
    ),
    # an ignored failure is no failure
    event(
        "runner_on_failed",
        host="worker1",
        task="Stop the old beat (it may not exist)",
        res={"msg": "Could not find the requested service qsetup-beat.service"},
        ignore_errors=True,
    ),
    event(
        "runner_on_unreachable",
        host="flower9",
        task="Read the host's release",
        res={
            "unreachable": True,
            "msg": "Failed to connect to the host via ssh: ssh: connect to host 10.0.0.9 "
            "port 22: No route to host",
        },
    ),
    event("verbose", stdout="a line without event data"),
    {"event": "runner_on_ok"},  # no event_data at all
    event(
        "playbook_on_stats",
        ok={"rabbit1": 12, "worker1": 9},
        changed={"rabbit1": 1, "worker1": 2},
        failures={"rabbit1": 1, "worker1": 2},
        dark={"flower9": 1},
        skipped={"rabbit1": 1},
        ignored={"worker1": 1},
        rescued={},
        processed={"rabbit1": 1, "worker1": 1, "flower9": 1},
    ),
]


@pytest.fixture
def collected() -> tuple[_Collector, list[DeployEvent], list[bool]]:
    seen: list[DeployEvent] = []
    collector = _Collector(seen.append)
    returned = [collector(raw) for raw in EVENTS]
    return collector, seen, returned


def test_failures_name_host_task_and_an_actionable_message(
    collected: tuple[_Collector, list[DeployEvent], list[bool]],
) -> None:
    collector, _, _ = collected
    assert collector.failures == [
        TaskFailure(
            "rabbit1",
            "Ensure the broker users exist",
            "a task that handles secrets failed (details hidden: no_log)",
        ),
        TaskFailure(
            "worker1",
            "Install the app's files",
            "/etc/qsetup/b.env: Destination directory /etc/qsetup does not exist",
        ),
        TaskFailure("worker1", "Check that the new code imports", "SyntaxError: invalid syntax"),
        TaskFailure(
            "flower9",
            "Read the host's release",
            "unreachable: Failed to connect to the host via ssh: ssh: connect to host "
            "10.0.0.9 port 22: No route to host; power it on or check its SSH access "
            "(address, port, user, key), then run this again; no change was made there",
            unreachable=True,
        ),
    ]


def test_diffs_come_from_changed_files_only_and_never_from_no_log_results(
    collected: tuple[_Collector, list[DeployEvent], list[bool]],
) -> None:
    collector, _, _ = collected
    assert [(host, what) for host, what, _ in collector.diffs] == [
        ("worker1", f"Install the unit files: {UNIT}"),
        ("worker1", "Write the environment files: env"),
    ]
    unit_diff = collector.diffs[0][2]
    assert f"--- {UNIT} (now)" in unit_diff and f"+++ {UNIT} (after deploy)" in unit_diff
    assert "-ExecStart=celery --concurrency=2\n" in unit_diff
    assert "+ExecStart=celery --concurrency=3\n" in unit_diff
    assert " [Service]\n" in unit_diff
    assert "-A=1\n+A=2\n" in collector.diffs[1][2]


def test_stats_per_host_are_read_from_playbook_on_stats(
    collected: tuple[_Collector, list[DeployEvent], list[bool]],
) -> None:
    collector, _, _ = collected
    assert collector.stats == {
        "rabbit1": {"ok": 12, "changed": 1, "failures": 1, "skipped": 1},
        "worker1": {"ok": 9, "changed": 2, "failures": 2, "ignored": 1},
        "flower9": {"dark": 1},
    }


def test_progress_sees_every_step_and_no_event_is_dropped(
    collected: tuple[_Collector, list[DeployEvent], list[bool]],
) -> None:
    _, seen, returned = collected
    # False: ansible-runner writes no event JSON; progress still saw each event.
    assert returned == [False] * len(returned) and returned
    assert [(e.kind, e.host) for e in seen] == [
        ("play", ""),
        ("task", ""),
        ("changed", "worker1"),
        ("ok", "rabbit1"),
        ("changed", "worker1"),
        ("changed", "rabbit1"),
        ("skipped", "rabbit1"),
        ("failed", "rabbit1"),
        ("failed", "worker1"),
        ("failed", "worker1"),
        ("unreachable", "flower9"),
        ("ok", ""),  # the event without data
    ]
    assert seen[0].task == "Deploy qsetup" and seen[1].task == "Install the unit files"
    unreachable = seen[-2]
    assert unreachable.message.startswith("unreachable: Failed to connect to the host via ssh")


def test_nothing_a_secret_task_returned_reaches_failures_diffs_or_progress() -> None:
    seen: list[DeployEvent] = []
    collector = _Collector(seen.append)
    leaky = {
        "censored": NO_LOG,
        "changed": True,
        "diff": {"before": "old\n", "after": f"{SECRET}\n"},
        "msg": f"password {SECRET} refused",
    }
    collector(event("runner_on_ok", host="rabbit1", task="Set a password", res=leaky))
    collector(event("runner_on_failed", host="rabbit1", task="Set a password", res=leaky))
    text = repr((collector.failures, collector.diffs, seen))
    assert SECRET not in text
    assert collector.diffs == []


class _Runner(SimpleNamespace):
    status: str
    rc: int


def test_run_deploy_reports_what_the_events_said(
    write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ansible_runner

    calls: list[dict[str, Any]] = []

    def fake_run(**kwargs: Any) -> _Runner:
        calls.append(kwargs)
        for raw in EVENTS:
            kwargs["event_handler"](raw)
        return _Runner(status="failed", rc=2)

    monkeypatch.setattr(ansible_runner, "run", fake_run)
    monkeypatch.setattr(deploy, "start_read", lambda *_: None)  # no host is contacted
    monkeypatch.setattr(deploy, "read_differences", lambda *_: deploy.FirstRead((), False, {}))
    loaded = load_inventory(write_inventory())
    result = run_deploy(loaded, DeployOptions(diff=True))

    assert len(calls) == 1 and calls[0]["playbook"] == "site.yml"
    assert calls[0]["cmdline"] == "--diff"
    # Hosts are the inventory's (flower9 is not in it); "dark" means unreachable.
    assert result.hosts == {
        "rabbit1": HostResult(ok=12, changed=1, failed=1, skipped=1),
        "worker1": HostResult(ok=9, changed=2, failed=2),
    }
    assert result.ok is False and (result.status, result.rc) == ("failed", 2)
    assert len(result.failures) == 4 and len(result.diffs) == 2
    assert Path(result.run_dir).parent.name == "runs"

    printed = deploy_json(result)
    assert printed["ok"] is False and printed["status"] == "failed"
    assert printed["hosts"]["worker1"] == {
        "ok": 9,
        "changed": 2,
        "failed": 2,
        "skipped": 0,
        "unreachable": False,
    }
    assert printed["failures"][0] == {
        "host": "rabbit1",
        "task": "Ensure the broker users exist",
        "message": "a task that handles secrets failed (details hidden: no_log)",
    }
    assert SECRET not in repr(printed)


def test_an_unreachable_host_and_a_limit_are_reported_per_target(
    write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ansible_runner

    def fake_run(**kwargs: Any) -> _Runner:
        assert kwargs["limit"] == "worker1"
        kwargs["event_handler"](
            event("runner_on_unreachable", host="worker1", task="Gather", res={"msg": "timed out"})
        )
        kwargs["event_handler"](event("playbook_on_stats", dark={"worker1": 1}, ok={}))
        return _Runner(status="failed", rc=4)

    monkeypatch.setattr(ansible_runner, "run", fake_run)
    loaded = load_inventory(write_inventory())
    result = run_deploy(loaded, DeployOptions(limit=("worker1",)))
    assert result.hosts == {"worker1": HostResult(unreachable=True)}
    (failure,) = result.failures
    assert (failure.host, failure.unreachable) == ("worker1", True)
    assert failure.message.startswith("unreachable (10.0.0.2): timed out; power it on")
    assert deploy_json(result)["hosts"]["worker1"]["unreachable"] is True


def test_event_files_are_kept_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from qsetup.remote import runner

    monkeypatch.delenv(runner.KEEP_EVENTS_ENV, raising=False)
    event = {"event": "runner_on_ok", "event_data": {"host": "h", "task": "t", "res": {}}}
    assert runner._Collector(None, keep_events=runner.keep_events(False))(event) is False
    assert runner._Collector(None, keep_events=runner.keep_events(True))(event) is True
    monkeypatch.setenv(runner.KEEP_EVENTS_ENV, "1")
    assert runner._Collector(None, keep_events=runner.keep_events(False))(event) is True


def test_the_runs_ansible_cfg_sets_what_no_environment_variable_can() -> None:
    from qsetup.remote import runner

    cfg = runner.render_ansible_cfg(runner.ANSIBLE_CFG_DEFAULTS)
    assert cfg.splitlines()[0] == "[defaults]"
    assert "internal_poll_interval = 0.01" in cfg.splitlines()


def test_a_dead_host_met_by_a_secret_task_is_one_plain_unreachable_line() -> None:
    # The preflight's read is no_log: its unreachable result carries no SSH error.
    seen: list[DeployEvent] = []
    collector = _Collector(seen.append, addresses={"qc2": "10.213.24.12"})
    censored = {"censored": NO_LOG, "unreachable": True}
    collector(event("runner_on_unreachable", host="qc2", task="Read the host", res=censored))
    collector(event("runner_on_unreachable", host="qc2", task="Read it again", res=censored))
    assert collector.failures == [
        TaskFailure(
            "qc2",
            "Read the host",
            "unreachable (10.213.24.12): SSH could not connect; power it on or check its SSH "
            "access (address, port, user, key), then run this again; no change was made there",
            unreachable=True,
        )
    ]
    assert [e.kind for e in seen] == ["unreachable"]
    assert "details hidden" not in repr(collector.failures)


def test_a_host_lost_after_changes_says_it_was_changed() -> None:
    collector = _Collector(None, addresses={"w1": "10.0.0.5"})
    collector(event("runner_on_ok", host="w1", task="Install", res={"changed": True}))
    collector(event("runner_on_unreachable", host="w1", task="Start", res={"msg": "timed out"}))
    (failure,) = collector.failures
    assert failure.message.endswith("it was changed before it went away: run this again once "
                                    "it is back")  # fmt: skip


def test_a_command_that_exits_non_zero_is_named_by_its_own_last_words() -> None:
    seen: list[DeployEvent] = []
    collector = _Collector(seen.append)
    collector(
        event(
            "runner_on_failed",
            host="rabbit1",
            task="Drain this node (clients and queue leaders move to the other nodes)",
            res={
                "rc": 69,
                "msg": "non-zero return code",
                "stdout": "Will put node rabbit@rabbit1 into maintenance mode.",
                "stderr": "[warning] This node is being put into maintenance (drain) mode\n"
                "Error: {:badrpc, {:EXIT, :timeout}}\n",
            },
            ignore_errors=None,
        )
    )
    assert [f.message for f in collector.failures] == [
        "exit 69: Error: {:badrpc, {:EXIT, :timeout}}"
    ]


def _deploy_after_read(
    write_inventory: WriteInventory,
    monkeypatch: pytest.MonkeyPatch,
    found: tuple[Difference, ...],
    complete: bool,
    options: DeployOptions,
) -> tuple[Any, list[dict[str, Any]], list[bool]]:
    import ansible_runner

    calls: list[dict[str, Any]] = []
    reads: list[bool] = []

    def fake_run(**kwargs: Any) -> _Runner:
        calls.append(kwargs)
        kwargs["event_handler"](event("playbook_on_stats", ok={"rabbit1": 3, "worker1": 3}))
        return _Runner(status="successful", rc=0)

    def read(*_: Any) -> deploy.FirstRead:
        reads.append(True)
        return deploy.FirstRead(found, complete, {})

    monkeypatch.setattr(ansible_runner, "run", fake_run)
    monkeypatch.setattr(deploy, "start_read", lambda *_: None)  # no host is contacted
    monkeypatch.setattr(deploy, "read_differences", read)
    result = run_deploy(load_inventory(write_inventory()), options)
    return result, calls, reads


STRAY = Difference("worker1", "unmanaged", "unit qsetup-x.service", "unexpected", LEAVE)
EDITED = Difference("worker1", "file", "/etc/qsetup/a.env", "content differs", "install")


def test_nothing_to_change_anywhere_is_answered_from_the_read_without_ansible(
    write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, calls, reads = _deploy_after_read(
        write_inventory, monkeypatch, (STRAY,), True, DeployOptions()
    )
    assert reads and calls == []
    assert result.ok and not result.ansible_ran
    assert all(h.changed == 0 for h in result.hosts.values())
    printed = deploy_json(result)
    assert printed["ansible_ran"] is False
    assert printed["differences"] == [
        {"host": "worker1", "kind": "unmanaged", "object": "unit qsetup-x.service",
         "detail": "unexpected", "fix": "leave"}
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("found", "complete"),
    [((EDITED,), True), ((), False)],
    ids=["a difference", "a host did not answer the read"],
)
def test_a_difference_or_an_unread_host_takes_the_full_run(
    write_inventory: WriteInventory,
    monkeypatch: pytest.MonkeyPatch,
    found: tuple[Difference, ...],
    complete: bool,
) -> None:
    result, calls, _ = _deploy_after_read(
        write_inventory, monkeypatch, found, complete, DeployOptions(check=True)
    )
    assert len(calls) == 1 and result.ansible_ran
    assert result.differences == found


def test_tags_limit_and_verbose_go_to_ansible_without_reading_first(
    write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    for options in (
        DeployOptions(tags=("workers",)),
        DeployOptions(limit=("worker1",)),
        DeployOptions(verbose=True),
    ):
        _, calls, reads = _deploy_after_read(write_inventory, monkeypatch, (), True, options)
        assert reads == [] and len(calls) == 1, options


def _load_unsafe(text: str) -> Any:
    """A YAML file qsetup wrote for Ansible, its ``!unsafe`` values as plain strings."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def plain(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)  # type: ignore[arg-type]

    Loader.add_constructor("!unsafe", plain)
    return yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader)


def test_a_read_of_every_host_is_handed_to_ansible_which_then_reads_none_and_configures_the_changed(
    write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first read's comparison reaches each host's variables (in the private scratch
    directory, not the run directory); Ansible's preflight reads no host, and the
    configure and start plays run on the hosts where something differs."""
    import ansible_runner

    seen: dict[str, Any] = {}

    def view(clean: bool, steps: list[str]) -> dict[str, Any]:
        converge = {"clean": clean, "steps": steps}
        return {"qsetup_host": {"hostname": "h"}, "qsetup_converge": converge}

    def fake_run(**kwargs: Any) -> _Runner:
        inventory = _load_unsafe(Path(kwargs["inventory"]).read_text())
        seen["groups"] = {k: v["hosts"] for k, v in inventory["all"]["children"].items()}
        vars_dir = Path(kwargs["envvars"]["QSETUP_RUN_VARS_DIR"])
        seen["vars"] = {p.stem: _load_unsafe(p.read_text()) for p in vars_dir.glob("*.yml")}
        seen["mode"] = vars_dir.stat().st_mode & 0o777
        assert not vars_dir.is_relative_to(kwargs["private_data_dir"])  # not a run artifact
        return _Runner(status="successful", rc=0)

    views = {"rabbit1": view(False, []), "worker1": view(False, ["host/users"])}
    monkeypatch.setattr(ansible_runner, "run", fake_run)
    monkeypatch.setattr(deploy, "start_read", lambda *_: None)  # no host is contacted
    monkeypatch.setattr(
        deploy, "read_differences", lambda *_: deploy.FirstRead((EDITED,), True, views)
    )
    run_deploy(load_inventory(write_inventory()), DeployOptions())

    assert seen["groups"]["qsetup_unread"] in ({}, None)
    assert seen["groups"]["qsetup_changing"] == {"rabbit1": None, "worker1": None}
    assert seen["groups"]["qsetup_configuring"] == {"worker1": None}  # rabbit1: a start only
    assert seen["mode"] == 0o700
    assert seen["vars"]["worker1"]["qsetup_converge"]["steps"] == ["host/users"]
    assert seen["vars"]["rabbit1"]["qsetup_converge"] == {"clean": False, "steps": []}
    assert "qsetup_secret_values" in seen["vars"]["worker1"]


def test_a_host_that_did_not_answer_leaves_every_read_to_ansible(
    write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ansible_runner

    seen: dict[str, Any] = {}

    def fake_run(**kwargs: Any) -> _Runner:
        inventory = _load_unsafe(Path(kwargs["inventory"]).read_text())
        seen["groups"] = {k: v["hosts"] for k, v in inventory["all"]["children"].items()}
        vars_dir = Path(kwargs["envvars"]["QSETUP_RUN_VARS_DIR"])
        seen["vars"] = {p.stem: _load_unsafe(p.read_text()) for p in vars_dir.glob("*.yml")}
        return _Runner(status="successful", rc=0)

    monkeypatch.setattr(ansible_runner, "run", fake_run)
    monkeypatch.setattr(deploy, "start_read", lambda *_: None)  # no host is contacted
    monkeypatch.setattr(deploy, "read_differences", lambda *_: deploy.FirstRead((), False, {}))
    run_deploy(load_inventory(write_inventory()), DeployOptions())

    assert set(seen["groups"]["qsetup_unread"]) == {"rabbit1", "worker1"}
    assert seen["groups"]["qsetup_changing"] in ({}, None)
    assert seen["groups"]["qsetup_configuring"] in ({}, None)
    assert all("qsetup_converge" not in v for v in seen["vars"].values())


def test_ansible_stopping_before_any_host_failed_is_named(
    write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A playbook error (no task failed on a host) is one failure line, not silence."""
    import ansible_runner

    def fake_run(**kwargs: Any) -> _Runner:
        log = Path(kwargs["private_data_dir"]) / "artifacts" / "run" / "stdout"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(
            "PLAY [x] ***\n[ERROR]: The 'ansible.builtin.add_host' module bypasses the host"
            " loop, which is currently not supported in the free strategy.\nOrigin: x.yml\n"
        )
        return _Runner(status="failed", rc=2)

    monkeypatch.setattr(ansible_runner, "run", fake_run)
    monkeypatch.setattr(deploy, "start_read", lambda *_: None)
    monkeypatch.setattr(deploy, "read_differences", lambda *_: deploy.FirstRead((), False, {}))
    result = run_deploy(load_inventory(write_inventory()), DeployOptions())
    assert result.ok is False
    [failure] = result.failures
    assert (failure.host, failure.task) == ("", "ansible-playbook")
    assert failure.message.startswith(
        "exited 2 before any host failed: The 'ansible.builtin.add_host' module bypasses"
    )
    assert str(Path(result.run_dir) / "artifacts" / "run" / "stdout") in failure.message


def test_an_unreachable_host_says_why_the_first_read_found_it_unreachable() -> None:
    """A no_log task met the dead host (no SSH error in its result): the first read's why."""
    why = "its address does not resolve; check hosts.worker1.address"
    collector = _Collector(None, str, False, {"worker1": "w1.example"}, {"worker1": why})
    event = {
        "event": "runner_on_unreachable",
        "event_data": {"host": "worker1", "task": "Read this host", "res": {"censored": "x"}},
    }
    collector(event)
    [failure] = collector.failures
    assert failure.unreachable
    assert failure.message == (
        f"unreachable (w1.example): {why}; fix that, then run this again; no change was made there"
    )
    # Without a reason from the read, the line says what to check.
    plain = _Collector(None, str, False, {"worker1": "w1.example"})
    plain(event)
    assert plain.failures[0].message.startswith(
        "unreachable (w1.example): SSH could not connect; power it on or check its SSH access"
    )


def test_a_worker_restart_is_refused_before_any_host_when_no_rabbitmq_runs(
    write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qsetup.errors import BrokerError
    from qsetup.status import ssh
    from qsetup.status.hosts import Outcome

    loaded = load_inventory(write_inventory())
    reads: list[dict[str, Any]] = []
    state = {"ActiveState": "inactive", "SubState": "dead", "LoadState": "loaded"}

    def read_round(_loaded: Any, _timeout: float, params: dict[str, Any]) -> dict[str, Outcome]:
        reads.append(params)
        unit = {"rabbitmq-server.service": dict(state)}
        return {h: Outcome("10.0.0.1", {"units": unit}, None) for h in params}

    played: list[str] = []
    monkeypatch.setattr(ssh, "read_round", read_round)
    monkeypatch.setattr(deploy, "_run_playbook", lambda *a: played.append(a[2]) or "ran")
    with pytest.raises(BrokerError) as refused:
        deploy.run_restart(loaded, ("workers",))
    assert played == [] and list(reads[0]) == ["rabbit1"]
    assert refused.value.exit_code == 3
    assert refused.value.lines() == [
        "restart --role workers: RabbitMQ runs on no broker node (rabbit1 "
        "rabbitmq-server.service inactive (dead)); a restarted worker could not connect, "
        "so no worker was restarted; start RabbitMQ first (qsetup deploy, or qsetup restart "
        "--role broker)"
    ]
    # RabbitMQ running: the restart goes on; the broker's own restart reads nothing first.
    state.update(ActiveState="active", SubState="running")
    assert deploy.run_restart(loaded, ("workers",)) == "ran"
    assert deploy.run_restart(loaded, ("broker", "workers")) == "ran"
    assert deploy.run_restart(loaded, ("flower",)) == "ran"
    assert len(reads) == 2 and played == ["restart.yml"] * 3
