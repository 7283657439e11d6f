"""The one comparison (qsetup.converge): targets and facts in, differences out."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from typing import Any

import pytest
from unitdata import FULL_INVENTORY, FULL_SECRETS, WriteInventory

from qsetup.converge.broker import broker_changes, compare_definitions
from qsetup.converge.compare import LEAVE, compare_host, host_clean
from qsetup.converge.facts import ClusterNode, FeatureFlag, FileFact, HostFacts, UnitFact
from qsetup.converge.target import (
    FileTarget,
    HostTarget,
    ServiceTarget,
    VenvTarget,
    broker_from_plan,
    hosts_block,
)
from qsetup.desired.broker import (
    BrokerAccount,
    BrokerPermission,
    BrokerPolicy,
    BrokerState,
)
from qsetup.inventory.loader import LoadedInventory, load_inventory

UNIT = "qsetup-worker-a@1.service"
ENV = "/etc/qsetup/worker-a.env"
VENV = "/opt/qsetup/venvs/a"
MANIFEST = {
    "version": 1,
    "units": [{"unit": UNIT, "role": "worker"}],
    "files": [ENV],
    "venvs": [VENV],
    "code": [],
}


def running(name: str, enabled: str = "enabled") -> UnitFact:
    return UnitFact(name, "loaded", "active", "running", enabled)


def target() -> HostTarget:
    return HostTarget(
        host="w1",
        files=(FileTarget(ENV, "sum-env", "0640", "root", "celery", UNIT),),
        venvs=(VenvTarget("a", VENV, f"{VENV}/.qsetup-packages", "sum-marker"),),
        services=(ServiceTarget(UNIT, "workers", f"{VENV}/bin/python"),),
        manifest=MANIFEST,
    )


def facts(**changes: Any) -> HostFacts:
    base = HostFacts(
        hostname="w1",
        release="bookworm",
        files={
            ENV: FileFact(ENV, "0640", "root", "celery", False, "sum-env"),
            f"{VENV}/.qsetup-packages": FileFact(
                f"{VENV}/.qsetup-packages", "0644", "root", "root", False, "sum-marker"
            ),
        },
        units={UNIT: running(UNIT)},
        discovered=(UNIT,),
        manifest=MANIFEST,
        executables={f"{VENV}/bin/python": True},
    )
    return replace(base, **changes)


def test_a_host_as_planned_has_no_difference() -> None:
    assert compare_host(target(), facts(), {}) == ()


def test_an_edited_file_and_a_disabled_unit_are_differences_deploy_fixes() -> None:
    edited = dict(facts().files)
    edited[ENV] = replace(edited[ENV], checksum="edited")
    diffs = compare_host(target(), facts(files=edited, units={UNIT: running(UNIT, "disabled")}), {})
    assert [(d.kind, d.obj, d.fix) for d in diffs] == [
        ("file", ENV, "install"),
        ("unit", f"unit {UNIT}", "enable"),
    ]
    assert not host_clean(diffs)
    assert diffs[0].line.startswith(f"w1: {ENV}: content differs")


def test_a_removed_interpreter_rebuilds_the_virtualenv() -> None:
    diffs = compare_host(target(), facts(executables={f"{VENV}/bin/python": False}), {})
    assert [(d.kind, d.obj, d.fix) for d in diffs] == [("venv", VENV, "build")]


def test_a_unit_qsetup_never_installed_is_named_and_left() -> None:
    stray = "qsetup-worker-zz@1.service"
    diffs = compare_host(
        target(),
        facts(discovered=(UNIT, stray), units={UNIT: running(UNIT), stray: running(stray)}),
        {},
    )
    assert [(d.kind, d.fix) for d in diffs] == [("unmanaged", LEAVE)]
    assert "deploy leaves it" in diffs[0].detail
    assert host_clean(diffs)  # deploy has nothing to do: status still names it


def test_a_unit_the_manifest_recorded_and_the_inventory_dropped_is_removed() -> None:
    old = "qsetup-worker-old@2.service"
    manifest = {**MANIFEST, "units": [*MANIFEST["units"], {"unit": old, "role": "worker"}]}
    diffs = compare_host(
        target(),
        facts(manifest=manifest, discovered=(UNIT, old), units={UNIT: running(UNIT)}),
        {},
    )
    assert [(d.kind, d.obj, d.fix) for d in diffs] == [("removal", f"unit {old}", "remove")]


def test_a_unit_systemd_lists_without_a_file_is_a_leftover_naming_the_fix() -> None:
    old = "qsetup-worker-old@2.service"
    gone = UnitFact(old, "not-found", "inactive", "dead", "")
    diffs = compare_host(
        target(), facts(discovered=(UNIT, old), units={UNIT: running(UNIT), old: gone}), {}
    )
    assert [(d.kind, d.obj, d.fix) for d in diffs] == [("leftover", f"unit {old}", LEAVE)]
    assert diffs[0].line == (
        f"w1: unit {old}: left in systemd (not-found, inactive (dead)) though its unit file is "
        "gone and the inventory does not put it on w1; run `systemctl daemon-reload` and "
        f"`systemctl reset-failed {old}` there"
    )
    assert host_clean(diffs)  # nothing for deploy to remove; status still names it
    failed = replace(gone, active_state="failed", sub_state="failed")
    diffs = compare_host(
        target(), facts(discovered=(UNIT, old), units={UNIT: running(UNIT), old: failed}), {}
    )
    assert [d.kind for d in diffs] == ["leftover"]
    assert "not-found, failed (failed)" in diffs[0].detail


def test_a_not_found_unit_that_is_not_a_leftover() -> None:
    old = "qsetup-worker-old@2.service"
    gone = UnitFact(old, "not-found", "inactive", "dead", "")
    # The manifest still names it: deploy removes it (and makes systemd forget it).
    manifest = {**MANIFEST, "units": [*MANIFEST["units"], {"unit": old, "role": "worker"}]}
    diffs = compare_host(
        target(),
        facts(manifest=manifest, discovered=(UNIT, old), units={UNIT: running(UNIT), old: gone}),
        {},
    )
    assert [(d.kind, d.fix) for d in diffs] == [("removal", "remove")]
    # Its file deleted under it while it runs: a reload does not stop it.
    live = replace(gone, active_state="active", sub_state="running")
    diffs = compare_host(
        target(), facts(discovered=(UNIT, old), units={UNIT: running(UNIT), old: live}), {}
    )
    assert [(d.kind, d.fix) for d in diffs] == [("unmanaged", LEAVE)]
    assert "not-found, active (running)" in diffs[0].detail
    # Where the inventory puts it, a unit without a file is one deploy installs.
    diffs = compare_host(target(), facts(units={UNIT: replace(gone, name=UNIT)}), {})
    assert [(d.kind, d.obj, d.fix) for d in diffs] == [("unit", f"unit {UNIT}", "install")]


NODES = (("10.0.0.1", "m1"), ("10.0.0.2", "m2.example"))
BLOCK = "10.0.0.1 m1\n10.0.0.2 m2.example m2"


def cluster_node(**changes: Any) -> HostTarget:
    return replace(target(), **{"broker_node": True, "cluster_size": 2, "cluster_hosts": NODES,
                                **changes})  # fmt: skip


def test_the_cluster_block_in_etc_hosts_is_its_own_difference() -> None:
    running_cluster = dict(facts().units, **{"rabbitmq-server.service": running("rabbitmq")})
    node = cluster_node(
        services=(*target().services, ServiceTarget("rabbitmq-server.service", "broker"))
    )
    here = facts(units=running_cluster, cluster=(ClusterNode("a", True), ClusterNode("b", True)))
    assert hosts_block(node, None) == BLOCK
    assert compare_host(node, replace(here, hosts_block=BLOCK, hosts_block_read=True), {}) == ()
    for block in (None, BLOCK.replace("m2.example m2", "m2.example"), BLOCK + "\n10.0.0.3 x"):
        diffs = compare_host(node, replace(here, hosts_block=block, hosts_block_read=True), {})
        assert [(d.kind, d.fix) for d in diffs] == [("hosts_block", "write")]
        assert diffs[0].line.startswith("w1: /etc/hosts (the RabbitMQ cluster's lines): ")
        assert not host_clean(diffs)
    # A read that did not look for the block (no marker given) decides nothing about it.
    assert compare_host(node, here, {}) == ()


def test_a_single_broker_node_needs_no_cluster_block() -> None:
    single = replace(target(), broker_node=True)
    assert hosts_block(single, BLOCK) is None
    left = compare_host(single, facts(hosts_block=BLOCK, hosts_block_read=True), {})
    assert [(d.kind, d.detail.split(";")[0]) for d in left] == [
        ("hosts_block", "holds cluster lines though the broker is a single node")
    ]
    assert compare_host(single, facts(hosts_block=None, hosts_block_read=True), {}) == ()


def test_a_node_whose_hostname_is_unknown_keeps_its_line() -> None:
    down = cluster_node(cluster_hosts=(NODES[0], ("10.0.0.2", None)))
    assert hosts_block(down, BLOCK) == BLOCK
    assert hosts_block(down, None) == "10.0.0.1 m1"


def test_the_block_lines_come_from_the_plan_and_the_reads_hostnames() -> None:
    hv = {"qsetup_is_broker": True}
    common = {"qsetup_broker_nodes": [{"host": "a", "address": "10.0.0.1"},
                                      {"host": "b", "address": "10.0.0.2"}]}  # fmt: skip
    t = HostTarget.from_plan("a", hv, common, {}, {"a": "m1", "b": "m2.example"})
    assert (t.cluster_hosts, hosts_block(t, None)) == (NODES, BLOCK)
    assert HostTarget.from_plan("a", hv, common, {}).cluster_hosts == (
        ("10.0.0.1", None),
        ("10.0.0.2", None),
    )
    assert HostTarget.from_plan("a", {}, common, {}, {"a": "m1"}).cluster_hosts == ()


def _hash(password: str, salt: bytes = b"salt") -> str:
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


STATE = BrokerState(
    vhosts=("shop",),
    users=(
        BrokerAccount(
            "shop", "rabbitmq-user-shop", (), (BrokerPermission("shop", ".*", ".*", ".*"),)
        ),
    ),
    policies=(BrokerPolicy("limits", "shop", "^celery", "queues", 0, (("max-length", 10),)),),
    delete_guest=True,
    port=5672,
    management_port=15672,
    admin_user="qsetup-admin",
    admin_secret="rabbitmq-user-qsetup-admin",
)
SECRETS = {"rabbitmq-user-shop": "right-password"}


def definitions(password: str = "right-password", max_length: int = 10) -> dict[str, Any]:
    return {
        "vhosts": [{"name": "/"}, {"name": "shop"}],
        "users": [{"name": "shop", "tags": [], "password_hash": _hash(password)}],
        "permissions": [
            {"user": "shop", "vhost": "shop", "configure": ".*", "write": ".*", "read": ".*"}
        ],
        "topic_permissions": [],
        "policies": [
            {
                "vhost": "shop",
                "name": "limits",
                "pattern": "^celery",
                "apply-to": "queues",
                "priority": 0,
                "definition": {"max-length": max_length},
            }
        ],
    }


def test_the_broker_as_planned_has_no_drift() -> None:
    assert compare_definitions(STATE, definitions(), SECRETS) == []


def test_a_changed_password_is_drift_and_deploy_sets_only_the_password() -> None:
    drift = compare_definitions(STATE, definitions(password="changed-by-hand"), SECRETS)
    assert [(d.kind, d.name) for d in drift] == [("password", "shop")]
    changes = broker_changes(STATE, drift, {})
    assert [(u["name"], u["permissions"]) for u in changes["users"]] == [("shop", None)]
    assert "changed-by-hand" not in repr(drift) and "right-password" not in repr(changes)


def test_a_stable_flag_left_disabled_is_a_difference_deploy_enables() -> None:
    flags = (
        FeatureFlag("quorum_queue", "enabled", "required"),
        FeatureFlag("stream_filtering", "disabled", "stable"),
        FeatureFlag("khepri_db", "disabled", "experimental"),
        FeatureFlag("message_containers", "unavailable", "stable"),
    )
    node = replace(target(), broker=STATE, broker_node=True)
    read = facts(definitions=definitions(), feature_flags=flags)
    (diff,) = compare_host(node, read, SECRETS)
    assert (diff.kind, diff.obj, diff.fix) == (
        "feature_flag",
        "broker feature flag 'stream_filtering'",
        "enable",
    )
    assert diff.line.startswith("w1: broker feature flag 'stream_filtering': disabled;")
    enabled = tuple(replace(f, state="enabled") if f.stability == "stable" else f for f in flags)
    assert compare_host(node, replace(read, feature_flags=enabled), SECRETS) == ()


def test_the_read_parses_feature_flags_and_deprecated_features() -> None:
    read = HostFacts.from_read(
        {
            "feature_flags": [{"name": "x", "state": "disabled", "stability": "stable"}],
            "deprecated_used": ["transient_nonexcl_queues"],
        }
    )
    assert read.feature_flags == (FeatureFlag("x", "disabled", "stable"),)
    assert read.deprecated_used == ("transient_nonexcl_queues",)
    assert HostFacts.from_read({}).feature_flags is None


def test_an_edited_policy_is_drift_and_deploy_sets_it() -> None:
    drift = compare_definitions(STATE, definitions(max_length=99), SECRETS)
    assert [(d.kind, d.name, d.state) for d in drift] == [("policy", "shop/limits", "differs")]
    assert [p["name"] for p in broker_changes(STATE, drift, {})["policies"]] == ["limits"]


def test_a_listed_permission_that_grants_nothing_must_be_there() -> None:
    # Flower's API user has "^$" rights on the app's vhost: they give it the vhost's
    # queue stats, so a deleted row is drift that deploy puts back.
    state = replace(
        STATE,
        users=(
            *STATE.users,
            BrokerAccount(
                "flower", "s-flower", ("monitoring",), (BrokerPermission("shop", "^$", "^$", "^$"),)
            ),  # fmt: skip
        ),
    )
    defs = definitions()
    defs["users"].append({"name": "flower", "tags": ["monitoring"]})
    defs["permissions"].append(
        {"user": "flower", "vhost": "shop", "configure": "^$", "write": "^$", "read": "^$"}
    )
    assert compare_definitions(state, defs, SECRETS) == []
    defs["permissions"].pop()
    drift = compare_definitions(state, defs, SECRETS)
    assert [(d.kind, d.name, d.state) for d in drift] == [("permission", "flower@shop", "missing")]
    changes = broker_changes(state, drift, {})
    assert [(u["name"], len(u["permissions"])) for u in changes["users"]] == [("flower", 1)]
    # An unlisted row that grants nothing (what community.rabbitmq gave) is no drift.
    defs["permissions"].append(
        {"user": "shop", "vhost": "/", "configure": "^$", "write": "^$", "read": "^$"}
    )
    defs["permissions"].append(
        {"user": "flower", "vhost": "shop", "configure": "^$", "write": "^$", "read": "^$"}
    )
    assert compare_definitions(state, defs, SECRETS) == []


def test_a_deleted_vhost_brings_back_its_users_rights_and_policies() -> None:
    defs = definitions()
    defs["vhosts"] = [{"name": "/"}]
    defs["permissions"] = []
    defs["policies"] = []
    drift = compare_definitions(STATE, defs, SECRETS)
    changes = broker_changes(STATE, drift, {})
    assert changes["vhosts"] == ["shop"]
    assert [u["name"] for u in changes["users"] if u["permissions"]] == ["shop"]
    assert [p["name"] for p in changes["policies"]] == ["limits"]


@pytest.fixture
def full(write_inventory: WriteInventory) -> LoadedInventory:
    return load_inventory(write_inventory(FULL_INVENTORY, FULL_SECRETS))


def test_the_broker_target_from_the_plan_is_the_desired_state(full: LoadedInventory) -> None:
    from qsetup.artifacts.plan import build_ansible_inventory
    from qsetup.artifacts.render import render_all
    from qsetup.desired.state import broker_state

    inv = full.inventory
    plan = build_ansible_inventory(inv, render_all(inv, full.secrets))
    assert broker_from_plan(plan["all"]["vars"]["qsetup_broker"]) == broker_state(inv)
    hosts = plan["all"]["hosts"]
    for name, hv in hosts.items():
        t = HostTarget.from_plan(name, hv, plan["all"]["vars"], {})
        assert {s.unit for s in t.services} >= {s["unit"] for s in hv["qsetup_services"]}


def test_definitions_not_read_say_whether_rabbitmq_runs() -> None:
    broker = HostTarget(host="mq", broker=STATE, broker_node=True)
    rabbit = "rabbitmq-server.service"

    def line(units: dict[str, UnitFact]) -> str:
        diffs = compare_host(broker, HostFacts("mq", "bookworm", units=units), SECRETS)
        return next(d.line for d in diffs if d.kind == "broker_api")

    assert line({rabbit: running(rabbit)}) == (
        "mq: broker management API: its definitions could not be read as qsetup-admin; "
        "run qsetup deploy"
    )
    stopped = UnitFact(rabbit, "loaded", "inactive", "dead", "enabled")
    assert line({rabbit: stopped}) == (
        "mq: broker management API: its definitions could not be read "
        "(rabbitmq-server.service is not running); run qsetup deploy"
    )
