"""Staging the app's code (playbooks/module_utils/qsetup_code.py) and the app check in the
same module run as the services' files (playbooks/library/qsetup_files.py)."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from unitdata import playbook_module, run_module

code: Any = playbook_module("module_utils/qsetup_code.py")
files: Any = playbook_module("library/qsetup_files.py")
units: Any = playbook_module("module_utils/qsetup_units.py")


def _archive(tmp_path: Path, body: str) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "tasks.py").write_text(body)
    upload = tmp_path / "upload.tar"
    subprocess.run(["tar", "-cf", str(upload), "-C", str(src), "tasks.py"], check=True)
    return upload


def test_stages_a_fresh_copy_and_leaves_the_live_code(tmp_path: Path) -> None:
    live = tmp_path / "app"
    live.mkdir()
    (live / "tasks.py").write_text("live")
    stale = tmp_path / "app.next"
    stale.mkdir()
    (stale / "leftover.py").write_text("from an earlier run")
    upload = _archive(tmp_path, "new")

    staging = code.stage(upload, str(live))
    tar = tmp_path / "app.next.tar"
    assert tar.read_bytes() == upload.read_bytes()
    assert stat.S_IMODE(tar.stat().st_mode) == 0o644
    assert staging == tmp_path / "app.next"
    assert sorted(p.name for p in staging.iterdir()) == ["tasks.py"]  # the leftover went
    assert (staging / "tasks.py").read_text() == "new"
    assert stat.S_IMODE(staging.stat().st_mode) == 0o755
    assert (live / "tasks.py").read_text() == "live", "the live code is not touched"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "app",
        "app.next",
        "app.next.tar",
        "src",
        "upload.tar",
    ], "no temporary file left"


def test_an_archive_tar_cannot_unpack_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar archive" * 64)
    with pytest.raises(code.CodeError, match=r"cannot unpack the app's code into .*app\.next: "):
        code.stage(bad, str(tmp_path / "app"))


@pytest.fixture
def run_as_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH whose systemd-run runs its command as is (this user, this environment)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    run = bin_dir / "systemd-run"
    run.write_text('#!/bin/sh\nwhile [ "${1#--}" != "$1" ]; do shift; done\nexec "$@"\n')
    run.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def _python(path: Path, body: str) -> str:
    """A stand-in interpreter: prints the app check's marker, or fails like Python."""
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def _params(tmp_path: Path, python: str, **extra: Any) -> dict[str, Any]:
    conf = {"dest": str(tmp_path / "w.env"), "owner": "root" if os.geteuid() == 0 else None,
            "mode": "0644", "content": base64.b64encode(b"A=1\n").decode()}  # fmt: skip
    conf = {k: v for k, v in conf.items() if v is not None}
    service = {"unit": "w@.service", "python": python, "user": "celery", "env_file": conf["dest"]}
    return {
        "venv_packages": [], "venvs": [], "packages": [], "groups": [], "users": [],
        "dirs": [], "files": [conf], "jobs": [], "wait": 5, "staged": False,
        "check": {"services": [service], "code_dir": str(tmp_path / "app.next"),
                  "shim_dir": "/s", "shim": "qsetup_celery"},
        **extra,
    }  # fmt: skip


def test_one_run_stages_the_code_writes_the_files_then_checks_the_app(
    run_as_service: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path = run_as_service
    (tmp_path / "app").mkdir()
    upload = _archive(tmp_path, "new")
    # The stand-in loads the app only from the staged code, with the env file written.
    good = _python(
        tmp_path / "good",
        f"test -f {tmp_path}/app.next/tasks.py && test -f {tmp_path}/w.env "
        f'&& echo "{units.LOADS} 3"\n',
    )
    staged = {"archive": str(upload), "code_dir": str(tmp_path / "app")}
    result = run_module(monkeypatch, files, _params(tmp_path, good, code=staged)).result
    assert not result.get("failed"), result
    assert result["staged"] == str(tmp_path / "app.next")
    assert result["checked"] == ["w@.service"] and result["problems"] == []
    assert (tmp_path / "w.env").read_text() == "A=1\n"


def test_an_app_that_does_not_load_fails_the_run_naming_the_service(
    run_as_service: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path = run_as_service
    (tmp_path / "app").mkdir()
    bad = _python(
        tmp_path / "bad",
        "echo 'Traceback (most recent call last):' >&2\n"
        'echo "ImportError: no amqp://u:pw-123@h/v" >&2\nexit 1\n',
    )
    staged = {"archive": str(_archive(tmp_path, "x")), "code_dir": str(tmp_path / "app")}
    result = run_module(monkeypatch, files, _params(tmp_path, bad, code=staged)).result
    assert result["failed"]
    (problem,) = result["problems"]
    assert problem.startswith(f"the app does not load for w@.service ({bad}): ")
    assert "pw-123" not in result["msg"] and "amqp://u:***@h" in result["msg"]
    assert result["paths"] == [str(tmp_path / "w.env")]  # the files went in first


def test_no_new_code_and_no_changed_venv_checks_nothing(
    run_as_service: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path = run_as_service
    bad = _python(tmp_path / "bad", "exit 1\n")
    result = run_module(monkeypatch, files, _params(tmp_path, bad)).result
    assert not result.get("failed") and "checked" not in result
    # Staged by an earlier call (the action calls again while a build runs): checked.
    result = run_module(monkeypatch, files, _params(tmp_path, bad, staged=True)).result
    assert result["failed"] and result["problems"]


def test_check_mode_builds_and_stages_nothing_but_reports_the_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unitdata import FakeModule, ModuleExit

    started: list[Any] = []
    monkeypatch.setattr(files, "start_builds", lambda venvs: started.append(venvs) or [])
    code = {"archive": str(tmp_path / "none.tar"), "code_dir": str(tmp_path / "app")}
    params = {"venvs": [{"name": "w", "path": str(tmp_path / "w")}], "files": [], "jobs": [],
              "groups": [], "users": [], "dirs": [], "code": code}  # fmt: skip
    fake = FakeModule(params, check_mode=True)
    monkeypatch.setattr(files, "AnsibleModule", lambda **_kw: fake)
    with pytest.raises(ModuleExit):
        files.main()
    assert fake.result["changed"] and not fake.result.get("failed")
    assert started == [] and "staged" not in fake.result
    assert not (tmp_path / "app.next").exists()
