"""Packages and virtualenv builds (playbooks/library/qsetup_files.py): packages first,
services held while apt runs (module_utils/qsetup_apt.py), then builds detached from the
module run (module_utils/qsetup_venv.py) that the files step waits for
(module_utils/qsetup_jobs.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from unitdata import playbook_module

pkgs: Any = playbook_module("library/qsetup_files.py")
apt: Any = sys.modules["ansible.module_utils.qsetup_apt"]
venv: Any = playbook_module("module_utils/qsetup_venv.py")
jobs: Any = playbook_module("module_utils/qsetup_jobs.py")


class _Done(Exception):
    def __init__(self, failed: bool, result: dict[str, Any]) -> None:
        self.failed, self.result = failed, result


class FakeModule:
    """Stands in for AnsibleModule: records commands, answers with scripted results."""

    def __init__(self, params: dict[str, Any], answers: list[tuple[int, str, str]]) -> None:
        self.params = {"venvs": [], "groups": [], "users": [], "dirs": [], "files": [], **params}
        self._diff = False
        self.check_mode = False
        self.answers = answers
        self.calls: list[tuple[list[str], bool]] = []

    def run_command(self, argv: list[str], environ_update: dict[str, str]) -> tuple[int, str, str]:
        assert environ_update["DEBIAN_FRONTEND"] == "noninteractive"
        self.calls.append((argv, apt.POLICY_RC.exists()))
        return self.answers.pop(0)

    def exit_json(self, **result: Any) -> None:
        raise _Done(False, result)

    def fail_json(self, **result: Any) -> None:
        raise _Done(True, result)


def _run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, module: FakeModule
) -> tuple[bool, dict[str, Any]]:
    monkeypatch.setattr(apt, "POLICY_RC", tmp_path / "policy-rc.d")
    monkeypatch.setattr(pkgs, "AnsibleModule", lambda **_kw: module)
    with pytest.raises(_Done) as done:
        pkgs.main()
    return done.value.failed, done.value.result


def test_services_held_during_apt_and_released_after(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    module = FakeModule({"packages": ["rabbitmq-server", "python3-venv"]}, [(0, "", "")])
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
    module = FakeModule({"packages": ["nosuch"]}, [(100, "", err)])
    failed, result = _run(monkeypatch, tmp_path, module)
    assert failed and "E: Unable to locate package nosuch" in result["msg"]
    assert not (tmp_path / "policy-rc.d").exists()


def test_a_policy_rc_d_qsetup_did_not_create_is_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    own = tmp_path / "policy-rc.d"
    own.write_text("#!/bin/sh\nexit 0\n")
    module = FakeModule({"packages": ["celery"]}, [(0, "", "")])
    _run(monkeypatch, tmp_path, module)
    assert own.read_text() == "#!/bin/sh\nexit 0\n"


def test_stale_lists_refreshed_once_then_retried(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fetch = "E: Failed to fetch http://deb/pool/r.deb  404  Not Found\n"
    module = FakeModule({"packages": ["celery"]}, [(100, "", fetch), (0, "", ""), (0, "", "")])
    failed, _result = _run(monkeypatch, tmp_path, module)
    assert not failed
    assert [argv[:2] for argv, _held in module.calls] == [
        ["apt-get", "install"],
        ["apt-get", "update"],
        ["apt-get", "install"],
    ]


def test_check_mode_installs_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = FakeModule({"packages": ["celery"]}, [])
    module.check_mode = True
    failed, result = _run(monkeypatch, tmp_path, module)
    assert not failed and result["changed"] and module.calls == []


def test_a_build_runs_detached_and_its_failure_comes_back_through_the_results_file(
    tmp_path: Path,
) -> None:
    """A real build process: it outlives nothing here, but writes what the wait reads."""
    spec = {"name": "w", "path": str(tmp_path / "venv"), "site_packages": False,
            "packages": [str(tmp_path / "no-such-project")], "marker": "/x"}  # fmt: skip
    (job,) = venv.start_builds([spec], tmp_path / "jobs")
    assert job["item"] == spec and job["ansible_job_id"].startswith("qsetup-")
    assert oct((tmp_path / "jobs").stat().st_mode & 0o777) == "0o700"
    wanted = {"jid": job["ansible_job_id"], "name": "w", "results_file": job["results_file"]}
    finished, why, changed = jobs.wait_jobs([wanted], 120)
    assert finished and changed == [] and len(why) == 1
    assert why[0].startswith("building the virtualenv w failed: ")
    assert "pip install failed" in why[0] or "python3 -m venv failed" in why[0]
    assert not Path(job["results_file"] + ".spec").exists()  # the spec is read, then removed
    result = json.loads(Path(job["results_file"]).read_text())
    assert result["failed"] is True and "started" not in result
