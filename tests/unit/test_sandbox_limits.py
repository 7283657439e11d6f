"""Sandbox up raises the inotify limits its hosts need (never lowers them) or refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from qsetup.errors import SandboxError
from qsetup.sandbox import lifecycle, limits, rootfs
from qsetup.sandbox.state import SandboxState, ensure_state_dir, save_state


@pytest.fixture
def sysctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake /proc/sys/fs/inotify at Debian's defaults, and nothing open on the machine."""
    path = tmp_path / "inotify"
    path.mkdir()
    (path / "max_user_instances").write_text("128\n")
    (path / "max_user_watches").write_text("192917\n")
    monkeypatch.setattr(limits, "PROC_SYS_INOTIFY", path)
    monkeypatch.setattr(limits, "read_inotify_use", lambda: limits.InotifyUse(0, 0))
    return path


def _value(sysctl: Path, name: str) -> int:
    return int((sysctl / name).read_text())


def test_twenty_hosts_on_a_fresh_machine_raise_the_instances(sysctl: Path) -> None:
    lines: list[str] = []
    limits.ensure_inotify_limits(20, lines.append)
    # 16 per host (8 measured at boot) and Debian's 128 left for the rest of the machine.
    assert _value(sysctl, "max_user_instances") == 16 * 20 + 128
    assert _value(sysctl, "max_user_watches") == 192917
    assert lines == ["raised fs.inotify.max_user_instances from 128 to 448 for 20 host(s)"]


def test_what_is_open_now_counts_too(sysctl: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Another sandbox's 40 hosts already hold 320 instances and most of the watches.
    monkeypatch.setattr(limits, "read_inotify_use", lambda: limits.InotifyUse(320, 190000))
    limits.ensure_inotify_limits(3, lambda _line: None)
    assert _value(sysctl, "max_user_instances") == 320 + 3 * 16 + 128
    assert _value(sysctl, "max_user_watches") == 190000 + 3 * 256 + 8192


def test_a_higher_value_is_never_lowered(sysctl: Path) -> None:
    (sysctl / "max_user_instances").write_text("8192\n")
    lines: list[str] = []
    assert limits.ensure_inotify_limits(20, lines.append) == []
    assert _value(sysctl, "max_user_instances") == 8192
    assert lines == []


def test_an_unwritable_limit_is_refused_with_the_sysctl_line(
    sysctl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(_path: Path, _value: int) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(limits, "write_sysctl", read_only)
    with pytest.raises(SandboxError) as info:
        limits.ensure_inotify_limits(20, lambda _line: None)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("fs.inotify.max_user_instances is 128, too low to boot 20")
    assert message.endswith("run: sysctl -w fs.inotify.max_user_instances=448")
    assert _value(sysctl, "max_user_instances") == 128


def test_up_refuses_before_building_anything(
    sysctl: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QSETUP_SANDBOX_DIR", str(tmp_path / "sbx"))
    monkeypatch.setenv("QSETUP_SANDBOX_SUBNET", "10.213.7.0/24")
    monkeypatch.setattr(lifecycle, "check_machine", lambda _commands: None)

    def read_only(_path: Path, _value: int) -> None:
        raise OSError(30, "Read-only file system")

    def must_not_build(*_args: object) -> Path:
        raise AssertionError("the root file system was built before the refusal")

    monkeypatch.setattr(limits, "write_sysctl", read_only)
    monkeypatch.setattr(rootfs, "ensure_rootfs", must_not_build)
    ensure_state_dir()
    save_state(SandboxState("10.213.7.0/24", "qsbr0", "10.213.7.1", release="bookworm"))
    with pytest.raises(SandboxError, match=r"run: sysctl -w fs.inotify.max_user_instances=176$"):
        lifecycle.up(names=["a1", "a2", "a3"])


def test_open_instances_and_watches_are_counted_from_proc(tmp_path: Path) -> None:
    for pid, targets in {
        "1": ["anon_inode:inotify", "/dev/null"],
        "2": ["anon_inode:inotify"],
    }.items():
        (tmp_path / pid / "fd").mkdir(parents=True)
        (tmp_path / pid / "fdinfo").mkdir()
        for fd, target in enumerate(targets):
            (tmp_path / pid / "fd" / str(fd)).symlink_to(target)
            wd = "".join(f"inotify wd:{i} ino:1 sdev:1 mask:1\n" for i in range(int(pid) * 2))
            (tmp_path / pid / "fdinfo" / str(fd)).write_text(f"pos:\t0\nflags:\t0\n{wd}")
    (tmp_path / "self").mkdir()  # not a process directory
    assert limits.read_inotify_use(tmp_path) == limits.InotifyUse(instances=2, watches=6)
