"""The preflight module's parsing (playbooks/library/qsetup_host_facts.py) and releases."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from unitdata import playbook_module

from qsetup.desired.state import CELERY_APT_MARK, RELEASES, apt_packages_by_release

facts: Any = playbook_module("module_utils/qsetup_read.py")


def test_os_release() -> None:
    text = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_CODENAME=trixie\n'
    parsed = facts.parse_os_release(text)
    assert parsed["ID"] == "debian" and parsed["VERSION_CODENAME"] == "trixie"
    assert parsed["PRETTY_NAME"] == "Debian GNU/Linux 13 (trixie)"


def test_dpkg_installed_ignores_removed_and_config_files_only() -> None:
    out = "ii  rabbitmq-server\nrc  celery\nii  python3-celery:amd64\nun  flower\n"
    assert facts.parse_dpkg_installed(out) == {"rabbitmq-server", "python3-celery"}


def test_apt_candidates() -> None:
    out = (
        "celery:\n  Installed: (none)\n  Candidate: 5.5.2-1\n  Version table:\n"
        "python-celery-common:\n  Installed: (none)\n  Candidate: (none)\n"
    )
    assert facts.parse_apt_candidates(out) == {"celery"}


def test_celery_packages_follow_the_release() -> None:
    by_release = apt_packages_by_release({CELERY_APT_MARK, "python3-venv"})
    assert set(by_release) == set(RELEASES)
    assert by_release["bookworm"] == ["python-celery-common", "python3-venv"]
    assert by_release["trixie"] == ["celery", "python3-celery", "python3-venv"]
    assert apt_packages_by_release({"rabbitmq-server"})["trixie"] == ["rabbitmq-server"]


def test_find_entries_reports_what_the_stale_filters_read(tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("X=1\n")
    (tmp_path / "a.env").chmod(0o600)
    (tmp_path / ".erlang.cookie").write_text("COOKIE")
    (tmp_path / "sub").mkdir()
    (tmp_path / "other.txt").write_text("no")
    found = facts.find_entries([str(tmp_path), str(tmp_path / "missing")],
                               ["a.env", ".erlang.cookie", "sub"])  # fmt: skip
    by_name = {Path(f["path"]).name: f for f in found}
    assert set(by_name) == {"a.env", ".erlang.cookie", "sub"}
    assert by_name["a.env"]["mode"] == "0600"
    assert by_name["a.env"]["checksum"] == hashlib.sha1(b"X=1\n").hexdigest()  # noqa: S324
    assert by_name["sub"]["isdir"] is True and "checksum" not in by_name["sub"]
    assert by_name["a.env"]["pw_name"] and by_name["a.env"]["gr_name"]


def test_systemctl_show_blocks() -> None:
    out = (
        "Id=qsetup-beat.service\nLoadState=loaded\nActiveState=failed\nSubState=failed\n"
        "UnitFileState=enabled\n\nId=qsetup-worker-a@1.service\nLoadState=loaded\n"
        "ActiveState=active\nSubState=running\nUnitFileState=enabled\n"
    )
    units = facts.parse_systemctl_show(out)
    assert units["qsetup-beat.service"]["ActiveState"] == "failed"
    assert units["qsetup-worker-a@1.service"]["SubState"] == "running"


def test_the_cluster_hosts_block_is_read_between_its_markers(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    marker = "qsetup: RabbitMQ cluster nodes"
    hosts.write_text(
        "127.0.0.1 localhost\n"
        f"# BEGIN {marker}\n10.0.0.1 mq1\n10.0.0.2 mq2\n# END {marker}\n"
        "::1 localhost\n"
    )
    assert facts.read_block(hosts, marker) == "10.0.0.1 mq1\n10.0.0.2 mq2"
    hosts.write_text("127.0.0.1 localhost\n")
    assert facts.read_block(hosts, marker) is None
    assert facts.read_block(tmp_path / "missing", marker) is None


def test_one_systemctl_show_names_the_loaded_linked_and_failed_units_but_not_templates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The units asked for, the enabled ones (linked) and, through the pattern, every
    loaded ``qsetup-*`` unit, from one ``systemctl show``."""
    blocks = {
        "qsetup-worker-a@1.service": "loaded\nActiveState=active",
        "qsetup-worker-old@2.service": "not-found\nActiveState=inactive",
        "qsetup-beat.service": "loaded\nActiveState=inactive",
    }
    calls: list[list[str]] = []

    def run(argv: list[str]) -> tuple[int, str, str]:
        calls.append(argv)
        names = [a for a in argv[argv.index("--") + 1 :] if "*" not in a]
        if "qsetup-*" in argv:
            names += ["qsetup-worker-a@1.service", "qsetup-worker-old@2.service"]
        return 0, "\n\n".join(f"Id={n}\nLoadState={blocks[n]}" for n in names), ""

    monkeypatch.setattr(facts, "linked_units", lambda prefix: ["qsetup-beat.service"])
    discovered, units = facts._units(run, ["qsetup-worker-a@1.service"], "qsetup-")
    assert discovered == [
        "qsetup-beat.service",
        "qsetup-worker-a@1.service",
        "qsetup-worker-old@2.service",
    ]
    assert units["qsetup-beat.service"]["ActiveState"] == "inactive"
    assert units["qsetup-worker-old@2.service"]["LoadState"] == "not-found"
    assert len(calls) == 1 and calls[0][1] == "show"
    assert calls[0][-3:] == ["qsetup-worker-a@1.service", "qsetup-beat.service", "qsetup-*"]


def test_linked_units_are_the_links_in_wants_and_requires_folders(tmp_path: Path) -> None:
    etc, run = tmp_path / "etc", tmp_path / "run"
    (etc / "multi-user.target.wants").mkdir(parents=True)
    (run / "x.target.requires").mkdir(parents=True)
    (etc / "multi-user.target.wants" / "qsetup-worker-a@2.service").symlink_to("/x")
    (etc / "multi-user.target.wants" / "ssh.service").symlink_to("/x")
    (etc / "multi-user.target.wants" / "qsetup-not-a-link.service").write_text("")
    (run / "x.target.requires" / "qsetup-beat.service").symlink_to("/x")
    (etc / "qsetup-flower.service").write_text("")  # a unit file, not a link: not enabled
    assert facts.linked_units("qsetup-", (str(etc), str(run))) == [
        "qsetup-beat.service",
        "qsetup-worker-a@2.service",
    ]


def test_the_read_shows_discovered_units_and_reports_executables() -> None:
    calls: list[list[str]] = []
    show = (
        "Id=qsetup-worker-a@1.service\nLoadState=loaded\nActiveState=active\n"
        "SubState=running\nUnitFileState=disabled\nStateChangeTimestamp=@1700000000\n"
        "NRestarts=0\n"
    )

    def run(argv: list[str]) -> tuple[int, str, str]:
        calls.append(argv)
        if argv[1] == "show":
            return 0, show, ""
        return 0, "", ""

    out = facts.read_host(
        {
            "releases": {"bookworm": "Debian 12", "trixie": "Debian 13"},
            "discover": "qsetup-",
            "executables": ["/bin/sh", "/nonexistent/bin/python"],
        },
        run,
    )
    assert out["discovered"] == ["qsetup-worker-a@1.service"]
    assert out["units"]["qsetup-worker-a@1.service"]["UnitFileState"] == "disabled"
    assert out["executables"] == {"/bin/sh": True, "/nonexistent/bin/python": False}
    shown = next(c for c in calls if c[1] == "show")
    assert shown[-1] == "qsetup-*" and "--timestamp=unix" in shown
