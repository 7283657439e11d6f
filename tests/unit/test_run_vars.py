"""Each host's variables for a run (playbooks/vars_plugins/qsetup_run.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ansible.inventory.group import Group
from ansible.inventory.host import Host
from ansible.parsing.dataloader import DataLoader
from unitdata import playbook_module

from qsetup.artifacts.ansible_data import dump_vars_file

run_vars: Any = playbook_module("vars_plugins/qsetup_run.py")


def test_each_host_gets_its_own_file_as_data_and_groups_get_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "w1.yml").write_text(
        dump_vars_file({"qsetup_secret_values": {"p": "Ab{{ 7 * 7 }}cd"}, "n": 1})
    )
    (tmp_path / "w2.yml").write_text(dump_vars_file({"n": 2}))
    monkeypatch.setenv(run_vars.ENV, str(tmp_path))
    plugin = run_vars.VarsModule()
    loader = DataLoader()
    got = plugin.get_vars(loader, str(tmp_path), [Host("w1")])
    assert got["n"] == 1
    assert got["qsetup_secret_values"]["p"] == "Ab{{ 7 * 7 }}cd"  # as written
    assert plugin.get_vars(loader, str(tmp_path), [Host("w2")]) == {"n": 2}
    assert plugin.get_vars(loader, str(tmp_path), [Group("all"), Host("gone")]) == {}


def test_each_file_is_parsed_once_though_ansible_makes_a_new_plugin_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "w1.yml").write_text(dump_vars_file({"n": 1}))
    monkeypatch.setenv(run_vars.ENV, str(tmp_path))
    loader = DataLoader()
    parsed: list[str] = []
    real = loader.load_from_file

    def counting(path: str, *args: Any, **kwargs: Any) -> Any:
        parsed.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(loader, "load_from_file", counting)
    for _ in range(3):
        assert run_vars.VarsModule().get_vars(loader, str(tmp_path), [Host("w1")]) == {"n": 1}
    assert parsed == [str(tmp_path / "w1.yml")]
    (tmp_path / "w1.yml").write_text(dump_vars_file({"n": 22}))  # a new run's file
    assert run_vars.VarsModule().get_vars(loader, str(tmp_path), [Host("w1")]) == {"n": 22}


def test_without_the_environment_no_host_gets_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(run_vars.ENV, raising=False)
    assert run_vars.VarsModule().get_vars(DataLoader(), "/", [Host("w1")]) == {}
