"""Sandbox hosts are reached the way servers are: an ordinary user with sudo (issue 12).

``sandbox up`` gives every host the login user ``deploy`` (passwordless sudo, the sandbox
key) and ``--inventory-out`` logs in as it with ``become: true``, so every module of the
tier deploys through sudo. This module proves it on hosts of its own
(``harness.SEPARATE["login"]``): root's authorized_keys is moved aside on every host
before the first deploy, so a deploy, a rolling restart or a status that logged in as
root would fail; then a deploy, a second one that changes nothing, a task round trip,
a restart and a healthy ``qsetup status`` all succeed, and sshd's journal on each host
shows the login user logging in and no login attempt as root.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import (
    SandboxHosts,
    Site,
    changed_by_host,
    own_sandbox,
    wait_for_ping,
)

from qsetup.sandbox.login import LOGIN_USER, SUDOERS_FILE

pytestmark = pytest.mark.integration

ROOT_KEYS = "/root/.ssh/authorized_keys"
# sshd's lines about a login attempt as root (bookworm logs as sshd, trixie as sshd-session).
ROOT_ATTEMPT = re.compile(
    r"(Accepted|Failed|Postponed) \S+ for root\b|(authenticating|invalid) user root\b"
)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHosts]:
    with own_sandbox("login", Path(tmp_path_factory.mktemp("login-hosts"))) as hosts:
        yield hosts


def as_login_user(
    hosts: SandboxHosts, name: str, command: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a shell command on a host over SSH as the login user, with the sandbox key."""
    from qsetup.sandbox.host import ssh_args

    return subprocess.run(
        [*ssh_args(hosts.key, hosts.addresses[name], user=LOGIN_USER), command],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def as_root_plain(hosts: SandboxHosts, name: str) -> subprocess.CompletedProcess[str]:
    """Try to log in as root with the sandbox key (no qsetup in between)."""
    from qsetup.sandbox.host import ssh_args

    return subprocess.run(
        [*ssh_args(hosts.key, hosts.addresses[name]), "true"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_inventory_logs_in_as_an_ordinary_user_with_sudo(hosts: SandboxHosts) -> None:
    text = hosts.inventory.read_text(encoding="utf-8")
    assert f"  user: {LOGIN_USER}\n" in text
    assert "  become: true\n" in text
    for name in hosts.names:
        proc = as_login_user(
            hosts,
            name,
            "id -un; sudo -n id -un; stat -c '%a %U' ~/.ssh ~/.ssh/authorized_keys; "
            f"sudo -n stat -c '%a %U' /{SUDOERS_FILE}; sudo -n visudo -c >/dev/null && echo ok",
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split("\n") == [
            LOGIN_USER, "root", f"700 {LOGIN_USER}", f"600 {LOGIN_USER}", "440 root", "ok", "",
        ], proc.stdout  # fmt: skip


def test_up_again_gives_a_running_host_the_login_user(hosts: SandboxHosts) -> None:
    victim = hosts.names[-1]
    hosts.ssh(victim, "sh", "-c", f"userdel -r {LOGIN_USER} 2>/dev/null; rm -f /{SUDOERS_FILE}; "
              f"! id {LOGIN_USER} 2>/dev/null")  # fmt: skip
    assert as_login_user(hosts, victim, "true").returncode == 255
    pid = hosts.record(victim)["pid"]
    out = hosts.up_again().stdout
    assert f"{victim}: login user {LOGIN_USER}" in out, out
    assert hosts.record(victim)["pid"] == pid  # the same boot, not a rebuilt host
    proc = as_login_user(hosts, victim, "sudo -n id -u")
    assert (proc.returncode, proc.stdout.strip()) == (0, "0"), proc.stderr
    assert "nothing changed" in hosts.up_again().stdout


@pytest.fixture(scope="module")
def root_locked_out(hosts: SandboxHosts) -> Iterator[int]:
    """Move root's authorized_keys aside on every host; yield when sshd's lines start counting.

    Root's key is put back (through the login user's sudo) when the module is done.
    """
    for name in hosts.names:
        hosts.ssh(name, "mv", ROOT_KEYS, f"{ROOT_KEYS}.off")
        assert as_root_plain(hosts, name).returncode == 255, f"root still logs in on {name}"
    # journalctl --since counts whole seconds: start at a second after these attempts.
    since = int(time.time()) + 2
    time.sleep(since - time.time())
    try:
        yield since
    finally:
        for name in hosts.names:
            as_login_user(hosts, name, f"sudo -n mv {ROOT_KEYS}.off {ROOT_KEYS}")


@pytest.fixture(scope="module")
def site(
    hosts: SandboxHosts, root_locked_out: int, tmp_path_factory: pytest.TempPathFactory
) -> Site:
    """The sandbox's inventory in a folder of its own, for hosts root cannot log in to."""
    return hosts.site(Path(tmp_path_factory.mktemp("login")))


def test_deploy_twice_through_sudo_without_root_login(site: Site) -> None:
    code, data = site.deploy()
    assert code == 0, data["failures"]
    assert not any(h["unreachable"] for h in data["hosts"].values()), data["hosts"]
    wait_for_ping(site)
    code, data = site.deploy()
    assert code == 0, data["failures"]
    assert set(changed_by_host(data).values()) == {0}, changed_by_host(data)


def test_a_task_round_trip(site: Site) -> None:
    from qsetup.remote.roundtrip import send_task

    trip = send_task(site.loaded())
    assert trip.result == 5


def test_rolling_restart_through_sudo(site: Site) -> None:
    proc = site.qsetup("restart", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wait_for_ping(site)


def test_status_is_healthy_reading_the_hosts_through_sudo(site: Site) -> None:
    code, data, _ = site.status()
    assert code == 0, data
    assert data["healthy"] is True
    assert all(h["reachable"] for h in data["hosts"].values()), data["hosts"]


def test_only_the_login_user_logged_in_and_sudo_did_the_work(
    hosts: SandboxHosts, site: Site, root_locked_out: int
) -> None:
    since = root_locked_out
    for name in hosts.names:
        proc = as_login_user(
            hosts,
            name,
            f"sudo -n journalctl --no-pager -o cat --since @{since} -t sshd -t sshd-session; "
            f"echo @@sudo; sudo -n journalctl --no-pager -o cat --since @{since} -t sudo",
        )
        assert proc.returncode == 0, proc.stderr
        sshd, _, sudo = proc.stdout.partition("@@sudo\n")
        assert f"Accepted publickey for {LOGIN_USER}" in sshd, sshd
        assert not [ln for ln in sshd.splitlines() if ROOT_ATTEMPT.search(ln)], sshd
        # Ansible's become and the restart ran through sudo as root, and so did status's
        # read (python3 -S -c with its boot line: parameters and source came on stdin).
        assert re.search(rf"{LOGIN_USER} : .*USER=root ; COMMAND=/bin/sh -c", sudo), sudo
        assert re.search(
            rf"{LOGIN_USER} : .*USER=root ; COMMAND=/usr/bin/python3 -S -c .*qsetup_read", sudo
        ), sudo
