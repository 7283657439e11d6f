"""qsetup status, broker side: expected state, drift, API parsing, problem lines."""

from __future__ import annotations

from typing import Any

import pytest
from unitdata import BASE_INVENTORY, BASE_SECRETS, FULL_INVENTORY, FULL_SECRETS, WriteInventory

from qsetup.artifacts.plan import _broker_vars
from qsetup.converge.broker import Drift, Permission, Policy, TopicPermission, compare_broker
from qsetup.desired.broker import BrokerState
from qsetup.desired.state import broker_state
from qsetup.inventory.loader import load_inventory
from qsetup.inventory.model import Inventory
from qsetup.status.broker import broker_problems, failed_broker, parse_api


@pytest.fixture
def base(write_inventory: WriteInventory) -> Inventory:
    return load_inventory(write_inventory(BASE_INVENTORY, BASE_SECRETS)).inventory


@pytest.fixture
def full(write_inventory: WriteInventory) -> Inventory:
    return load_inventory(write_inventory(FULL_INVENTORY, FULL_SECRETS)).inventory


def _users(state: BrokerState) -> dict[str, frozenset[str]]:
    return {u.name: frozenset(u.tags) for u in state.users}


def _perms(state: BrokerState) -> dict[tuple[str, str], tuple[str, str, str]]:
    return {
        (u.name, p.vhost): (p.configure, p.write, p.read)
        for u in state.users
        for p in u.permissions
    }


def test_broker_state_adds_qsetups_own_users(base: Inventory) -> None:
    exp = broker_state(base)
    assert exp.vhosts == ("orders",)
    assert _users(exp) == {
        "qsetup-admin": {"administrator"},
        "orders": frozenset(),
        "flower-monitor": {"monitoring"},
    }
    perms = _perms(exp)
    assert perms[("orders", "orders")] == (".*", ".*", ".*")
    assert perms[("qsetup-admin", "orders")] == (".*", ".*", ".*")
    assert perms[("flower-monitor", "orders")] == ("^$", "^$", "^$")
    assert exp.delete_guest
    assert (exp.admin_user, exp.admin_secret) == ("qsetup-admin", "rabbitmq-user-qsetup-admin")


def test_broker_state_full(full: Inventory) -> None:
    exp = broker_state(full)
    assert set(_users(exp)) == {"qsetup-admin", "Shop", "reports", "monitor"}
    assert _users(exp)["reports"] == {"monitoring", "management"}
    assert _perms(exp)[("reports", "shop")] == ("^$", "^$", "^reports\\.")
    # qsetup's administrator: full rights on every vhost (it manages the policies there)
    assert _perms(exp)[("qsetup-admin", "reports")] == (".*", ".*", ".*")
    reports = next(u for u in exp.users if u.name == "reports")
    assert [(t.vhost, t.exchange, t.write, t.read) for t in reports.topic_permissions] == [
        ("shop", "amq.topic", "^$", "^orders\\.")
    ]
    (ttl,) = exp.policies
    assert (ttl.vhost, ttl.name, ttl.pattern, ttl.apply_to, ttl.priority) == (
        "shop", "ttl", "^celery$", "quorum_queues", 5
    )  # fmt: skip
    assert dict(ttl.definition) == {"message-ttl": 60000, "ha-mode": "all", "lazy": True}
    assert not exp.delete_guest


