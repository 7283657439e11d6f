"""Invalid inventories: each case asserts the exact ``FILE:LINE:COL: field.path: message`` lines.

Cases are small edits of ``BASE_INVENTORY`` (see conftest.py), so line numbers stay
predictable. ``{inv}`` and ``{sec}`` stand for the inventory and secrets file paths.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from unitdata import BASE_INVENTORY, BASE_SECRETS, WriteInventory, write_secrets

from qsetup.errors import QsetupError
from qsetup.inventory.loader import load_inventory


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
TOP_KEYS = "app, beat, broker, firewall, flower, hosts, results, ssh, tls, version, workers"
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
        "empty-module-part",
        edit("  module: proj", '  module: "proj..celery:"'),
        [
            "{inv}:14:11: app.module: 'proj..celery:' is not allowed here; use a Python module "
            "path such as proj or proj.celery:app"
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


# --- hostile input: each rule refuses with one line that says the fix ------------


def second_group(
    extra: str = "", name: str = "second", hosts: str = "[worker1]", text: str = BASE_INVENTORY
) -> str:
    """Add a second worker group before flower (three lines, then ``extra``)."""
    return edit(
        "flower:",
        f"  - name: {name}\n    hosts: {hosts}\n    install: pip\n{extra}flower:",
        text,
    )


def with_env(lines: str) -> str:
    """Add app.environment (line 19) with the given entries (from line 20)."""
    return edit("  vhost: orders\nworkers", f"  vhost: orders\n  environment:\n{lines}workers")


def broker_line(line: str) -> str:
    """Add one line to the broker section (line 9, before vhosts)."""
    return edit("  vhosts", f"  {line}\n  vhosts")


def flower_line(line: str) -> str:
    """Add one line to the flower section (line 25, after host)."""
    return edit("  host: rabbit1\n  basic_auth", f"  host: rabbit1\n  {line}\n  basic_auth")


def address(host: str, value: str) -> str:
    old = {"rabbit1": "    address: 10.0.0.1\n", "worker1": "    address: 10.0.0.2\n"}[host]
    return edit(old, f"    address: {value}\n")


CASES += [
    # --- node names, addresses, ports
    (
        "node-name-unknown-placeholder",
        after_install("    node_name: 'w-%i@%x'\n"),
        [
            "{inv}:23:16: workers[0].node_name: '%x' is not a placeholder; use %i "
            "(instance number), %h (host name), %n (its first label) or %d (its "
            "domain)",
        ],
    ),
    (
        "node-name-celery-process-index",
        after_install("    node_name: 'w-%I@%h'\n"),
        [
            "{inv}:23:16: workers[0].node_name: '%I' is not a placeholder; use %i "
            "(instance number), %h (host name), %n (its first label) or %d (its "
            "domain)",
        ],
    ),
    (
        "node-name-double-percent",
        after_install("    node_name: 'w%%-%i@%h'\n"),
        [
            "{inv}:23:16: workers[0].node_name: '%%' is not supported (the unit "
            "file would break); remove it",
        ],
    ),
    (
        "node-name-trailing-percent",
        after_install("    node_name: 'w-%i@%h%'\n"),
        [
            "{inv}:23:16: workers[0].node_name: a '%' at the end is not a "
            "placeholder; use %i (instance number), %h (host name), %n (its first "
            "label) or %d (its domain)",
        ],
    ),
    (
        "node-name-without-at",
        after_install("    node_name: 'worker-%i'\n"),
        [
            "{inv}:23:16: workers[0].node_name: add '@' and a host part, e.g. "
            "NAME-%i@%h (Celery names nodes name@host)",
        ],
    ),
    (
        "node-name-two-at",
        after_install("    node_name: 'w@%i@%h'\n"),
        [
            "{inv}:23:16: workers[0].node_name: use one '@', between the node's "
            "name and its host part",
        ],
    ),
    (
        "node-name-empty-name-part",
        after_install("    node_name: '@%h'\n"),
        [
            "{inv}:23:16: workers[0].node_name: write a name before '@' and a host "
            "part after it, e.g. NAME-%i@%h",
        ],
    ),
    (
        "node-name-empty-host-part",
        after_install("    node_name: 'w-%i@'\n"),
        [
            "{inv}:23:16: workers[0].node_name: write a name before '@' and a host "
            "part after it, e.g. NAME-%i@%h",
        ],
    ),
    (
        "node-name-with-space",
        after_install("    node_name: 'w %i@%h'\n"),
        [
            "{inv}:23:16: workers[0].node_name: use letters, digits, - _ . and the "
            "placeholders %i %h %n %d",
        ],
    ),
    (
        "node-name-instances-without-i",
        after_install("    instances: 3\n    node_name: 'w@%h'\n"),
        [
            "{inv}:24:16: workers[0].node_name: the 3 instances on a host would "
            "share one node name; add %i (the instance number), e.g. NAME-%i@%h",
        ],
    ),
    (
        "node-name-hosts-without-h",
        edit(
            "hosts: [worker1]",
            "hosts: [worker1, rabbit1]",
            after_install("    node_name: 'w-%i@box'\n"),
        ),
        [
            "{inv}:23:16: workers[0].node_name: the group's hosts would share node "
            "names; add %h (the host name), e.g. NAME-%i@%h",
        ],
    ),
    (
        "node-name-hosts-with-only-d",
        edit(
            "hosts: [worker1]",
            "hosts: [worker1, rabbit1]",
            after_install("    node_name: 'w-%i@%d'\n"),
        ),
        [
            "{inv}:23:16: workers[0].node_name: the group's hosts would share node "
            "names; add %h (the host name), e.g. NAME-%i@%h",
        ],
    ),
    (
        "node-name-same-default-twice-on-host",
        second_group("    node_name: 'default-%i@%h'\n"),
        [
            "{inv}:26:16: workers[1].node_name: node 'default-1@%h' on host "
            "'worker1' would also be a node of worker group 'default'; give each "
            "group its own node_name",
        ],
    ),
    (
        "node-name-same-pattern-two-groups",
        second_group(
            "    node_name: 'w-%i@%h'\n", text=after_install("    node_name: 'w-%i@%h'\n")
        ),
        [
            "{inv}:27:16: workers[1].node_name: node 'w-1@%h' on host 'worker1' "
            "would also be a node of worker group 'default'; give each group its "
            "own node_name",
        ],
    ),
    (
        "node-name-fixed-name-on-two-hosts",
        second_group(
            "    node_name: 'w1@box'\n",
            hosts="[rabbit1]",
            text=after_install("    node_name: 'w1@box'\n"),
        ),
        [
            "{inv}:27:16: workers[1].node_name: node 'w1@box' would also be a node "
            "of worker group 'default'; give each group its own node_name",
        ],
    ),
    (
        "node-name-instance-overlap",
        second_group(
            "    node_name: 'w2@%h'\n",
            text=after_install("    instances: 2\n    node_name: 'w%i@%h'\n"),
        ),
        [
            "{inv}:28:16: workers[1].node_name: node 'w2@%h' on host 'worker1' "
            "would also be a node of worker group 'default'; give each group its "
            "own node_name",
        ],
    ),
    (
        "node-name-too-long",
        after_install("    node_name: '" + "w" * 120 + "-%i@%h.example'\n"),
        [
            "{inv}:23:16: workers[0].node_name: must be at most 128 characters long, got 134",
        ],
    ),
    (
        "address-with-port",
        address("worker1", "10.0.0.2:22"),
        [
            "{inv}:6:14: hosts.worker1.address: '10.0.0.2:22' holds a port; write "
            "the address alone, and the port as ssh_port: 22",
        ],
    ),
    (
        "address-name-with-port",
        address("worker1", "worker.example.org:2222"),
        [
            "{inv}:6:14: hosts.worker1.address: 'worker.example.org:2222' holds a "
            "port; write the address alone, and the port as ssh_port: 2222",
        ],
    ),
    (
        "address-ipv6-in-brackets",
        address("worker1", "'[fd00::2]'"),
        [
            "{inv}:6:14: hosts.worker1.address: '[fd00::2]' is not allowed here; "
            "use an IP address or a DNS name",
        ],
    ),
    (
        "address-empty-label",
        address("worker1", "worker..example.org"),
        [
            "{inv}:6:14: hosts.worker1.address: 'worker..example.org' is not an IP "
            "address or a DNS name (an empty label: no dot at the start or end, no "
            "two dots in a row); use e.g. 10.0.0.5 or mq1.example.org",
        ],
    ),
    (
        "address-label-starts-with-hyphen",
        address("worker1", "worker.-bad.example.org"),
        [
            "{inv}:6:14: hosts.worker1.address: 'worker.-bad.example.org' is not "
            "an IP address or a DNS name (a label starts or ends with '-'); use "
            "e.g. 10.0.0.5 or mq1.example.org",
        ],
    ),
    (
        "address-label-ends-with-hyphen",
        address("worker1", "worker-.example.org"),
        [
            "{inv}:6:14: hosts.worker1.address: 'worker-.example.org' is not an IP "
            "address or a DNS name (a label starts or ends with '-'); use e.g. "
            "10.0.0.5 or mq1.example.org",
        ],
    ),
    (
        "address-label-too-long",
        address("worker1", "a" * 64 + ".example.org"),
        [
            "{inv}:6:14: hosts.worker1.address: "
            "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa... is not an IP address or a "
            "DNS name (a label longer than 63 characters); use e.g. 10.0.0.5 or "
            "mq1.example.org",
        ],
    ),
    (
        "address-too-long",
        address("worker1", ".".join(["a" * 50] * 5) + ".org"),
        [
            "{inv}:6:14: hosts.worker1.address: must be at most 253 characters long",
        ],
    ),
    (
        "address-bad-ipv4",
        address("worker1", "10.0.0.256"),
        [
            "{inv}:6:14: hosts.worker1.address: '10.0.0.256' is not an IP address "
            "or a DNS name (all-numeric like an IPv4 address, but not a valid "
            "one); use e.g. 10.0.0.5 or mq1.example.org",
        ],
    ),
    (
        "address-numeric-last-label",
        address("worker1", "host.123"),
        [
            "{inv}:6:14: hosts.worker1.address: 'host.123' is not an IP address or "
            "a DNS name (all-numeric like an IPv4 address, but not a valid one); "
            "use e.g. 10.0.0.5 or mq1.example.org",
        ],
    ),
    (
        "address-trailing-dot",
        address("worker1", "worker.example.org."),
        [
            "{inv}:6:14: hosts.worker1.address: 'worker.example.org.' is not an IP "
            "address or a DNS name (an empty label: no dot at the start or end, no "
            "two dots in a row); use e.g. 10.0.0.5 or mq1.example.org",
        ],
    ),
    (
        "address-bad-ipv6",
        address("worker1", "'fd00::2::3'"),
        [
            "{inv}:6:14: hosts.worker1.address: 'fd00::2::3' is not a valid IPv6 "
            "address; use e.g. 10.0.0.5 or mq1.example.org",
        ],
    ),
    (
        "address-scoped-ipv6",
        address("worker1", "'fe80::1%eth0'"),
        [
            "{inv}:6:14: hosts.worker1.address: 'fe80::1%eth0' is not allowed "
            "here; use an IP address or a DNS name",
        ],
    ),
    (
        "address-unspecified",
        address("worker1", "0.0.0.0"),
        [
            "{inv}:6:14: hosts.worker1.address: 0.0.0.0 is not the address of one "
            "machine; use the host's own address",
        ],
    ),
    (
        "address-multicast",
        address("worker1", "224.0.0.1"),
        [
            "{inv}:6:14: hosts.worker1.address: 224.0.0.1 is not the address of "
            "one machine; use the host's own address",
        ],
    ),
    (
        "address-underscore",
        address("worker1", "worker_1.example.org"),
        [
            "{inv}:6:14: hosts.worker1.address: 'worker_1.example.org' is not "
            "allowed here; use an IP address or a DNS name",
        ],
    ),
    (
        "address-with-space",
        address("worker1", "'10.0.0.2 '"),
        [
            "{inv}:6:14: hosts.worker1.address: '10.0.0.2 ' is not allowed here; "
            "use an IP address or a DNS name",
        ],
    ),
    (
        "same-address-same-ssh-port",
        address("worker1", "10.0.0.1"),
        [
            "{inv}:6:14: hosts.worker1.address: host 'worker1' has the same "
            "address and SSH port as host 'rabbit1' (10.0.0.1, port 22); one "
            "machine is one host: list its roles under one name",
        ],
    ),
    (
        "same-ipv6-address-written-twice",
        address("rabbit1", "'fd00::1'").replace("address: 10.0.0.2", "address: 'fd00:0:0::1'"),
        [
            "{inv}:6:14: hosts.worker1.address: host 'worker1' has the same "
            "address and SSH port as host 'rabbit1' (fd00:0:0::1, port 22); one "
            "machine is one host: list its roles under one name",
        ],
    ),
    (
        "same-dns-name-in-two-cases",
        address("rabbit1", "mq.example.org").replace(
            "address: 10.0.0.2", "address: MQ.Example.ORG"
        ),
        [
            "{inv}:6:14: hosts.worker1.address: host 'worker1' has the same "
            "address and SSH port as host 'rabbit1' (MQ.Example.ORG, port 22); one "
            "machine is one host: list its roles under one name",
        ],
    ),
    (
        "broker-listens-on-loopback",
        broker_line("listen_address: 127.0.0.1"),
        [
            "{inv}:9:19: broker.listen_address: RabbitMQ would listen on loopback "
            "only, but clients on worker1 reach it over the network; use 0.0.0.0 "
            "or the broker host's address",
        ],
    ),
    (
        "broker-listens-on-localhost",
        broker_line("listen_address: localhost"),
        [
            "{inv}:9:19: broker.listen_address: RabbitMQ would listen on loopback "
            "only, but clients on worker1 reach it over the network; use 0.0.0.0 "
            "or the broker host's address",
        ],
    ),
    (
        "broker-listens-on-ipv6-loopback",
        broker_line("listen_address: '::1'"),
        [
            "{inv}:9:19: broker.listen_address: RabbitMQ would listen on loopback "
            "only, but clients on worker1 reach it over the network; use 0.0.0.0 "
            "or the broker host's address",
        ],
    ),
    (
        "broker-address-is-loopback",
        address("rabbit1", "127.0.0.1"),
        [
            "{inv}:4:14: hosts.rabbit1.address: the broker's address 127.0.0.1 is "
            "loopback, but clients on worker1 connect to it from other machines; "
            "use an address they can reach",
        ],
    ),
    (
        "broker-address-is-localhost",
        address("rabbit1", "localhost"),
        [
            "{inv}:4:14: hosts.rabbit1.address: the broker's address localhost is "
            "loopback, but clients on worker1 connect to it from other machines; "
            "use an address they can reach",
        ],
    ),
    (
        "broker-loopback-but-clients-use-address",
        broker_line("listen_address: 127.0.0.1").replace("hosts: [worker1]", "hosts: [rabbit1]"),
        [
            "{inv}:9:19: broker.listen_address: RabbitMQ would listen on loopback "
            "only, but its clients connect to 10.0.0.1; use 0.0.0.0 or 10.0.0.1",
        ],
    ),
    (
        "listen-address-with-port",
        broker_line("listen_address: '0.0.0.0:5672'"),
        [
            "{inv}:9:19: broker.listen_address: '0.0.0.0:5672' holds a port; write "
            "the address alone, and the port as port: 5672",
        ],
    ),
    (
        "listen-address-empty-label",
        broker_line("listen_address: 'mq..local'"),
        [
            "{inv}:9:19: broker.listen_address: 'mq..local' is not an IP address "
            "or a DNS name (an empty label: no dot at the start or end, no two "
            "dots in a row); use e.g. 0.0.0.0 (all addresses) or 10.0.0.5",
        ],
    ),
    (
        "flower-listen-address-with-port",
        flower_line("listen_address: '0.0.0.0:5555'"),
        [
            "{inv}:25:19: flower.listen_address: '0.0.0.0:5555' holds a port; "
            "write the address alone, and the port as port: 5555",
        ],
    ),
    (
        "broker-port-is-management-port",
        broker_line("port: 15672"),
        [
            "{inv}:9:9: broker.port: port 15672 on host 'rabbit1' would be both "
            "RabbitMQ's AMQP port and RabbitMQ's management port; change one of "
            "them",
        ],
    ),
    (
        "management-port-is-epmd",
        broker_line("management_port: 4369"),
        [
            "{inv}:9:20: broker.management_port: port 4369 on host 'rabbit1' would "
            "be both RabbitMQ's epmd port (fixed) and RabbitMQ's management port; "
            "change one of them",
        ],
    ),
    (
        "broker-port-is-epmd",
        broker_line("port: 4369"),
        [
            "{inv}:9:9: broker.port: port 4369 on host 'rabbit1' would be both "
            "RabbitMQ's epmd port (fixed) and RabbitMQ's AMQP port; change one of "
            "them",
        ],
    ),
    (
        "flower-port-is-inter-node-port",
        flower_line("port: 25672"),
        [
            "{inv}:25:9: flower.port: port 25672 on host 'rabbit1' would be both "
            "RabbitMQ's inter-node port (AMQP port + 20000) and Flower's port; "
            "change one of them",
        ],
    ),
    (
        "flower-port-is-amqp-port",
        flower_line("port: 5672"),
        [
            "{inv}:25:9: flower.port: port 5672 on host 'rabbit1' would be both "
            "RabbitMQ's AMQP port and Flower's port; change one of them",
        ],
    ),
    (
        "flower-port-is-management-port",
        flower_line("port: 15672"),
        [
            "{inv}:25:9: flower.port: port 15672 on host 'rabbit1' would be both "
            "RabbitMQ's management port and Flower's port; change one of them",
        ],
    ),
    (
        "management-port-is-shifted-inter-node-port",
        broker_line("port: 5673\n  management_port: 25673"),
        [
            "{inv}:10:20: broker.management_port: port 25673 on host 'rabbit1' "
            "would be both RabbitMQ's inter-node port (AMQP port + 20000) and "
            "RabbitMQ's management port; change one of them",
        ],
    ),
    (
        "ssh-port-is-flower-port",
        edit("    address: 10.0.0.1\n", "    address: 10.0.0.1\n    ssh_port: 5555\n"),
        [
            "{inv}:5:15: hosts.rabbit1.ssh_port: port 5555 on host 'rabbit1' would "
            "be both the SSH port and Flower's port; change one of them",
        ],
    ),
    (
        "default-ssh-port-is-management-port",
        broker_line("management_port: 2222") + "ssh: {port: 2222}\n",
        [
            "{inv}:9:20: broker.management_port: port 2222 on host 'rabbit1' would "
            "be both the SSH port and RabbitMQ's management port; change one of "
            "them",
        ],
    ),
    (
        "plugin-port-is-flower-port",
        broker_line("plugins: [rabbitmq_prometheus]").replace(
            "  host: rabbit1\n  basic_auth", "  host: rabbit1\n  port: 15692\n  basic_auth"
        ),
        [
            "{inv}:26:9: flower.port: port 15692 on host 'rabbit1' would be both "
            "rabbitmq_prometheus's port and Flower's port; change one of them",
        ],
    ),
    (
        "broker-port-leaves-no-inter-node-port",
        broker_line("port: 50000"),
        [
            "{inv}:9:9: broker.port: RabbitMQ's inter-node port is this port + "
            "20000, so use at most 45535",
        ],
    ),
    (
        "broker-port-privileged",
        broker_line("port: 672"),
        [
            "{inv}:9:9: broker.port: ports below 1024 need root, and RabbitMQ runs "
            "as user rabbitmq; use a port from 1024 up",
        ],
    ),
    (
        "management-port-privileged",
        broker_line("management_port: 443"),
        [
            "{inv}:9:20: broker.management_port: ports below 1024 need root, and "
            "the management plugin runs in RabbitMQ as user rabbitmq; use a port "
            "from 1024 up",
        ],
    ),
    (
        "flower-port-privileged",
        flower_line("port: 80"),
        [
            "{inv}:25:9: flower.port: ports below 1024 need root, and Flower runs "
            "as an unprivileged user (put a proxy in front for 80 or 443); use a "
            "port from 1024 up",
        ],
    ),
    # --- broker users and values
    (
        "user-named-qsetup-admin",
        after_user_vhost("    - name: qsetup-admin\n"),
        [
            "{inv}:13:13: broker.users[1].name: 'qsetup-admin' is qsetup's own "
            "administrator on the broker; pick a name",
        ],
    ),
    (
        "user-default-secret-is-admin-secret",
        after_user_vhost("    - name: QSetup-Admin\n"),
        [
            "{inv}:13:13: broker.users[1].name: 'rabbitmq-user-qsetup-admin' holds "
            "the password of qsetup's own broker administrator; give user "
            "'QSetup-Admin' another secret",
        ],
    ),
    (
        "user-secret-is-admin-secret",
        after_user_vhost("      password_secret: rabbitmq-user-qsetup-admin\n"),
        [
            "{inv}:13:24: broker.users[0].password_secret: "
            "'rabbitmq-user-qsetup-admin' holds the password of qsetup's own "
            "broker administrator; give user 'orders' another secret",
        ],
    ),
    (
        "flower-api-user-qsetup-admin",
        flower_line("broker_api_user: qsetup-admin"),
        [
            "{inv}:25:20: flower.broker_api_user: 'qsetup-admin' is qsetup's own "
            "administrator on the broker; pick a name",
        ],
    ),
    (
        "flower-api-user-guest",
        flower_line("broker_api_user: guest"),
        [
            "{inv}:25:20: flower.broker_api_user: 'guest' is RabbitMQ's default user; pick a name",
        ],
    ),
    (
        "rights-that-grant-nothing",
        edit(
            "      vhost: orders\n",
            "      permissions:\n        - {vhost: orders, "
            "configure: '^$', write: '^$', read: '^$'}\n",
        ),
        [
            "{inv}:18:16: app.broker_user: broker user 'orders' has no rights on "
            "vhost 'orders' (worker group 'default'); give it permissions there",
        ],
    ),
    (
        "rights-empty-regex",
        edit(
            "      vhost: orders\n",
            "      permissions:\n        - {vhost: orders, "
            "configure: '', write: '.*', read: '.*'}\n",
        ),
        [
            "{inv}:18:16: app.broker_user: broker user 'orders' has no rights on "
            "vhost 'orders' (worker group 'default'); give it permissions there",
        ],
    ),
    (
        "flower-app-user-without-rights",
        after_user_vhost("    - name: jobs\n      vhost: orders\n")
        .replace("    install: pip\n", "    install: pip\n    broker_user: jobs\n")
        .replace(
            "      vhost: orders\n    - name: jobs", "      permissions: []\n    - name: jobs"
        ),
        [
            "{inv}:19:16: app.broker_user: broker user 'orders' has no rights on "
            "vhost 'orders' (Flower connects as app.broker_user); give it "
            "permissions there",
        ],
    ),
    (
        "beat-app-user-without-rights",
        (
            after_user_vhost("    - name: jobs\n      vhost: orders\n")
            .replace("    install: pip\n", "    install: pip\n    broker_user: jobs\n")
            .replace(
                "      vhost: orders\n    - name: jobs", "      permissions: []\n    - name: jobs"
            )
        ).split("flower:\n")[0]
        + "beat:\n  host: worker1\n",
        [
            "{inv}:19:16: app.broker_user: broker user 'orders' has no rights on "
            "vhost 'orders' (beat connects as app.broker_user); give it "
            "permissions there",
        ],
    ),
    (
        "duplicate-permission-vhost",
        after_user_vhost(
            "      permissions:\n        - vhost: orders\n        - {vhost: orders, read: '^x'}\n"
        ),
        [
            "{inv}:15:19: broker.users[0].permissions[1].vhost: user 'orders' "
            "already has permissions on vhost 'orders' (permissions[0]); merge "
            "them into one entry",
        ],
    ),
    (
        "duplicate-topic-permission",
        after_user_vhost(
            "      topic_permissions:\n        - vhost: orders\n        - {vhost: orders, "
            "exchange: amq.topic, read: '^x'}\n"
        ),
        [
            "{inv}:15:19: broker.users[0].topic_permissions[1].vhost: user "
            "'orders' already has topic permissions on exchange 'amq.topic' in "
            "vhost 'orders' (topic_permissions[0]); merge them into one entry",
        ],
    ),
    (
        "users-differ-only-in-case",
        after_user_vhost("    - name: Orders\n      vhost: orders\n"),
        [
            "{inv}:13:13: broker.users[1].name: user 'Orders' would share the "
            "secret 'rabbitmq-user-orders' with user 'orders' (default secret "
            "names are lowercased); set password_secret for one of them",
        ],
    ),
    (
        "user-name-with-at",
        after_user_vhost("    - name: svc@orders\n      vhost: orders\n"),
        [
            "{inv}:13:13: broker.users[1].name: the default secret name of user "
            "'svc@orders', 'rabbitmq-user-svc@orders', is not a valid secret name "
            "(lowercase letters, digits, '_', '.' and '-', at most 63); set "
            "password_secret to one that is",
        ],
    ),
    (
        "user-name-makes-long-secret-name",
        after_user_vhost("    - name: " + "a" * 55 + "\n      vhost: orders\n"),
        [
            "{inv}:13:13: broker.users[1].name: the default secret name of user "
            "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', "
            "'rabbitmq-user-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            "', is not a valid secret name (lowercase letters, digits, '_', '.' "
            "and '-', at most 63); set password_secret to one that is",
        ],
    ),
    (
        "flower-user-with-at",
        edit("    - name: admin\n", "    - name: ops@example\n"),
        [
            "{inv}:26:13: flower.basic_auth[0].name: the default secret name of "
            "Flower user 'ops@example', 'flower-user-ops@example', is not a valid "
            "secret name (lowercase letters, digits, '_', '.' and '-', at most "
            "63); set password_secret to one that is",
        ],
    ),
    (
        "flower-users-differ-only-in-case",
        BASE_INVENTORY + "    - name: Admin\n",
        [
            "{inv}:27:13: flower.basic_auth[1].name: Flower user 'Admin' would "
            "share the secret 'flower-user-admin' with Flower user 'admin' "
            "(default secret names are lowercased); set password_secret for one of "
            "them",
        ],
    ),
    (
        "flower-user-listed-twice",
        BASE_INVENTORY + "    - name: admin\n",
        [
            "{inv}:27:13: flower.basic_auth[1].name: Flower user 'admin' is listed twice",
        ],
    ),
    (
        "flower-api-user-collides-in-case",
        after_user_vhost("    - name: Flower-Monitor\n"),
        [
            "{inv}:13:13: broker.users[1].name: user 'Flower-Monitor' would share "
            "the secret 'rabbitmq-user-flower-monitor' with Flower's broker user "
            "'flower-monitor' (default secret names are lowercased); set "
            "password_secret for one of them",
        ],
    ),
    (
        "cookie-secret-is-a-password",
        broker_line("erlang_cookie_secret: rabbitmq-user-orders"),
        [
            "{inv}:9:25: broker.erlang_cookie_secret: 'rabbitmq-user-orders' is "
            "also a password here; the Erlang cookie gives full control of the "
            "broker, so give it a secret of its own",
        ],
    ),
    (
        "nul-in-module",
        edit("  module: proj", '  module: "proj\\0"'),
        [
            "{inv}:14:11: app.module: contains a NUL character; remove it",
        ],
    ),
    (
        "nul-in-env-value",
        with_env('    MY_VAR: "a\\0b"\n'),
        [
            "{inv}:20:13: app.environment.MY_VAR: contains a NUL character; remove it",
        ],
    ),
    (
        "nul-in-permission-regex",
        after_user_vhost('      permissions:\n        - {vhost: orders, read: "a\\0"}\n'),
        [
            "{inv}:14:33: broker.users[0].permissions[0].read: contains a NUL character; remove it",
        ],
    ),
    (
        "surrogate-in-source-path",
        edit("    path: app\n", '    path: "app\\ud800"\n'),
        [
            "{inv}:16:11: app.source.path: contains a lone surrogate (\\ud800), "
            "which is not text; remove it",
        ],
    ),
    (
        "surrogate-in-host-key",
        edit("  worker1:\n", '  "worker1\\udcff":\n'),
        [
            "{inv}:5:3: hosts['worker1\\udcff']: contains a lone surrogate "
            "(\\udcff), which is not text; remove it",
        ],
    ),
    (
        "surrogate-in-env-name",
        with_env('    "MY_\\ud800": x\n'),
        [
            "{inv}:20:5: app.environment['MY_\\ud800']: contains a lone surrogate "
            "(\\ud800), which is not text; remove it",
        ],
    ),
    (
        "surrogate-in-requirement",
        edit(
            "  broker_user: orders\n",
            '  requirements: ["requests\\udc80"]\n  broker_user: orders\n',
        ),
        [
            "{inv}:17:18: app.requirements[0]: contains a lone surrogate (\\udc80), "
            "which is not text; remove it",
        ],
    ),
    (
        "control-character-in-regex",
        after_user_vhost('      permissions:\n        - {vhost: orders, read: "^a\\nb"}\n'),
        [
            "{inv}:14:33: broker.users[0].permissions[0].read: contains a control "
            "character (\\n); remove it",
        ],
    ),
    (
        "control-character-in-policy-value",
        edit(
            "app:\n",
            '  policies:\n    - {name: dlx, vhost: orders, pattern: ".*", '
            'definition: {dead-letter-exchange: "x\\ty"}}\napp:\n',
        ),
        [
            "{inv}:14:84: broker.policies[0].definition.dead-letter-exchange: "
            "contains a control character (\\t); remove it",
        ],
    ),
    (
        "newline-in-env-value",
        with_env('    MY_VAR: "line1\\nline2"\n'),
        [
            "{inv}:20:13: app.environment.MY_VAR: contains a control character "
            "(\\n), which would not reach the services as written (systemd's "
            "environment file); remove it",
        ],
    ),
    (
        "tab-in-env-value",
        with_env('    MY_VAR: "a\\tb"\n'),
        [
            "{inv}:20:13: app.environment.MY_VAR: contains a control character "
            "(\\t), which would not reach the services as written (systemd's "
            "environment file); remove it",
        ],
    ),
    (
        "carriage-return-in-env-value",
        with_env('    MY_VAR: "a\\rb"\n'),
        [
            "{inv}:20:13: app.environment.MY_VAR: contains a control character "
            "(\\r), which would not reach the services as written (systemd's "
            "environment file); remove it",
        ],
    ),
    (
        "line-separator-in-env-value",
        with_env('    MY_VAR: "a\\u2028b"\n'),
        [
            "{inv}:20:13: app.environment.MY_VAR: contains a control character "
            "(\\u2028), which would not reach the services as written (systemd's "
            "environment file); remove it",
        ],
    ),
    (
        "escape-character-in-env-value",
        with_env('    MY_VAR: "\\e[31mred"\n'),
        [
            "{inv}:20:13: app.environment.MY_VAR: contains a control character "
            "(\\x1b), which would not reach the services as written (systemd's "
            "environment file); remove it",
        ],
    ),
    (
        "long-source-path",
        edit("    path: app\n", "    path: " + "a/" * 2100 + "\n"),
        [
            "{inv}:16:11: app.source.path: must be at most 4096 characters long",
        ],
    ),
    (
        "long-path-component",
        edit("    path: app\n", "    path: " + "a" * 300 + "\n"),
        [
            "{inv}:16:11: app.source.path: a path component is longer than 255 "
            "characters; shorten it",
        ],
    ),
    (
        "long-ssh-key-path",
        BASE_INVENTORY + "ssh:\n  key: " + "k" * 5000 + "\n",
        [
            "{inv}:28:8: ssh.key: must be at most 4096 characters long",
        ],
    ),
    (
        "long-env-value",
        with_env("    MY_VAR: " + "v" * 5000 + "\n"),
        [
            "{inv}:20:13: app.environment.MY_VAR: must be at most 4096 characters long",
        ],
    ),
    (
        "long-env-name",
        with_env("    " + "V" * 200 + ": x\n"),
        [
            "{inv}:20:5: "
            "app.environment.VVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVV"
            "VVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVV"
            "VVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVV"
            "VVVVVV: must be at most 128 characters long",
        ],
    ),
    (
        "long-requirement",
        edit(
            "  broker_user: orders\n",
            "  requirements: [" + "r" * 300 + "]\n  broker_user: orders\n",
        ),
        [
            "{inv}:17:18: app.requirements[0]: must be at most 200 characters long",
        ],
    ),
    (
        "long-source-requirement",
        edit("    path: app\n", "    requirement: " + "r" * 300 + "\n"),
        [
            "{inv}:16:18: app.source.requirement: must be at most 200 characters long",
        ],
    ),
    (
        "long-module",
        edit("  module: proj", "  module: " + "p" * 300),
        [
            "{inv}:14:11: app.module: must be at most 200 characters long",
        ],
    ),
    (
        "long-result-backend",
        edit(
            "  vhost: orders\nworkers",
            "  vhost: orders\n  result_backend: redis://" + "h" * 1100 + "\nworkers",
        ),
        [
            "{inv}:19:19: app.result_backend: must be at most 1024 characters long",
        ],
    ),
    (
        "long-policy-value",
        edit(
            "app:\n",
            "  policies:\n    - {name: dlx, vhost: orders, pattern: '.*', "
            "definition: {dead-letter-exchange: " + "x" * 300 + "}}\napp:\n",
        ),
        [
            "{inv}:14:84: broker.policies[0].definition.dead-letter-exchange: must "
            "be at most 255 characters long",
        ],
    ),
    (
        "policy-key-not-a-policy-key",
        edit(
            "app:\n",
            "  policies:\n    - {name: ttl, vhost: orders, pattern: '.*', "
            "definition: {'Message TTL': 5}}\napp:\n",
        ),
        [
            "{inv}:14:62: broker.policies[0].definition['Message TTL']: 'Message "
            "TTL' is not allowed here; policy keys look like message-ttl or "
            "max-length",
        ],
    ),
    (
        "policy-negative-number",
        edit(
            "app:\n",
            "  policies:\n    - {name: ttl, vhost: orders, pattern: '.*', "
            "definition: {message-ttl: -1}}\napp:\n",
        ),
        [
            "{inv}:14:75: broker.policies[0].definition.message-ttl: must be a "
            "whole number from 0 to 9223372036854775807, got -1",
        ],
    ),
    (
        "policy-huge-number",
        edit(
            "app:\n",
            "  policies:\n    - {name: ttl, vhost: orders, pattern: '.*', "
            "definition: {message-ttl: 100000000000000000000000}}\napp:\n",
        ),
        [
            "{inv}:14:75: broker.policies[0].definition.message-ttl: must be a "
            "whole number from 0 to 9223372036854775807, got "
            "100000000000000000000000",
        ],
    ),
    (
        "policy-nested-value",
        edit(
            "app:\n",
            "  policies:\n    - {name: ttl, vhost: orders, pattern: '.*', "
            "definition: {message-ttl: [1]}}\napp:\n",
        ),
        [
            "{inv}:14:75: broker.policies[0].definition.message-ttl: expected a "
            "string (quote it if it looks like another type), got a list",
        ],
    ),
    (
        "topic-exchange-bad-name",
        after_user_vhost(
            "      topic_permissions:\n        - {vhost: orders, exchange: 'my exchange'}\n"
        ),
        [
            "{inv}:14:37: broker.users[0].topic_permissions[0].exchange: 'my "
            "exchange' is not allowed here; exchange names use letters, digits, "
            "'_', '.', ':' and '-', e.g. amq.topic",
        ],
    ),
    # --- environment, workers, versions, requirements, accounts, YAML tags
    (
        "reserved-env-pythonpath",
        with_env("    PYTHONPATH: x\n"),
        [
            "{inv}:20:5: app.environment.PYTHONPATH: PYTHONPATH is set by qsetup "
            "to the app's code directory; remove it",
        ],
    ),
    (
        "reserved-env-pythonhome",
        with_env("    PYTHONHOME: x\n"),
        [
            "{inv}:20:5: app.environment.PYTHONHOME: PYTHONHOME would make the "
            "services' Python look for its library elsewhere; remove it",
        ],
    ),
    (
        "reserved-env-pythonunbuffered",
        with_env("    PYTHONUNBUFFERED: x\n"),
        [
            "{inv}:20:5: app.environment.PYTHONUNBUFFERED: PYTHONUNBUFFERED is set "
            "by qsetup (logs reach the journal at once); remove it",
        ],
    ),
    (
        "reserved-env-path",
        with_env("    PATH: x\n"),
        [
            "{inv}:20:5: app.environment.PATH: PATH is set by systemd for each service; remove it",
        ],
    ),
    (
        "reserved-env-home",
        with_env("    HOME: x\n"),
        [
            "{inv}:20:5: app.environment.HOME: HOME is set by systemd for each service; remove it",
        ],
    ),
    (
        "reserved-env-celery-broker-read-url",
        with_env("    CELERY_BROKER_READ_URL: x\n"),
        [
            "{inv}:20:5: app.environment.CELERY_BROKER_READ_URL: "
            "CELERY_BROKER_READ_URL would change the broker connection qsetup sets "
            "from broker_user and vhost; remove it",
        ],
    ),
    (
        "reserved-env-celery-broker-write-url",
        with_env("    CELERY_BROKER_WRITE_URL: x\n"),
        [
            "{inv}:20:5: app.environment.CELERY_BROKER_WRITE_URL: "
            "CELERY_BROKER_WRITE_URL would change the broker connection qsetup "
            "sets from broker_user and vhost; remove it",
        ],
    ),
    (
        "reserved-env-celery-broker-transport-options",
        with_env("    CELERY_BROKER_TRANSPORT_OPTIONS: x\n"),
        [
            "{inv}:20:5: app.environment.CELERY_BROKER_TRANSPORT_OPTIONS: "
            "CELERY_BROKER_TRANSPORT_OPTIONS would change the broker connection "
            "qsetup sets from broker_user and vhost; remove it",
        ],
    ),
    (
        "reserved-env-celery-result-backend",
        with_env("    CELERY_RESULT_BACKEND: x\n"),
        [
            "{inv}:20:5: app.environment.CELERY_RESULT_BACKEND: "
            "CELERY_RESULT_BACKEND is set by qsetup from app.result_backend; set "
            "that instead",
        ],
    ),
    (
        "reserved-env-flower-unauthenticated-api",
        with_env("    FLOWER_UNAUTHENTICATED_API: x\n"),
        [
            "{inv}:20:5: app.environment.FLOWER_UNAUTHENTICATED_API: "
            "FLOWER_UNAUTHENTICATED_API would change Flower's settings behind "
            "qsetup (which writes them from the flower section); remove it",
        ],
    ),
    (
        "reserved-env-invocation-id",
        with_env("    INVOCATION_ID: x\n"),
        [
            "{inv}:20:5: app.environment.INVOCATION_ID: INVOCATION_ID is set by "
            "systemd for each service; remove it",
        ],
    ),
    (
        "queue-named-amq",
        after_install("    queues: [amq.gen-1]\n"),
        [
            "{inv}:23:14: workers[0].queues[0]: RabbitMQ reserves queue names "
            "starting with 'amq.'; rename the queue",
        ],
    ),
    (
        "queue-list-empty",
        after_install("    queues: []\n"),
        [
            "{inv}:23:13: workers[0].queues: needs at least 1 item, got 0; add one",
        ],
    ),
    (
        "autoscale-max-zero",
        after_install("    autoscale: [0, 0]\n"),
        [
            "{inv}:23:17: workers[0].autoscale[0]: must be at least 1, got 0",
        ],
    ),
    (
        "autoscale-min-negative",
        after_install("    autoscale: [4, -1]\n"),
        [
            "{inv}:23:20: workers[0].autoscale[1]: must be at least 0, got -1",
        ],
    ),
    (
        "autoscale-max-too-big",
        after_install("    autoscale: [2000, 1]\n"),
        [
            "{inv}:23:17: workers[0].autoscale[0]: must be at most 1024, got 2000",
        ],
    ),
    (
        "autoscale-one-number",
        after_install("    autoscale: [4]\n"),
        [
            "{inv}:23:16: workers[0].autoscale: needs 2 items, got 1; add the missing one",
        ],
    ),
    (
        "time-limit-over-a-week",
        after_install("    time_limit: 604801\n"),
        [
            "{inv}:23:17: workers[0].time_limit: must be at most 604800 seconds (7 "
            "days): systemd waits this long plus 30 s for a stopping worker, got "
            "604801",
        ],
    ),
    (
        "time-limit-huge",
        after_install("    time_limit: 100000000000000000000000000000\n"),
        [
            "{inv}:23:17: workers[0].time_limit: must be at most 604800 seconds (7 "
            "days): systemd waits this long plus 30 s for a stopping worker, got "
            "100000000000000000000000000000",
        ],
    ),
    (
        "soft-time-limit-over-a-week",
        after_install("    soft_time_limit: 1000000\n"),
        [
            "{inv}:23:22: workers[0].soft_time_limit: must be at most 604800 "
            "seconds (7 days): systemd waits this long plus 30 s for a stopping "
            "worker, got 1000000",
        ],
    ),
    (
        "max-tasks-per-child-huge",
        after_install("    max_tasks_per_child: 100000000000000000000\n"),
        [
            "{inv}:23:26: workers[0].max_tasks_per_child: must be at most "
            "1000000000, got 100000000000000000000",
        ],
    ),
    (
        "max-memory-per-child-huge",
        after_install("    max_memory_per_child: 100000000000000\n"),
        [
            "{inv}:23:27: workers[0].max_memory_per_child: must be at most "
            "2147483648, got 100000000000000",
        ],
    ),
    (
        "celery-version-without-operator",
        after_install("    celery_version: '5.4'\n"),
        [
            "{inv}:23:21: workers[0].celery_version: '5.4' is not a PEP 440 "
            "version specifier; write e.g. '==5.4.*' or '>=5.3,<6'",
        ],
    ),
    (
        "celery-version-with-extras",
        after_install("    celery_version: '[redis]==5.4'\n"),
        [
            "{inv}:23:21: workers[0].celery_version: '[redis]==5.4' is not a PEP "
            "440 version specifier; write e.g. '==5.4.*' or '>=5.3,<6'",
        ],
    ),
    (
        "celery-version-with-marker",
        after_install("    celery_version: \"==5.4; python_version>'3'\"\n"),
        [
            "{inv}:23:21: workers[0].celery_version: \"==5.4; python_version>'3'\" "
            "is not a PEP 440 version specifier; write e.g. '==5.4.*' or '>=5.3,<6'",
        ],
    ),
    (
        "celery-version-word",
        after_install("    celery_version: latest\n"),
        [
            "{inv}:23:21: workers[0].celery_version: 'latest' is not a PEP 440 "
            "version specifier; write e.g. '==5.4.*' or '>=5.3,<6'",
        ],
    ),
    (
        "celery-version-double-comma",
        after_install("    celery_version: '==5.4.*,,>=5'\n"),
        [
            "{inv}:23:21: workers[0].celery_version: '==5.4.*,,>=5' is not a PEP "
            "440 version specifier; write e.g. '==5.4.*' or '>=5.3,<6'",
        ],
    ),
    (
        "celery-version-url",
        after_install("    celery_version: '@ https://example.org/celery.whl'\n"),
        [
            "{inv}:23:21: workers[0].celery_version: '@ "
            "https://example.org/celery.whl' is not a PEP 440 version specifier; "
            "write e.g. '==5.4.*' or '>=5.3,<6'",
        ],
    ),
    (
        "celery-version-compatible-one-part",
        after_install("    celery_version: '~=5'\n"),
        [
            "{inv}:23:21: workers[0].celery_version: '~=5' is not a PEP 440 "
            "version specifier; write e.g. '==5.4.*' or '>=5.3,<6'",
        ],
    ),
    (
        "celery-version-empty",
        after_install("    celery_version: ''\n"),
        [
            "{inv}:23:21: workers[0].celery_version: must not be empty, got ''",
        ],
    ),
    (
        "flower-version-without-operator",
        flower_line("version: '2.0.1'"),
        [
            "{inv}:25:12: flower.version: '2.0.1' is not a PEP 440 version "
            "specifier; write e.g. '==5.4.*' or '>=5.3,<6'",
        ],
    ),
    (
        "flower-version-number",
        flower_line("version: 2.0"),
        [
            "{inv}:25:12: flower.version: expected a string (quote it if it looks "
            "like another type), got 2.0",
        ],
    ),
    (
        "requirement-editable",
        edit("  broker_user: orders\n", "  requirements: ['-e ./lib']\n  broker_user: orders\n"),
        [
            "{inv}:17:18: app.requirements[0]: pip options (-e, -r, --index-url, "
            "...) are not requirements; list packages only, e.g. requests>=2 "
            "(configure package indexes in pip.conf on the hosts)",
        ],
    ),
    (
        "requirement-index-url",
        edit(
            "  broker_user: orders\n",
            "  requirements: ['--index-url=https://evil.example/simple']\n  broker_user: orders\n",
        ),
        [
            "{inv}:17:18: app.requirements[0]: pip options (-e, -r, --index-url, "
            "...) are not requirements; list packages only, e.g. requests>=2 "
            "(configure package indexes in pip.conf on the hosts)",
        ],
    ),
    (
        "requirement-file",
        edit(
            "  broker_user: orders\n",
            "  requirements: ['-r requirements.txt']\n  broker_user: orders\n",
        ),
        [
            "{inv}:17:18: app.requirements[0]: pip options (-e, -r, --index-url, "
            "...) are not requirements; list packages only, e.g. requests>=2 "
            "(configure package indexes in pip.conf on the hosts)",
        ],
    ),
    (
        "requirement-with-option-after",
        edit(
            "  broker_user: orders\n",
            "  requirements: ['requests --hash=sha256:00']\n  broker_user: orders\n",
        ),
        [
            "{inv}:17:18: app.requirements[0]: pip options (-e, -r, --index-url, "
            "...) are not requirements; list packages only, e.g. requests>=2 "
            "(configure package indexes in pip.conf on the hosts)",
        ],
    ),
    (
        "requirement-not-a-requirement",
        edit(
            "  broker_user: orders\n", "  requirements: ['not a package!']\n  broker_user: orders\n"
        ),
        [
            "{inv}:17:18: app.requirements[0]: 'not a package!' is not a pip "
            "requirement; write e.g. requests>=2, a wheel path or a URL",
        ],
    ),
    (
        "requirement-empty",
        edit("  broker_user: orders\n", "  requirements: ['']\n  broker_user: orders\n"),
        [
            "{inv}:17:18: app.requirements[0]: must not be empty, got ''",
        ],
    ),
    (
        "source-requirement-option",
        edit("    path: app\n", "    requirement: '-e .'\n"),
        [
            "{inv}:16:18: app.source.requirement: pip options (-e, -r, "
            "--index-url, ...) are not requirements; list packages only, e.g. "
            "requests>=2 (configure package indexes in pip.conf on the hosts)",
        ],
    ),
    (
        "worker-user-rabbitmq",
        after_install("    user: rabbitmq\n"),
        [
            "{inv}:23:11: workers[0].user: 'rabbitmq' is RabbitMQ's own account "
            "(it owns the Erlang cookie); use a dedicated user such as celery",
        ],
    ),
    (
        "worker-group-root",
        after_install("    group: root\n"),
        [
            "{inv}:23:12: workers[0].group: workers never run as root; use a "
            "dedicated user such as celery",
        ],
    ),
    (
        "beat-user-root",
        BASE_INVENTORY + "beat:\n  host: worker1\n  user: root\n",
        [
            "{inv}:29:9: beat.user: beat never runs as root; use a dedicated user such as celery",
        ],
    ),
    (
        "beat-group-rabbitmq",
        BASE_INVENTORY + "beat:\n  host: worker1\n  group: rabbitmq\n",
        [
            "{inv}:29:10: beat.group: 'rabbitmq' is RabbitMQ's own account (it "
            "owns the Erlang cookie); use a dedicated user such as celery",
        ],
    ),
    (
        "flower-user-root",
        flower_line("user: root"),
        [
            "{inv}:25:9: flower.user: Flower never runs as root; use a dedicated "
            "user such as flower",
        ],
    ),
    (
        "flower-group-rabbitmq",
        flower_line("group: rabbitmq"),
        [
            "{inv}:25:10: flower.group: 'rabbitmq' is RabbitMQ's own account (it "
            "owns the Erlang cookie); use a dedicated user such as flower",
        ],
    ),
    (
        "worker-group-named-flower",
        edit("  - name: default", "  - name: flower"),
        [
            "{inv}:20:11: workers[0].name: 'flower' is taken by Flower's "
            "virtualenv (/opt/qsetup/venvs/flower); pick another group name",
        ],
    ),
    (
        "worker-group-named-beat",
        edit("  - name: default", "  - name: beat"),
        [
            "{inv}:20:11: workers[0].name: 'beat' is taken by beat's own "
            "virtualenv (/opt/qsetup/venvs/beat); pick another group name",
        ],
    ),
    (
        "tag-python-object",
        edit("  module: proj", "  module: !!python/object/apply:os.system ['id']"),
        [
            "{inv}:14:11: (yaml): the YAML tag '!!python/object/apply:os.system' "
            "is not allowed; remove it and write a plain value (put text in quotes)",
        ],
    ),
    (
        "tag-binary",
        edit("  module: proj", "  module: !!binary cHJvag=="),
        [
            "{inv}:14:11: (yaml): the YAML tag '!!binary' is not allowed; remove "
            "it and write a plain value (put text in quotes)",
        ],
    ),
    (
        "tag-set",
        edit("  vhosts: [orders]", "  vhosts: !!set {orders}"),
        [
            "{inv}:9:11: (yaml): the YAML tag '!!set' is not allowed; remove it "
            "and write a plain value (put text in quotes)",
        ],
    ),
    (
        "tag-str",
        edit("  module: proj", "  module: !!str proj"),
        [
            "{inv}:14:11: (yaml): the YAML tag '!!str' is not allowed; remove it "
            "and write a plain value (put text in quotes)",
        ],
    ),
    (
        "tag-float",
        after_install("    instances: !!float 2"),
        [
            "{inv}:23:16: (yaml): the YAML tag '!!float' is not allowed; remove it "
            "and write a plain value (put text in quotes)",
        ],
    ),
    (
        "tag-non-specific",
        edit("  module: proj", "  module: ! proj"),
        [
            "{inv}:14:11: (yaml): the YAML tag '!' is not allowed; remove it and "
            "write a plain value (put text in quotes)",
        ],
    ),
    (
        "tag-local",
        edit("  module: proj", "  module: !secret proj"),
        [
            "{inv}:14:11: (yaml): the YAML tag '!secret' is not allowed; remove it "
            "and write a plain value (put text in quotes)",
        ],
    ),
    (
        "tag-on-mapping",
        edit("  source:\n", "  source: !!map\n"),
        [
            "{inv}:15:11: (yaml): the YAML tag '!!map' is not allowed; remove it "
            "and write a plain value (put text in quotes)",
        ],
    ),
    (
        "tag-on-key",
        edit("  module: proj", "  !!str module: proj"),
        [
            "{inv}:14:3: (yaml): the YAML tag '!!str' is not allowed; remove it "
            "and write a plain value (put text in quotes)",
        ],
    ),
]


CASES += [
    # --- numbers YAML reads otherwise, strict types, noncharacters
    (
        "octal-looking-port",
        broker_line("port: 05672"),
        [
            "{inv}:9:9: broker.port: YAML reads 05672 as 3002; write the number in "
            "plain decimal, or quote it if it is text",
        ],
    ),
    (
        "octal-looking-time-limit",
        after_install("    time_limit: 0600\n"),
        [
            "{inv}:23:17: workers[0].time_limit: YAML reads 0600 as 384; write the "
            "number in plain decimal, or quote it if it is text",
        ],
    ),
    (
        "sexagesimal-time-limit",
        after_install("    time_limit: 1:30\n"),
        [
            "{inv}:23:17: workers[0].time_limit: YAML reads 1:30 as 90; write the "
            "number in plain decimal, or quote it if it is text",
        ],
    ),
    (
        "octal-looking-policy-value",
        edit(
            "app:\n",
            "  policies:\n    - {name: ttl, vhost: orders, pattern: '.*', "
            "definition: {max-length: 0100}}\napp:\n",
        ),
        [
            "{inv}:14:74: broker.policies[0].definition.max-length: YAML reads "
            "0100 as 64; write the number in plain decimal, or quote it if it is "
            "text",
        ],
    ),
    (
        "version-true",
        edit("version: 1", "version: true"),
        [
            "{inv}:1:10: version: got true; use 1",
        ],
    ),
    (
        "boolean-for-number",
        after_install("    instances: true\n"),
        [
            "{inv}:23:16: workers[0].instances: expected a whole number, got true",
        ],
    ),
    (
        "number-for-boolean",
        broker_line("delete_guest: 0"),
        [
            "{inv}:9:17: broker.delete_guest: expected true or false, got 0",
        ],
    ),
    (
        "string-number-for-number",
        after_install("    concurrency: '4'\n"),
        [
            "{inv}:23:18: workers[0].concurrency: expected a whole number, got '4'",
        ],
    ),
    (
        "noncharacter-in-env-value",
        with_env('    MY_VAR: "a\\uFFFEb"\n'),
        [
            "{inv}:20:13: app.environment.MY_VAR: contains a Unicode noncharacter "
            "(\\ufffe), which would not reach the services as written (systemd's "
            "environment file); remove it",
        ],
    ),
    (
        "noncharacter-in-policy-value",
        edit(
            "app:\n",
            '  policies:\n    - {name: dlx, vhost: orders, pattern: ".*", '
            'definition: {dead-letter-exchange: "\\U0010FFFF"}}\napp:\n',
        ),
        [
            "{inv}:14:84: broker.policies[0].definition.dead-letter-exchange: "
            "contains a Unicode noncharacter (\\U0010ffff); remove it",
        ],
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
    path.write_text("version: 1\nhosts: " + "[" * 3000 + "]" * 3000 + "\n")
    # the bracket that opens level 65: line 2, column 8 + 64
    assert _lines(path) == [
        f"{path}:2:72: (yaml): nested too deeply; an inventory needs at most 64 levels"
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


def test_source_path_without_the_app(write_inventory: WriteInventory) -> None:
    inventory = write_inventory(edit("    path: app\n", "    path: /etc\n"))
    with pytest.raises(QsetupError) as caught:
        load_inventory(inventory, check_files=True)
    assert caught.value.lines() == [
        f"{inventory}:16:11: app.source.path: /etc holds neither proj/ nor proj.py, so the "
        "workers could not import app.module 'proj'; point it at the directory with the "
        "app's code"
    ]


def test_source_path_with_a_module_file(write_inventory: WriteInventory) -> None:
    inventory = write_inventory()
    app = inventory.parent / "app"
    (app / "proj").rename(app / "other")
    (app / "proj.py").write_text("app = None\n")
    assert load_inventory(inventory, check_files=True).inventory.app.module == "proj"


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
    from qsetup.inventory.loader import _PATTERN_HELP
    from qsetup.inventory.model import Inventory

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
    from qsetup.inventory.loader import format_path

    assert format_path(path) == text


# --- secrets the file holds in a form that would change them, or that RabbitMQ refuses ----

SECRET_LINES = [f"{name}: {value!r}" for name, value in BASE_SECRETS.items()]
COOKIE_ADVICE = "use 20 to 255 letters and digits, e.g. the output of: openssl rand -hex 32"
QUOTE_IT = "not as text, which changes it; put it in quotes"


def secrets_text(**raw: str) -> str:
    """BASE_SECRETS (one per line, in order) with some values replaced by raw YAML."""
    lines = [
        f"{name}: {raw[name.replace('-', '_')]}" if name.replace("-", "_") in raw else line
        for name, line in zip(BASE_SECRETS, SECRET_LINES, strict=True)
    ]
    return "\n".join(lines) + "\n"


SECRET_CASES: list[tuple[str, str, list[str]]] = [
    (
        "octal-looking-password",
        secrets_text(rabbitmq_user_orders="0755"),
        [f"{{sec}}:2:1: rabbitmq-user-orders: YAML reads this value as a number, {QUOTE_IT}"],
    ),
    (
        "hex-looking-password",
        secrets_text(rabbitmq_user_orders="0x1F"),
        [f"{{sec}}:2:1: rabbitmq-user-orders: YAML reads this value as a number, {QUOTE_IT}"],
    ),
    (
        "float-looking-password",
        secrets_text(rabbitmq_user_orders="1.5e+3"),
        [f"{{sec}}:2:1: rabbitmq-user-orders: YAML reads this value as a number, {QUOTE_IT}"],
    ),
    (
        "sexagesimal-looking-password",
        secrets_text(rabbitmq_user_orders="12:30:45"),
        [f"{{sec}}:2:1: rabbitmq-user-orders: YAML reads this value as a number, {QUOTE_IT}"],
    ),
    (
        "boolean-looking-password",
        secrets_text(flower_user_admin="yes"),
        [f"{{sec}}:4:1: flower-user-admin: YAML reads this value as true/false, {QUOTE_IT}"],
    ),
    (
        "date-looking-password",
        secrets_text(flower_user_admin="2024-02-29"),
        [f"{{sec}}:4:1: flower-user-admin: YAML reads this value as a date, {QUOTE_IT}"],
    ),
    (
        "empty-password",
        secrets_text(flower_user_admin=""),
        ["{sec}:4:1: flower-user-admin: a secret must be a non-empty string"],
    ),
    (
        "nul-in-password",
        secrets_text(rabbitmq_user_orders='"pass\\0word-0123456789"'),
        [
            "{sec}:2:1: rabbitmq-user-orders: the value contains a NUL character; a secret is "
            "one line of printable text"
        ],
    ),
    (
        "surrogate-in-password",
        secrets_text(rabbitmq_user_orders='"pass\\ud800word-0123456789"'),
        [
            "{sec}:2:1: rabbitmq-user-orders: the value contains a lone surrogate, which is not "
            "text; a secret is one line of printable text"
        ],
    ),
    (
        "newline-in-password",
        secrets_text(rabbitmq_user_orders='"pass\\nword-0123456789"'),
        [
            "{sec}:2:1: rabbitmq-user-orders: the value contains a control character; a secret "
            "is one line of printable text"
        ],
    ),
    (
        "huge-password",
        secrets_text(rabbitmq_user_orders="x" * 5000),
        [
            "{sec}:2:1: rabbitmq-user-orders: the value is longer than 4096 characters; use a "
            "shorter one"
        ],
    ),
    (
        "tag-in-secrets",
        secrets_text(rabbitmq_user_orders="!!binary cGFzc3dvcmQ="),
        [
            "{sec}:2:23: (yaml): the YAML tag '!!binary' is not allowed; remove it and write a "
            "plain value (put text in quotes)"
        ],
    ),
    (
        "python-tag-in-secrets",
        secrets_text(flower_user_admin="!!python/name:os.system ''"),
        [
            "{sec}:4:20: (yaml): the YAML tag '!!python/name:os.system' is not allowed; remove "
            "it and write a plain value (put text in quotes)"
        ],
    ),
    (
        "blank-password",
        secrets_text(rabbitmq_user_orders="'          '"),
        [
            "{sec}:2:1: rabbitmq-user-orders: the value is blank (only spaces or tabs); a broker "
            "or Flower login needs at least 8 characters, e.g. the output of: openssl rand -hex 16"
        ],
    ),
    (
        "one-character-password",
        secrets_text(flower_user_admin="q"),
        [
            "{sec}:4:1: flower-user-admin: a value of 1 character(s) is too short; a broker or "
            "Flower login needs at least 8 characters, e.g. the output of: openssl rand -hex 16"
        ],
    ),
    (
        "cookie-too-short",
        secrets_text(rabbitmq_erlang_cookie="'SHORTCOOKIE'"),
        [
            "{sec}:1:1: rabbitmq-erlang-cookie: an Erlang cookie of 11 characters is too short; "
            + COOKIE_ADVICE
        ],
    ),
    (
        "cookie-too-long",
        secrets_text(rabbitmq_erlang_cookie="C" * 256),
        [
            "{sec}:1:1: rabbitmq-erlang-cookie: an Erlang cookie of 256 characters is too long; "
            + COOKIE_ADVICE
        ],
    ),
    (
        "cookie-with-spaces",
        secrets_text(rabbitmq_erlang_cookie="'COOKIE COOKIE COOKIE COOKIE'"),
        [
            "{sec}:1:1: rabbitmq-erlang-cookie: an Erlang cookie must be printable ASCII "
            f"without spaces or quotes; {COOKIE_ADVICE}"
        ],
    ),
    (
        "cookie-not-ascii",
        secrets_text(rabbitmq_erlang_cookie="'COOKIECOOKIECOOKIECOOKIEÉÉ'"),
        [
            "{sec}:1:1: rabbitmq-erlang-cookie: an Erlang cookie must be printable ASCII "
            f"without spaces or quotes; {COOKIE_ADVICE}"
        ],
    ),
    (
        "cookie-with-quote",
        secrets_text(rabbitmq_erlang_cookie='"COOKIECOOKIE\'COOKIECOOKIE"'),
        [
            "{sec}:1:1: rabbitmq-erlang-cookie: an Erlang cookie must be printable ASCII "
            f"without spaces or quotes; {COOKIE_ADVICE}"
        ],
    ),
    (
        "cookie-as-a-number",
        secrets_text(rabbitmq_erlang_cookie="123456789012345678901234"),
        [f"{{sec}}:1:1: rabbitmq-erlang-cookie: YAML reads this value as a number, {QUOTE_IT}"],
    ),
]


@pytest.mark.parametrize(
    ("content", "expected"),
    [pytest.param(content, expected, id=case_id) for case_id, content, expected in SECRET_CASES],
)
def test_invalid_secrets_lines(
    write_inventory: WriteInventory, content: str, expected: list[str]
) -> None:
    inventory = write_inventory()
    secrets = inventory.with_name("inventory.secrets.yml")
    secrets.write_text(content, encoding="utf-8")
    lines = _lines(inventory)
    assert lines == [line.format(inv=inventory, sec=secrets) for line in expected]
    for value in (*BASE_SECRETS.values(), "0755", "SHORTCOOKIE", "pass"):
        assert all(value not in line for line in lines), "a secret value was echoed"


# --- local files: the app's source directory and the SSH keys -----------------------------


def _strict_lines(path: Path) -> list[str]:
    with pytest.raises(QsetupError) as caught:
        load_inventory(path, check_files=True)
    return caught.value.lines()


def test_source_path_is_the_root(write_inventory: WriteInventory) -> None:
    inventory = write_inventory(edit("    path: app\n", "    path: /\n"))
    assert _lines(inventory) == [
        f"{inventory}:16:11: app.source.path: / is the root directory; point it at the "
        "directory with the app's code"
    ]


def test_source_path_holds_the_secrets_file(write_inventory: WriteInventory) -> None:
    inventory = write_inventory(edit("    path: app\n", "    path: .\n"))
    secrets = inventory.with_name("inventory.secrets.yml")
    assert _lines(inventory) == [
        f"{inventory}:16:11: app.source.path: {inventory.parent / '.'} holds the secrets file "
        f"{secrets}, which deploy would copy to the workers; point it at the directory with "
        "the app's code only"
    ]


def test_source_path_holds_an_explicit_secrets_file(write_inventory: WriteInventory) -> None:
    inventory = write_inventory()
    inside = write_secrets(inventory.parent / "app" / "creds.yml", BASE_SECRETS)
    assert _lines(inventory, inside) == [
        f"{inventory}:16:11: app.source.path: {inventory.parent / 'app'} holds the secrets file "
        f"{inside}, which deploy would copy to the workers; point it at the directory with "
        "the app's code only"
    ]


def test_source_path_holds_the_ssh_key(write_inventory: WriteInventory) -> None:
    inventory = write_inventory(BASE_INVENTORY + "ssh: {key: app/id_ed25519}\n")
    (inventory.parent / "app" / "id_ed25519").write_text("key\n")
    assert _lines(inventory) == [
        f"{inventory}:16:11: app.source.path: {inventory.parent / 'app'} holds the SSH key, "
        "which deploy would copy to the workers; point it at the directory with the app's "
        "code only"
    ]


def test_source_path_without_files(write_inventory: WriteInventory) -> None:
    inventory = write_inventory()
    # Only empty directories: fine for status, refused by validate.
    (inventory.parent / "app" / "proj" / "__init__.py").unlink()
    (inventory.parent / "app" / "pkg").mkdir()
    load_inventory(inventory)
    assert _strict_lines(inventory) == [
        f"{inventory}:16:11: app.source.path: {inventory.parent / 'app'} has no files; point "
        "it at the directory with the app's code"
    ]


def test_ssh_key_missing(write_inventory: WriteInventory) -> None:
    inventory = write_inventory(BASE_INVENTORY + "ssh: {key: keys/id_ed25519}\n")
    (inventory.parent / "app" / "proj.py").write_text("")
    load_inventory(inventory)  # status reports a missing key per host; validate refuses it
    key = inventory.parent / "keys" / "id_ed25519"
    assert _strict_lines(inventory) == [
        f"{inventory}:27:12: ssh.key: SSH key {key} does not exist; check the path (relative "
        "paths start at the inventory's directory)"
    ]


def test_host_ssh_key_missing(write_inventory: WriteInventory) -> None:
    text = edit("    address: 10.0.0.2\n", "    address: 10.0.0.2\n    ssh_key: /nonexistent/k\n")
    inventory = write_inventory(text)
    (inventory.parent / "app" / "proj.py").write_text("")
    assert _strict_lines(inventory) == [
        f"{inventory}:7:14: hosts.worker1.ssh_key: SSH key /nonexistent/k does not exist; "
        "check the path (relative paths start at the inventory's directory)"
    ]


def test_ssh_key_is_a_directory(write_inventory: WriteInventory) -> None:
    inventory = write_inventory(BASE_INVENTORY + "ssh: {key: keys}\n")
    (inventory.parent / "keys").mkdir()
    assert _lines(inventory) == [
        f"{inventory}:27:12: ssh.key: {inventory.parent / 'keys'} is a directory; give the SSH "
        "private key file"
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_ssh_key_unreadable(write_inventory: WriteInventory) -> None:
    inventory = write_inventory(BASE_INVENTORY + "ssh: {key: id_ed25519}\n")
    key = inventory.parent / "id_ed25519"
    key.write_text("key\n")
    key.chmod(0)
    assert _lines(inventory) == [
        f"{inventory}:27:12: ssh.key: {key} cannot be read (permission denied); check the "
        "file's owner"
    ]


def test_ssh_key_under_an_unknown_home(write_inventory: WriteInventory) -> None:
    inventory = write_inventory(BASE_INVENTORY + "ssh: {key: ~nosuchuser-qsetup/key}\n")
    (inventory.parent / "app" / "proj.py").write_text("")
    key = inventory.parent / "~nosuchuser-qsetup" / "key"
    assert _strict_lines(inventory) == [
        f"{inventory}:27:12: ssh.key: SSH key {key} does not exist; check the path (relative "
        "paths start at the inventory's directory)"
    ]
