"""qsetup status: JSON shape, the table, the CLI's exit codes, secrets never shown."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner
from unitdata import BASE_INVENTORY, BASE_SECRETS, WriteInventory

from qsetup.cli import app
from qsetup.status.check import effective_timeout, scrub
from qsetup.status.model import (
    BrokerNode,
    BrokerStatus,
    Drift,
    FlowerStatus,
    HostStatus,
    QueueStatus,
    SystemStatus,
    UnitStatus,
    WorkerNode,
)
from qsetup.ui.report import status_json, status_view

runner = CliRunner()


def _status(problems: tuple[str, ...] = ()) -> SystemStatus:
    unit = UnitStatus("rabbitmq-server.service", "broker", "loaded", "active", "running",
                      "2024-01-01T00:00:00+00:00", 0)  # fmt: skip
    worker = UnitStatus("qsetup-worker-default@1.service", "worker", "loaded", "inactive",
                        "dead", None, 2)  # fmt: skip
    return SystemStatus(
        hosts=(
            HostStatus(
                "rabbit1",
                "10.0.0.1",
                ("broker", "flower"),
                True,
                None,
                "rabbit1",
                (unit,),
                (),
                "2.2.0",
                "3.10.8-1",
            ),
            HostStatus(
                "worker1",
                "10.0.0.2",
                ("worker",),
                True,
                None,
                "worker1",
                (worker,),
                (("/opt/qsetup/venvs/default/bin/celery", "5.4.0"),),
                None,
                None,
            ),
            HostStatus(
                "worker2",
                "10.0.0.3",
                ("worker",),
                False,
                "no route to host",
                None,
                (),
                (),
                None,
                None,
            ),
        ),  # fmt: skip
        broker=BrokerStatus(
            "rabbit1",
            "http://10.0.0.1:15672/api",
            None,
            "3.10.8",
            "25.2.3",
            (BrokerNode("rabbit@rabbit1", True, False, False, 1, 2, 3, 4),),
            ("/", "orders"),
            ("orders", "qsetup-admin"),
            (Drift("user", "intruder", "extra", "on the broker, not in the inventory"),),
            (
                QueueStatus("orders", "celery", 3, 1, 0),
                QueueStatus("orders", "x@y.celery.pidbox", 0, 0, 1),
            ),
        ),  # fmt: skip
        workers=(
            WorkerNode(
                "default-1@worker1",
                "worker1",
                "default",
                "qsetup-worker-default@1.service",
                "orders",
                True,
                True,
                ("proj.add",),
                1,
            ),
        ),  # fmt: skip
        flower=FlowerStatus("rabbit1", "http://10.0.0.1:5555/api/workers", 401, 200, None),
        problems=problems,
        checked_at="2024-01-01T00:00:00+00:00",
        seconds=1.234,
    )


def test_json_shape() -> None:
    data = status_json(_status(("worker2: unreachable (10.0.0.3): no route to host",)))
    json.dumps(data)  # serialisable
    assert data["healthy"] is False
    assert data["problems"] == ["worker2: unreachable (10.0.0.3): no route to host"]
    assert data["elapsed_seconds"] == 1.23
    assert set(data) == {"healthy", "problems", "checked_at", "elapsed_seconds", "hosts",
                         "broker", "workers", "flower", "tls", "beat"}  # fmt: skip
    assert data["tls"] is None and data["beat"] is None
    assert data["hosts"]["worker2"] == {
        "reachable": False,
        "error": "no route to host",
        "address": "10.0.0.3",
        "hostname": None,
        "roles": ["worker"],
        "units": {},
        "unexpected_units": [],
        "celery_versions": {},
        "flower_version": None,
        "rabbitmq_package": None,
        "deprecated_features_used": [],
        "results": None,
    }
    unit = data["hosts"]["worker1"]["units"]["qsetup-worker-default@1.service"]
    assert unit == {
        "role": "worker",
        "ok": False,
        "load_state": "loaded",
        "active_state": "inactive",
        "sub_state": "dead",
        "since": None,
        "restarts": 2,
    }
    assert data["hosts"]["worker1"]["celery_versions"] == {
        "/opt/qsetup/venvs/default/bin/celery": "5.4.0"
    }
    broker = data["broker"]
    assert broker["drift"] == [
        {"kind": "user", "name": "intruder", "state": "extra",
         "detail": "on the broker, not in the inventory"}
    ]  # fmt: skip
    assert broker["queues"][0] == {
        "vhost": "orders", "name": "celery", "ready": 3, "unacked": 1, "consumers": 0
    }  # fmt: skip
    assert broker["nodes"][0]["mem_alarm"] is False
    assert data["workers"]["default-1@worker1"]["answers_ping"] is True
    assert data["workers"]["default-1@worker1"]["registered"] == ["proj.add"]
    assert data["flower"]["ok"] is True


def _render(status: SystemStatus) -> str:
    buf = StringIO()
    Console(file=buf, width=200, color_system=None).print(status_view(status))
    return buf.getvalue()


def test_table_groups_by_role_and_ends_with_a_verdict() -> None:
    text = _render(_status(("worker2: unreachable (10.0.0.3): no route to host",)))
    for words in ("rabbitmq-server.service", "management API", "queue orders/celery",
                  "user intruder", "qsetup-worker-default@1.service", "node default-1@worker1",
                  "unreachable", "no route to host", "/api/workers"):  # fmt: skip
        assert words in text, words
    assert "pidbox" not in text
    assert text.rstrip().splitlines()[-1].startswith("degraded: 1 problem(s) on worker2")
    healthy = _render(_status())
    assert healthy.rstrip().splitlines()[-1].startswith("healthy: 3 hosts reachable")


def test_scrub_hides_secrets() -> None:
    assert scrub(["a pw-123456 b", "none"], ["pw-123456", ""]) == ("a *** b", "none")


@pytest.fixture
def inventory(write_inventory: WriteInventory) -> Path:
    return write_inventory(BASE_INVENTORY, BASE_SECRETS)


def test_timeout_defaults_to_the_inventory_at_most_five(inventory: Path) -> None:
    from qsetup.inventory.loader import load_inventory

    loaded = load_inventory(inventory)
    assert effective_timeout(loaded, None) == 5.0
    assert effective_timeout(loaded, 2.5) == 2.5


def _patch(monkeypatch: pytest.MonkeyPatch, result: Any) -> list[Any]:
    calls: list[Any] = []

    def fake(loaded: Any, timeout: Any = None, **_: Any) -> Any:
        calls.append(timeout)
        if isinstance(result, BaseException):
            raise result
        return result

    monkeypatch.setattr("qsetup.status.check.check_status", fake)
    monkeypatch.setattr("qsetup.status.ssh.start_reading", lambda *_: None)  # no host
    return calls


def test_cli_healthy_exit_0(inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _patch(monkeypatch, _status())
    res = runner.invoke(app, ["status", "--inventory", str(inventory), "--timeout", "2"])
    assert res.exit_code == 0, res.output
    assert "healthy" in res.output
    assert calls == [2.0]


def test_cli_degraded_exit_3_json(inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _patch(monkeypatch, _status(("worker2: unreachable (10.0.0.3): no route to host",)))
    res = runner.invoke(app, ["status", "--inventory", str(inventory), "--json"])
    assert res.exit_code == 3, res.output
    data = json.loads(res.stdout)
    assert data["healthy"] is False and data["problems"]


def test_status_through_main_ends_without_teardown_after_its_report(
    inventory: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The console script: the report is out (flushed) and the code is status's own."""
    import os
    import sys

    import qsetup.cli as cli

    ended: list[int] = []

    def quick(code: int) -> None:
        ended.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(os, "_exit", quick)
    for problems, code in (((), 0), (("worker2: unreachable (10.0.0.3): no route",), 3)):
        _patch(monkeypatch, _status(problems))
        monkeypatch.setattr(sys, "argv", ["qsetup", "status", "-i", str(inventory), "--json"])
        with pytest.raises(SystemExit):
            cli.main()
        assert ended.pop() == code
        assert json.loads(capsys.readouterr().out)["healthy"] is (code == 0)
    # status on bad input, and every other command, exit the ordinary way
    monkeypatch.setattr(sys, "argv", ["qsetup", "status", "-i", str(inventory.parent / "no.yml")])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert (exited.value.code, ended) == (1, [])
    monkeypatch.setattr(sys, "argv", ["qsetup", "validate", "-i", str(inventory)])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert (exited.value.code, ended) == (0, [])


