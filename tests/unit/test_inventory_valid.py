"""Valid inventories load, and the derived values (defaults, secret names, rights) are right."""

from __future__ import annotations

from pathlib import Path

import pytest
from unitdata import (
    BASE_INVENTORY,
    BASE_SECRETS,
    FULL_INVENTORY,
    FULL_SECRETS,
    WriteInventory,
    write_secrets,
)

from qsetup.inventory import (
    Permission,
    app_broker_user,
    group_broker_user,
    group_vhost,
    has_rights,
    secret_names,
)
from qsetup.loader import load_inventory, read_document, validate_document

REPO = Path(__file__).resolve().parents[2]


def test_minimal_inventory_defaults(write_inventory: WriteInventory) -> None:
    loaded = load_inventory(write_inventory())
    inv = loaded.inventory
    assert loaded.secrets_path == loaded.path.with_name("inventory.secrets.yml")
    assert inv.version == 1
    assert inv.ssh.user == "root" and inv.ssh.port == 22 and inv.ssh.become is False
    assert list(inv.hosts) == ["rabbit1", "worker1"]
    assert inv.broker.port == 5672 and inv.broker.management_port == 15672
    assert inv.broker.plugins == ("rabbitmq_management",)
    assert inv.broker.delete_guest is True
    assert inv.broker.listen_address == "0.0.0.0"
    assert inv.app.name == "app" and inv.app.result_backend == "rpc://"
    assert inv.app.environment == {}

    (group,) = inv.workers
    assert group.node_pattern == "default-%i@%h"
    assert group.unit_template == "qsetup-worker-default@.service"
    assert group.instances == 1 and group.queues == ("celery",) and group.pool == "prefork"
    assert group.user == "celery" and group.group == "celery"
    assert group.concurrency is None and group.autoscale is None
    assert group_vhost(inv, group) == "orders"
    assert group_broker_user(inv, group).name == "orders"
    assert inv.beat is None

    (user,) = inv.broker.users
    assert user.secret == "rabbitmq-user-orders"
    assert user.effective_tags == ()
    # Without explicit permissions: full rights on its own vhost, nowhere else.
    assert user.effective_permissions == (
        Permission(vhost="orders", configure=".*", write=".*", read=".*"),
    )
    assert has_rights(user, "orders") and not has_rights(user, "/")

    assert inv.flower is not None
    assert inv.flower.broker_api_user == "flower-monitor"
    assert inv.flower.broker_api_secret == "rabbitmq-user-flower-monitor"
    assert inv.flower.basic_auth[0].secret == "flower-user-admin"
    assert inv.flower.port == 5555 and inv.flower.persistent is True
    assert inv.flower.user == "flower"

    assert sorted(name for _, name in secret_names(inv)) == sorted(BASE_SECRETS)
    assert loaded.secrets.get("rabbitmq-user-orders") == BASE_SECRETS["rabbitmq-user-orders"]


def test_secrets_never_in_repr(write_inventory: WriteInventory) -> None:
    loaded = load_inventory(write_inventory())
    text = repr(loaded) + str(loaded.secrets)
    for value in BASE_SECRETS.values():
        assert value not in text


