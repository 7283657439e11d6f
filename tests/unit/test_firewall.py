"""The host firewall: who may reach which port, computed once from the inventory.

Checks the rules for several inventories, the nftables file they render to, the
comparison that status and deploy share (table missing, changed, as planned), the
ordering data (what stays open while dropped clients still run) and the validation
of the new inventory fields.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from unitdata import BASE_INVENTORY, BASE_SECRETS, WriteInventory, as_deployed, playbook_module

from qsetup.artifacts.targets import host_targets, plan_hosts, secret_values
from qsetup.artifacts.tls import prepare
from qsetup.converge.compare import compare_host, host_clean
from qsetup.converge.facts import HostFacts
from qsetup.converge.removals import manifest_pending, removals
from qsetup.converge.target import HostTarget
from qsetup.desired.firewall import (
    FIREWALL_UNIT,
    RULESET_PATH,
    UNIT_PATH,
    firewall_rules,
    render_ruleset,
)
from qsetup.errors import QsetupError
from qsetup.inventory.loader import LoadedInventory, load_inventory

CLUSTER = """\
version: 1
hosts:
  mq1: {address: 10.0.0.1}
  mq2: {address: 10.0.0.2}
  mq3: {address: 10.0.0.3}
  w1: {address: 10.0.1.1}
  w2: {address: 10.0.1.2}
  rep: {address: 10.0.1.3}
  mon: {address: 10.0.2.1}
  sched: {address: 10.0.2.2}
  other: {address: 10.0.9.9}
broker:
  hosts: [mq1, mq2, mq3]
  allow_from: [192.168.5.0/24, 10.0.0.200]
  metrics_allow_from: [10.0.7.7]
  vhosts: [orders]
  users:
    - name: orders
      vhost: orders
app:
  module: proj
  source:
    path: app
  broker_user: orders
  vhost: orders
workers:
  - name: default
    hosts: [w1, w2]
    install: pip
  - name: reports
    hosts: [rep, mq1]
    install: pip
beat:
  host: sched
flower:
  host: mon
  port: 5601
  allow_from: [172.16.0.0/12]
  basic_auth:
    - name: admin
firewall:
  enabled: true
