"""The virtualenv builds are waited for in the files step's own module run.

module_utils/qsetup_jobs.py reads async_wrapper's results files on the host;
library/qsetup_files.py installs the packages, waits for the builds, then writes the
files and each build's marker, all in one run.
"""

from __future__ import annotations

import base64
import grp
import json
import os
import pwd
from pathlib import Path
from typing import Any

import pytest
from unitdata import playbook_module, run_module

jobs: Any = playbook_module("module_utils/qsetup_jobs.py")
files: Any = playbook_module("library/qsetup_files.py")


def _job(tmp_path: Path, name: str, data: Any | None) -> dict[str, Any]:
    path = tmp_path / f"job-{name}"
    if data is not None:
        path.write_text(data if isinstance(data, str) else json.dumps(data))
    return {"jid": f"j-{name}", "results_file": str(path), "name": name}


def test_a_running_job_is_not_finished_and_a_half_written_file_is_read_again(
    tmp_path: Path,
) -> None:
    running = _job(tmp_path, "a", {"started": True, "finished": False})
    assert jobs.read_job(Path(running["results_file"])) is None
    half = _job(tmp_path, "b", '{"changed": tr')
    assert jobs.read_job(Path(half["results_file"])) is None
    assert jobs.wait_jobs([running], 0, pause=0) == (False, [], [])


def test_finished_jobs_say_what_changed_and_why_one_failed(tmp_path: Path) -> None:
    done = _job(tmp_path, "flower", {"changed": True, "cmd": "pip install"})
    same = _job(tmp_path, "w", {"changed": False})
    failed = _job(tmp_path, "x", {"failed": True, "msg": "No matching distribution"})
    lost = _job(tmp_path, "y", None)
    assert jobs.wait_jobs([done, same], 5) == (True, [], ["flower"])
    finished, why, _ = jobs.wait_jobs([failed, lost], 5)
    assert finished and why == [
        "building the virtualenv x failed: No matching distribution",
        "building the virtualenv y failed: could not find job j-y",
    ]


OWNER = {"owner": pwd.getpwuid(os.getuid()).pw_name, "group": grp.getgrgid(os.getgid()).gr_name}


def _marker(tmp_path: Path, name: str) -> dict[str, str]:
    return {"dest": str(tmp_path / f"{name}.marker"), **OWNER, "mode": "0644",
            "content": base64.b64encode(b"held\n").decode()}  # fmt: skip


def _params(tmp_path: Path, job: dict[str, Any], wait: int) -> dict[str, Any]:
    conf = {"dest": str(tmp_path / "a.conf"), **OWNER, "mode": "0644",
            "content": base64.b64encode(b"x = 1\n").decode()}  # fmt: skip
    return {"packages": [], "groups": [], "users": [], "dirs": [], "files": [conf],
            "jobs": [{**job, "marker": _marker(tmp_path, job["name"])}], "wait": wait}  # fmt: skip


def test_the_files_run_writes_markers_only_once_the_builds_succeeded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    job = _job(tmp_path, "flower", {"started": True})
    pending = run_module(monkeypatch, files, _params(tmp_path, job, 0)).result
    assert pending["pending"] and not (tmp_path / "a.conf").exists()
    Path(job["results_file"]).write_text(json.dumps({"changed": True}))
    done = run_module(monkeypatch, files, _params(tmp_path, job, 5)).result
    assert done["venvs_changed"] == ["flower"] and done["changed"]
    assert (tmp_path / "flower.marker").read_text() == "held\n"
    assert (tmp_path / "a.conf").read_text() == "x = 1\n"
    assert not Path(job["results_file"]).exists()  # read: gone
    Path(job["results_file"]).write_text(json.dumps({"failed": True, "msg": "pip: no"}))
    (tmp_path / "flower.marker").unlink()
    failed = run_module(monkeypatch, files, _params(tmp_path, job, 5)).result
    assert failed["failed"] and failed["msg"] == "building the virtualenv flower failed: pip: no"
    assert not (tmp_path / "flower.marker").exists()
