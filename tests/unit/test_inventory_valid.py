"""Valid inventories load, and the derived values (defaults, secret names, rights) are right."""

from __future__ import annotations

import dataclasses
import json
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

from qsetup.inventory.crosscheck import has_rights, secret_names
from qsetup.inventory.loader import (
    LoadedInventory,
    load_inventory,
    read_document,
    validate_document,
)
from qsetup.inventory.model import Permission, app_broker_user, group_broker_user, group_vhost
from qsetup.inventory.scaffold import build_spec, render_inventory
from qsetup.inventory.yamlsource import parse_yaml

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


# --- edges that must stay accepted (and reach the services as written) --------------------


def _load_strict(
    write_inventory: WriteInventory, text: str, secrets: dict[str, str] | None = None
) -> LoadedInventory:
    inventory = write_inventory(text, secrets)
    (inventory.parent / "app" / "proj.py").write_text("app = None\n")
    return load_inventory(inventory, check_files=True)


def test_base_inventory_passes_the_file_checks(write_inventory: WriteInventory) -> None:
    text = BASE_INVENTORY + "ssh: {key: keys/id_ed25519}\n"
    inventory = write_inventory(text)
    (inventory.parent / "keys").mkdir()
    (inventory.parent / "keys" / "id_ed25519").write_text("key\n")
    (inventory.parent / "app" / "proj.py").write_text("app = None\n")
    loaded = load_inventory(inventory, check_files=True)
    assert loaded.inventory.ssh.key == "keys/id_ed25519"


@pytest.mark.parametrize(
    ("rabbit", "worker"),
    [
        ("'fd00::1'", "'fd00::2'"),
        ("'2001:db8::10'", "10.0.0.2"),
        ("MQ.Example.org", "worker-1.example.org"),
        ("mq", "w1"),
        ("xn--bcher-kva.example", "10.0.0.2"),
        ("10.0.0.1", "'::ffff:10.0.0.2'"),
    ],
)
def test_addresses_ip_and_dns(write_inventory: WriteInventory, rabbit: str, worker: str) -> None:
    text = BASE_INVENTORY.replace("address: 10.0.0.1", f"address: {rabbit}").replace(
        "address: 10.0.0.2", f"address: {worker}"
    )
    inv = _load_strict(write_inventory, text).inventory
    assert inv.hosts["rabbit1"].address == rabbit.strip("'")
    assert inv.hosts["worker1"].address == worker.strip("'")


def test_one_address_with_two_ssh_ports(write_inventory: WriteInventory) -> None:
    # Two machines behind one address (port forwarding): the SSH port tells them apart.
    text = BASE_INVENTORY.replace(
        "    address: 10.0.0.1\n", "    address: 10.0.0.1\n    ssh_port: 2201\n"
    ).replace("    address: 10.0.0.2\n", "    address: 10.0.0.1\n    ssh_port: 2202\n")
    inv = _load_strict(write_inventory, text).inventory
    assert [h.ssh_port for h in inv.hosts.values()] == [2201, 2202]


@pytest.mark.parametrize(
    ("broker", "workers", "hosts"),
    [
        (
            "MQ.Example.ORG",
            ["mq.example.org", "W1.example.org", "w1.EXAMPLE.org"],
            {"mq": "MQ.Example.ORG", "w1": "W1.example.org"},
        ),
        ("fd00::1", ["fd00:0::1", "FD00::2"], {"fd00-1": "fd00::1", "fd00-2": "FD00::2"}),
    ],
)
def test_init_makes_one_host_of_an_address_spelt_two_ways(
    tmp_path: Path, broker: str, workers: list[str], hosts: dict[str, str]
) -> None:
    # DNS names are case-insensitive and IPv6 has many spellings: the inventory refuses two
    # hosts on one address, so `qsetup init` must not write them.
    spec = build_spec(broker, workers, None)
    assert {h.name: h.address for h in spec.hosts} == hosts
    assert spec.pip_workers == tuple(hosts)
    spec = dataclasses.replace(spec, app_path="app")
    text = render_inventory(spec, "inventory.yml", "inventory.secrets.yml")
    inv = validate_document(parse_yaml(tmp_path / "inventory.yml", text))
    assert {name: h.address for name, h in inv.hosts.items()} == hosts


def test_everything_on_one_loopback_host(write_inventory: WriteInventory) -> None:
    text = (
        BASE_INVENTORY.replace("address: 10.0.0.1", "address: 127.0.0.1")
        .replace("  vhosts", "  listen_address: 127.0.0.1\n  vhosts")
        .replace("hosts: [worker1]", "hosts: [rabbit1]")
    )
    inv = _load_strict(write_inventory, text).inventory
    assert inv.broker.listen_address == "127.0.0.1"