def test_cli_bad_inventory_exit_1(tmp_path: Path) -> None:
    res = runner.invoke(app, ["status", "--inventory", str(tmp_path / "nope.yml")])
    assert res.exit_code == 1
    assert "not found" in res.output


def test_cli_internal_error_exit_4(inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _patch(monkeypatch, RuntimeError("boom"))
    res = runner.invoke(app, ["status", "--inventory", str(inventory)])
    assert res.exit_code == 4
    assert "internal error" in res.output and "Traceback" not in res.output


def test_cli_watch_json_prints_a_line_per_round_and_ends_on_ctrl_c(
    inventory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rounds = [_status(), _status(("worker2: unreachable (10.0.0.3): no route to host",))]

    def fake(loaded: Any, timeout: Any = None, **_: Any) -> Any:
        if not rounds:
            raise KeyboardInterrupt
        return rounds.pop(0)

    monkeypatch.setattr("qsetup.status.check.check_status", fake)
    monkeypatch.setattr("qsetup.status.ssh.start_reading", lambda *_: None)  # no host
    monkeypatch.setattr("time.sleep", lambda _s: None)
    res = runner.invoke(app, ["status", "--inventory", str(inventory), "--json", "--watch", "1"])
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 2
    assert [json.loads(line)["healthy"] for line in lines] == [True, False]
    assert res.exit_code == 3  # the last status's code


def test_no_secret_in_any_output(inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _patch(monkeypatch, _status())
    for args in ([], ["--json"]):
        res = runner.invoke(app, ["status", "--inventory", str(inventory), *args])
        for value in BASE_SECRETS.values():
            assert value not in res.output


def test_cli_watch_on_a_terminal_refreshes_in_place(
    inventory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rounds = [_status(("worker2: unreachable (10.0.0.3): no route to host",)), _status()]

    def fake(loaded: Any, timeout: Any = None, **_: Any) -> Any:
        if not rounds:
            raise KeyboardInterrupt
        return rounds.pop(0)

    screen = StringIO()
    monkeypatch.setattr("qsetup.cli.out", Console(file=screen, force_terminal=True, width=160))
    monkeypatch.setattr("qsetup.status.check.check_status", fake)
    monkeypatch.setattr("qsetup.status.ssh.start_reading", lambda *_: None)  # no host
    monkeypatch.setattr("time.sleep", lambda _s: None)
    res = runner.invoke(app, ["status", "--inventory", str(inventory), "--watch", "2"])
    assert res.exit_code == 0  # the last round was healthy
    text = screen.getvalue()
    assert "degraded: 1 problem(s)" in text and "healthy: 3 hosts" in text
    assert "\x1b[" in text  # cursor movement: the table was redrawn in place


def test_unexpected_units_in_json_and_table() -> None:
    from dataclasses import replace

    stray = UnitStatus("qsetup-worker-old@2.service", "unexpected", "loaded", "active", "running",
                       "2024-01-01T00:00:00+00:00", 0, "enabled")  # fmt: skip
    line = (
        "worker1: unit qsetup-worker-old@2.service: unexpected (the inventory does not put it "
        "on worker1; active (running), enabled); the next deploy removes it"
    )
    base = _status((line,))
    hosts = (base.hosts[0], replace(base.hosts[1], unexpected_units=(stray,)), base.hosts[2])
    status = replace(base, hosts=hosts)
    data = status_json(status)
    assert data["hosts"]["worker1"]["unexpected_units"] == [
        {"unit": "qsetup-worker-old@2.service", "load_state": "loaded", "active_state": "active",
         "sub_state": "running", "unit_file_state": "enabled",
         "since": "2024-01-01T00:00:00+00:00"}
    ]  # fmt: skip
    assert "qsetup-worker-old@2.service" not in data["hosts"]["worker1"]["units"]
    text = _render(status)
    row = next(r for r in text.splitlines() if "qsetup-worker-old@2.service" in r and "│" in r)
    assert "unexpected" in row and "active (running), enabled" in row


def test_the_firewalls_oneshot_is_ok_once_it_ran_a_worker_that_exited_is_not() -> None:
    def unit(role: str, sub: str) -> UnitStatus:
        return UnitStatus(f"qsetup-{role}.service", role, "loaded", "active", sub, None, 0)

    assert unit("firewall", "exited").ok and unit("firewall", "running").ok
    assert not unit("worker", "exited").ok and unit("worker", "running").ok


def test_the_result_backend_has_its_row_and_its_json() -> None:
    from dataclasses import replace

    from qsetup.status.model import ResultsStatus

    status = _status()
    unit = UnitStatus("redis-server.service", "results", "loaded", "active", "running", None, 0)
    ping = ResultsStatus(None, "7.0.15", "master", "1.02M", True, 5)
    worker = replace(status.hosts[1], units=(*status.hosts[1].units, unit), results=ping)
    status = replace(status, hosts=(status.hosts[0], worker, *status.hosts[2:]))
    text = _render(status)
    assert "redis 7.0.15 master, 1.02M used, AOF on, 5 clients" in text
    assert "redis-server.service" in text
    row = status_json(status)["hosts"]["worker1"]["results"]
    assert row == {"ok": True, "error": None, "version": "7.0.15", "role": "master",
                   "used_memory": "1.02M", "aof_enabled": True, "connected_clients": 5}  # fmt: skip
    down = replace(worker, results=ResultsStatus("Connection refused", "", "", "", False, None))
    text = _render(replace(status, hosts=(status.hosts[0], down, *status.hosts[2:])))
    assert "no answer" in text and "Connection refused" in text
