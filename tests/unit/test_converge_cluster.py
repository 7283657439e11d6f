"""A cluster deploy and restart with a broker host down (issue 20), decided in converge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unitdata import playbook_module

from qsetup.converge.cluster import (
    NodeView,
    cluster_plan,
    cluster_problems,
    node_hostnames,
    quorum_refusal,
    restart_refusal,
)

shim: Any = playbook_module("filter_plugins/qsetup_cluster.py")

A, B, C = "rabbit@a", "rabbit@b", "rabbit@c"
NODES = [("a", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "10.0.0.3")]
BLOCK = "10.0.0.1 a\n10.0.0.2 b.example b\n10.0.0.3 c"


def status(running: list[str], members: list[str]) -> str:
    return json.dumps({"running_nodes": running, "disk_nodes": members, "partitions": {},
                       "alarms": []})  # fmt: skip


def test_a_node_not_read_keeps_the_name_the_read_nodes_hold_for_its_address() -> None:
    got = node_hostnames(NODES, {"a": "a", "c": "c"}, [BLOCK, None])
    assert got == {"a": "a", "b": "b.example", "c": "c"}


def test_what_a_node_reports_wins_over_an_old_block_line() -> None:
    assert node_hostnames(NODES, {"a": "a", "b": "b2", "c": "c"}, [BLOCK])["b"] == "b2"


def test_a_node_named_nowhere_has_no_name() -> None:
    assert node_hostnames(NODES, {"a": "a", "c": "c"}, [None, ""]) == {
        "a": "a",
        "b": None,
        "c": "c",
    }


def test_a_powered_off_member_is_neither_joined_nor_forgotten() -> None:
    whole = status([A, C], [A, B, C])
    got = cluster_plan([NodeView("a", A, whole), NodeView("b", B, read=False),
                        NodeView("c", C, whole)])  # fmt: skip
    assert got["nodes"] == [A, B, C] and got["up"] == [A, C]
    assert (got["seed"], got["join"], got["forget"], got["problems"]) == ("a", [], [], [])
    # The others' view is healthy without it: the play checks the nodes it reached.
    assert cluster_problems(whole, got["up"]) == []
    # Taken as read (the old plan), the dead node was a rebuilt one: joined and forgotten.
    old = cluster_plan([NodeView("a", A, whole), NodeView("b", B), NodeView("c", C, whole)])
    assert (old["join"], old["forget"]) == (["b"], [B])


def test_a_powered_off_first_node_leaves_the_seed_to_the_next() -> None:
    whole = status([B, C], [A, B, C])
    got = cluster_plan([NodeView("a", A, read=False), NodeView("b", B, whole),
                        NodeView("c", C, whole)])  # fmt: skip
    assert (got["seed"], got["up"], got["join"], got["forget"]) == ("b", [B, C], [], [])


def test_with_a_node_named_nowhere_no_member_is_taken_for_dropped() -> None:
    view = status([A, C], [A, C, "rabbit@b-old-name"])
    got = cluster_plan([NodeView("a", A, view), NodeView("b", None, read=False),
                        NodeView("c", C, view)])  # fmt: skip
    assert (got["nodes"], got["up"], got["join"], got["forget"]) == ([A, C], [A, C], [], [])
    # With every node named, that member is one the inventory dropped: forgotten.
    named = cluster_plan([NodeView("a", A, view), NodeView("b", B, read=False),
                          NodeView("c", C, view)])  # fmt: skip
    assert named["forget"] == ["rabbit@b-old-name"]


def test_a_deploy_goes_on_with_a_majority_of_broker_nodes_and_stops_without() -> None:
    hosts = ["a", "b", "c"]
    assert quorum_refusal(hosts, []) == ""
    assert quorum_refusal(hosts, ["b"]) == ""
    assert quorum_refusal(hosts, ["c", "a"]) == (
        "not changed: 2 of the cluster's 3 broker nodes are unreachable (a, c); a deploy needs "
        "a majority of broker.hosts reachable: power them on or check their SSH access, then "
        "deploy again"
    )
    # Two nodes: one away is no majority; a single node is no cluster; workers do not count.
    assert quorum_refusal(hosts[:2], ["b"]).startswith("not changed: 1 of the cluster's 2")
    assert quorum_refusal(hosts[:1], ["a"]) == ""
    assert quorum_refusal(hosts, ["worker1", "worker2", "b"]) == ""
    assert quorum_refusal([*hosts, "d", "e"], ["a", "b"]) == ""
    assert quorum_refusal([*hosts, "d"], ["a", "b"]).startswith("not changed: 2 of")


def test_a_broker_restart_needs_every_node_reachable() -> None:
    assert restart_refusal(["a", "b", "c"], []) == ""
    assert restart_refusal(["a", "b", "c"], ["w1"]) == ""
    assert restart_refusal(["a"], ["a"]) == ""
    assert restart_refusal(["a", "b", "c"], ["b"]) == (
        "not restarted: RabbitMQ on b is unreachable, and taking another node down could "
        "leave the cluster without a majority: power it on or check its SSH access, then "
        "restart again"
    )


# --- the shim, as the cluster play calls it with Ansible's hostvars -------------------------


def test_the_shim_plans_around_a_host_this_run_did_not_reach() -> None:
    whole = status([A, C], [A, B, C])
    nodes = [{"host": h, "address": a} for h, a in NODES]
    read = {"rc": 0, "stdout": whole}
    converge = {"clean": False, "hosts_block": BLOCK.replace("b.example b", "b")}
    hostvars = {
        "a": {"qsetup_hostname": "a", "qsetup_cluster_status": read, "qsetup_converge": converge},
        "b": {"qsetup_broker_nodes": nodes},  # powered off: no read, no status
        "c": {"qsetup_hostname": "c", "qsetup_cluster_status": read, "qsetup_converge": converge},
    }
    got = shim.qsetup_cluster_plan(nodes, hostvars)
    assert (got["nodes"], got["up"], got["seed"]) == ([A, B, C], [A, C], "a")
    assert (got["join"], got["forget"], got["problems"]) == ([], [], [])
    # A host whose cluster_status failed was reached: it joins.
    hostvars["b"] = {"qsetup_hostname": "b", "qsetup_cluster_status": {"rc": 69, "stdout": ""}}
    got = shim.qsetup_cluster_plan(nodes, hostvars)
    assert (got["up"], got["join"], got["forget"]) == ([A, B, C], ["b"], [B])


def test_the_shims_pass_broker_hosts_to_the_refusals() -> None:
    nodes = [{"host": h, "address": a} for h, a in NODES]
    assert shim.qsetup_quorum_refusal(nodes, ["b"]) == ""
    assert shim.qsetup_quorum_refusal(nodes, ["a", "b"]).startswith("not changed: 2 of")
    assert shim.qsetup_restart_refusal(nodes, ["b"]).startswith("not restarted: RabbitMQ on b ")


def test_a_lone_survivor_is_never_reset_into_blank_nodes_rebuilt_beside_it() -> None:
    # Two of three hosts rebuilt empty at once: each blank node runs alone, as does the
    # survivor; it holds the cluster's database (every node a member), so it is the seed.
    blank_a, blank_b = status([A], [A]), status([B], [B])
    survivor = status([C], [A, B, C])
    got = cluster_plan([NodeView("a", A, blank_a), NodeView("b", B, blank_b),
                        NodeView("c", C, survivor)])  # fmt: skip
    assert (got["seed"], got["join"], got["forget"]) == ("c", ["a", "b"], [A, B])
    # Blank nodes alone still form around the first of them.
    fresh = cluster_plan([NodeView("a", A, blank_a), NodeView("b", B, blank_b),
                          NodeView("c", C, status([C], [C]))])  # fmt: skip
    assert (fresh["seed"], fresh["join"]) == ("a", ["b", "c"])


def test_a_host_rebuilt_empty_is_forgotten_by_a_running_node_before_its_first_start() -> None:
    from qsetup.converge.cluster import blank_node, forget_from
    from qsetup.converge.facts import HostFacts
    from qsetup.converge.target import HostTarget

    node = HostTarget("b", broker_node=True, cluster_size=3)
    wanted = ("rabbitmq-server", "python3")
    blank = HostFacts("b", "bookworm", packages=wanted, installed=frozenset({"python3"}))
    built = HostFacts("b", "bookworm", packages=wanted, installed=frozenset(wanted))
    assert blank_node(node, blank) is True
    assert blank_node(node, built) is False
    # A single node has no cluster to be forgotten by; a worker host is no node.
    assert blank_node(HostTarget("b", broker_node=True, cluster_size=1), blank) is False
    assert blank_node(HostTarget("w", cluster_size=3), blank) is False
    # The first other node that runs forgets it; with none running there is nobody to ask.
    assert forget_from("b", [("a", False), ("b", False), ("c", True)]) == "c"
    assert forget_from("a", [("a", True), ("b", False), ("c", False)]) is None


def test_a_node_whose_data_was_wiped_is_blank_until_it_runs(tmp_path: Path) -> None:
    # The package stays installed, the data directory was emptied by hand (or restored
    # without it): its first start is a blank node's and needs the same early forget.
    from qsetup.converge.cluster import blank_node
    from qsetup.converge.facts import HostFacts, UnitFact
    from qsetup.converge.target import HostTarget

    node = HostTarget("b", broker_node=True, cluster_size=3)
    wanted = ("rabbitmq-server",)

    def facts(data: bool | None, state: str) -> HostFacts:
        unit = UnitFact.from_show(
            "rabbitmq-server.service", {"LoadState": "loaded", "ActiveState": state}
        )
        return HostFacts(
            "b",
            "bookworm",
            packages=wanted,
            installed=frozenset(wanted),
            units={unit.name: unit},
            rabbit_data=data,
        )

    assert blank_node(node, facts(False, "inactive")) is True
    assert blank_node(node, facts(False, "failed")) is True
    # Running: it booted already (nothing to do before its first start); with data, or
    # with a read that did not look, it is a member coming back.
    assert blank_node(node, facts(False, "active")) is False
    assert blank_node(node, facts(True, "inactive")) is False
    assert blank_node(node, facts(None, "inactive")) is False
    # What the host's read says about the directory.
    read = playbook_module("module_utils/qsetup_read.py")
    assert read.has_rabbit_data(tmp_path / "gone") is False
    assert read.has_rabbit_data(tmp_path) is False
    (tmp_path / "rabbit@b-feature_flags").write_text("[]")
    assert read.has_rabbit_data(tmp_path) is True


def test_the_shim_asks_the_first_other_node_whose_read_found_rabbitmq_running() -> None:
    nodes = [{"host": h, "address": a} for h, a in NODES]
    running = {"qsetup_converge": {"broker_unit_down": False, "broker_blank": False}}
    blank = {"qsetup_converge": {"broker_unit_down": True, "broker_blank": True}}
    hostvars = {"a": blank, "b": running, "c": running}
    assert shim.qsetup_forget_from(nodes, hostvars, "a") == "b"
    assert shim.qsetup_forget_from(nodes, {"a": blank, "c": running}, "a") == "c"  # b is down
    assert shim.qsetup_forget_from(nodes, {"a": blank}, "a") == ""
