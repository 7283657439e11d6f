"""The job-wait module (playbooks/library/qsetup_job_wait.py) reads async_wrapper's files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from unitdata import FakeModule, playbook_module, run_module

wait: Any = playbook_module("library/qsetup_job_wait.py")


def test_a_running_job_is_not_finished(tmp_path: Path) -> None:
    job = tmp_path / "j1"
    job.write_text(json.dumps({"started": True, "finished": False, "ansible_job_id": "j1"}))
    assert wait.read_job(job) is None


def test_a_finished_job_is_its_modules_result(tmp_path: Path) -> None:
    job = tmp_path / "j1"
    job.write_text(json.dumps({"changed": True, "cmd": "pip install", "invocation": {}}))
    assert wait.read_job(job) == {"changed": True, "cmd": "pip install", "invocation": {}}


def test_a_half_written_file_is_read_again_later(tmp_path: Path) -> None:
    job = tmp_path / "j1"
    job.write_text('{"changed": tr')
    assert wait.read_job(job) is None


def _main(monkeypatch: pytest.MonkeyPatch, params: dict[str, Any]) -> FakeModule:
    return run_module(monkeypatch, wait, params)


def test_still_running_after_wait_answers_not_finished(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    job = tmp_path / "j1"
    job.write_text(json.dumps({"started": True, "finished": False}))
    module = _main(monkeypatch, {"jid": "j1", "results_file": str(job), "wait": 0})
    assert module.result["finished"] is False and "failed" not in module.result


def test_a_lost_job_fails_at_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = _main(monkeypatch, {"jid": "j9", "results_file": str(tmp_path / "j9"), "wait": 60})
    assert module.result["failed"] and "could not find job j9" in module.result["msg"]


def test_finished_job_printed_like_async_status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tmp_path / "j1"
    job.write_text(json.dumps({"changed": True, "failed": False}))
    _main(monkeypatch, {"jid": "j1", "results_file": str(job), "wait": 60})
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"changed": True, "failed": False, "finished": True, "ansible_job_id": "j1"}
