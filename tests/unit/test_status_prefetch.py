"""Status starts last run's SSH clients before the inventory loads, and keeps only exact ones.

The record is a guess: a client is used only when the read computes its very command
line; any other is ended. A changed inventory or ``--timeout`` starts nothing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from unitdata import FULL_INVENTORY, FULL_SECRETS, WriteInventory

from qsetup.cli import _status_args
from qsetup.inventory.loader import load_inventory
from qsetup.status import prefetch
from qsetup.status.prefetch import Prefetch
from qsetup.status.ssh import ReadRound


class _Started:
    """Stands for a started client; records whether it was ended."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.ended = False


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[_Started]:
    """Clients the prefetch starts, never a real ssh."""
    started: list[_Started] = []

    def spawn(argv: list[str], first: bytes) -> Any:
        assert first.split(b"\n", 1)[0].split()[0].isdigit()  # the read, its length first
        started.append(_Started(list(argv)))
        return started[-1]

    def end(client: Any) -> None:
        client.ended = True

    monkeypatch.setattr(prefetch, "spawn", spawn)
    monkeypatch.setattr(prefetch, "end", end)
    return started


def test_the_record_starts_the_same_command_lines_for_the_same_bytes_and_timeout(
    tmp_path: Path, spawned: list[_Started]
) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text("hosts: {}\n", encoding="utf-8")
    Prefetch(inventory, None).settle({"a": ["ssh", "a"], "b": ["ssh", "b"]})

    assert Prefetch(inventory, 3.0).start().take("a", ["ssh", "a"]) is None  # other timeout
    assert spawned == []
    early = Prefetch(inventory, None).start()
    assert sorted(s.argv for s in spawned) == [["ssh", "a"], ["ssh", "b"]]
    assert early.take("a", ["ssh", "a"]) is spawned[0]
    early.discard()  # b was not taken
    assert [s.ended for s in spawned] == [False, True]

    inventory.write_text("hosts: {}\n# edited\n", encoding="utf-8")
    spawned.clear()
    assert Prefetch(inventory, None).start().take("a", ["ssh", "a"]) is None
    assert spawned == []


def test_a_client_whose_command_line_differs_is_ended_not_used(
    tmp_path: Path, spawned: list[_Started]
) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text("hosts: {}\n", encoding="utf-8")
    Prefetch(inventory, None).settle({"a": ["ssh", "-p", "22", "a"]})
    early = Prefetch(inventory, None).start()
    assert early.take("a", ["ssh", "-p", "2222", "a"]) is None
    assert spawned[0].ended


def test_a_record_that_names_another_program_starts_nothing(
    tmp_path: Path, spawned: list[_Started]
) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text("hosts: {}\n", encoding="utf-8")
    Prefetch(inventory, None).settle({"a": ["sh", "-c", "touch /tmp/owned"], "b": ["ssh", "b"]})
    Prefetch(inventory, None).start()
    assert [s.argv for s in spawned] == [["ssh", "b"]]


def test_an_unused_real_client_is_killed_and_reaped() -> None:
    client = prefetch.spawn(["sleep", "30"], b"")
    assert isinstance(client, subprocess.Popen)
    prefetch.end(client)
    assert client.returncode is not None


def test_no_cache_folder_means_no_prefetch_and_no_error(
    tmp_path: Path, spawned: list[_Started], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("", encoding="utf-8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))  # a file: no folder can be made in it
    inventory = tmp_path / "inv.yml"
    inventory.write_text("hosts: {}\n", encoding="utf-8")
    Prefetch(inventory, None).settle({"a": ["ssh", "a"]})
    Prefetch(inventory, None).start()
    Prefetch(tmp_path / "missing.yml", None).start().settle({"a": ["ssh"]})
    assert spawned == []


def test_the_read_takes_the_prefetched_clients_it_would_start_itself(
    write_inventory: WriteInventory, spawned: list[_Started], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_inventory(FULL_INVENTORY, FULL_SECRETS)
    (path.parent / "keys").mkdir()
    (path.parent / "keys" / "id_ed25519").write_text("key\n", encoding="utf-8")
    loaded = load_inventory(path)
    own: list[list[str]] = []

    def spawn_here(argv: list[str], first: bytes) -> Any:
        own.append(list(argv))
        return _Started(list(argv))

    monkeypatch.setattr("qsetup.status.ssh._spawn", spawn_here)
    hosts = list(loaded.inventory.hosts)
    first = ReadRound(loaded, 5.0, hosts, prefetch=Prefetch(path, None).start())
    assert spawned == [] and len(own) == len(hosts)  # no record yet: the read starts all

    own.clear()
    again = ReadRound(loaded, 5.0, hosts, prefetch=Prefetch(path, None).start())
    assert own == []  # every client came from the record
    assert {id(c) for c in again._clients.values()} == {id(s) for s in spawned}
    assert not any(s.ended for s in spawned)

    spawned.clear()
    other = ReadRound(loaded, 9.0, hosts, prefetch=Prefetch(path, None).start())
    assert len(own) == len(hosts)  # ConnectTimeout differs: every client started anew
    assert all(s.ended for s in spawned) and len(spawned) == len(hosts)
    del first, other


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["status", "-i", "a.yml"], (Path("a.yml"), None)),
        (["status", "--inventory=a.yml", "--timeout", "2"], (Path("a.yml"), 2.0)),
        (["status", "-ia.yml", "--json", "--timeout=0.5"], (Path("a.yml"), 0.5)),
        (["status", "--json"], None),
        (["deploy", "-i", "a.yml"], None),
        (["status", "-i", "a.yml", "--timeout", "soon"], None),
        ([], None),
    ],
)
def test_status_words_are_read_before_typer_only_as_a_guess(
    argv: list[str], expected: tuple[Path, float | None] | None
) -> None:
    assert _status_args(["qsetup", *argv]) == expected