# What plan.py's _broker_vars gave before it serialized desired.broker_state: the
# playbooks read this shape, so it must not change.
BASE_BROKER_VARS = {
    "vhosts": ["orders"],
    "users": [
        {"name": "qsetup-admin", "secret": "rabbitmq-user-qsetup-admin", "tags": "administrator",
         "permissions": [{"vhost": "orders", "configure_priv": ".*", "write_priv": ".*",
                          "read_priv": ".*"}],
         "topic_permissions": []},
        {"name": "orders", "secret": "rabbitmq-user-orders", "tags": "",
         "permissions": [{"vhost": "orders", "configure_priv": ".*", "write_priv": ".*",
                          "read_priv": ".*"}],
         "topic_permissions": []},
        {"name": "flower-monitor", "secret": "rabbitmq-user-flower-monitor", "tags": "monitoring",
         "permissions": [{"vhost": "orders", "configure_priv": "^$", "write_priv": "^$",
                          "read_priv": "^$"}],
         "topic_permissions": []},
    ],
    "policies": [],
    "delete_guest": True,
    "port": 5672,
    "management_port": 15672,
    "admin_user": "qsetup-admin",
    "admin_secret": "rabbitmq-user-qsetup-admin",
}  # fmt: skip
FULL_BROKER_VARS = {
    "vhosts": ["shop", "reports"],
    "users": [
        {"name": "qsetup-admin", "secret": "rabbitmq-user-qsetup-admin", "tags": "administrator",
         "permissions": [
             {"vhost": "shop", "configure_priv": ".*", "write_priv": ".*", "read_priv": ".*"},
             {"vhost": "reports", "configure_priv": ".*", "write_priv": ".*", "read_priv": ".*"},
         ],
         "topic_permissions": []},
        {"name": "Shop", "secret": "rabbitmq-user-shop", "tags": "",
         "permissions": [{"vhost": "shop", "configure_priv": ".*", "write_priv": ".*",
                          "read_priv": ".*"}],
         "topic_permissions": []},
        {"name": "reports", "secret": "reports-pw", "tags": "monitoring,management",
         "permissions": [
             {"vhost": "reports", "configure_priv": ".*", "write_priv": ".*", "read_priv": ".*"},
             {"vhost": "shop", "configure_priv": "^$", "write_priv": "^$",
              "read_priv": "^reports\\."},
         ],
         "topic_permissions": [{"vhost": "shop", "exchange": "amq.topic", "write_priv": "^$",
                                "read_priv": "^orders\\."}]},
        {"name": "monitor", "secret": "monitor-pw", "tags": "monitoring",
         "permissions": [{"vhost": "shop", "configure_priv": "^$", "write_priv": "^$",
                          "read_priv": "^$"}],
         "topic_permissions": []},
    ],
    "policies": [
        {"name": "ttl", "vhost": "shop", "pattern": "^celery$", "apply_to": "quorum_queues",
         "priority": 5, "definition": {"message-ttl": 60000, "ha-mode": "all", "lazy": True}},
    ],
    "delete_guest": False,
    "port": 5673,
    "management_port": 15673,
    "admin_user": "qsetup-admin",
    "admin_secret": "rabbitmq-user-qsetup-admin",
}  # fmt: skip


def test_plan_serializes_the_broker_state_in_the_shape_the_playbooks_read(
    base: Inventory, full: Inventory
) -> None:
    assert _broker_vars(base) == BASE_BROKER_VARS
    assert _broker_vars(full) == FULL_BROKER_VARS
    # key order too (the playbooks do not care, a reader of the vars file does)
    assert list(_broker_vars(full)["policies"][0]["definition"]) == [
        "message-ttl",
        "ha-mode",
        "lazy",
    ]
    # every user, permission and policy of the state, and nothing else
    state = broker_state(full)
    plan = _broker_vars(full)
    assert [u["name"] for u in plan["users"]] == [u.name for u in state.users]
    assert [p["name"] for p in plan["policies"]] == [p.name for p in state.policies]


def _actual(
    exp: BrokerState,
) -> tuple[list[str], dict[str, frozenset[str]], list[Permission]]:
    perms = [Permission(u, v, *p) for (u, v), p in _perms(exp).items()]
    return sorted(exp.vhosts) + ["/"], _users(exp), perms


def _topics(exp: BrokerState) -> list[TopicPermission]:
    return [
        TopicPermission(u.name, t.vhost, t.exchange, t.write, t.read)
        for u in exp.users
        for t in u.topic_permissions
    ]


