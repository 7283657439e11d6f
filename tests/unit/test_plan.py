"""The plan serializer: what build_ansible_inventory hands the playbooks, host by host.

The playbooks loop over these values and decide nothing themselves, so each fact here
is one the hosts end up with: which units run where under which exact node name, which
virtualenvs hold what, which Debian packages each release gets, what the host's
manifest records, and how Ansible reaches the host.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from unitdata import BASE_INVENTORY, BASE_SECRETS, FULL_INVENTORY, FULL_SECRETS

from qsetup.artifacts.manifest import MANIFEST_PATH, host_manifests
from qsetup.artifacts.plan import build_ansible_inventory
from qsetup.artifacts.render import Artifact, render_all
from qsetup.desired.names import expand_node_name
from qsetup.inventory.loader import validate_document
from qsetup.inventory.model import Inventory
from qsetup.inventory.secrets import Secrets
from qsetup.inventory.yamlsource import parse_yaml

SITE = Path("/srv/site/inventory.yml")


def model(text: str) -> Inventory:
    return validate_document(parse_yaml(Path("inventory.yml"), text))


def rendered(inv: Inventory, values: dict[str, str]) -> list[Artifact]:
    secrets = Secrets(path=Path("/nonexistent/inventory.secrets.yml"),
                      values={k: SecretStr(v) for k, v in values.items()})  # fmt: skip
    return render_all(inv, secrets)


def plan(
    text: str, values: dict[str, str], inventory_path: Path = SITE, parts: tuple[str, ...] = ()
) -> dict[str, Any]:
    inv = model(text)
    arts = rendered(inv, values)
    if parts:
        return build_ansible_inventory(inv, arts, parts, inventory_path)
    return build_ansible_inventory(inv, arts, inventory_path=inventory_path)


def hosts_of(ansible_inventory: dict[str, Any]) -> dict[str, dict[str, Any]]:
    hosts = ansible_inventory["all"]["hosts"]
    assert isinstance(hosts, dict)
    return hosts


@pytest.fixture(scope="module")
def full() -> dict[str, dict[str, Any]]:
    return hosts_of(plan(FULL_INVENTORY, FULL_SECRETS))


def services(host: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["unit"]: s for s in host["qsetup_services"]}


def venvs(host: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in host["qsetup_venvs"]}


# --- services ---------------------------------------------------------------------------


def test_each_host_gets_exactly_its_units(full: dict[str, dict[str, Any]]) -> None:
    orders = [f"qsetup-worker-orders@{n}.service" for n in (1, 2, 3)]
    assert list(services(full["mq"])) == ["qsetup-flower.service"]  # the broker is no service
    assert list(services(full["w1"])) == [*orders, "qsetup-beat.service"]
    assert list(services(full["w2"])) == [*orders, "qsetup-worker-reports@1.service"]
    roles = {s["unit"]: s["role"] for h in full.values() for s in h["qsetup_services"]}
    assert roles["qsetup-flower.service"] == "flower"
    assert roles["qsetup-beat.service"] == "beat"
    assert {roles[u] for u in orders} == {"workers"}


def test_worker_node_patterns_are_exact_per_instance(full: dict[str, dict[str, Any]]) -> None:
    on_w2 = services(full["w2"])
    patterns = {unit: s["node_pattern"] for unit, s in on_w2.items()}
    assert patterns == {
        "qsetup-worker-orders@1.service": "orders-1@%h",
        "qsetup-worker-orders@2.service": "orders-2@%h",
        "qsetup-worker-orders@3.service": "orders-3@%h",
        "qsetup-worker-reports@1.service": "rep-1@%h",  # the group's own node_name
    }
    # The rolling gate waits for this name and no other (a neighbour's "orders-1@w1").
    assert expand_node_name(patterns["qsetup-worker-orders@2.service"], 1, "w2") == "orders-2@w2"
    assert services(full["w1"])["qsetup-beat.service"]["node_pattern"] == ""
    assert services(full["mq"])["qsetup-flower.service"]["node_pattern"] == ""


def test_services_run_from_the_runtime_their_group_installs(
    full: dict[str, dict[str, Any]],
) -> None:
    w2 = services(full["w2"])
    # apt group whose app needs more packages: Debian's Celery through a virtualenv.
    orders = w2["qsetup-worker-orders@1.service"]
    assert orders["celery_argv"] == ["/opt/qsetup/venvs/orders/bin/python", "-m", "celery"]
    assert (orders["venv"], orders["code"], orders["user"]) == ("orders", True, "celery")
    assert orders["files_of"] == "qsetup-worker-orders@.service"
    assert orders["env_file"] == "/etc/qsetup/worker-orders.env"
    reports = w2["qsetup-worker-reports@1.service"]
    assert reports["celery_argv"] == ["/opt/qsetup/venvs/reports/bin/celery"]
    assert (reports["venv"], reports["user"]) == ("reports", "reporter")
    # Beat shares the runtime of the group on its host; Flower runs no app code.
    beat = services(full["w1"])["qsetup-beat.service"]
    assert (beat["venv"], beat["code"]) == ("orders", True)
    assert beat["celery_argv"] == orders["celery_argv"]
    flower = services(full["mq"])["qsetup-flower.service"]
    assert (flower["venv"], flower["code"], flower["celery_argv"]) == ("flower", False, [])


def test_an_apt_group_without_extras_runs_debians_celery_and_beat_gets_its_own_venv() -> None:
    text = BASE_INVENTORY.replace("    install: pip\n", "    install: apt\n") + (
        "beat:\n  host: rabbit1\n"
    )
    hosts = hosts_of(plan(text, BASE_SECRETS))
    worker = services(hosts["worker1"])["qsetup-worker-default@1.service"]
    assert (worker["celery_argv"], worker["venv"]) == (["/usr/bin/celery"], "")
    assert hosts["worker1"]["qsetup_venvs"] == []
    beat = services(hosts["rabbit1"])["qsetup-beat.service"]
    assert (beat["venv"], beat["celery_argv"]) == ("beat", ["/opt/qsetup/venvs/beat/bin/celery"])
    assert venvs(hosts["rabbit1"])["beat"]["packages"] == ["celery>=5.2,<6"]


def test_only_hosts_with_services_are_in_the_services_group() -> None:
    no_flower = BASE_INVENTORY.split("flower:\n")[0]
    groups = plan(no_flower, BASE_SECRETS)["all"]["children"]
    assert groups == {
        "qsetup_services": {"hosts": {"worker1": None}},
        "qsetup_workers": {"hosts": {"worker1": None}},
        "qsetup_brokers": {"hosts": {"rabbit1": None}},
    }


def test_selected_parts_limit_the_services_not_the_manifest() -> None:
    everything = hosts_of(plan(FULL_INVENTORY, FULL_SECRETS))
    workers_only = hosts_of(plan(FULL_INVENTORY, FULL_SECRETS, parts=("workers",)))
    assert "qsetup-beat.service" not in services(workers_only["w1"])
    assert services(workers_only["mq"]) == {}
    assert set(services(workers_only["w2"])) == set(services(everything["w2"]))
    # A partial deploy must not take the parts it skips for removals.
    for name, host in workers_only.items():
        assert host["qsetup_manifest"] == everything[name]["qsetup_manifest"], name


# --- virtualenvs and packages -------------------------------------------------------------


def test_venvs_hold_what_each_group_asks_for(full: dict[str, dict[str, Any]]) -> None:
    assert set(venvs(full["mq"])) == {"flower"}
    assert set(venvs(full["w1"])) == {"orders"}  # beat uses the orders virtualenv
    assert set(venvs(full["w2"])) == {"orders", "reports"}
    orders = venvs(full["w2"])["orders"]
    assert orders["packages"] == ["celery>=5.2,<6", "shop==1.2", "requests>=2"]
    assert orders["site_packages"] is True  # sees Debian's Celery
    assert orders["path"] == "/opt/qsetup/venvs/orders"
    reports = venvs(full["w2"])["reports"]
    assert reports["packages"] == ["celery==5.4.*", "shop==1.2", "requests>=2"]
    assert reports["site_packages"] is False
    assert venvs(full["mq"])["flower"]["packages"] == ["flower==2.0.1"]
    assert venvs(full["w1"])["orders"] == orders  # the same group, the same virtualenv


def test_a_venv_marker_records_its_packages_and_its_checksum(
    full: dict[str, dict[str, Any]],
) -> None:
    reports = venvs(full["w2"])["reports"]
    assert reports["marker"] == "/opt/qsetup/venvs/reports/.qsetup-packages"
    assert reports["marker_content"] == (
        "celery==5.4.*\nshop==1.2\nrequests>=2\nsite-packages=False\n"
    )
    sha1 = hashlib.sha1(reports["marker_content"].encode()).hexdigest()  # noqa: S324
    assert reports["marker_sum"] == sha1
    # The deploy reads the marker's checksum with find: its folder and name are watched.
    assert "/opt/qsetup/venvs/reports" in full["w2"]["qsetup_find_paths"]
    assert ".qsetup-packages" in full["w2"]["qsetup_find_patterns"]


def test_apt_packages_are_resolved_per_release(full: dict[str, dict[str, Any]]) -> None:
    assert full["w1"]["qsetup_apt_packages"] == {
        "bookworm": ["python-celery-common", "python3-packaging", "python3-venv"],
        "trixie": ["celery", "python3-celery", "python3-packaging", "python3-venv"],
    }
    broker = ["python3-packaging", "python3-requests", "python3-venv", "rabbitmq-server"]
    assert full["mq"]["qsetup_apt_packages"] == {"bookworm": broker, "trixie": broker}
    base = hosts_of(plan(BASE_INVENTORY, BASE_SECRETS))
    pip_only = ["python3-packaging", "python3-venv"]  # no Debian Celery for a pip group
    assert base["worker1"]["qsetup_apt_packages"] == {"bookworm": pip_only, "trixie": pip_only}


# --- the manifest ---------------------------------------------------------------------------


def test_each_host_carries_its_manifest(full: dict[str, dict[str, Any]]) -> None:
    inv = model(FULL_INVENTORY)
    expected = host_manifests(inv, rendered(inv, FULL_SECRETS))
    assert {name: h["qsetup_manifest"] for name, h in full.items()} == expected
    w1 = full["w1"]["qsetup_manifest"]
    assert [u["unit"] for u in w1["units"]] == [
        "qsetup-beat.service",
        *[f"qsetup-worker-orders@{n}.service" for n in (1, 2, 3)],
    ]
    assert w1["venvs"] == ["/opt/qsetup/venvs/orders"]
    assert w1["code"] == ["/opt/qsetup/apps/shop"]
    assert "/etc/systemd/system/qsetup-worker-orders@.service" in w1["files"]
    assert "broker" not in w1
    mq = full["mq"]["qsetup_manifest"]
    assert mq["code"] == [] and [u["unit"] for u in mq["units"]] == ["qsetup-flower.service"]
    assert mq["broker"] == {
        "vhosts": ["reports", "shop"],
        "users": ["Shop", "monitor", "qsetup-admin", "reports"],
        "policies": ["shop/ttl"],
    }


def test_the_manifest_names_no_secret() -> None:
    hosts = hosts_of(plan(FULL_INVENTORY, FULL_SECRETS))
    text = repr({name: h["qsetup_manifest"] for name, h in hosts.items()})
    for value in FULL_SECRETS.values():
        assert value not in text


def test_shared_vars_name_the_app_and_the_manifest_path() -> None:
    shared = plan(FULL_INVENTORY, FULL_SECRETS)["all"]["vars"]
    assert shared["qsetup_manifest_path"] == MANIFEST_PATH
    assert shared["qsetup_app_name"] == "shop"
    assert shared["qsetup_code_dir"] == "/opt/qsetup/apps/shop"
    assert set(shared["qsetup_releases"]) == {"bookworm", "trixie"}


# --- how Ansible reaches the hosts ------------------------------------------------------------


def ssh_vars(host: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in host.items() if k.startswith("ansible_")}


def test_ssh_vars_take_host_settings_over_the_defaults(full: dict[str, dict[str, Any]]) -> None:
    key = "/srv/site/keys/id_ed25519"
    assert ssh_vars(full["mq"]) == {
        "ansible_host": "mq.example.org",
        "ansible_port": 2200,
        "ansible_user": "deploy",
        "ansible_become": True,
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_ssh_private_key_file": key,
    }
    w1 = ssh_vars(full["w1"])
    assert (w1["ansible_port"], w1["ansible_user"], w1["ansible_become"]) == (22, "root", False)
    assert full["w2"]["ansible_host"] == "fd00::2"


def test_a_relative_key_is_read_against_the_inventorys_folder_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    site = tmp_path / "site" / "inventory.yml"
    hosts = hosts_of(plan(FULL_INVENTORY, FULL_SECRETS, inventory_path=site))
    keys = {h["ansible_ssh_private_key_file"] for h in hosts.values()}
    assert keys == {str(tmp_path / "site" / "keys" / "id_ed25519")}


def test_a_relative_inventory_path_still_gives_an_absolute_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "site").mkdir()
    monkeypatch.chdir(tmp_path)
    hosts = hosts_of(plan(FULL_INVENTORY, FULL_SECRETS, inventory_path=Path("site/inv.yml")))
    key = Path(hosts["mq"]["ansible_ssh_private_key_file"])
    assert key.is_absolute() and key == tmp_path.resolve() / "site" / "keys" / "id_ed25519"


def test_an_absolute_key_is_kept_and_no_key_means_none() -> None:
    text = FULL_INVENTORY.replace("key: keys/id_ed25519", "key: /etc/qsetup-keys/id")
    hosts = hosts_of(plan(text, FULL_SECRETS))
    assert {h["ansible_ssh_private_key_file"] for h in hosts.values()} == {"/etc/qsetup-keys/id"}
    base = hosts_of(plan(BASE_INVENTORY, BASE_SECRETS))
    assert all("ansible_ssh_private_key_file" not in h for h in base.values())
    assert ssh_vars(base["worker1"])["ansible_host"] == "10.0.0.2"


def test_the_workers_group_holds_the_hosts_with_worker_units_only() -> None:
    groups = plan(BASE_INVENTORY, BASE_SECRETS)["all"]["children"]
    assert set(groups["qsetup_services"]["hosts"]) == {"worker1", "rabbit1"}  # Flower's host
    assert groups["qsetup_workers"] == {"hosts": {"worker1": None}}
    # A deploy of the broker alone (--tags broker) keeps every worker host in the group,
    # with its workers, to wait for them after RabbitMQ restarts.
    broker_only = plan(BASE_INVENTORY, BASE_SECRETS, parts=("broker",))
    assert broker_only["all"]["children"]["qsetup_workers"] == {"hosts": {"worker1": None}}
    worker1 = hosts_of(broker_only)["worker1"]
    assert worker1["qsetup_services"] == []
    every = hosts_of(plan(BASE_INVENTORY, BASE_SECRETS))["worker1"]["qsetup_services"]
    assert [s["unit"] for s in worker1["qsetup_worker_services"]] == [s["unit"] for s in every]
