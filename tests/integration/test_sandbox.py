"""Integration tests of ``qsetup sandbox``: real hosts booted by systemd-nspawn."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import SandboxHosts

from harness import QSETUP, qsetup

pytestmark = pytest.mark.integration


def _state(env: dict[str, str]) -> dict[str, object]:
    path = Path(env["QSETUP_SANDBOX_DIR"]) / "state.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def _assert_nothing_left(env: dict[str, str], names: list[str], pids: list[int]) -> None:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, timeout=10)
    mounts = Path("/proc/self/mountinfo").read_text(encoding="utf-8")
    for name in names:
        assert f"qs-{name} " not in netns.stdout + " ", netns.stdout
        assert f"qsv-{name}" not in links.stdout
    assert env["QSETUP_SANDBOX_BRIDGE"] not in links.stdout
    assert env["QSETUP_SANDBOX_DIR"] not in mounts
    assert [p for p in pids if _alive(p)] == []
    assert not (Path(env["QSETUP_SANDBOX_DIR"]) / "state.json").exists()


def _recorded_pids(env: dict[str, str]) -> list[int]:
    st = _state(env)
    pids = [st.get("proxy_pid")]
    for h in st["hosts"]:  # type: ignore[attr-defined]
        pids += [h["pid"], h["leader_pid"]]
    return [p for p in pids if isinstance(p, int)]


# --- the shared session hosts -------------------------------------------------


def test_hosts_are_running_and_answer_ssh(sandbox_hosts: SandboxHosts) -> None:
    assert sandbox_hosts.names == ("qs1", "qs2", "qs3")
    for name in sandbox_hosts.names:
        state = sandbox_hosts.ssh(name, "systemctl", "is-system-running", check=False)
        assert state.stdout.strip() in ("running", "degraded"), state.stdout
        assert sandbox_hosts.ssh(name, "hostname").stdout.strip() == name
    assert {h["state"] for h in sandbox_hosts.list()} <= {"running", "degraded"}


def test_ssh_passes_the_exit_code_through(sandbox_hosts: SandboxHosts) -> None:
    proc = sandbox_hosts.ssh("qs1", "sh", "-c", "echo hi; exit 3", check=False)
    assert proc.returncode == 3
    assert proc.stdout.strip() == "hi"


def test_hosts_know_each_other_by_name(sandbox_hosts: SandboxHosts) -> None:
    out = sandbox_hosts.ssh("qs1", "getent", "hosts", "qs3").stdout.split()
    assert out[0] == sandbox_hosts.addresses["qs3"]


def test_the_key_is_private_and_works_with_plain_ssh(sandbox_hosts: SandboxHosts) -> None:
    assert sandbox_hosts.key.stat().st_mode & 0o777 == 0o600
    proc = subprocess.run(
        ["ssh", "-i", str(sandbox_hosts.key), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
         f"root@{sandbox_hosts.addresses['qs2']}", "true"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_the_inventory_validates(sandbox_hosts: SandboxHosts) -> None:
    proc = qsetup("validate", "--inventory", str(sandbox_hosts.inventory))
    assert proc.returncode == 0
    assert sandbox_hosts.secrets.stat().st_mode & 0o777 == 0o600


def test_apt_reaches_packages_through_the_proxy(sandbox_hosts: SandboxHosts) -> None:
    proc = sandbox_hosts.ssh("qs2", "apt-get", "-q", "update", timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Err:" not in proc.stdout


def test_up_again_changes_nothing(sandbox_hosts: SandboxHosts) -> None:
    before = sandbox_hosts.list()
    secrets = sandbox_hosts.secrets.read_bytes()
    proc = qsetup("sandbox", "up", "--hosts", "3", "--inventory-out", str(sandbox_hosts.inventory))
    assert "nothing changed" in proc.stdout
    assert [h["pid"] for h in sandbox_hosts.list()] == [h["pid"] for h in before]
    assert sandbox_hosts.secrets.read_bytes() == secrets


# --- a separate sandbox that the tests stop, kill and crash -------------------


def test_up_ssh_down_leaves_nothing(isolated_env: dict[str, str]) -> None:
    env = isolated_env
    qsetup("sandbox", "up", "--names", "lt1,lt2", env=env, timeout=900)
    pids = _recorded_pids(env)
    for name in ("lt1", "lt2"):
        proc = qsetup("sandbox", "ssh", name, "--", "systemctl is-system-running", env=env,
                      check=False)  # fmt: skip
        assert proc.stdout.strip() in ("running", "degraded")
    qsetup("sandbox", "down", env=env, timeout=120)
    _assert_nothing_left(env, ["lt1", "lt2"], pids)
    proc = qsetup("sandbox", "down", env=env)  # down twice
    assert "nothing was up" in proc.stdout


def test_up_twice_then_grow(isolated_env: dict[str, str]) -> None:
    env = isolated_env
    qsetup("sandbox", "up", "--names", "lt1", env=env, timeout=900)
    first = _state(env)
    proc = qsetup("sandbox", "up", "--names", "lt1", env=env)
    assert "nothing changed" in proc.stdout
    assert _state(env) == first
    qsetup("sandbox", "up", "--names", "lt1,lt2", env=env)
    hosts = {h["name"]: h for h in _state(env)["hosts"]}  # type: ignore[attr-defined]
    assert hosts["lt1"]["pid"] == first["hosts"][0]["pid"]  # type: ignore[index]
    out = qsetup("sandbox", "ssh", "lt1", "--", "getent hosts lt2", env=env).stdout
    assert out.split()[0] == hosts["lt2"]["address"]


def test_killed_hosts_show_dead_and_down_still_cleans(isolated_env: dict[str, str]) -> None:
    env = isolated_env
    qsetup("sandbox", "up", "--names", "lt1,lt2,lt3", env=env, timeout=900)
    pids = _recorded_pids(env)
    hosts = {h["name"]: h for h in _state(env)["hosts"]}  # type: ignore[attr-defined]
    os.kill(hosts["lt2"]["pid"], signal.SIGKILL)  # the nspawn process
    os.kill(hosts["lt3"]["leader_pid"], signal.SIGKILL)  # the container's systemd
    time.sleep(1)
    listed = json.loads(qsetup("sandbox", "list", "--json", env=env).stdout)
    states = {h["name"]: h["state"] for h in listed}
    assert states["lt2"] == "dead"
    assert states["lt3"] == "dead"
    assert states["lt1"] in ("running", "degraded")
    qsetup("sandbox", "down", env=env, timeout=120)
    _assert_nothing_left(env, ["lt1", "lt2", "lt3"], pids)


def test_down_cleans_after_a_killed_up(isolated_env: dict[str, str]) -> None:
    env = isolated_env
    proc = subprocess.Popen(
        [*QSETUP, "sandbox", "up", "--names", "lt1,lt2"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state_file = Path(env["QSETUP_SANDBOX_DIR"]) / "state.json"
    deadline = time.monotonic() + 600
    try:
        # Kill it once the second host's nspawn has started: mid-boot.
        while time.monotonic() < deadline:
            if state_file.exists():
                try:
                    hosts = _state(env)["hosts"]
                except json.JSONDecodeError:
                    hosts = []
                if len(hosts) == 2 and all(h.get("pid") for h in hosts):  # type: ignore[union-attr,attr-defined]
                    break
            time.sleep(0.05)
        else:
            pytest.fail("up never started both hosts")
    finally:
        proc.kill()
        proc.wait(timeout=30)
    pids = _recorded_pids(env)
    qsetup("sandbox", "down", env=env, timeout=120)
    _assert_nothing_left(env, ["lt1", "lt2"], pids)