def _policies(exp: BrokerState) -> list[Policy]:
    return [
        Policy(p.vhost, p.name, p.pattern, p.apply_to, p.priority, dict(p.definition))
        for p in exp.policies
    ]


def test_a_freshly_deployed_broker_has_no_drift(base: Inventory) -> None:
    exp = broker_state(base)
    assert compare_broker(exp, *_actual(exp)) == []


def test_default_vhost_and_empty_permissions_are_not_drift(base: Inventory) -> None:
    exp = broker_state(base)
    vhosts, users, perms = _actual(exp)
    # community.rabbitmq gives a user with no permissions "^$ ^$ ^$" on "/"
    perms.append(Permission("orders", "/", "^$", "^$", "^$"))
    assert compare_broker(exp, vhosts, users, perms) == []


def test_drift_names_every_difference(base: Inventory) -> None:
    exp = broker_state(base)
    vhosts, users, perms = _actual(exp)
    vhosts.append("stray")
    users["intruder"] = frozenset({"administrator"})
    users["guest"] = frozenset({"administrator"})
    users["orders"] = frozenset({"management"})
    del users["flower-monitor"]
    perms = [p for p in perms if p.user != "qsetup-admin"]
    perms.append(Permission("orders", "/", ".*", ".*", ".*"))
    perms = [p for p in perms if (p.user, p.vhost) != ("orders", "orders")]
    perms.append(Permission("orders", "orders", "^$", ".*", ".*"))
    drift = compare_broker(exp, vhosts, users, perms)
    assert drift == [
        Drift("vhost", "stray", "extra", "on the broker, not in the inventory"),
        Drift("user", "flower-monitor", "missing", "in the inventory, not on the broker"),
        Drift("user", "guest", "extra", "guest is present but broker.delete_guest is true"),
        Drift("user", "intruder", "extra", "on the broker, not in the inventory"),
        Drift("tags", "orders", "differs",
              "tags [management] on the broker, [] in the inventory"),
        Drift("permission", "orders@/", "extra",
              "configure='.*' write='.*' read='.*' on the broker"),
        Drift("permission", "orders@orders", "differs",
              "configure='^$' write='.*' read='.*' on the broker, "
              "configure='.*' write='.*' read='.*' in the inventory"),
        Drift("permission", "qsetup-admin@orders", "missing",
              "expected configure='.*' write='.*' read='.*'"),
    ]  # fmt: skip


def test_missing_vhost_is_one_line_not_one_per_permission(base: Inventory) -> None:
    exp = broker_state(base)
    _, users, _ = _actual(exp)
    drift = compare_broker(exp, ["/"], users, [])
    assert drift == [Drift("vhost", "orders", "missing", "in the inventory, not on the broker")]


def test_guest_is_fine_when_delete_guest_is_false(full: Inventory) -> None:
    exp = broker_state(full)
    vhosts, users, perms = _actual(exp)
    users["guest"] = frozenset({"administrator"})
    perms.append(Permission("guest", "/", ".*", ".*", ".*"))
    assert compare_broker(exp, vhosts, users, perms, _topics(exp), _policies(exp)) == []


