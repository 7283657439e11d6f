"""What the deploy's roles act on: a host's comparison, as plain data.

:func:`host_view` turns a host's target and the one read's facts into the dictionary
the playbooks' roles read as ``qsetup_converge``. The deploy computes it from its first
read and hands it to Ansible with the host's variables. When Ansible reads a host
itself (``--limit``, ``--tags``, ``--verbose``, a host that did not answer the first
read, a refusal to report), the ``qsetup_converge`` filter (``playbooks/filter_plugins/``)
calls the same function on that read. Pure: no I/O, no secret in the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qsetup.converge.cluster import blank_node
from qsetup.converge.compare import (
    EPMD_MODE,
    code_stale,
    compare_host,
    epmd_differences,
    epmd_dropin,
    firewall_difference,
    host_clean,
    hosts_block_difference,
    refusals,
    results_differences,
    stale_dirs,
    stale_files,
    stale_venvs,
    unit_difference,
)
from qsetup.converge.facts import HostFacts
from qsetup.converge.removals import manifest_pending, removals
from qsetup.converge.target import HostTarget, hosts_block
from qsetup.desired.epmd import DROPIN_PATH
from qsetup.desired.firewall import (
    FIREWALL_UNIT,
    RULESET_PATH,
    UNIT_TEXT,
    merge_allowed,
    render_ruleset,
)
from qsetup.desired.results import RESULTS_UNIT

COOKIE = "/var/lib/rabbitmq/.erlang.cookie"
"""RabbitMQ's Erlang cookie: the node stops before it changes (broker/tasks/cookie.yml)."""


def host_view(
    target: HostTarget, facts: HostFacts, secrets: Mapping[str, str], hv: Mapping[str, Any]
) -> dict[str, Any]:
    """What differs on this host, by ``converge.compare_host``, for the roles.

    ``hv``: the host's plan variables (the configure play's ``steps`` follow from them).

    Returns ``clean`` (nothing a deploy changes), the missing ``packages``, ``os_groups``
    and ``os_users`` (names), the ``stale`` files' destinations, ``stale_dirs``,
    ``stale_venvs`` (names), ``code_stale``, ``units_down`` and ``units_failed`` (the
    services' units that are not running and enabled, and those of them systemd holds
    failed), ``workers_up`` (the host's worker units, ``--tags`` or not, that run and are
    enabled: after RabbitMQ restarts they wait to answer again), ``broker_unit_down``,
    ``broker_active`` (RabbitMQ's unit runs), ``broker_blank`` (a cluster node whose host
    has no RabbitMQ yet), ``hosts_block`` (the cluster's lines in /etc/hosts, None for none)
    with ``hosts_block_stale``, ``removals`` (what the inventory dropped, as
    ``converge.removals``), ``manifest_stale`` (the manifest to record differs from the
    host's), ``epmd`` (its drop-in, see :func:`_epmd`), ``firewall`` (the rulesets to load,
    see :func:`_firewall`), ``results_restart`` (the managed result backend's files, unit or
    users differ), ``refusals`` (why the host cannot be deployed: every ``refuse``
    difference, see ``converge.compare.refusals``; the preflight stops on them),
    ``differences`` (one line each, no secret) and ``steps`` (:func:`configure_steps`).
    """
    host = target.host
    differences = compare_host(target, facts, secrets)
    services = [s for s in target.services if s.role not in ("broker", "firewall", "results")]
    gone = removals(facts.manifest, target.manifest)
    down = [s.unit for s in services if unit_difference(host, facts.unit(s.unit)) is not None]
    view = {
        "clean": host_clean(differences),
        "packages": sorted(set(facts.packages) - facts.installed),
        "os_groups": sorted(set(target.os_groups) - facts.groups),
        "os_users": sorted(set(target.os_users) - facts.users),
        "stale": [f.dest for f in stale_files(target.files, facts)],
        "stale_dirs": [d.path for d in stale_dirs(target.dirs, facts)],
        "stale_venvs": [v.name for v in stale_venvs(target, facts)],
        "code_stale": code_stale(target, facts),
        "units_down": down,
        "units_failed": [u for u in down if facts.unit(u).active_state == "failed"],
        "workers_up": [
            u for u in target.worker_units if unit_difference(host, facts.unit(u)) is None
        ],
        "broker_unit_down": target.broker_node
        and unit_difference(host, facts.unit("rabbitmq-server.service")) is not None,
        "broker_active": target.broker_node
        and facts.unit("rabbitmq-server.service").active_state == "active",
        "broker_blank": blank_node(target, facts),
        "hosts_block": hosts_block(target, facts.hosts_block),
        "hosts_block_stale": hosts_block_difference(target, facts) is not None,
        "removals": gone,
        "manifest_stale": manifest_pending(target.manifest, gone) != dict(facts.manifest),
        "epmd": _epmd(target, facts),
        "firewall": _firewall(target, facts, gone),
        "results_restart": target.results is not None
        and (
            any(f.service == RESULTS_UNIT for f in stale_files(target.files, facts))
            or unit_difference(host, facts.unit(RESULTS_UNIT)) is not None
            or bool(results_differences(target, facts, secrets))
        ),
        "refusals": refusals(differences),
        "differences": [d.line for d in differences if d.fixable],
    }
    view["steps"] = configure_steps(host, view, hv)
    return view