def test_ipv6_listen_addresses_and_a_local_only_flower(write_inventory: WriteInventory) -> None:
    text = BASE_INVENTORY.replace("  vhosts", "  listen_address: '::'\n  vhosts").replace(
        "  host: rabbit1\n  basic_auth",
        "  host: worker1\n  listen_address: 127.0.0.1\n  port: 5672\n  basic_auth",
    )
    inv = _load_strict(write_inventory, text).inventory
    assert inv.flower is not None and inv.flower.port == 5672  # another host than the broker
    assert inv.broker.listen_address == "::"


@pytest.mark.parametrize(
    ("node_name", "extra"),
    [
        ("w-%i@%h", ""),
        ("%n-%i@%h", ""),
        ("w-%i.%d@%h", ""),
        ("solo@%h", ""),
        ("solo@fixed-name", ""),
        ("w-%i@%n", ""),
        ("w_%i.x@%h", "    instances: 4\n"),
    ],
)
def test_node_name_patterns(write_inventory: WriteInventory, node_name: str, extra: str) -> None:
    text = BASE_INVENTORY.replace(
        "    install: pip\n", f"    install: pip\n    node_name: '{node_name}'\n{extra}"
    )
    if "%h" in node_name or "%n" in node_name:
        text = text.replace("hosts: [worker1]", "hosts: [worker1, rabbit1]")
    (group,) = _load_strict(write_inventory, text).inventory.workers
    assert group.node_pattern == node_name


def test_two_groups_on_one_host_with_their_own_node_names(write_inventory: WriteInventory) -> None:
    text = BASE_INVENTORY.replace(
        "flower:",
        "  - name: second\n    hosts: [worker1]\n    install: pip\n    instances: 2\n"
        "  - name: third\n    hosts: [worker1]\n    install: pip\n    node_name: 'default-9@%h'\n"
        "flower:",
    )
    inv = _load_strict(write_inventory, text).inventory
    assert [g.node_pattern for g in inv.workers] == [
        "default-%i@%h",
        "second-%i@%h",
        "default-9@%h",
    ]


def test_environment_values_are_kept_as_written(write_inventory: WriteInventory) -> None:
    values = {
        "QUOTES": "say \"hi\" and 'bye'",
        "BACKSLASH": "C:\\temp\\ and a trailing \\",
        "DOLLAR": "$HOME ${PATH} `id` $(id)",
        "UNICODE": "café ☕ 日本",
        "SPACES": "  padded  ",
        "HASH": "#not-a-comment",
        "EMPTY": "",
        "LANG": "C.UTF-8",
        "CELERY_CONFIG_MODULE": "proj.settings",
    }
    lines = "".join(f"    {k}: {json.dumps(v, ensure_ascii=False)}\n" for k, v in values.items())
    text = BASE_INVENTORY.replace(
        "  vhost: orders\nworkers", f"  vhost: orders\n  environment:\n{lines}workers"
    )
    loaded = _load_strict(write_inventory, text)
    assert loaded.inventory.app.environment == values

    # ... and through the environment file, read the way systemd reads it.
    from qsetup.artifacts.render import render_all

    (env_file,) = [
        a
        for a in render_all(loaded.inventory, loaded.secrets)
        if a.path.name == "worker-default.env"
    ]
    assert {k: v for k, v in systemd_env(env_file.content).items() if k in values} == values


def systemd_env(content: str) -> dict[str, str]:
    """Parse KEY="value" lines as systemd's EnvironmentFile= does (double-quoted values)."""
    out: dict[str, str] = {}
    for line in content.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, rest = line.partition("=")
        assert rest.startswith('"') and rest.endswith('"'), line
        body, value, i = rest[1:-1], "", 0
        while i < len(body):
            ch = body[i]
            if ch == "\\" and i + 1 < len(body):
                nxt = body[i + 1]
                value += nxt if nxt in '"\\`$' else ch + nxt
                i += 2
                continue
            value += ch
            i += 1
        out[key] = value
    return out


def test_rights_that_grant_nothing_do_not_count(write_inventory: WriteInventory) -> None:
    text = BASE_INVENTORY.replace("  vhosts: [orders]", "  vhosts: [orders, audit]").replace(
        "      vhost: orders\n",
        "      permissions:\n        - {vhost: orders}\n"
        "        - {vhost: audit, configure: '^$', write: '^$', read: '^$'}\n",
    )
    (user,) = _load_strict(write_inventory, text).inventory.broker.users
    assert has_rights(user, "orders") and not has_rights(user, "audit")