def test_full_inventory_derived_values(write_inventory: WriteInventory) -> None:
    loaded = load_inventory(write_inventory(FULL_INVENTORY, FULL_SECRETS))
    inv = loaded.inventory
    assert inv.ssh.user == "deploy" and inv.ssh.port == 2200 and inv.ssh.become is True
    assert inv.hosts["w1"].ssh_port == 22 and inv.hosts["w1"].become is False
    assert inv.hosts["w2"].ssh_user is None and inv.hosts["w2"].address == "fd00::2"

    shop, reports = inv.broker.users
    assert shop.secret == "rabbitmq-user-shop"  # lower-cased from the name
    assert shop.effective_permissions == (Permission(vhost="shop"),)
    assert reports.secret == "reports-pw"
    assert reports.effective_tags == ("monitoring", "management")
    assert [p.vhost for p in reports.effective_permissions] == ["reports", "shop"]
    assert reports.effective_permissions[1].read == "^reports\\."
    assert reports.topic_permissions[0].exchange == "amq.topic"
    assert reports.topic_permissions[0].read == "^orders\\."
    assert has_rights(reports, "reports")

    (policy,) = inv.broker.policies
    assert policy.apply_to == "quorum_queues" and policy.priority == 5
    assert policy.definition == {"message-ttl": 60000, "ha-mode": "all", "lazy": True}

    assert inv.app.source.requirement == "shop==1.2" and inv.app.source.path is None
    assert inv.app.environment == {"SHOP_ENV": "prod", "EMPTY": ""}

    orders, rep = inv.workers
    assert orders.node_pattern == "orders-%i@%h"
    assert orders.autoscale == (8, 2) and orders.instances == 3
    assert group_broker_user(inv, orders).name == "Shop"
    assert group_vhost(inv, orders) == "shop"
    assert rep.node_pattern == "rep-%i@%h"
    assert group_broker_user(inv, rep).name == "reports"
    assert group_vhost(inv, rep) == "reports"
    assert rep.user == "reporter"

    assert inv.beat is not None and inv.beat.host == "w1" and inv.beat.user == "celery"
    assert app_broker_user(inv).name == "Shop"

    assert inv.flower is not None
    assert inv.flower.broker_api_secret == "monitor-pw"
    assert [u.secret for u in inv.flower.basic_auth] == ["flower-user-admin", "oncall-pw"]
    assert sorted(name for _, name in secret_names(inv)) == sorted(FULL_SECRETS)


def test_models_are_frozen(write_inventory: WriteInventory) -> None:
    from pydantic import ValidationError

    inv = load_inventory(write_inventory()).inventory
    with pytest.raises(ValidationError):
        inv.broker.port = 1  # type: ignore[misc]


def test_without_flower_no_flower_secrets(write_inventory: WriteInventory) -> None:
    text = BASE_INVENTORY.split("flower:\n")[0]
    secrets = {"rabbitmq-erlang-cookie": "x" * 32, "rabbitmq-user-orders": "p" * 24}
    inv = load_inventory(write_inventory(text, secrets)).inventory
    assert inv.flower is None
    assert [name for _, name in secret_names(inv)] == list(secrets)


def test_anchors_and_merge_keys(write_inventory: WriteInventory) -> None:
    text = BASE_INVENTORY.replace(
        "  - name: default\n    hosts: [worker1]\n    install: pip\n",
        "  - &common\n    name: default\n    hosts: [worker1]\n    install: pip\n"
        "    concurrency: 2\n"
        "  - <<: *common\n    name: second\n    concurrency: 4\n",
    )
    inv = load_inventory(write_inventory(text)).inventory
    first, second = inv.workers
    assert (second.name, second.concurrency, second.hosts) == ("second", 4, ("worker1",))
    assert first.concurrency == 2


def test_explicit_secrets_path(write_inventory: WriteInventory, tmp_path: Path) -> None:
    inventory = write_inventory()
    other = write_secrets(tmp_path / "elsewhere.yml", BASE_SECRETS)
    inventory.with_name("inventory.secrets.yml").unlink()
    loaded = load_inventory(inventory, other)
    assert loaded.secrets_path == other


def test_source_path_relative_to_inventory(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    (sub / "app").mkdir()
    inventory = sub / "prod.yml"
    inventory.write_text(BASE_INVENTORY)
    write_secrets(sub / "prod.secrets.yml", BASE_SECRETS)
    loaded = load_inventory(inventory)  # app/ is found beside prod.yml, not in the cwd
    assert loaded.secrets_path == sub / "prod.secrets.yml"


def test_repository_example_inventory(tmp_path: Path) -> None:
    example = REPO / "inventory.example.yml"
    if not example.exists():
        pytest.skip("inventory.example.yml is not in the repository yet")
    inv = validate_document(read_document(example, "inventory"))
    secrets = write_secrets(
        tmp_path / "example.secrets.yml",
        {name: f"value-of-{name}-0123456789" for _, name in secret_names(inv)},
    )
    loaded = load_inventory(example, secrets)
    assert loaded.inventory == inv
    assert len(inv.workers) >= 1
    for group in inv.workers:
        assert has_rights(group_broker_user(inv, group), group_vhost(inv, group))
        assert group.user != "root"
