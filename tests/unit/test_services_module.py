"""The start module (playbooks/library/qsetup_services.py): swap, reload, enable, start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from unitdata import playbook_module

services: Any = playbook_module("library/qsetup_services.py")


class Done(Exception):
    """exit_json or fail_json was called."""


class Systemd:
    """A fake host: systemctl answers from a table of unit states, records calls."""

    def __init__(self, states: dict[str, tuple[str, str]], fail_start: set[str] = frozenset()):
        self.states = {u: {"active": a, "file": f} for u, (a, f) in states.items()}
        self.fail_start = set(fail_start)
        self.calls: list[list[str]] = []

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(argv)
        verb, units = argv[1], [a for a in argv[2:] if not a.startswith("-")]
        if verb == "show":
            units = argv[argv.index("--") + 1 :]
            blocks = [
                f"Id={u}\nActiveState={self.states[u]['active']}\n"
                f"UnitFileState={self.states[u]['file']}"
                for u in units
            ]
            return 0, "\n\n".join(blocks) + "\n", ""
        if verb == "enable":
            for u in units:
                self.states[u]["file"] = "enabled"
        if verb == "start":
            for u in units:
                if u not in self.fail_start:
                    self.states[u]["active"] = "active"
            if self.fail_start & set(units):
                return 1, "", "Job for x failed because the control process exited.\n"
        return 0, "", ""


class FakeModule:
    def __init__(self, params: dict[str, Any], host: Systemd, check: bool = False) -> None:
        self.params = {
            "code_dir": None,
            "daemon_reload": False,
            "reset_failed": [],
            "restart": [],
            "no_block": False,
            **params,
        }
        self.check_mode = check
        self.host = host
        self.result: dict[str, Any] = {}

    def run_command(self, argv: list[str]) -> tuple[int, str, str]:
        return self.host.run(argv)

    def exit_json(self, **kw: Any) -> None:
        self.result = kw
        raise Done

    def fail_json(self, **kw: Any) -> None:
        self.result = {"failed": True, **kw}
        raise Done


def _run(monkeypatch: pytest.MonkeyPatch, module: FakeModule) -> dict[str, Any]:
    monkeypatch.setattr(services, "AnsibleModule", lambda **_kw: module)
    with pytest.raises(Done):
        services.main()
    return module.result


def test_only_units_not_enabled_or_not_active_are_touched(monkeypatch: pytest.MonkeyPatch) -> None:
    host = Systemd(
        {
            "w@1.service": ("active", "enabled"),
            "w@2.service": ("inactive", "disabled"),
            "flower.service": ("inactive", "enabled"),
        }
    )
    units = ["w@1.service", "w@2.service", "flower.service"]
    result = _run(monkeypatch, FakeModule({"units": units}, host))
    assert result["started"] == ["w@2.service", "flower.service"]
    assert result["changed"] is True
    assert ["systemctl", "enable", "--", "w@2.service"] in host.calls
    assert ["systemctl", "start", "--", "w@2.service", "flower.service"] in host.calls
    assert all(s["active"] == "active" and s["file"] == "enabled" for s in host.states.values())


def test_everything_running_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    host = Systemd({"w@1.service": ("active", "enabled")})
    result = _run(monkeypatch, FakeModule({"units": ["w@1.service"]}, host))
    assert result == {"changed": False, "started": [], "launched": [], "swapped": False}
    assert [c[1] for c in host.calls] == ["show"]


def test_a_unit_that_fails_to_start_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    host = Systemd(
        {"w@1.service": ("inactive", "enabled"), "w@2.service": ("inactive", "enabled")},
        fail_start={"w@2.service"},
    )
    result = _run(monkeypatch, FakeModule({"units": ["w@1.service", "w@2.service"]}, host))
    assert result["failed"] is True
    assert result["msg"].startswith("Unable to start service w@2.service: Job for x failed")


def test_check_mode_reports_and_runs_only_reads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    code = tmp_path / "app"
    (tmp_path / "app.next").mkdir()
    host = Systemd({"w@1.service": ("inactive", "disabled")})
    params = {"units": ["w@1.service"], "code_dir": str(code), "daemon_reload": True}
    result = _run(monkeypatch, FakeModule(params, host, check=True))
    assert result["started"] == ["w@1.service"] and result["swapped"] is True
    assert [c[1] for c in host.calls] == ["show"]
    assert not code.exists() and (tmp_path / "app.next").is_dir()


def test_reload_and_reset_come_before_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    host = Systemd({"w@1.service": ("failed", "enabled")})
    params = {"units": ["w@1.service"], "daemon_reload": True, "reset_failed": ["w@1.service"]}
    _run(monkeypatch, FakeModule(params, host))
    assert [c[1] for c in host.calls] == ["daemon-reload", "reset-failed", "show", "start"]


def test_swap_puts_the_staged_code_and_archive_in_place(tmp_path: Path) -> None:
    live = tmp_path / "app"
    live.mkdir()
    (live / "old.py").write_text("old")
    (tmp_path / "app.tar").write_text("old tar")
    (tmp_path / "app.next").mkdir()
    (tmp_path / "app.next" / "new.py").write_text("new")
    (tmp_path / "app.next.tar").write_text("new tar")
    (tmp_path / "app.old").mkdir()  # a leftover of an interrupted swap
    services.swap_code(str(live))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app", "app.tar"]
    assert [p.name for p in live.iterdir()] == ["new.py"]
    assert (tmp_path / "app.tar").read_text() == "new tar"


def test_first_swap_without_live_code(tmp_path: Path) -> None:
    (tmp_path / "app.next").mkdir()
    (tmp_path / "app.next.tar").write_text("tar")
    services.swap_code(str(tmp_path / "app"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app", "app.tar"]


def test_a_running_unit_that_is_not_enabled_is_enabled_not_launched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = Systemd({"w@1.service": ("active", "disabled")})
    result = _run(monkeypatch, FakeModule({"units": ["w@1.service"]}, host))
    assert result["started"] == ["w@1.service"] and result["launched"] == []


def _wait(unit: str) -> dict[str, str]:
    return {"unit": unit, "python": "/p", "user": "celery", "env_file": "/e", "node": unit[:3]}


def test_the_same_run_waits_only_for_what_it_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start and ping gate in one module run: a unit already running is not pinged, a
    Flower that was not started is not waited for, a silent node fails the run."""
    asked: list[tuple[list[str], Any]] = []
    silent: list[str] = []

    def wait_for(units: list[Any], nodes: list[str], shim: str, listen: Any, seconds: int) -> Any:
        asked.append((nodes, listen))
        assert [u["unit"] for u in units] == ["w@2.service"] and shim == "s" and seconds == 60
        return list(silent)

    monkeypatch.setattr(services, "wait_for", wait_for)
    host = Systemd({"w@1.service": ("active", "enabled"), "w@2.service": ("inactive", "enabled")})
    wait = {
        "units": [_wait("w@1.service"), _wait("w@2.service")],
        "shim": "s",
        "listen": {"host": "0.0.0.0", "port": 5555, "unit": "flower.service"},
    }
    result = _run(monkeypatch, FakeModule({"units": list(host.states), "wait": wait}, host))
    assert asked == [(["w@2"], None)]
    assert result["answered"] == ["w@2"] and not result.get("failed")

    silent.append("w@2.service (node w@2) does not answer ping; its journal ends: x")
    host = Systemd({"w@2.service": ("inactive", "enabled")})
    result = _run(monkeypatch, FakeModule({"units": ["w@2.service"], "wait": wait}, host))
    assert result["failed"] and result["msg"] == silent[0] and result["answered"] == []
    # nothing started: no ping at all
    asked.clear()
    _run(monkeypatch, FakeModule({"units": ["w@2.service"], "wait": wait}, host))
    assert asked == []