def _api(inv: Inventory, **over: Any) -> dict[str, Any]:
    exp = broker_state(inv)
    answers: dict[str, Any] = {
        "overview": {"rabbitmq_version": "3.10.8", "erlang_version": "25.2.3"},
        "nodes": [
            {
                "name": "rabbit@mq",
                "running": True,
                "mem_alarm": False,
                "disk_free_alarm": False,
                "mem_used": 1,
                "mem_limit": 2,
                "disk_free": 3,
                "disk_free_limit": 4,
            }
        ],
        "vhosts": [{"name": v} for v in sorted(exp.vhosts)] + [{"name": "/"}],
        "users": [{"name": n, "tags": sorted(t)} for n, t in _users(exp).items()],
        "permissions": [
            {"user": u, "vhost": v, "configure": c, "write": w, "read": r}
            for (u, v), (c, w, r) in _perms(exp).items()
        ],
        "topic_permissions": [
            {
                "user": t.user,
                "vhost": t.vhost,
                "exchange": t.exchange,
                "write": t.write,
                "read": t.read,
            }
            for t in _topics(exp)
        ],  # fmt: skip
        "policies": [
            {
                "vhost": p.vhost,
                "name": p.name,
                "pattern": p.pattern,
                "apply-to": p.apply_to,
                "priority": p.priority,
                "definition": dict(p.definition),
            }
            for p in _policies(exp)
        ],  # fmt: skip
        "queues": [
            {
                "vhost": "orders",
                "name": "celery",
                "messages_ready": 4,
                "messages_unacknowledged": 1,
                "consumers": 2,
            },
            {"vhost": "orders", "name": "default-1@w.celery.pidbox", "consumers": 1},
        ],  # fmt: skip
    }
    answers.update(over)
    return answers


def test_parse_api_healthy(base: Inventory) -> None:
    status = parse_api(base, **_api(base))
    assert status.error is None and status.drift == ()
    assert status.rabbitmq_version == "3.10.8" and status.erlang_version == "25.2.3"
    assert status.vhosts == ("/", "orders")
    assert status.queues[0].name == "celery" and status.queues[0].ready == 4
    assert status.queues[1].ready == 0  # absent counters are 0
    assert status.api_url == "http://10.0.0.1:15672/api"
    assert broker_problems(base, status) == []


def test_parse_api_accepts_old_comma_separated_tags(base: Inventory) -> None:
    answers = _api(base)
    answers["users"] = [{"name": u["name"], "tags": ",".join(u["tags"])} for u in answers["users"]]
    assert parse_api(base, **answers).drift == ()


def test_broker_problems_alarms_drift_and_idle_queues(base: Inventory) -> None:
    answers = _api(base)
    answers["nodes"][0].update(mem_alarm=True, disk_free_alarm=True, running=False)
    answers["users"].append({"name": "intruder", "tags": []})
    answers["queues"] = [{"vhost": "orders", "name": "celery", "messages_ready": 9,
                          "consumers": 0}]  # fmt: skip
    problems = broker_problems(base, parse_api(base, **answers))
    assert problems == [
        "rabbit1: broker node rabbit@mq: not running",
        "rabbit1: broker node rabbit@mq: memory alarm (publishers are blocked)",
        "rabbit1: broker node rabbit@mq: disk free alarm (publishers are blocked)",
        "rabbit1: broker user 'intruder': extra (on the broker, not in the inventory)",
        "rabbit1: broker queue 'celery' (vhost 'orders'): 9 messages ready and no consumers "
        "(worker group default should consume it)",
    ]


def test_a_missing_worker_queue_is_one_line_for_all_its_groups(full: Inventory) -> None:
    status = parse_api(full, **_api(full, queues=[]))
    lines = [p for p in broker_problems(full, status) if "queue" in p]
    assert lines == [
        "mq: broker queue 'orders' (vhost 'shop'): missing (worker group orders)",
        "mq: broker queue 'celery' (vhost 'shop'): missing (worker group orders)",
        "mq: broker queue 'celery' (vhost 'reports'): missing (worker group reports)",
    ]


def test_api_failure_is_one_line(base: Inventory) -> None:
    status = failed_broker(base, "cannot connect")
    assert broker_problems(base, status) == [
        "rabbit1: broker management API http://10.0.0.1:15672/api: cannot connect"
    ]


