"""Invalid inventories: each case asserts the exact ``FILE:LINE:COL: field.path: message`` lines.

Cases are small edits of ``BASE_INVENTORY`` (see conftest.py), so line numbers stay
predictable. ``{inv}`` and ``{sec}`` stand for the inventory and secrets file paths.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from unitdata import BASE_INVENTORY, BASE_SECRETS, WriteInventory

from qsetup.errors import QsetupError
from qsetup.loader import load_inventory


def edit(old: str, new: str, text: str = BASE_INVENTORY) -> str:
    """Replace one exact, unique piece of the base inventory."""
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    return text.replace(old, new)


def after_install(extra: str) -> str:
    """Add lines to the worker group, right after 'install: pip' (line 22)."""
    return edit("    install: pip\n", "    install: pip\n" + extra)


def after_user_vhost(extra: str) -> str:
    """Add lines after broker.users[0].vhost (line 12)."""
    return edit("      vhost: orders\n", "      vhost: orders\n" + extra)


WORKER_KEYS = (
    "autoscale, broker_user, celery_version, concurrency, group, hosts, install, instances, "
    "loglevel, max_memory_per_child, max_tasks_per_child, name, node_name, pool, queues, "
    "soft_time_limit, time_limit, user, vhost"
)
TOP_KEYS = "app, beat, broker, flower, hosts, ssh, version, workers"
YAML_HINT = "check quotes, brackets and indentation there"

# (case id, inventory text, expected lines)
CASES: list[tuple[str, str, list[str]]] = [
    (
        "unknown-top-level-key",
        BASE_INVENTORY + "flwer: {}\n",
        ["{inv}:27:1: flwer: unknown key 'flwer'; did you mean 'flower'?"],
    ),
    (
        "unknown-top-level-key-no-match",
        BASE_INVENTORY + "zzz: 1\n",
        [f"{{inv}}:27:1: zzz: unknown key 'zzz'; allowed keys: {TOP_KEYS}"],
    ),
    (
        "misspelt-nested-key",
        after_install("    concurency: 2\n"),
        [
            "{inv}:23:5: workers[0].concurency: unknown key 'concurency'; "
            "did you mean 'concurrency'?"
        ],
    ),
    (
        "unknown-nested-key-lists-allowed",
        after_install("    zzzz: 2\n"),
        [f"{{inv}}:23:5: workers[0].zzzz: unknown key 'zzzz'; allowed keys: {WORKER_KEYS}"],
    ),
    (
        "misspelt-key-deep",
        edit("    address: 10.0.0.2\n", "    adress: 10.0.0.2\n"),
        # no second line saying 'address' is missing: the did-you-mean says it
        ["{inv}:6:5: hosts.worker1.adress: unknown key 'adress'; did you mean 'address'?"],
    ),
    (
        "missing-required-field",
        edit("  module: proj\n", ""),
        ["{inv}:13:1: app.module: required field is missing; add it"],
    ),
    (
        "missing-required-in-list-item",
        edit("    install: pip\n", ""),
        ["{inv}:20:5: workers[0].install: required field is missing; add it"],
    ),
    (
        "missing-top-level-section",
        edit("flower:\n  host: rabbit1\n  basic_auth:\n    - name: admin\n", "").replace(
            "workers:\n  - name: default\n    hosts: [worker1]\n    install: pip\n", ""
        ),
        ["{inv}:1:1: workers: required field is missing; add it"],
    ),
    (
        "string-for-int",
        after_install("    instances: many\n"),
        ["{inv}:23:16: workers[0].instances: expected a whole number, got 'many'"],
    ),
    (
        "float-for-int",
        after_install("    instances: 1.5\n"),
        ["{inv}:23:16: workers[0].instances: expected a whole number, got 1.5"],
    ),
    (
        "list-for-mapping",
        edit("  source:\n    path: app\n", "  source: [app]\n"),
        ["{inv}:15:11: app.source: expected a mapping (key: value lines), got a list"],
    ),
    (
        "hosts-as-list",
        edit(
            "hosts:\n  rabbit1:\n    address: 10.0.0.1\n  worker1:\n    address: 10.0.0.2\n",
            "hosts: [rabbit1, worker1]\n",
        ),
        ["{inv}:2:8: hosts: expected a mapping (key: value lines), got a list"],
    ),
    (
        "bool-for-string",
        edit("  module: proj", "  module: true"),
        [
            "{inv}:14:11: app.module: expected a string (quote it if it looks like another "
            "type), got true"
        ],
    ),
    (
        "null-for-string",
        edit("  module: proj", "  module:"),
        [
            "{inv}:14:10: app.module: expected a string (quote it if it looks like another "
            "type), got nothing (null)"
        ],
    ),
    (
        "string-for-bool",
        edit("  vhosts: [orders]\n", "  vhosts: [orders]\n  delete_guest: maybe\n"),
        ["{inv}:10:17: broker.delete_guest: expected true or false, got 'maybe'"],
    ),
    (
        "bad-literal-install",
        edit("install: pip", "install: yum"),
        ["{inv}:22:14: workers[0].install: got 'yum'; use 'apt' or 'pip'"],
    ),
    (
        "bad-literal-version",
        edit("version: 1", "version: 2"),
        ["{inv}:1:10: version: got 2; use 1"],
    ),
    (
        "bad-tag",
        after_user_vhost("      tags: [admin]\n"),
        [
            "{inv}:13:14: broker.users[0].tags[0]: got 'admin'; use 'none', 'management', "
            "'monitoring', 'policymaker' or 'administrator'"
        ],
    ),
    (
        "bad-host-name",
        edit("  worker1:\n", "  Worker_1:\n"),
        [
            "{inv}:5:3: hosts.Worker_1: 'Worker_1' is not allowed here; use lowercase "
            "letters, digits and '-', starting with a letter"
        ],
    ),
    (
        "bad-env-name",
        edit("  vhost: orders\nworkers", "  vhost: orders\n  environment:\n    foo: bar\nworkers"),
        [
            "{inv}:20:5: app.environment.foo: 'foo' is not allowed here; environment variable "
            "names use A-Z, 0-9 and '_'"
        ],
    ),
    (
        "undeclared-worker-host",
        edit("hosts: [worker1]", "hosts: [worker9]"),
        [
            "{inv}:21:13: workers[0].hosts[0]: host 'worker9' is not declared under hosts "
            "(declared: rabbit1, worker1)"
        ],
    ),
    (
        "undeclared-broker-host",
        edit("  host: rabbit1\n  vhosts", "  host: rabbit9\n  vhosts"),
        [
            "{inv}:8:9: broker.host: host 'rabbit9' is not declared under hosts "
            "(declared: rabbit1, worker1)"
        ],
    ),
    (
        "undeclared-flower-host",
        edit("flower:\n  host: rabbit1", "flower:\n  host: web1"),
        [
            "{inv}:24:9: flower.host: host 'web1' is not declared under hosts "
            "(declared: rabbit1, worker1)"
        ],
    ),
    (
        "undeclared-beat-host",
        BASE_INVENTORY + "beat:\n  host: nowhere\n",
        [
            "{inv}:28:9: beat.host: host 'nowhere' is not declared under hosts "
            "(declared: rabbit1, worker1)"
        ],
    ),
    (
        "worker-user-root",
        after_install("    user: root\n"),
        [
            "{inv}:23:11: workers[0].user: workers never run as root; use a dedicated user "
            "such as celery"
        ],
    ),
    (
        "concurrency-and-autoscale",
        after_install("    concurrency: 4\n    autoscale: [8, 2]\n"),
        ["{inv}:24:16: workers[0].autoscale: set concurrency or autoscale, not both"],
    ),
    (
        "autoscale-max-below-min",
        after_install("    autoscale: [2, 8]\n"),
        ["{inv}:23:16: workers[0].autoscale: autoscale is [max, min]; max must be >= min"],
    ),
    (
        "autoscale-three-numbers",
        after_install("    autoscale: [1, 2, 3]\n"),
        ["{inv}:23:16: workers[0].autoscale: takes at most 2 items, got 3; remove some"],
    ),
    (
        "celery-version-with-apt",
        edit("    install: pip\n", "    install: apt\n    celery_version: '==5.4.*'\n"),
        [
            "{inv}:23:21: workers[0].celery_version: celery_version applies to install: pip "
            "only (apt uses Debian's)"
        ],
    ),
    (
        "soft-time-limit-not-below-hard",
        after_install("    soft_time_limit: 60\n    time_limit: 60\n"),
        ["{inv}:24:17: workers[0].time_limit: soft_time_limit must be lower than time_limit"],
    ),
    (
        "empty-workers",
        edit(
            "workers:\n  - name: default\n    hosts: [worker1]\n    install: pip\n",
            "workers: []\n",
        ),
        ["{inv}:19:10: workers: needs at least 1 item, got 0; add one"],
    ),
    (
        "app-vhost-not-declared",
        edit("  vhost: orders\nworkers", "  vhost: billing\nworkers"),
        ["{inv}:18:10: app.vhost: vhost 'billing' is not listed under broker.vhosts"],
    ),
    (
        "user-vhost-not-declared",
        edit("      vhost: orders\n", "      vhost: billing\n"),
        [
            "{inv}:12:14: broker.users[0].vhost: vhost 'billing' is not listed under broker.vhosts",
            "{inv}:17:16: app.broker_user: broker user 'orders' has no rights on vhost "
            "'orders' (worker group 'default'); give it permissions there",
        ],
    ),
    (
        "permission-on-undeclared-vhost",
        after_user_vhost("      permissions:\n        - vhost: orders\n        - vhost: billing\n"),
        [
            "{inv}:15:18: broker.users[0].permissions[1].vhost: vhost 'billing' is not listed "
            "under broker.vhosts"
        ],
    ),
    (
        "app-broker-user-missing",
        edit("  broker_user: orders\n", "  broker_user: billing\n"),
        ["{inv}:17:16: app.broker_user: broker user 'billing' is not listed under broker.users"],
    ),
    (
        "worker-group-broker-user-missing",
        after_install("    broker_user: billing\n"),
        [
            "{inv}:23:18: workers[0].broker_user: broker user 'billing' is not listed under "
            "broker.users"
        ],
    ),
    (
        "broker-user-lacks-rights",
        edit("      vhost: orders\n", "      permissions: []\n"),
        [
            "{inv}:17:16: app.broker_user: broker user 'orders' has no rights on vhost "
            "'orders' (worker group 'default'); give it permissions there"
        ],
    ),
    (
        "duplicate-worker-group",
        edit(
            "flower:",
            "  - name: default\n    hosts: [worker1]\n    install: pip\nflower:",
        ),
        ["{inv}:23:11: workers[1].name: worker group 'default' is listed twice"],
    ),
    (
        "duplicate-broker-user",
        after_user_vhost("    - name: orders\n      vhost: orders\n"),
        ["{inv}:13:13: broker.users[1].name: user 'orders' is listed twice"],
    ),
    (
        "user-named-guest",
        after_user_vhost("    - name: guest\n"),
        ["{inv}:13:13: broker.users[1].name: 'guest' is RabbitMQ's default user; pick a name"],
    ),
    (
        "flower-api-user-listed",
        after_user_vhost("    - name: flower-monitor\n      tags: [monitoring]\n"),
        [
            "{inv}:13:13: broker.users[1].name: 'flower-monitor' is created by qsetup for "
            "Flower (flower.broker_api_user); remove it from broker.users"
        ],
    ),
    (
        "bad-permission-regex",
        edit(
            "      vhost: orders\n",
            "      permissions:\n        - vhost: orders\n          read: '(unclosed'\n",
        ),
        [
            "{inv}:14:17: broker.users[0].permissions[0].read: not a valid regular expression "
            "(missing ), unterminated subpattern at position 0)"
        ],
    ),
    (
        "empty-policy-definition",
        edit(
            "app:\n",
            "  policies:\n    - name: ttl\n      vhost: orders\n      pattern: '.*'\n"
            "      definition: {}\napp:\n",
        ),
        [
            "{inv}:17:19: broker.policies[0].definition: a policy needs at least one key, "
            "e.g. {{message-ttl: 60000}}"
        ],
    ),
    (
        "port-out-of-range",
        edit("  vhosts", "  port: 70000\n  vhosts"),
        ["{inv}:9:9: broker.port: must be at most 65535, got 70000"],
    ),
    (
        "port-zero",
        edit("  vhosts", "  management_port: 0\n  vhosts"),
        ["{inv}:9:20: broker.management_port: must be at least 1, got 0"],
    ),
    (
        "reserved-env-broker-url",
        edit(
            "  vhost: orders\nworkers",
            "  vhost: orders\n  environment:\n    CELERY_BROKER_URL: amqp://x\nworkers",
        ),
        [
            "{inv}:20:5: app.environment.CELERY_BROKER_URL: CELERY_BROKER_URL is set by qsetup "
            "from broker_user and vhost; remove it"
        ],
    ),
    (
        "beat-as-list",
        BASE_INVENTORY + "beat: [rabbit1]\n",
        ["{inv}:27:7: beat: expected a mapping (key: value lines), got a list"],
    ),
    (
        "source-path-and-requirement",
        edit("    path: app\n", "    path: app\n    requirement: proj==1.0\n"),
        ["{inv}:16:5: app.source: give exactly one of path (a local directory) or requirement"],
    ),
    (
        "source-neither",
        edit("  source:\n    path: app\n", "  source: {}\n"),
        ["{inv}:15:11: app.source: give exactly one of path (a local directory) or requirement"],
    ),
    (
        "several-problems-in-file-order",
        edit("install: pip", "install: yum", edit("  vhosts", "  port: 0\n  vhosts"))
        + "flwer: {}\n",
        [
            "{inv}:9:9: broker.port: must be at least 1, got 0",
            "{inv}:23:14: workers[0].install: got 'yum'; use 'apt' or 'pip'",
            "{inv}:28:1: flwer: unknown key 'flwer'; did you mean 'flower'?",
        ],
    ),
    (
        "several-reference-problems",
        edit(
            "hosts: [worker1]",
            "hosts: [worker9, worker9]",
            edit("host: rabbit1\n  vhosts", "host: mq\n  vhosts"),
        ),
        [
            "{inv}:8:9: broker.host: host 'mq' is not declared under hosts "
            "(declared: rabbit1, worker1)",
            "{inv}:21:12: workers[0].hosts: a host is listed twice",
            "{inv}:21:13: workers[0].hosts[0]: host 'worker9' is not declared under hosts "
            "(declared: rabbit1, worker1)",
            "{inv}:21:22: workers[0].hosts[1]: host 'worker9' is not declared under hosts "
            "(declared: rabbit1, worker1)",
        ],
    ),
    (
        "result-backend-with-quote",
        edit("  vhost: orders\nworkers", "  vhost: orders\n  result_backend: 'rpc://\"x'\nworkers"),
        [
            "{inv}:19:19: app.result_backend: 'rpc://\"x' is not allowed here; use a URL such "
            "as rpc:// or redis://host:6379/0, without spaces or quotes"
        ],
    ),
    (
        "listen-address-with-newline",
        edit("  vhosts", '  listen_address: "0.0.0.0\\nlog.file = x"\n  vhosts'),
        [
            "{inv}:9:19: broker.listen_address: '0.0.0.0\\nlog.file = x' is not allowed here; "
            "use an IP address (0.0.0.0 for all) or a host name"
        ],
    ),
    (
        "bad-module-path",
        edit("  module: proj", "  module: my-proj"),
        [
            "{inv}:14:11: app.module: 'my-proj' is not allowed here; use a Python module path "
            "such as proj or proj.celery:app"
        ],
    ),
    (
        "blank-key",
        BASE_INVENTORY + "' ': 1\n",
        [f"{{inv}}:27:1: [' ']: unknown key ' '; allowed keys: {TOP_KEYS}"],
    ),
    (
        "dotted-host-name",
        edit("  worker1:\n", "  worker1.example:\n"),
        [
            "{inv}:5:3: hosts['worker1.example']: 'worker1.example' is not allowed here; use "
            "lowercase letters, digits and '-', starting with a letter"
        ],
    ),
    (
        "empty-file",
        "",
        [
            "{inv}:1:1: (top level): the inventory is empty; run 'qsetup init' to write a "
            "starting one"
        ],
    ),
    (
        "only-comments",
        "# nothing here yet\n",
        [
            "{inv}:1:1: (top level): the inventory is empty; run 'qsetup init' to write a "
            "starting one"
        ],
    ),
    (
        "top-level-list",
        "- rabbit1\n- worker1\n",
        [
            "{inv}:1:1: (top level): expected a mapping with hosts, broker, app and workers, "
            "got a list"
        ],
    ),
    (
        "top-level-scalar",
        "hello\n",
        [
            "{inv}:1:1: (top level): expected a mapping with hosts, broker, app and workers, "
            "got 'hello'"
        ],
    ),
    (
        "broken-yaml-bracket",
        edit("  vhosts: [orders]\n", "  vhosts: [orders\n"),
        [
            "{inv}:10:8: (yaml): invalid YAML: expected ',' or ']', but got ':' (while "
            f"parsing a flow sequence started at line 9); {YAML_HINT}"
        ],
    ),
    (
        "broken-yaml-quote",
        edit("  module: proj\n", "  module: 'proj\n"),
        [
            "{inv}:27:1: (yaml): invalid YAML: found unexpected end of stream (while scanning "
            f"a quoted scalar started at line 14); {YAML_HINT}"
        ],
    ),
    (
        "two-documents",
        BASE_INVENTORY + "---\nversion: 1\n",
        ["{inv}:27:1: (yaml): more than one YAML document; keep one (remove the extra '---' line)"],
    ),
    (
        "tab-indentation",
        edit("    install: pip\n", "\tinstall: pip\n"),
        ["{inv}:22:1: (yaml): a tab character; YAML indentation must use spaces"],
    ),
    (
        "duplicate-key",
        edit("  module: proj\n", "  module: proj\n  module: other\n"),
        [
            "{inv}:15:3: (yaml): key 'module' appears twice in the same mapping "
            "(first at line 14); keep one"
        ],
    ),
    (
        "recursive-alias",
        BASE_INVENTORY + "beat: &loop\n  host: [*loop]\n",
        ["{inv}:27:7: (yaml): an alias refers to its own anchor; remove the loop"],
    ),
    (
        "bad-timestamp",
        edit("version: 1", "version: 2001-13-45"),
        ["{inv}:1:10: (yaml): unreadable value (month must be in 1..12); quote it if it is text"],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [pytest.param(text, expected, id=case_id) for case_id, text, expected in CASES],
)
def test_invalid_inventory_lines(
    write_inventory: WriteInventory, text: str, expected: list[str]
) -> None:
    inventory = write_inventory(text)
    with pytest.raises(QsetupError) as caught:
        load_inventory(inventory)
    secrets = inventory.with_name("inventory.secrets.yml")
    want = [line.format(inv=inventory, sec=secrets) for line in expected]
    assert caught.value.lines() == want


def test_case_ids_are_unique() -> None:
    ids = [case_id for case_id, _, _ in CASES]
    assert len(ids) == len(set(ids))


# --- files that cannot be read as an inventory --------------------------------


def _lines(path: Path, secrets_path: Path | None = None) -> list[str]:
    with pytest.raises(QsetupError) as caught:
        load_inventory(path, secrets_path)
    return caught.value.lines()


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nothere.yml"
    assert _lines(path) == [f"{path}:1:1: (file): inventory not found; check the path"]


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert _lines(tmp_path) == [
        f"{tmp_path}:1:1: (file): is a directory; give the path of the inventory"
    ]


@pytest.mark.parametrize(
    "content",
    [b"\x00\x01\x02hosts:", b"\x89PNG\r\n\x1a\n\x00\x00", b"app: \xff\xfe caf\xe9\n"],
    ids=["nul-bytes", "png", "latin-1"],
)
def test_binary_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "inventory.yml"
    path.write_bytes(content)
    assert _lines(path) == [
        f"{path}:1:1: (file): not a text file; the inventory must be UTF-8 YAML"
    ]


def test_huge_file_is_refused_not_read(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text("# " + "x" * (5 * 1024 * 1024) + "\n")
    assert _lines(path) == [
        f"{path}:1:1: (file): cannot read the inventory (larger than 4 MiB; is it the right file?)"
    ]


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdef", "bcdefg", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    path = tmp_path / "inventory.yml"
    path.write_text("\n".join(lines) + "\n")
    (line,) = _lines(path)
    assert line.startswith(f"{path}:")
    assert line.endswith(
        ": (yaml): more than 100000 values (aliases expand too far); write the data out"
    )


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text("hosts: " + "[" * 3000 + "]" * 3000 + "\n")
    assert _lines(path) == [
        f"{path}:1:1: (yaml): nested too deeply; an inventory needs at most 64 levels"
    ]


def test_source_path_missing(write_inventory: WriteInventory) -> None:
    inventory = write_inventory(edit("    path: app\n", "    path: nowhere\n"))
    missing = inventory.parent / "nowhere"
    assert _lines(inventory) == [
        f"{inventory}:16:11: app.source.path: {missing} does not exist; point it at the "
        "directory with the app's code"
    ]


def test_source_path_is_a_file(write_inventory: WriteInventory) -> None:
    inventory = write_inventory(edit("    path: app\n", "    path: inventory.yml\n"))
    assert _lines(inventory) == [
        f"{inventory}:16:11: app.source.path: {inventory} is not a directory; point it at the "
        "directory with the app's code"
    ]


# --- the secrets file -------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_secrets_open_to_others(write_inventory: WriteInventory, mode: int) -> None:
    inventory = write_inventory(secrets_mode=mode)
    secrets = inventory.with_name("inventory.secrets.yml")
    assert _lines(inventory) == [
        f"{secrets}:1:1: (file): secrets file is open to other users (mode {mode:04o}); "
        f"fix it with: chmod 600 {secrets}"
    ]


def test_secret_referenced_but_absent(write_inventory: WriteInventory) -> None:
    values = {k: v for k, v in BASE_SECRETS.items() if k != "rabbitmq-user-orders"}
    inventory = write_inventory(secrets=values)
    secrets = inventory.with_name("inventory.secrets.yml")
    assert _lines(inventory) == [
        f"{inventory}:11:7: broker.users[0].password_secret: secret 'rabbitmq-user-orders' "
        f"is not in {secrets}; add a line 'rabbitmq-user-orders: <long random value>' there"
    ]


def test_named_secret_absent_points_at_the_name(write_inventory: WriteInventory) -> None:
    text = edit("    - name: admin\n", "    - name: admin\n      password_secret: flower-admin\n")
    inventory = write_inventory(text)
    secrets = inventory.with_name("inventory.secrets.yml")
    assert _lines(inventory) == [
        f"{inventory}:27:24: flower.basic_auth[0].password_secret: secret 'flower-admin' is "
        f"not in {secrets}; add a line 'flower-admin: <long random value>' there"
    ]


@pytest.mark.parametrize(
    ("content", "got"), [("- a\n- b\n", "a list"), ("just-text\n", "one value")]
)
def test_secrets_not_a_mapping(
    write_inventory: WriteInventory, tmp_path: Path, content: str, got: str
) -> None:
    inventory = write_inventory()
    secrets = inventory.with_name("inventory.secrets.yml")
    secrets.write_text(content)
    assert _lines(inventory) == [
        f"{secrets}:1:1: (top level): expected a mapping of secret names to values "
        f"('name: value' lines), got {got}"
    ]


def test_secret_value_not_a_string(write_inventory: WriteInventory) -> None:
    inventory = write_inventory()
    secrets = inventory.with_name("inventory.secrets.yml")
    with secrets.open("a") as fh:
        fh.write("extra: [1, 2]\n")
    assert _lines(inventory) == [f"{secrets}:5:1: extra: a secret must be a non-empty string"]


def test_secrets_file_missing(write_inventory: WriteInventory) -> None:
    inventory = write_inventory()
    secrets = inventory.with_name("inventory.secrets.yml")
    secrets.unlink()
    assert _lines(inventory) == [
        f"{secrets}:1:1: (file): secrets file not found; run 'qsetup init' or create it with "
        f"'install -m 600 /dev/null {secrets}' and add the secrets the inventory names"
    ]


def test_secrets_path_is_a_directory(write_inventory: WriteInventory, tmp_path: Path) -> None:
    inventory = write_inventory()
    assert _lines(inventory, tmp_path) == [
        f"{tmp_path}:1:1: (file): is a directory, not a secrets file"
    ]


def test_secrets_path_under_a_file(write_inventory: WriteInventory) -> None:
    inventory = write_inventory()
    bad = inventory / "secrets.yml"
    assert _lines(inventory, bad) == [
        f"{bad}:1:1: (file): cannot read the secrets file (Not a directory); check the path"
    ]


def test_every_problem_is_one_line_and_never_a_traceback() -> None:
    for _, _, expected in CASES:
        for line in expected:
            assert "\n" not in line
            assert "Traceback" not in line


def test_every_name_pattern_has_a_readable_hint() -> None:
    from qsetup.inventory import Inventory
    from qsetup.loader import _PATTERN_HELP

    patterns: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                patterns.add(node["pattern"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(Inventory.model_json_schema())
    assert patterns, "the schema should carry the name patterns"
    assert patterns <= set(_PATTERN_HELP), patterns - set(_PATTERN_HELP)


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ((), "(top level)"),
        (("workers", 0, "hosts", 1), "workers[0].hosts[1]"),
        (("app", "environment", "MY_VAR"), "app.environment.MY_VAR"),
        (("hosts", "a.b", "address"), "hosts['a.b'].address"),
        (("",), "['']"),
        (("a\nb",), "['a\\nb']"),
    ],
)
def test_format_path(path: tuple[str | int, ...], text: str) -> None:
    from qsetup.loader import format_path

    assert format_path(path) == text
