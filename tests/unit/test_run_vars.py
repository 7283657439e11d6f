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


def test_the_payload_cache_is_named_by_what_the_modules_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A changed module (another qsetup) gets another cache; at most three are kept."""
    from qsetup.remote import runner

    playbooks = tmp_path / "playbooks"
    for sub in ("library", "module_utils"):
        (playbooks / sub).mkdir(parents=True)
    module = playbooks / "library" / "qsetup_x.py"
    module.write_text("print(1)\n")
    monkeypatch.setattr(runner, "resource_dir", lambda name: playbooks)
    base = tmp_path / "cache"
    first = runner.payload_cache_dir(base)
    assert runner.payload_cache_dir(base) == first and first.is_dir()
    assert oct(base.stat().st_mode & 0o777) == "0o700"
    made = [first]
    for n in range(2, 6):
        module.write_text(f"print({n})\n")
        made.append(runner.payload_cache_dir(base))
    assert len(set(made)) == 5
    assert sorted(p.name for p in base.iterdir()) == sorted(p.name for p in made[-3:])


def test_the_first_call_links_ansibles_payload_cache_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_vars, "_LINKED", [])
    local_tmp, cache = tmp_path / "ansible-local-1", tmp_path / "cache"
    local_tmp.mkdir()
    cache.mkdir()
    run_vars.link_payload_cache(str(local_tmp), str(cache))
    assert (local_tmp / "ansiballz_cache").resolve() == cache
    (local_tmp / "ansiballz_cache").unlink()
    run_vars.link_payload_cache(str(local_tmp), str(cache))  # once per process
    assert not (local_tmp / "ansiballz_cache").exists()


def test_no_payload_cache_where_none_can_be_made(tmp_path: Path) -> None:
    """A cache folder that cannot be made leaves Ansible building as it always did."""
    from qsetup.remote import runner

    blocker = tmp_path / "file"
    blocker.write_text("")
    assert runner.payload_cache_dir(blocker / "cache") is None


def test_ansible_parses_the_plugins_documentation_once_not_per_lookup() -> None:
    """Ansible records a configurable plugin's options from its documentation, parsed
    on each load until recorded; documentation without ``options`` was never recorded,
    so every variables lookup (each task of each host) parsed it again."""
    from ansible import constants as C  # noqa: N812
    from ansible.plugins.loader import vars_loader

    vars_loader.add_directory(str(Path(run_vars.__file__).parent))
    assert vars_loader.get("qsetup_run") is not None
    assert C.config.has_configuration_definition("vars", "qsetup_run")