def _epmd(target: HostTarget, facts: HostFacts) -> dict[str, Any]:
    """Epmd's drop-in on a broker node: ``file`` to install (None: current or not here).

    ``file`` is an entry for ``qsetup_files`` (with its content). A name that is another
    host's address is one of the host's ``refusals``, not a file.
    """
    found = epmd_differences(target, facts)
    content = epmd_dropin(target, facts)
    stale = any(d.kind == "file" for d in found)
    return {
        "file": {
            "dest": DROPIN_PATH,
            "content": content,
            "owner": "root",
            "group": "root",
            "mode": EPMD_MODE,
        }
        if stale and content is not None
        else None,
    }


def _firewall(target: HostTarget, facts: HostFacts, gone: Mapping[str, Any]) -> dict[str, Any]:
    """The rulesets the deploy loads: ``early`` (None: nothing to load) and ``final``.

    ``early`` keeps open what an earlier deploy allowed and the inventory dropped (its
    clients still run until the removals, the deploy's last play), ``final`` (None:
    same as early) closes it once they stopped.
    """
    if target.firewall is None:
        return {"early": None, "final": None}
    dropped = {int(k): v for k, v in (gone.get("firewall") or {}).items()}
    stale = (
        firewall_difference(target, facts) is not None
        or unit_difference(target.host, facts.unit(FIREWALL_UNIT)) is not None
    )
    final = render_ruleset(target.firewall.allowed)
    early = render_ruleset(merge_allowed(target.firewall.allowed, dropped))
    return {
        "early": early if stale or dropped else None,
        "final": final if dropped else None,
        "path": RULESET_PATH,
        "unit": UNIT_TEXT,
        "unit_name": FIREWALL_UNIT,
    }


def configure_steps(
    host: str, view: Mapping[str, Any], hv: Mapping[str, Any]
) -> list[dict[str, str]]:
    """The task files site.yml's configure play runs on this host, in order.

    ``view`` is :func:`host_view`'s result, ``hv`` the host's plan variables. A step is
    left out when every task in it would skip here (each skipped task is a result
    Ansible forks or queues for the host); the tasks keep their own conditions (check
    mode, what an earlier step registered). Empty when nothing differs.

    Each step names its host: Ansible merges the same include of several hosts into one
    and queues the merged includes in the order it first met them, so two hosts with
    different steps could run theirs out of order (a service's files before its
    packages). An include no other host shares keeps each host's own order.
    """
    if view["clean"]:
        return []
    stale_venvs = set(view["stale_venvs"])
    venvs = [v for v in hv.get("qsetup_venvs") or () if v["name"] in stale_venvs]
    packages = set(view["packages"])
    stale = set(view["stale"])
    broker = bool(hv.get("qsetup_is_broker"))
    # RabbitMQ's files (configuration, plugins, limit, cookie) or epmd's drop-in differ.
    broker_files = view["epmd"].get("file") is not None or any(
        f["dest"] in stale for f in hv.get("qsetup_broker_files") or ()
    )
    early = any(not v.get("site_packages") for v in venvs)
    wanted = [
        ("host", "dropped", bool(view["removals"].get("any"))),
        # with the virtualenvs that take nothing from Debian's Python packages: the
        # packages they are built with go first, then they start building
        (
            "host",
            "users",
            early
            or bool(packages)
            or bool(view["os_groups"] or view["os_users"] or view["stale_dirs"])
            or bool(view["manifest_stale"])
            # the same task loads the firewall, still open to the clients the inventory dropped
            or view["firewall"].get("early") is not None,
        ),
        ("celery", "venvs_site", any(v.get("site_packages") for v in venvs)),
        ("broker", "hosts_block", broker and bool(view["hosts_block_stale"])),
        ("broker", "cookie", broker and COOKIE in stale and bool(view["broker_active"])),
        ("broker", "forget", broker and bool(view["broker_blank"])),
        ("broker", "main", broker and broker_files),
        ("broker", "ensure", broker and not broker_files and bool(view["broker_unit_down"])),
        (
            "broker",
            "wait_api",
            broker
            and not hv.get("qsetup_is_broker_primary")
            and (broker_files or bool(view["broker_unit_down"])),
        ),
        ("results", "main", bool(hv.get("qsetup_is_results"))),
        # the app's code staged, the builds waited for, the services' files, the app check
        (
            "celery",
            "main",
            bool(view["code_stale"])
            or bool(venvs)
            or any(f["dest"] in stale for f in hv.get("qsetup_files") or ()),
        ),
        ("broker", "definitions", bool(hv.get("qsetup_is_broker_primary"))),
    ]
    return [
        {"role": role, "tasks": tasks, "host": host} for role, tasks, needed in wanted if needed
    ]


def units_to_restart(
    services: list[dict[str, Any]],
    started: list[str] | None,
    code_changed: bool,
    changed_venvs: list[str],
    changed_services: list[str],
) -> list[dict[str, Any]]:
    """Services already running whose code, packages, environment or unit changed.

    A service that the deploy has just started (``started``: the units qsetup_services
    started, its ``launched``) runs the new version already. ``changed_services``: the units
    (or unit templates) whose files the deploy installed.
    """
    just_started = set(started or [])
    return [
        s
        for s in services
        if s["unit"] not in just_started
        and (
            (s.get("code") and code_changed)
            or (s.get("venv") and s["venv"] in changed_venvs)
            or s["files_of"] in changed_services
        )
    ]
