"""The package module (playbooks/library/qsetup_packages.py): services held while apt runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from unitdata import playbook_module

pkgs: Any = playbook_module("library/qsetup_packages.py")


class _Done(Exception):
    def __init__(self, failed: bool, result: dict[str, Any]) -> None:
        self.failed, self.result = failed, result


class FakeModule:
    """Stands in for AnsibleModule: records commands, answers with scripted results."""

    def __init__(self, params: dict[str, Any], answers: list[tuple[int, str, str]]) -> None:
        self.params = {"hold_services": True, "lock_timeout": 120, **params}
        self.check_mode = False
        self.answers = answers
        self.calls: list[tuple[list[str], bool]] = []

    def run_command(self, argv: list[str], environ_update: dict[str, str]) -> tuple[int, str, str]:
        assert environ_update["DEBIAN_FRONTEND"] == "noninteractive"
        self.calls.append((argv, pkgs.POLICY_RC.exists()))
        return self.answers.pop(0)

    def exit_json(self, **result: Any) -> None:
        raise _Done(False, result)

    def fail_json(self, **result: Any) -> None:
        raise _Done(True, result)


def _run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, module: FakeModule
) -> tuple[bool, dict[str, Any]]:
    monkeypatch.setattr(pkgs, "POLICY_RC", tmp_path / "policy-rc.d")
    monkeypatch.setattr(pkgs, "AnsibleModule", lambda **_kw: module)
    with pytest.raises(_Done) as done:
        pkgs.main()
    return done.value.failed, done.value.result


def test_services_held_during_apt_and_released_after(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    module = FakeModule({"names": ["rabbitmq-server", "python3-venv"]}, [(0, "", "")])
    failed, result = _run(monkeypatch, tmp_path, module)
    assert not failed and result["changed"]
    ((argv, held),) = module.calls
    assert argv[:2] == ["apt-get", "install"] and argv[-2:] == ["python3-venv", "rabbitmq-server"]
    assert held, "policy-rc.d must be in place while apt-get runs"
    assert not (tmp_path / "policy-rc.d").exists()


def test_released_when_apt_fails_and_the_failure_names_apts_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    err = "Reading package lists...\nE: Unable to locate package nosuch\n"
    module = FakeModule({"names": ["nosuch"]}, [(100, "", err)])
    failed, result = _run(monkeypatch, tmp_path, module)
    assert failed and "E: Unable to locate package nosuch" in result["msg"]
    assert not (tmp_path / "policy-rc.d").exists()


def test_a_policy_rc_d_qsetup_did_not_create_is_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    own = tmp_path / "policy-rc.d"
    own.write_text("#!/bin/sh\nexit 0\n")
    module = FakeModule({"names": ["celery"]}, [(0, "", "")])
    _run(monkeypatch, tmp_path, module)
    assert own.read_text() == "#!/bin/sh\nexit 0\n"


def test_stale_lists_refreshed_once_then_retried(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fetch = "E: Failed to fetch http://deb/pool/r.deb  404  Not Found\n"
    module = FakeModule({"names": ["celery"]}, [(100, "", fetch), (0, "", ""), (0, "", "")])
    failed, _result = _run(monkeypatch, tmp_path, module)
    assert not failed
    assert [argv[:2] for argv, _held in module.calls] == [
        ["apt-get", "install"],
        ["apt-get", "update"],
        ["apt-get", "install"],
    ]


def test_check_mode_installs_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = FakeModule({"names": ["celery"]}, [])
    module.check_mode = True
    failed, result = _run(monkeypatch, tmp_path, module)
    assert not failed and result["changed"] and module.calls == []