@pytest.mark.parametrize(
    "spec", [">=5.3,<6", "~=5.4", "==5.4.0", "!=5.4.1, >=5.3", "==5.4.*", "===5.4.0"]
)
def test_celery_version_specifiers(write_inventory: WriteInventory, spec: str) -> None:
    text = BASE_INVENTORY.replace(
        "    install: pip\n", f"    install: pip\n    celery_version: '{spec}'\n"
    ).replace("  basic_auth:", "  version: '>=2,<3'\n  basic_auth:")
    inv = _load_strict(write_inventory, text).inventory
    assert inv.workers[0].celery_version == spec
    assert inv.flower is not None and inv.flower.version == ">=2,<3"


def test_requirements_of_every_kind(write_inventory: WriteInventory) -> None:
    reqs = [
        "requests[socks]>=2; python_version >= '3.8'",
        "./dist/shop-1.0-py3-none-any.whl",
        "shop @ https://example.org/shop-1.0.tar.gz",
        "git+https://example.org/shop.git@v1#egg=shop",
        "Django~=4.2",
    ]
    text = BASE_INVENTORY.replace(
        "  broker_user: orders\n", f"  requirements: {json.dumps(reqs)}\n  broker_user: orders\n"
    )
    assert _load_strict(write_inventory, text).inventory.app.requirements == tuple(reqs)


def test_limits_at_their_bounds(write_inventory: WriteInventory) -> None:
    text = BASE_INVENTORY.replace(
        "    install: pip\n",
        "    install: pip\n    autoscale: [1024, 0]\n    soft_time_limit: 604799\n"
        "    time_limit: 604800\n",
    ).replace("  vhosts", "  port: 45535\n  vhosts")
    inv = _load_strict(write_inventory, text).inventory
    assert inv.workers[0].autoscale == (1024, 0) and inv.workers[0].time_limit == 604800
    assert inv.broker.port == 45535


def test_user_name_with_at_and_its_own_secret(write_inventory: WriteInventory) -> None:
    text = BASE_INVENTORY.replace(
        "      vhost: orders\n",
        "      vhost: orders\n    - name: svc@orders\n      password_secret: svc-orders\n"
        "      vhost: orders\n",
    )
    secrets = {**BASE_SECRETS, "svc-orders": "svc-password-0123456789"}
    users = _load_strict(write_inventory, text, secrets).inventory.broker.users
    assert users[1].secret == "svc-orders"


def test_secret_values_kept_as_text(write_inventory: WriteInventory) -> None:
    secrets = {
        **BASE_SECRETS,
        "rabbitmq-erlang-cookie": "value-of-cookie_0123456789.~!",
        "rabbitmq-user-orders": "07550755",  # quoted by write_secrets: stays text
        "flower-user-admin": "p@ss word:with/odd%chars",
    }
    loaded = _load_strict(write_inventory, BASE_INVENTORY, secrets)
    for name, value in secrets.items():
        assert loaded.secrets.get(name) == value


def test_source_path_outside_the_inventory_folder(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "proj.py").write_text("app = None\n")
    inventory = conf / "inventory.yml"
    inventory.write_text(BASE_INVENTORY.replace("path: app", "path: ../src"))
    write_secrets(conf / "inventory.secrets.yml", BASE_SECRETS)
    loaded = load_inventory(inventory, check_files=True)
    assert loaded.inventory.app.source.path == "../src"


def test_init_allows_this_machine_through_the_firewall(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from qsetup.inventory import scaffold

    assert scaffold.local_address_towards("mq.example.org") is None  # a name: no route asked
    assert scaffold.local_address_towards("127.0.0.1") is None
    monkeypatch.setattr(scaffold, "local_address_towards", lambda _a: "10.9.8.7")
    spec = scaffold.build_spec("10.0.0.5", ["10.0.0.6"], None)
    inventory = tmp_path / "inventory.yml"
    scaffold.write_starter_files(inventory, spec, force=False)
    loaded = load_inventory(inventory)
    assert loaded.inventory.firewall.enabled
    assert list(loaded.inventory.broker.allow_from) == ["10.9.8.7"]
    assert loaded.inventory.flower is not None
    assert list(loaded.inventory.flower.allow_from) == ["10.9.8.7"]
