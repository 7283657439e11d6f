"""``qsetup status`` on hosts reached as a user with ``become``: the script runs under sudo -n."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from unitdata import BASE_INVENTORY, BASE_SECRETS, FULL_INVENTORY, FULL_SECRETS, WriteInventory

from qsetup.inventory.loader import LoadedInventory, load_inventory
from qsetup.status import ssh as status_ssh
from qsetup.status.ssh import SshTarget, run_round, ssh_targets, status_command


@dataclass
class _Result:
    stdout: str
    stderr: str = ""
    exited: int = 0


@dataclass(eq=False)
class _FakeConnection:
    """Stands in for a fabric Connection: records the command, answers like a host."""

    target: SshTarget
    answers: dict[str, _Result]
    commands: list[str] = field(default_factory=list)
    closed: bool = False

    def run(self, command: str, timeout: int) -> _Result:
        self.commands.append(command)
        return self.answers.get(self.target.address, _Result(f"@@hostname {self.target.name}\n"))

    def close(self) -> None:
        self.closed = True


def _fake_round(
    monkeypatch: pytest.MonkeyPatch, loaded: LoadedInventory, answers: dict[str, _Result]
) -> tuple[dict[str, Any], dict[str, _FakeConnection]]:
    made: dict[str, _FakeConnection] = {}

    def connection(target: SshTarget, *_: object) -> _FakeConnection:
        made[target.name] = _FakeConnection(target, answers)
        return made[target.name]

    monkeypatch.setattr(status_ssh, "_connection", connection)
    return run_round(loaded, timeout=1.0), made


@pytest.fixture
def full(write_inventory: WriteInventory, tmp_path: Path) -> LoadedInventory:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "id_ed25519").write_text("not a real key\n", encoding="utf-8")
    return load_inventory(write_inventory(FULL_INVENTORY, FULL_SECRETS))


def test_become_as_a_user_runs_the_script_under_sudo_n(full: LoadedInventory) -> None:
    targets = {t.name: t for t in ssh_targets(full)}
    assert (targets["mq"].user, targets["mq"].become) == ("deploy", True)
    assert status_command("echo hi\n", targets["mq"]) == "sudo -n sh -c 'echo hi\n'"
    assert (targets["w1"].user, targets["w1"].become) == ("root", False)
    assert status_command("echo hi\n", targets["w1"]) == "sh -c 'echo hi\n'"


def test_root_with_become_needs_no_sudo(write_inventory: WriteInventory) -> None:
    loaded = load_inventory(
        write_inventory(BASE_INVENTORY + "ssh: {user: root, become: true}\n", BASE_SECRETS)
    )
    for target in ssh_targets(loaded):
        assert not status_command("true", target).startswith("sudo")


def test_each_host_gets_its_own_command_in_one_round(
    full: LoadedInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts, made = _fake_round(monkeypatch, full, {})
    assert made["mq"].commands[0].startswith("sudo -n sh -c ")
    assert made["w2"].commands[0].startswith("sudo -n sh -c ")
    assert made["w1"].commands[0].startswith("sh -c ")
    assert all(c.closed for c in made.values())
    assert all(h.reachable for h in hosts.values()), hosts


def test_sudo_asking_for_a_password_says_what_to_fix(
    full: LoadedInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = _Result("", "sudo: a password is required\n", 1)
    mq = next(t for t in ssh_targets(full) if t.name == "mq")
    hosts, _ = _fake_round(monkeypatch, full, {mq.address: refused})
    assert not hosts["mq"].reachable
    error = str(hosts["mq"].error)
    assert "`sudo -n` as deploy failed (sudo: a password is required)" in error
    assert "passwordless sudo for deploy" in error
    assert hosts["w1"].reachable