def test_a_refusal_from_a_stopped_unit_says_the_unit_not_a_guess(base: Inventory) -> None:
    from qsetup.status.check import explain_refusals
    from qsetup.status.model import FlowerStatus, HostStatus, UnitStatus

    guess = "cannot connect (is RabbitMQ's management plugin running?) (firewall.enabled: ...)"
    broker = failed_broker(base, guess, (("rabbit1", guess),))
    flower = FlowerStatus("rabbit1", "http://10.0.0.1:5555/api/workers", None, None,
                          "cannot connect (is qsetup-flower.service running?)")  # fmt: skip

    def host(*units: UnitStatus) -> dict[str, HostStatus]:
        return {"rabbit1": HostStatus("rabbit1", "10.0.0.1", ("broker", "flower"), True, None,
                                      "rabbit1", units, (), None, None)}  # fmt: skip

    rabbit = UnitStatus("rabbitmq-server.service", "broker", "loaded", "inactive", "dead", None, 0)
    flowers = UnitStatus("qsetup-flower.service", "flower", "loaded", "failed", "failed", None, 5)
    said, flower_said = explain_refusals(broker, flower, host(rabbit, flowers))
    assert broker_problems(base, said) == [
        "rabbit1: broker management API http://10.0.0.1:15672/api: cannot connect: "
        "rabbitmq-server.service is inactive (dead) there"
    ]
    assert said.error == said.api_errors[0][1]
    assert flower_said is not None
    assert flower_said.error == "cannot connect: qsetup-flower.service is failed (failed) there"
    # Running units (or a host not read) leave the API's own reason.
    running = UnitStatus("rabbitmq-server.service", "broker", "loaded", "active", "running",
                         None, 0)  # fmt: skip
    assert explain_refusals(broker, flower, host(running)) == (broker, flower)
    assert explain_refusals(broker, flower, {}) == (broker, flower)
    # A host whose read failed too (SSH, sudo): said, not guessed.
    off = HostStatus("rabbit1", "10.0.0.1", ("broker",), False, "refused", None, (), (), None, None)
    down = {"rabbit1": off}
    said, flower_said = explain_refusals(broker, flower, down)
    both = "cannot connect, and the host could not be read either (see its line)"
    assert said.error == both and flower_said is not None and flower_said.error == both


def test_an_idle_queue_without_consumers_is_not_a_problem(base: Inventory) -> None:
    # Right after a worker starts the API may still count 0 consumers (5 s statistics).
    answers = _api(base, queues=[{"vhost": "orders", "name": "celery", "consumers": 0}])
    assert broker_problems(base, parse_api(base, **answers)) == []


def test_a_freshly_deployed_full_broker_has_no_drift(full: Inventory) -> None:
    exp = broker_state(full)
    assert compare_broker(exp, *_actual(exp), _topics(exp), _policies(exp)) == []
    status = parse_api(full, **_api(full))
    assert status.drift == ()


def test_topic_permission_drift(full: Inventory) -> None:
    exp = broker_state(full)
    topics = [
        # the inventory's reports@shop/amq.topic is gone; one differs; one is extra
        TopicPermission("Shop", "shop", "amq.topic", ".*", ".*"),
        TopicPermission("reports", "reports", "events", "^$", ".*"),
        # a user qsetup does not manage: the user is the line, not its rights
        TopicPermission("intruder", "shop", "amq.topic", ".*", ".*"),
    ]
    drift = compare_broker(exp, *_actual(exp), topics, _policies(exp))
    assert drift == [
        Drift("topic_permission", "Shop@shop/amq.topic", "extra",
              "write='.*' read='.*' on the broker"),
        Drift("topic_permission", "reports@reports/events", "extra",
              "write='^$' read='.*' on the broker"),
        Drift("topic_permission", "reports@shop/amq.topic", "missing",
              "expected write='^$' read='^orders\\\\.'"),
    ]  # fmt: skip
    changed = [TopicPermission("reports", "shop", "amq.topic", ".*", "^orders\\.")]
    assert compare_broker(exp, *_actual(exp), changed, _policies(exp)) == [
        Drift("topic_permission", "reports@shop/amq.topic", "differs",
              "write='.*' read='^orders\\\\.' on the broker, "
              "write='^$' read='^orders\\\\.' in the inventory"),
    ]  # fmt: skip


