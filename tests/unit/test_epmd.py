"""epmd bound to the node's addresses: the drop-in, the read of the host's name, the comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_firewall import CLUSTER, _load, _targets
from unitdata import WriteInventory, as_deployed, playbook_module

from qsetup.artifacts.targets import secret_values
from qsetup.converge.compare import compare_host, host_clean, refusals
from qsetup.converge.facts import HostFacts
from qsetup.converge.view import host_view
from qsetup.desired.epmd import DROPIN_PATH

SINGLE = CLUSTER.replace("  hosts: [mq1, mq2, mq3]\n", "  host: mq1\n")


def _read(target: Any, secrets: Any, addresses: list[str], own: list[str]) -> dict[str, Any]:
    read = as_deployed(target, secrets)
    read["name_addresses"] = {"name": target.host, "addresses": addresses, "own": own}
    return read


def _lines(target: Any, read: dict[str, Any], secrets: Any) -> list[str]:
    return [d.line for d in compare_host(target, HostFacts.from_read(read), secrets) if d.fixable]


def _filter(target: Any, read: dict[str, Any], secrets: Any) -> dict[str, Any]:
    """What the playbooks get: the drop-in's file entry (with its content), the host's refusals."""
    facts, content = HostFacts.from_read(read), None
    epmd: dict[str, Any] = host_view(target, facts, secrets, {})["epmd"]
    if epmd["file"] is not None:
        content = epmd["file"]["content"]
    found = refusals(compare_host(target, facts, secrets))
    return {"refusal": found[0] if found else None, "content": content}


@pytest.fixture
def cluster(write_inventory: WriteInventory, tmp_path: Path) -> tuple[Any, Any]:
    loaded = _load(write_inventory, CLUSTER)
    return secret_values(loaded), _targets(loaded, tmp_path)


def test_a_cluster_node_binds_loopback_its_address_and_its_name(cluster: Any) -> None:
    secrets, targets = cluster
    read = _read(targets["mq2"], secrets, ["127.0.1.1"], ["127.0.1.1"])
    read["found"]["files"] = [f for f in read["found"]["files"] if f["path"] != DROPIN_PATH]
    assert _lines(targets["mq2"], read, secrets) == [
        f"mq2: {DROPIN_PATH}: missing (epmd listens on every address); run qsetup deploy"
    ]
    content = _filter(targets["mq2"], read, secrets)["content"]
    assert [line for line in content.splitlines() if line.startswith("ListenStream")] == [
        "ListenStream=",
        "ListenStream=127.0.0.1:4369",
        "ListenStream=10.0.0.2:4369",
        "ListenStream=127.0.1.1:4369",
    ]
    assert "FreeBind=yes" in content


def test_a_single_node_binds_no_outside_address(
    write_inventory: WriteInventory, tmp_path: Path
) -> None:
    loaded = _load(write_inventory, SINGLE)
    secrets, targets = secret_values(loaded), _targets(loaded, tmp_path)
    assert targets["mq1"].epmd == ("127.0.0.1",)
    assert targets["mq2"].epmd is None  # not a broker node: no drop-in there
    read = _read(targets["mq1"], secrets, [], [])
    content = _filter(targets["mq1"], read, secrets)["content"]
    assert "ListenStream=127.0.0.1:4369\nFreeBind=yes\n" in content
    assert "10.0.0.1" not in content


def test_a_deployed_node_has_no_difference_and_a_changed_name_is_one(cluster: Any) -> None:
    secrets, targets = cluster
    read = as_deployed(targets["mq1"], secrets)
    assert host_clean(compare_host(targets["mq1"], HostFacts.from_read(read), secrets))
    assert _filter(targets["mq1"], read, secrets) == {"refusal": None, "content": None}
    # /etc/hosts now maps the name to the node's address: 127.0.1.1 is no longer needed.
    moved = _read(targets["mq1"], secrets, ["10.0.0.1"], ["10.0.0.1"])
    assert _lines(targets["mq1"], moved, secrets) == [
        f"mq1: {DROPIN_PATH}: content differs from what qsetup renders (epmd on 127.0.0.1, "
        "10.0.0.1); run qsetup deploy"
    ]


def test_a_name_that_resolves_to_another_host_refuses_the_node(cluster: Any) -> None:
    secrets, targets = cluster
    read = _read(targets["mq3"], secrets, ["10.0.0.2", "127.0.1.1"], ["127.0.1.1"])
    refusal = _filter(targets["mq3"], read, secrets)["refusal"]
    assert refusal == (
        "its name mq3 resolves to 10.0.0.2, not an address of this host (rabbitmqctl "
        "reaches rabbit@mq3 there); map mq3 to 127.0.1.1 or to this host's address in its "
        "/etc/hosts; deploy refuses this host"
    )
    diffs = compare_host(targets["mq3"], HostFacts.from_read(read), secrets)
    assert [(d.kind, d.fix) for d in diffs] == [("preflight", "refuse")]


def test_the_read_reports_the_short_names_addresses_and_which_are_its_own() -> None:
    read = playbook_module("library/qsetup_host_facts.py")
    from ansible.module_utils.qsetup_read import read_name_addresses  # type: ignore[import-not-found]

    assert read is not None
    found = read_name_addresses("localhost.example")
    assert found["name"] == "localhost"
    assert "127.0.0.1" in found["addresses"] and "127.0.0.1" in found["own"]
    nowhere = read_name_addresses("qsetup-no-such-name.invalid")
    assert nowhere["addresses"] == [] and nowhere["own"] == []
