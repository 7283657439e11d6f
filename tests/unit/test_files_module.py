"""The files module (playbooks/library/qsetup_files.py): whole files, only what differs."""

from __future__ import annotations

import base64
import grp
import os
import pwd
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from unitdata import playbook_module

files: Any = playbook_module("library/qsetup_files.py")

OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def _item(dest: Path, text: str, mode: str = "0640") -> dict[str, Any]:
    content = base64.b64encode(text.encode()).decode()
    return {"dest": str(dest), "content": content, "owner": OWNER, "group": GROUP, "mode": mode}


def test_writes_a_new_file_with_its_mode_then_leaves_it(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "unit.service"
    assert files.ensure_file(_item(dest, "[Unit]\n"), check=False) == (True, b"")
    assert dest.read_text() == "[Unit]\n"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    assert files.ensure_file(_item(dest, "[Unit]\n"), check=False) == (False, None)
    assert [p.name for p in dest.parent.iterdir()] == ["unit.service"], "no temporary left"


def test_a_changed_file_is_replaced_and_the_old_content_returned(tmp_path: Path) -> None:
    dest = tmp_path / "app.env"
    dest.write_text("A=1\n")
    dest.chmod(0o640)
    assert files.ensure_file(_item(dest, "A=2\n"), check=False) == (True, b"A=1\n")
    assert dest.read_text() == "A=2\n"


def test_only_the_mode_differs(tmp_path: Path) -> None:
    dest = tmp_path / "cookie"
    dest.write_text("secret")
    dest.chmod(0o644)
    assert files.ensure_file(_item(dest, "secret", mode="0400"), check=False) == (True, None)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o400


def test_check_mode_changes_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "x.conf"
    dest.write_text("old\n")
    assert files.ensure_file(_item(dest, "new\n"), check=True) == (True, b"old\n")
    assert dest.read_text() == "old\n"
    assert files.ensure_dir({"path": str(tmp_path / "d"), "mode": "0755"}, check=True)
    assert not (tmp_path / "d").exists()


def test_directories_created_with_mode_and_a_file_in_the_way_refused(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b"
    item = {"path": str(path), "owner": OWNER, "group": GROUP, "mode": "0750"}
    assert files.ensure_dir(item, check=False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o750
    assert not files.ensure_dir(item, check=False)
    (tmp_path / "f").write_text("")
    with pytest.raises(files.FileError, match="not a directory"):
        files.ensure_dir({**item, "path": str(tmp_path / "f")}, check=False)


def test_unknown_owner_is_one_clear_error(tmp_path: Path) -> None:
    item = {**_item(tmp_path / "x", "x"), "owner": "no-such-user-qsetup"}
    with pytest.raises(files.FileError, match="no-such-user-qsetup"):
        files.ensure_file(item, check=False)
    assert not (tmp_path / "x").exists()


def test_diff_only_for_text() -> None:
    diff = files._diff("/etc/x", b"a\n", b"b\n")
    assert diff == {
        "before": "a\n",
        "after": "b\n",
        "before_header": "/etc/x",
        "after_header": "/etc/x",
    }
    assert files._diff("/etc/x", b"\xff", b"b") is None


class Recorder:
    """Stands in for AnsibleModule.run_command: records argv, answers rc 0."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def run_command(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(argv)
        return 0, "", ""


MISSING = "qsetup-test-no-such-name"


def test_missing_group_and_user_are_created_as_system_accounts_without_login() -> None:
    rec = Recorder()
    assert files.ensure_group(rec, MISSING, check=False) is True
    assert files.ensure_user(rec, {"user": MISSING, "group": MISSING}, check=False) is True
    assert rec.calls[0] == ["groupadd", "--system", "--", MISSING]
    useradd = rec.calls[1]
    assert useradd[:2] == ["useradd", "--system"] and useradd[-1] == MISSING
    assert useradd[useradd.index("--gid") + 1] == MISSING
    assert useradd[useradd.index("--shell") + 1] == "/usr/sbin/nologin"
    assert "--no-create-home" in useradd


def test_existing_accounts_and_check_mode_run_nothing() -> None:
    rec = Recorder()
    assert files.ensure_group(rec, GROUP, check=False) is False
    assert files.ensure_user(rec, {"user": OWNER, "group": GROUP}, check=False) is False
    assert files.ensure_group(rec, MISSING, check=True) is True
    assert files.ensure_user(rec, {"user": MISSING, "group": GROUP}, check=True) is True
    assert rec.calls == []


def test_a_failing_useradd_names_the_user() -> None:
    class Failing(Recorder):
        def run_command(self, argv: list[str]) -> tuple[int, str, str]:
            return 9, "", "useradd: group 'nope' does not exist\n"

    with pytest.raises(files.FileError, match=f"user {MISSING}: useradd failed: .*'nope'"):
        files.ensure_user(Failing(), {"user": MISSING, "group": "nope"}, check=False)


def test_packages_install_first_in_the_same_run_and_a_failure_names_apt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One Python start on the host: apt, then the files; apt's failure stops before them."""
    apt: Any = sys.modules["ansible.module_utils.qsetup_apt"]
    monkeypatch.setattr(apt, "POLICY_RC", tmp_path / "policy-rc.d")
    ran: list[list[str]] = []
    dest = tmp_path / "etc" / "x.conf"

    class _Module:
        check_mode = False
        _diff = False
        params = {"packages": ["nftables", "nftables"], "groups": [], "users": [], "dirs": [],
                  "files": [_item(dest, "x\n")]}  # fmt: skip
        answer = (0, "", "")

        def run_command(self, argv: list[str], environ_update: Any = None) -> Any:
            ran.append(argv)
            return self.answer

        def exit_json(self, **result: Any) -> None:
            raise SystemExit(("ok", result))

        def fail_json(self, **result: Any) -> None:
            raise SystemExit(("failed", result))

    module = _Module()
    monkeypatch.setattr(files, "install_missing", apt.install_missing)
    monkeypatch.setattr(files, "AnsibleModule", lambda **_kw: module)
    with pytest.raises(SystemExit) as done:
        files.main()
    how, result = done.value.code  # type: ignore[misc]
    assert how == "ok" and result["installed"] == ["nftables"]
    assert ran[0][:2] == ["apt-get", "install"] and ran[0][-1] == "nftables"
    assert dest.read_text() == "x\n"
    dest.unlink()
    module.answer = (100, "", "E: Unable to locate package nftables")
    ran.clear()
    with pytest.raises(SystemExit) as done:
        files.main()
    how, result = done.value.code  # type: ignore[misc]
    assert how == "failed" and "E: Unable to locate package nftables" in result["msg"]
    assert not dest.exists()  # nothing after apt failed
    assert not (tmp_path / "policy-rc.d").exists()  # held during apt, removed after