def test_policy_drift(full: Inventory) -> None:
    exp = broker_state(full)
    vhosts, users, perms = _actual(exp)
    topics = _topics(exp)
    assert [d.name for d in compare_broker(exp, vhosts, users, perms, topics, [])] == ["shop/ttl"]
    assert compare_broker(exp, vhosts, users, perms, topics, [])[0] == Drift(
        "policy", "shop/ttl", "missing", "in the inventory, not on the broker"
    )
    changed = Policy("shop", "ttl", "^celery$", "queues", 5, {"message-ttl": 1000,
                     "ha-mode": "all", "lazy": True})  # fmt: skip
    policies = [
        changed,
        Policy("reports", "mine", ".*", "all", 0, {"max-length": 10}),
        Policy("/", "theirs", ".*", "all", 0, {"max-length": 10}),  # "/" is not qsetup's
    ]
    assert compare_broker(exp, vhosts, users, perms, topics, policies) == [
        Drift("policy", "reports/mine", "extra", "on the broker, not in the inventory"),
        Drift("policy", "shop/ttl", "differs",
              "apply-to 'queues' on the broker, 'quorum_queues' in the inventory; "
              'definition {"ha-mode": "all", "lazy": true, "message-ttl": 1000} on the broker, '
              '{"ha-mode": "all", "lazy": true, "message-ttl": 60000} in the inventory'),
    ]  # fmt: skip
    # the order of a definition's keys is not a difference
    same = Policy("shop", "ttl", "^celery$", "quorum_queues", 5,
                  {"lazy": True, "ha-mode": "all", "message-ttl": 60000})  # fmt: skip
    assert compare_broker(exp, vhosts, users, perms, topics, [same]) == []


def test_policies_on_a_missing_vhost_are_one_line(full: Inventory) -> None:
    exp = broker_state(full)
    _, users, perms = _actual(exp)
    drift = compare_broker(exp, ["/", "reports"], users, perms, _topics(exp), [])
    assert drift == [Drift("vhost", "shop", "missing", "in the inventory, not on the broker")]


def test_parse_api_reads_topic_permissions_and_policies(full: Inventory) -> None:
    answers = _api(full)
    answers["policies"][0]["priority"] = 7
    answers["topic_permissions"] = []
    problems = broker_problems(full, parse_api(full, **answers))
    drift_lines = [p for p in problems if "queue" not in p]
    assert drift_lines == [
        "mq: broker topic_permission 'reports@shop/amq.topic': missing "
        "(expected write='^$' read='^orders\\\\.')",
        "mq: broker policy 'shop/ttl': differs (priority 7 on the broker, 5 in the inventory)",
    ]


def test_fetch_broker_reads_topic_permissions_and_policies(
    write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qsetup.status import broker

    loaded = load_inventory(write_inventory(FULL_INVENTORY, FULL_SECRETS))
    answers = _api(loaded.inventory)
    answers["topic-permissions"] = answers.pop("topic_permissions")
    asked: list[str] = []

    class _Resp:
        status_code = 200

        def __init__(self, body: Any) -> None:
            self.body = body

        def json(self) -> Any:
            return self.body

    class _Session:
        def __init__(self, *_: Any) -> None:
            return None

        def __enter__(self) -> _Session:
            return self

        def __exit__(self, *_: Any) -> None:
            return None

        def get(self, url: str, **_: Any) -> _Resp:
            path = url.rsplit("/api/", 1)[1]
            asked.append(path)
            return _Resp(answers[path])

    monkeypatch.setattr("qsetup.status.broker.Client", _Session)
    status = broker.fetch_broker(loaded, 1.0)
    assert {"topic-permissions", "policies"} <= set(asked)
    assert status.error is None and status.drift == ()
