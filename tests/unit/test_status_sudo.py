"""``qsetup status`` on hosts reached as a user with ``become``: the script runs under sudo -n."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from unitdata import BASE_INVENTORY, BASE_SECRETS, FULL_INVENTORY, FULL_SECRETS, WriteInventory

from qsetup.inventory.loader import LoadedInventory, load_inventory
from qsetup.status import ssh as status_ssh
from qsetup.status.ssh import MARK, SshTarget, read_command, read_round, ssh_targets


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

    stdin: list[str] = field(default_factory=list)

    def run(self, command: str, timeout: int, in_stream: Any) -> _Result:
        self.commands.append(command)
        self.stdin.append(in_stream.read())
        answer = MARK + json.dumps({"hostname": self.target.name}) + "\n"
        return self.answers.get(self.target.address, _Result(answer))

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
    monkeypatch.setattr(
        status_ssh, "_exec", lambda cxn, command, stdin, _t: cxn.run(command, 1, io.StringIO(stdin))
    )
    params = {h: {"releases": {}, "secret": f"pw-{h}"} for h in loaded.inventory.hosts}
    return read_round(loaded, 1.0, params), made


@pytest.fixture
def full(write_inventory: WriteInventory, tmp_path: Path) -> LoadedInventory:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "id_ed25519").write_text("not a real key\n", encoding="utf-8")
    return load_inventory(write_inventory(FULL_INVENTORY, FULL_SECRETS))


def test_become_as_a_user_runs_the_read_under_sudo_n(full: LoadedInventory) -> None:
    targets = {t.name: t for t in ssh_targets(full)}
    assert (targets["mq"].user, targets["mq"].become) == ("deploy", True)
    assert read_command(targets["mq"]).startswith("sudo -n python3 -c ")
    assert (targets["w1"].user, targets["w1"].become) == ("root", False)
    assert read_command(targets["w1"]).startswith("python3 -c ")


def test_root_with_become_needs_no_sudo(write_inventory: WriteInventory) -> None:
    loaded = load_inventory(
        write_inventory(BASE_INVENTORY + "ssh: {user: root, become: true}\n", BASE_SECRETS)
    )
    for target in ssh_targets(loaded):
        assert not read_command(target).startswith("sudo")


def test_each_host_gets_its_own_command_in_one_round(
    full: LoadedInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts, made = _fake_round(monkeypatch, full, {})
    assert made["mq"].commands[0].startswith("sudo -n python3 -c ")
    assert made["w2"].commands[0].startswith("sudo -n python3 -c ")
    assert made["w1"].commands[0].startswith("python3 -c ")
    # each host's own parameters on the first line of its stdin, never in the command
    for name, cxn in made.items():
        first, _, source = cxn.stdin[0].partition("\n")
        assert json.loads(first)["secret"] == f"pw-{name}"
        assert "def read_host(" in source
        assert f"pw-{name}" not in cxn.commands[0]
    assert all(c.closed for c in made.values())
    assert all(h.facts == {"hostname": h_name} for h_name, h in hosts.items()), hosts


def test_sudo_asking_for_a_password_says_what_to_fix(
    full: LoadedInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = _Result("", "sudo: a password is required\n", 1)
    mq = next(t for t in ssh_targets(full) if t.name == "mq")
    hosts, _ = _fake_round(monkeypatch, full, {mq.address: refused})
    assert hosts["mq"].facts is None
    error = str(hosts["mq"].error)
    assert "`sudo -n` as deploy failed (sudo: a password is required)" in error
    assert "passwordless sudo for deploy" in error
    assert hosts["w1"].facts is not None