"""


def _load(write_inventory: WriteInventory, text: str) -> LoadedInventory:
    return load_inventory(write_inventory(text, BASE_SECRETS))


def _allowed(loaded: LoadedInventory, host: str) -> dict[int, tuple[str, ...]]:
    return firewall_rules(loaded.inventory)[host].allowed


def test_a_cluster_node_lets_each_client_reach_only_its_ports(
    write_inventory: WriteInventory,
) -> None:
    loaded = _load(write_inventory, CLUSTER)
    clients = ("10.0.0.1", "10.0.0.200", "10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.2.1")
    assert _allowed(loaded, "mq2") == {
        4369: ("10.0.0.1", "10.0.0.3"),
        5672: (*clients[:1], "10.0.0.200", *clients[2:], "10.0.2.2", "192.168.5.0/24"),
        15672: ("10.0.0.200", "10.0.2.1", "192.168.5.0/24"),
        15692: ("10.0.7.7",),
        25672: ("10.0.0.1", "10.0.0.3"),
    }
    # A host outside the inventory's roles is nowhere; the Flower host only on its port.
    rules = firewall_rules(loaded.inventory)
    assert set(rules) == {"mq1", "mq2", "mq3", "mon"}
    assert not any("10.0.9.9" in s for r in rules.values() for s in r.allowed.values())
    assert rules["mon"].allowed == {5601: ("172.16.0.0/12",)}


def test_with_tls_the_firewall_guards_amqps_and_https_management(
    write_inventory: WriteInventory,
) -> None:
    loaded = _load(write_inventory, CLUSTER + "tls:\n  enabled: true\n")
    ports = set(_allowed(loaded, "mq1"))
    assert ports == {4369, 5671, 15671, 15692, 25672}
    assert "10.0.2.2" in _allowed(loaded, "mq1")[5671]


def test_a_single_node_opens_erlang_distribution_and_epmd_to_nobody(
    write_inventory: WriteInventory,
) -> None:
    loaded = _load(write_inventory, BASE_INVENTORY + "firewall:\n  enabled: true\n")
    allowed = _allowed(loaded, "rabbit1")
    assert allowed[25672] == () and allowed[4369] == ()
    assert allowed[15692] == ()
    assert allowed[5672] == ("10.0.0.2",)
    # Flower on the broker host: its port too, open to nobody but the host itself.
    assert allowed[5555] == ()
    text = render_ruleset(allowed)
    assert "tcp dport { 4369, 5555, 5672, 15672, 15692, 25672 } reject with tcp reset" in text
    assert 'iif "lo" accept' in text and "ct state established,related accept" in text


def test_a_messaging_plugins_ports_are_guarded_like_amqp(
    write_inventory: WriteInventory,
) -> None:
    # A plugin listed in broker.plugins listens on its own ports: STOMP and MQTT clients
    # are the same as AMQP's; Prometheus listed there without broker.metrics still
    # listens and is kept to broker.metrics_allow_from.
    text = CLUSTER.replace(
        "  vhosts: [orders]\n",
        "  vhosts: [orders]\n  metrics: false\n"
        "  plugins: [rabbitmq_stomp, rabbitmq_mqtt, rabbitmq_prometheus, rabbitmq_shovel]\n",
    )
    allowed = _allowed(_load(write_inventory, text), "mq1")
    for port in (61613, 61614, 1883, 8883):
        assert allowed[port] == allowed[5672], port
    assert allowed[15692] == ("10.0.7.7",)
    # A plugin that only connects out (shovel) opens nothing.
    assert set(allowed) == {1883, 4369, 5672, 8883, 15672, 15692, 25672, 61613, 61614}
    fewer = text.replace("rabbitmq_stomp, ", "").replace(", rabbitmq_prometheus", "")
    plain = _allowed(_load(write_inventory, fewer), "mq1")
    assert 61613 not in plain and 15692 not in plain and 1883 in plain


def test_the_ruleset_replaces_only_qsetups_table_and_never_filters_ssh(
    write_inventory: WriteInventory,
) -> None:
    loaded = _load(write_inventory, CLUSTER)
    text = render_ruleset(_allowed(loaded, "mq1"))
    lines = [line.strip() for line in text.splitlines() if not line.startswith("#")]
    assert lines[:3] == ["table inet qsetup {}", "delete table inet qsetup", "table inet qsetup {"]
    assert "flush" not in text
    assert "policy accept;" in text
    assert " 22" not in text and "dport 22" not in text
    assert "ip saddr 192.168.5.0/24 tcp dport { 5672, 15672 } accept" in lines
    assert "ip saddr 10.0.0.2 tcp dport { 4369, 25672 } accept" in lines
    # mq1 also runs workers: the other nodes let it reach AMQP too.
    assert "ip saddr 10.0.0.1 tcp dport { 4369, 5672, 25672 } accept" in render_ruleset(
        _allowed(loaded, "mq2")
    )


def test_ipv6_sources_get_ip6_rules(write_inventory: WriteInventory) -> None:
    text = CLUSTER.replace("allow_from: [192.168.5.0/24, 10.0.0.200]", "allow_from: [fd00::/64]")
    loaded = _load(write_inventory, text)
    rendered = render_ruleset(_allowed(loaded, "mq1"))
    assert "ip6 saddr fd00::/64 tcp dport { 5672, 15672 } accept" in rendered


def test_an_inventory_without_firewall_gets_none(write_inventory: WriteInventory) -> None:
    loaded = _load(write_inventory, BASE_INVENTORY)
    assert firewall_rules(loaded.inventory) == {}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("allow_from: [192.168.5.0/24, 10.0.0.200]", "allow_from: [192.168.5.1/24]"),
            "broker.allow_from[0]: 192.168.5.1/24 has host bits set; write the "
            "network as 192.168.5.0/24",
        ),
        (
            ("metrics_allow_from: [10.0.7.7]", "metrics_allow_from: [prometheus]"),
            "broker.metrics_allow_from[0]: 'prometheus' is not an IP address or "
            "network; use e.g. 10.0.0.5 or 10.0.0.0/24",
        ),
        (
            ("mon: {address: 10.0.2.1}", "mon: {address: mon.example.org}"),
            "hosts.mon.address: mon.example.org is a DNS name, but firewall.enabled allows "
            "hosts by IP address; give the host's IP address here (or set firewall.enabled: "
            "false)",
        ),
        (
            ("firewall:\n  enabled: true", "firewall:\n  enabled: maybe"),
            "firewall.enabled:",
        ),
    ],
)
def test_bad_firewall_fields_name_the_field_and_line(
    write_inventory: WriteInventory, edit: tuple[str, str], message: str
) -> None:
    path = write_inventory(CLUSTER.replace(*edit), BASE_SECRETS)
    with pytest.raises(QsetupError) as caught:
        load_inventory(path)
    lines = caught.value.lines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}:"), lines
    assert message in lines[0], lines


# --- the comparison -------------------------------------------------------------------


def _targets(loaded: LoadedInventory, tmp_path: Path) -> dict[str, HostTarget]:
    material = prepare(loaded.path, loaded.inventory, None, write=False)
    return host_targets(plan_hosts(loaded, material, tmp_path / "app.tar"))


@pytest.fixture
def cluster(write_inventory: WriteInventory, tmp_path: Path) -> tuple[LoadedInventory, Any]:
    loaded = _load(write_inventory, CLUSTER)
    return loaded, _targets(loaded, tmp_path)


def _firewall_lines(target: HostTarget, read: dict[str, Any], secrets: Any) -> list[str]:
    diffs = compare_host(target, HostFacts.from_read(read), secrets)
    return [d.line for d in diffs if d.kind == "firewall" and d.fix == "load"]


def test_a_host_with_its_table_loaded_has_no_difference(cluster: Any) -> None:
    loaded, targets = cluster
    secrets = secret_values(loaded)
    for host in ("mq1", "mon", "w1"):
        diffs = compare_host(
            targets[host], HostFacts.from_read(as_deployed(targets[host], secrets)), secrets
        )
        assert host_clean(diffs), [d.line for d in diffs]
    assert targets["w1"].firewall is None
    assert FIREWALL_UNIT in {s.unit for s in targets["mq1"].services}


def test_a_deleted_table_is_a_difference_naming_it(cluster: Any) -> None:
    loaded, targets = cluster
    secrets = secret_values(loaded)
    read = as_deployed(targets["mq1"], secrets)
    read["firewall"] = {"loaded": False, "live": None, "file": "same", "error": None}
    assert _firewall_lines(targets["mq1"], read, secrets) == [
        "mq1: firewall (nftables table inet qsetup): not loaded: ports 4369, 5672, 15672, "
        "15692, 25672 are open to every address; run qsetup deploy"
    ]


def test_a_table_changed_by_hand_is_a_difference(cluster: Any) -> None:
    loaded, targets = cluster
    secrets = secret_values(loaded)
    read = as_deployed(targets["mq2"], secrets)
    read["firewall"] = {"loaded": True, "live": "edited", "file": "same", "error": None}
    lines = _firewall_lines(targets["mq2"], read, secrets)
    assert lines == [
        f"mq2: firewall (nftables table inet qsetup): differs from {RULESET_PATH} "
        "(changed by hand?); run qsetup deploy"
    ]


def test_an_edited_ruleset_file_or_unit_is_a_difference(cluster: Any) -> None:
    loaded, targets = cluster
    secrets = secret_values(loaded)
    for path in (RULESET_PATH, UNIT_PATH):
        read = as_deployed(targets["mon"], secrets)
        for f in read["found"]["files"]:
            if f["path"] == path:
                f["checksum"] = "0" * 40
        lines = _firewall_lines(targets["mon"], read, secrets)
        assert len(lines) == 1 and path in lines[0], lines


def test_a_stopped_firewall_unit_is_a_unit_difference(cluster: Any) -> None:
    loaded, targets = cluster
    secrets = secret_values(loaded)
    read = as_deployed(targets["mq1"], secrets)
    read["units"][FIREWALL_UNIT]["UnitFileState"] = "disabled"
    diffs = compare_host(targets["mq1"], HostFacts.from_read(read), secrets)
    assert [(d.kind, d.obj, d.fix) for d in diffs] == [("unit", f"unit {FIREWALL_UNIT}", "enable")]


def test_the_read_asks_for_the_table_only_where_the_plan_puts_one(
    cluster: Any, tmp_path: Path
) -> None:
    loaded, _ = cluster
    material = prepare(loaded.path, loaded.inventory, None, write=False)
    plans = plan_hosts(loaded, material, tmp_path / "app2.tar")
    mq1, w1 = plans.hostvars("mq1"), plans.hostvars("w1")
    assert mq1["qsetup_read_params"]["firewall"] == {"table": "qsetup", "path": RULESET_PATH}
    assert FIREWALL_UNIT in mq1["qsetup_read_params"]["units"]
    assert "nftables" in mq1["qsetup_apt_packages"]["bookworm"]
    assert "firewall" not in w1["qsetup_read_params"]
    assert "nftables" not in w1["qsetup_apt_packages"]["bookworm"]
    # Installed by qsetup_firewall, not by the services' file task.
    assert RULESET_PATH not in {f["dest"] for f in mq1["qsetup_files"]}
    assert {"unit": FIREWALL_UNIT, "role": "firewall"} in mq1["qsetup_manifest"]["units"]
    assert {RULESET_PATH, UNIT_PATH} <= set(mq1["qsetup_manifest"]["files"])


# --- ordering: open before, close after -------------------------------------------------


def test_a_dropped_client_stays_allowed_until_the_removals_ran(
    cluster: Any, write_inventory: WriteInventory, tmp_path: Path
) -> None:
    loaded, old_targets = cluster
    secrets = secret_values(loaded)
    old_read = as_deployed(old_targets["mq1"], secrets)
    # The inventory drops worker host w2 and adds w3.
    text = CLUSTER.replace("hosts: [w1, w2]", "hosts: [w1, w3]").replace(
        "  other: {address: 10.0.9.9}", "  other: {address: 10.0.9.9}\n  w3: {address: 10.0.1.4}"
    )
    new = load_inventory(write_inventory(text, BASE_SECRETS, name="new.yml"))
    new_target = _targets(new, tmp_path)["mq1"]
    gone = removals(HostFacts.from_read(old_read).manifest, new_target.manifest)
    assert gone["firewall"] == {"5672": ["10.0.1.2"]} and gone["any"]
    assert manifest_pending(new_target.manifest, gone)["firewall"]["5672"].count("10.0.1.2") == 1

    filters = playbook_module("filter_plugins/qsetup_filters.py")
    hv = {"inventory_hostname": "mq1", "qsetup_secret_values": secrets}
    plan_vars = plan_hosts(
        new, prepare(new.path, new.inventory, None, write=False), tmp_path / "n.tar"
    )
    hv.update(plan_vars.hostvars("mq1"))
    hv.update(plan_vars.common)
    converge = filters.qsetup_converge(old_read, hv, None)
    early, final = converge["firewall"]["early"], converge["firewall"]["final"]
    assert "ip saddr 10.0.1.2 tcp dport { 5672 } accept" in early  # still open
    assert "ip saddr 10.0.1.4 tcp dport { 5672 } accept" in early  # opened before it starts
    assert "10.0.1.2" not in final and "ip saddr 10.0.1.4" in final
    assert not converge["clean"]


def test_a_host_as_planned_loads_nothing(cluster: Any, tmp_path: Path) -> None:
    loaded, targets = cluster
    secrets = secret_values(loaded)
    filters = playbook_module("filter_plugins/qsetup_filters.py")
    material = prepare(loaded.path, loaded.inventory, None, write=False)
    plans = plan_hosts(loaded, material, tmp_path / "p.tar")
    hv: dict[str, Any] = {"inventory_hostname": "mq1", "qsetup_secret_values": secrets}
    hv.update(plans.hostvars("mq1"))
    hv.update(plans.common)
    hv["qsetup_file_sums"] = plans.sums
    converge = filters.qsetup_converge(as_deployed(targets["mq1"], secrets), hv, None)
    assert converge["firewall"]["early"] is None and converge["firewall"]["final"] is None
    read = as_deployed(targets["mq1"], secrets)
    read["firewall"]["loaded"] = False
    converge = filters.qsetup_converge(read, hv, None)
    assert converge["firewall"]["early"] == render_ruleset(targets["mq1"].firewall.allowed)


def test_turning_the_firewall_off_removes_its_unit(
    cluster: Any, write_inventory: WriteInventory, tmp_path: Path
) -> None:
    loaded, targets = cluster
    old = as_deployed(targets["mq1"], secret_values(loaded))
    off = load_inventory(
        write_inventory(
            CLUSTER.replace("enabled: true", "enabled: false"), BASE_SECRETS, name="off.yml"
        )
    )
    new_target = _targets(off, tmp_path)["mq1"]
    assert new_target.firewall is None
    gone = removals(HostFacts.from_read(old).manifest, new_target.manifest)
    assert {"unit": FIREWALL_UNIT, "role": "firewall"} in gone["units"]
    assert {RULESET_PATH, UNIT_PATH} <= set(gone["files"])
    assert gone["firewall"] == {}


def test_init_turns_the_firewall_on_for_ip_addresses(tmp_path: Path) -> None:
    from qsetup.inventory.scaffold import StarterHost, StarterSpec, render_inventory

    spec = StarterSpec(
        hosts=(StarterHost("mq", "10.0.0.1"), StarterHost("w", "10.0.0.2")),
        broker="mq",
        flower="mq",
        apt_workers=("w",),
    )
    assert "firewall:\n  enabled: true\n" in render_inventory(spec, "i.yml", "i.secrets.yml")
    named = replace(spec, hosts=(StarterHost("mq", "mq.example.org"), StarterHost("w", "10.0.0.2")))
    text = render_inventory(named, "i.yml", "i.secrets.yml")
    assert "  enabled: false\n" in text and "DNS names" in text


def test_status_is_healthy_with_the_table_and_names_a_deleted_one(cluster: Any) -> None:
    from qsetup.status.hosts import Outcome, assemble_hosts, host_problems

    loaded, targets = cluster
    secrets = secret_values(loaded)
    reads = {h: as_deployed(t, secrets) for h, t in targets.items()}

    def problems() -> list[str]:
        outcomes = {h: Outcome(h, reads[h], None, ()) for h in loaded.inventory.hosts}
        hosts = assemble_hosts(loaded.inventory, outcomes, targets, secrets)
        assert not any(h.unexpected_units for h in hosts.values())
        return [p for h in hosts.values() for p in host_problems(h)]

    assert problems() == []
    reads["mq3"]["firewall"]["loaded"] = False
    assert problems() == [
        "mq3: firewall (nftables table inet qsetup): not loaded: ports 4369, 5672, 15672, 15692, "
        "25672 are open to every address; run qsetup deploy"
    ]


def test_the_read_fingerprints_the_loaded_table_and_the_files_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = playbook_module("module_utils/qsetup_read.py")
    monkeypatch.setattr("shutil.which", lambda *_a, **_k: "/usr/sbin/nft")
    ruleset = tmp_path / "firewall.nft"
    listing = "table inet qsetup {\n\tchain input {\n\t}\n}\n"
    calls: list[list[str]] = []

    def run(argv: list[str]) -> tuple[int, str, str]:
        calls.append(argv)
        if argv[:2] == ["/usr/sbin/nft", "list"]:
            return (0, listing, "") if loaded else (1, "", "Error: No such file or directory")
        return 0, listing.replace("\t", "    "), ""

    loaded = True
    assert read.read_firewall(run, "qsetup", str(ruleset)) == {
        "loaded": True, "live": read._listing_sum(listing), "file": None, "error": None
    }  # fmt: skip
    ruleset.write_text("table inet qsetup {}\n")
    got = read.read_firewall(run, "qsetup", str(ruleset))
    assert got["live"] == got["file"] is not None  # indentation does not count
    assert calls[-1][:3] == ["unshare", "--net", "--"]  # the file's rules, in a scratch netns
    loaded = False
    got = read.read_firewall(run, "qsetup", str(ruleset))
    assert (got["loaded"], got["live"], got["error"]) == (False, None, None)
    monkeypatch.setattr("shutil.which", lambda *_a, **_k: None)
    got = read.read_firewall(run, "qsetup", str(ruleset))
    assert got["error"] == "nft is not installed (Debian package nftables)"


def test_the_preflight_passes_every_read_parameter_the_plan_holds(
    cluster: Any, tmp_path: Path
) -> None:
    """The deploy's read must ask what status asks (the firewall's table included)."""
    import yaml

    loaded, _ = cluster
    material = prepare(loaded.path, loaded.inventory, None, write=False)
    params = plan_hosts(loaded, material, tmp_path / "r.tar").hostvars("mq1")["qsetup_read_params"]
    tasks = yaml.safe_load(
        (Path(__file__).parents[2] / "playbooks/roles/preflight/tasks/main.yml").read_text()
    )
    read = next(t for t in tasks if "qsetup_host_facts" in t)["qsetup_host_facts"]
    assert read["params"] == "{{ qsetup_read_params }}"  # whole: a new key cannot be dropped
    assert {"firewall", "rabbit_data"} <= set(params)


def test_every_call_of_the_read_module_gives_its_parameters_whole() -> None:
    """qsetup_host_facts takes ``params`` (and ``broker_api``) only: a call with the old
    one-by-one arguments fails at run time, so look at every task file."""
    import yaml

    calls = []
    for path in (Path(__file__).parents[2] / "playbooks").rglob("*.yml"):
        for task in yaml.safe_load(path.read_text()) or []:
            if isinstance(task, dict) and "qsetup_host_facts" in task:
                calls.append((path.name, set(task["qsetup_host_facts"])))
    assert len(calls) >= 2, calls
    assert all(
        args <= {"params", "broker_api", "results_api"} and "params" in args for _, args in calls
    ), calls


def test_a_cluster_nodes_dns_name_is_refused_with_the_firewall_off(
    write_inventory: WriteInventory,
) -> None:
    # /etc/hosts lines and epmd's ListenStream need the node's IP address.
    text = CLUSTER.replace("mq2: {address: 10.0.0.2}", "mq2: {address: mq2.example.org}")
    text = text.replace("firewall:\n  enabled: true", "firewall:\n  enabled: false")
    path = write_inventory(text, BASE_SECRETS)
    with pytest.raises(QsetupError) as caught:
        load_inventory(path)
    lines = caught.value.lines()
    assert len(lines) == 1, lines
    assert (
        "hosts.mq2.address: mq2.example.org is a DNS name, but a cluster node's epmd" in (lines[0])
    ), lines
    # A worker host may still be given by name when the firewall is off.
    worker = CLUSTER.replace("w1: {address: 10.0.1.1}", "w1: {address: w1.example.org}")
    worker = worker.replace("firewall:\n  enabled: true", "firewall:\n  enabled: false")
    load_inventory(write_inventory(worker, BASE_SECRETS))
