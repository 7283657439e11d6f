"""The sandbox refuses clearly (with the fix) on machines it cannot use; CLI wiring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qsetup.cli import app
from qsetup.errors import SandboxError
from qsetup.sandbox import lifecycle, procs
from qsetup.sandbox.state import HostRecord, SandboxState, ensure_state_dir, save_state

runner = CliRunner()


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle.os, "geteuid", lambda: 0)
    monkeypatch.setattr(lifecycle.sys, "platform", "linux")


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "sbx"
    monkeypatch.setenv("QSETUP_SANDBOX_DIR", str(path))
    return path


def test_not_linux_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle.sys, "platform", "darwin")
    with pytest.raises(SandboxError, match="needs Linux"):
        lifecycle.check_machine(lifecycle.UP_COMMANDS)


def test_not_root_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle.sys, "platform", "linux")
    monkeypatch.setattr(lifecycle.os, "geteuid", lambda: 1000)
    with pytest.raises(SandboxError, match="needs root; run it again with sudo"):
        lifecycle.check_machine(lifecycle.UP_COMMANDS)


def test_missing_packages_print_the_apt_get_line(
    as_root: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    present = {"ip", "ssh", "ssh-keygen", "mount", "chroot"}
    monkeypatch.setattr(lifecycle, "have_command", lambda name: name in present)
    with pytest.raises(SandboxError) as info:
        lifecycle.check_machine(lifecycle.UP_COMMANDS)
    assert str(info.value).endswith(
        "run: apt-get update && apt-get install -y debootstrap systemd-container tinyproxy"
    )


def test_cli_up_refuses_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle.sys, "platform", "linux")
    monkeypatch.setattr(lifecycle.os, "geteuid", lambda: 1000)
    result = runner.invoke(app, ["sandbox", "up", "--hosts", "1"])
    assert result.exit_code == 1
    assert "needs root" in result.output


def test_address_range_in_use_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        lifecycle.network,
        "find_subnet_conflicts",
        lambda net, bridge: ["address 10.213.7.5/24 on x"],
    )
    monkeypatch.setattr(lifecycle.network, "link_exists", lambda name: False)
    with pytest.raises(SandboxError, match="QSETUP_SANDBOX_SUBNET"):
        lifecycle._check_free(lifecycle.network.sandbox_subnet())


def test_bad_names_are_refused_by_the_cli(as_root: None, state_dir: Path) -> None:
    result = runner.invoke(app, ["sandbox", "up", "--names", "Bad_Name"])
    assert result.exit_code == 1
    assert "lowercase letters" in result.output


def test_down_when_nothing_is_up_succeeds(as_root: None, state_dir: Path) -> None:
    result = runner.invoke(app, ["sandbox", "down"])
    assert result.exit_code == 0, result.output
    assert "nothing was up" in result.output


def test_list_json_when_nothing_is_up(as_root: None, state_dir: Path) -> None:
    result = runner.invoke(app, ["sandbox", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == []


def test_list_shows_dead_hosts_from_the_state(as_root: None, state_dir: Path) -> None:
    ensure_state_dir()
    rec = HostRecord(
        name="qs1",
        address="10.213.7.11",
        netns="qs-qs1",
        veth_host="qsv-qs1",
        veth_peer="qsp-qs1",
        host_dir=str(state_dir / "hosts/qs1"),
        pid=2**22 + 7,  # no such process
        pid_start=1,
    )
    save_state(SandboxState("10.213.7.0/24", "qsbr0", "10.213.7.1", hosts=(rec,)))
    result = runner.invoke(app, ["sandbox", "list", "--json"])
    assert result.exit_code == 0, result.output
    [entry] = json.loads(result.output)
    assert {k: entry[k] for k in ("name", "address", "state")} == {
        "name": "qs1",
        "address": "10.213.7.11",
        "state": "dead",
    }


def test_ssh_to_unknown_host_says_what_exists(as_root: None, state_dir: Path) -> None:
    result = runner.invoke(app, ["sandbox", "ssh", "nope", "--", "true"])
    assert result.exit_code == 1
    assert "no sandbox host named 'nope'" in result.output


def test_recorded_process_identity_uses_start_time() -> None:
    import os

    me = os.getpid()
    start = procs.process_start_time(me)
    assert start is not None
    assert procs.is_same_process(me, start)
    assert not procs.is_same_process(me, start + 1)
    assert not procs.is_same_process(None, start)
    assert not procs.signal_recorded(me, start + 1, 0)


class _Built(Exception):
    """ensure_rootfs was reached (with this release)."""


def _up_on_trixie_sandbox(
    monkeypatch: pytest.MonkeyPatch, state_dir: Path, release: str | None
) -> str:
    """Call ``up`` on a recorded trixie sandbox; the release it builds, or its refusal."""
    monkeypatch.setenv("QSETUP_SANDBOX_SUBNET", "10.213.7.0/24")
    monkeypatch.setattr(lifecycle, "check_machine", lambda _commands: None)

    def built(which: str, _progress: object) -> Path:
        raise _Built(which)

    monkeypatch.setattr(lifecycle.rootfs, "ensure_rootfs", built)
    monkeypatch.setattr(lifecycle.limits, "ensure_inotify_limits", lambda _n, _progress: [])
    ensure_state_dir()
    save_state(SandboxState("10.213.7.0/24", "qsbr0", "10.213.7.1", release="trixie"))
    try:
        lifecycle.up(names=["qs1"], release=release)
    except _Built as exc:
        return f"built {exc}"
    except SandboxError as exc:
        return str(exc)
    return "returned"


def test_up_without_a_release_keeps_the_sandboxs_release(
    monkeypatch: pytest.MonkeyPatch, state_dir: Path
) -> None:
    assert _up_on_trixie_sandbox(monkeypatch, state_dir, None) == "built trixie"
    refused = _up_on_trixie_sandbox(monkeypatch, state_dir, "bookworm")
    assert refused.startswith("the sandbox runs Debian trixie, not bookworm")


def test_a_child_of_nspawn_that_ends_while_it_is_looked_at_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CI once failed `sandbox up` with ProcessLookupError: a child of systemd-nspawn
    ended between the listing of the children and the read of its name."""
    from qsetup.sandbox import host as hostmod

    gone, leader = 2**22 + 1, 2**22 + 2
    real_read = Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        if str(self) == f"/proc/{gone}/comm":
            raise ProcessLookupError(3, "No such process")
        if str(self) == f"/proc/{leader}/comm":
            return "systemd\n"
        return real_read(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", read_text)
    monkeypatch.setattr(hostmod, "is_same_process", lambda pid, start: True)
    monkeypatch.setattr(hostmod, "child_pids", lambda pid: [gone, leader])
    monkeypatch.setattr(hostmod, "process_start_time", lambda pid: 42)
    rec = HostRecord(name="qs1", address="10.213.7.11", netns="qs-qs1", veth_host="v",
                     veth_peer="p", host_dir="/nonexistent", pid=1, pid_start=1)  # fmt: skip
    assert hostmod.find_leader(rec) == (leader, 42)
