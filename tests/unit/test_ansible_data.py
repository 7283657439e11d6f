"""Values handed to Ansible reach tasks exactly as written: never templated, never retyped.

These run a real ``ansible-playbook`` on the local machine (connection local): the
vars file and inventory qsetup writes are read by Ansible's own loader.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qsetup.artifacts.ansible_data import dump_inventory, dump_vars_file

HOSTILE = [
    "Ab{{ 7 * 7 }}cd",
    "{% raw %}x{% endraw %}y",
    "{# comment #}z",
    "0755",
    "1e3",
    "true",
    "null",
    "~",
    "0x1F",
    "12:30",
    "- dash",
    "'quoted'",
    'dq"uote',
    "back\\slash",
    "tab\there",
    "ünïcødé",
    "",
]


def _ansible_playbook() -> str:
    path = Path(sys.executable).parent / "ansible-playbook"
    if not path.exists():
        pytest.skip("ansible-playbook is not installed beside this Python")
    return str(path)


def _run(tmp_path: Path, inventory: str, vars_file: str, canary: Path) -> dict[str, object]:
    (tmp_path / "inventory.yml").write_text(inventory, encoding="utf-8")
    (tmp_path / "vars.yml").write_text(vars_file, encoding="utf-8")
    out = tmp_path / "out.json"
    (tmp_path / "play.yml").write_text(
        f"""
- hosts: local1
  gather_facts: false
  vars_files: [vars.yml]
  tasks:
    - ansible.builtin.copy:
        dest: {out}
        content: "{{{{ {{'secrets': secret_values, 'host': host_value, 'group': group_value,
                        'nested': nested.inner}} | to_json }}}}"
""",
        encoding="utf-8",
    )
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "False"}
    proc = subprocess.run(
        [_ansible_playbook(), "-i", "inventory.yml", "play.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not canary.exists(), "a value was evaluated as a template: its lookup ran"
    data = json.loads(out.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_values_reach_tasks_literally_and_lookups_never_run(tmp_path: Path) -> None:
    canary = tmp_path / "PWNED"
    lookup = "{{ lookup('pipe', 'touch " + str(canary) + "') }}"
    values = [*HOSTILE, lookup]
    secrets = {f"s{i}": v for i, v in enumerate(values)}
    inventory = {
        "all": {
            "hosts": {
                "local1": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": sys.executable,
                    "host_value": lookup,
                    "nested": {"inner": [lookup, "0644", {"k": "{{ 1 + 1 }}"}]},
                }
            },
            "vars": {"group_value": "{{ 6 * 7 }}"},
            "children": {"extra": {"hosts": {"local1": None}}},
        }
    }
    data = _run(tmp_path, dump_inventory(inventory), dump_vars_file({"secret_values": secrets}),
                canary)  # fmt: skip
    assert data["secrets"] == secrets
    assert data["host"] == lookup
    assert data["group"] == "{{ 6 * 7 }}"
    assert data["nested"] == [lookup, "0644", {"k": "{{ 1 + 1 }}"}]


def test_numbers_and_booleans_keep_their_types(tmp_path: Path) -> None:
    text = dump_vars_file({"n": 5, "b": True, "none": None, "s": "5", "l": [1, "1"]})
    assert "!unsafe" in text
    # A number stays a number for Ansible (ports, forks); a string that looks like one
    # stays a string.
    assert "n: 5" in text and 's: "5"' in text
