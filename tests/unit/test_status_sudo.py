"""``qsetup status`` on hosts reached as a user with ``become``: the script runs under sudo -n."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from unitdata import BASE_INVENTORY, BASE_SECRETS, FULL_INVENTORY, FULL_SECRETS, WriteInventory

from qsetup.inventory.loader import LoadedInventory, load_inventory
from qsetup.status import ssh as status_ssh
from qsetup.status.ssh import MARK, SshResult, read_command, read_round, ssh_targets


@dataclass
class _Client:
    """Stands in for one host's ``ssh`` client: records its command line and standard input."""

    argv: list[str]
    answer: SshResult
    first: bytes = b""
    stdin: str = ""
    returncode: int = 0

    def communicate(self, data: bytes = b"", timeout: float | None = None) -> tuple[bytes, bytes]:
        self.stdin += data.decode("utf-8")
        self.returncode = self.answer.exited
        return self.answer.stdout.encode(), self.answer.stderr.encode()

    def kill(self) -> None:
        pass


def _fake_round(
    monkeypatch: pytest.MonkeyPatch, loaded: LoadedInventory, answers: dict[str, SshResult]
) -> tuple[dict[str, Any], dict[str, _Client]]:
    made: dict[str, _Client] = {}
    names = {t.address: t.name for t in ssh_targets(loaded)}

    def spawn(argv: list[str], first: bytes) -> _Client:
        address = argv[argv.index("--") + 1]
        answer = SshResult(MARK + json.dumps({"hostname": names[address]}) + "\n", "", 0)
        made[names[address]] = _Client(list(argv), answers.get(address, answer), first)
        return made[names[address]]

    monkeypatch.setattr(status_ssh, "_spawn", spawn)
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
    assert read_command(targets["mq"]).startswith("sudo -n python3 -S -c ")
    assert (targets["w1"].user, targets["w1"].become) == ("root", False)
    assert read_command(targets["w1"]).startswith("python3 -S -c ")


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
    command = {name: host.argv[-1] for name, host in made.items()}
    assert command["mq"].startswith("sudo -n python3 -S -c ")
    assert command["w2"].startswith("sudo -n python3 -S -c ")
    assert command["w1"].startswith("python3 -S -c ")
    # the read first (its source and code, compressed, their lengths on the first line),
    # then each host's own parameters on the last line of its stdin, never in the
    # command line
    for name, host in made.items():
        header, _, rest = host.first.partition(b"\n")
        length, _code_length, _tag = header.split()
        assert b"def read_host(" in zlib.decompress(rest[: int(length)])
        assert json.loads(host.stdin)["secret"] == f"pw-{name}"
        assert not any(f"pw-{name}" in arg for arg in host.argv)
    assert all(h.facts == {"hostname": h_name} for h_name, h in hosts.items()), hosts


def test_sudo_asking_for_a_password_says_what_to_fix(
    full: LoadedInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = SshResult("", "sudo: a password is required\n", 1)
    mq = next(t for t in ssh_targets(full) if t.name == "mq")
    hosts, _ = _fake_round(monkeypatch, full, {mq.address: refused})
    assert hosts["mq"].facts is None
    error = str(hosts["mq"].error)
    assert "`sudo -n` as deploy failed (sudo: a password is required)" in error
    assert "passwordless sudo for deploy" in error
    assert hosts["w1"].facts is not None
