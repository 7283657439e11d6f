"""The deploy plan: the Ansible inventory and per-host variables, built from the model.

Everything the playbooks loop over is decided here, per host and per selected
part (broker, workers, beat, flower): which units, files, virtualenvs, packages and
broker objects each host gets. What depends on a host's current state (what
differs, what to restart, cluster membership) is decided on the way by the filters
in ``playbooks/filter_plugins/`` and the modules in ``playbooks/library/``; the
playbooks wire those into plays and order them. Nothing here is secret: passwords
stay in the scratch secrets file, referred to by name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from qsetup.artifacts.manifest import MANIFEST_PATH, host_manifests
from qsetup.artifacts.readparams import read_params
from qsetup.artifacts.render import Artifact
from qsetup.desired.beat import REDBEAT_PIP
from qsetup.desired.broker import permission_vars, policy_vars, topic_permission_vars
from qsetup.desired.epmd import DROPIN_PATH, epmd_addresses
from qsetup.desired.firewall import PACKAGE as FIREWALL_PACKAGE
from qsetup.desired.firewall import firewall_rules
from qsetup.desired.results import (
    ACL_PATH,
    CLIENT_APT,
    CLIENT_PIP,
    RESULTS_PACKAGE,
    RESULTS_UNIT,
    results_address,
    results_users,
)
from qsetup.desired.results import ADMIN as RESULTS_ADMIN
from qsetup.desired.state import (
    APP_SHIM,
    CELERY_APT_MARK,
    ETC,
    RELEASES,
    SHIM_DIR,
    SshEndpoint,
    Unit,
    apt_packages_by_release,
    beat_runtime,
    beat_venv,
    broker_nodes,
    broker_state,
    code_dir,
    consumed_queues,
    needs_venv,
    ssh_endpoints,
    units_by_host,
    venv_dir,
)
from qsetup.inventory.fields import QUORUM_CELERY
from qsetup.inventory.model import BEAT_LOOP_INTERVAL, Inventory, managed_results, queue_type

PARTS = ("broker", "workers", "beat", "flower", "results")

# Directories that exist once the host's packages are installed.
_STANDARD_DIRS = {"/etc/systemd/system", "/etc/rabbitmq", "/var/lib/rabbitmq", "/etc/redis"}
_ROLE_OF_PART = {
    "broker": "broker",
    "workers": "worker",
    "beat": "beat",
    "flower": "flower",
    "results": "results",
}


@dataclass
class _HostPlan:
    apt: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    users: dict[str, str] = field(default_factory=dict)
    dirs: dict[str, dict[str, str]] = field(default_factory=dict)
    venvs: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: list[dict[str, Any]] = field(default_factory=list)
    ship_code: bool = False
    broker: bool = False
    results: bool = False
    flower_port: int | None = None
    flower_address: str = "127.0.0.1"


def _ssh_vars(endpoint: SshEndpoint) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ansible_host": endpoint.address,
        "ansible_port": endpoint.port,
        "ansible_user": endpoint.user,
        "ansible_become": endpoint.become,
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    if endpoint.key is not None:
        out["ansible_ssh_private_key_file"] = str(endpoint.key)
    return out


def pip_packages(inv: Inventory, spec: str | None) -> list[str]:
    """Celery (pinned as the group asks) plus the app and its extra requirements.

    With quorum queues pip may only pick a Celery that supports them.
    """
    quorum = queue_type(inv) == "quorum"
    if spec:
        packages = [f"celery{spec}"] + ([f"celery>={QUORUM_CELERY}"] if quorum else [])
    else:
        packages = [f"celery>={QUORUM_CELERY if quorum else '5.2'},<6"]
    if managed_results(inv):
        packages.append(CLIENT_PIP)
    if inv.app.source.requirement:
        packages.append(inv.app.source.requirement)
    packages.extend(inv.app.requirements)
    return packages


def _file_vars(arts: Iterable[Artifact]) -> list[dict[str, Any]]:
    return [
        {
            "src": f"{a.host}{a.path}",
            "dest": str(a.path),
            "mode": f"0{a.mode:o}",
            "owner": a.owner,
            "group": a.group,
            "secret": a.secret,
            "role": a.role,
            "service": a.service,
        }
        for a in arts
    ]


def _add_dirs(plan: _HostPlan, arts: Iterable[Artifact]) -> None:
    for art in arts:
        parent = str(PurePosixPath(art.path).parent)
        if parent not in _STANDARD_DIRS and parent not in plan.dirs:
            plan.dirs[parent] = {"path": parent, "owner": "root", "group": "root", "mode": "0755"}


def _broker_vars(inv: Inventory) -> dict[str, Any]:
    """The broker's desired state (``desired.broker_state``) as the playbooks read it."""
    state = broker_state(inv)
    return {
        "vhosts": list(state.vhosts),
        "users": [
            {
                "name": u.name,
                "secret": u.secret,
                "tags": ",".join(u.tags),
                "permissions": [permission_vars(p) for p in u.permissions],
                "topic_permissions": [topic_permission_vars(t) for t in u.topic_permissions],
            }
            for u in state.users
        ],
        "policies": [policy_vars(p) for p in state.policies],
        "delete_guest": state.delete_guest,
        "port": state.port,
        "management_port": state.management_port,
        "admin_user": state.admin_user,
        "admin_secret": state.admin_secret,
    }


VENV_APT = frozenset({"python3-venv", "python3-packaging"})
"""What a host needs from Debian to build a virtualenv (Ansible's pip module needs
python3-packaging): installed before the host's other packages, so that a virtualenv
that takes nothing from Debian's Python packages builds beside them."""


def _venv(name: str, packages: list[str], site_packages: bool) -> dict[str, Any]:
    path = venv_dir(name)
    # The marker records what pip installed; an unchanged marker skips pip entirely.
    marker = "\n".join([*packages, f"site-packages={site_packages}"]) + "\n"
    return {
        "name": name,
        "path": str(path),
        "packages": packages,
        "site_packages": site_packages,
        "marker": str(path / ".qsetup-packages"),
        "marker_content": marker,
        "marker_sum": hashlib.sha1(marker.encode()).hexdigest(),  # noqa: S324 - Ansible's checksum
    }


_PART_OF_ROLE = {"worker": "workers", "beat": "beat", "flower": "flower", "results": "results"}


def _service(unit: Unit) -> dict[str, Any]:
    """A unit as the playbooks loop over it (role named by deploy part)."""
    return {
        "unit": unit.name,
        "role": _PART_OF_ROLE[unit.role],
        "files_of": unit.unit_file,
        "venv": unit.venv or "",
        "code": unit.code,
        # Workers: the exact node name is this pattern with the host's hostname filled in
        # (qsetup_node_name); the gate waits for that node and no other.
        "node_pattern": unit.node_pattern or "",
        "celery_argv": list(unit.celery_argv),
        "env_file": unit.env_file or "",
        "user": unit.user or "",
        "python": unit.python or "",
    }


def _plan_workers(inv: Inventory, plans: dict[str, _HostPlan]) -> None:
    for group in inv.workers:
        venv = needs_venv(inv, group)
        for host in group.hosts:
            plan = plans[host]
            plan.ship_code = True
            plan.groups.add(group.group)
            plan.users[group.user] = group.group
            if group.install == "apt":
                plan.apt.add(CELERY_APT_MARK)
                if managed_results(inv):
                    plan.apt.add(CLIENT_APT)
            if venv:
                plan.apt.update(VENV_APT)
                plan.venvs[group.name] = _venv(
                    group.name, pip_packages(inv, group.celery_version), group.install == "apt"
                )


def _plan_beat(inv: Inventory, plans: dict[str, _HostPlan]) -> None:
    beat = inv.beat
    if beat is None:
        return
    for host in beat.hosts:
        plan = plans[host]
        plan.ship_code = True
        plan.groups.add(beat.group)
        plan.users[beat.user] = beat.group
        _argv, venv = beat_runtime(inv, host)
        if venv == "beat":
            spec, site_packages = beat_venv(inv, host)
            packages = pip_packages(inv, spec)
            if beat.redbeat:
                packages.append(REDBEAT_PIP)
            if site_packages:
                plan.apt.add(CELERY_APT_MARK)
            plan.apt.update(VENV_APT)
            plan.venvs["beat"] = _venv("beat", packages, site_packages)
        elif venv is None:
            plan.apt.add(CELERY_APT_MARK)
            if managed_results(inv):
                plan.apt.add(CLIENT_APT)


def _plan_flower(inv: Inventory, plans: dict[str, _HostPlan]) -> None:
    flower = inv.flower
    if flower is None:
        return
    plan = plans[flower.host]
    plan.groups.add(flower.group)
    plan.users[flower.user] = flower.group
    plan.apt.update(VENV_APT)
    packages = [f"flower{flower.version}" if flower.version else "flower>=2,<3"]
    if managed_results(inv):
        packages.append(CLIENT_PIP)
    plan.venvs["flower"] = _venv("flower", packages, False)
    plan.flower_port = flower.port
    if flower.listen_address not in ("0.0.0.0", "::"):  # noqa: S104 - compared, not bound
        plan.flower_address = flower.listen_address


def _min_versions(inv: Inventory, host: str) -> list[dict[str, str]]:
    """Debian package versions the preflight checks on a host before changing it."""
    if queue_type(inv) != "quorum":
        return []
    return [
        {
            "package": "python3-celery",
            "version": QUORUM_CELERY,
            "problem": f"worker group '{g.name}' runs Debian's Celery (install: apt), but "
            f"quorum queues need Celery >= {QUORUM_CELERY}; use install: pip for this group, "
            "or Debian 13 (trixie) hosts, or app.queue_type: classic",
        }
        for g in inv.workers
        if g.install == "apt" and host in g.hosts
    ]


def _results_vars(inv: Inventory) -> dict[str, Any] | None:
    """The managed result backend as the read and the comparison ask for it (no secret)."""
    if inv.results is None:
        return None
    users = results_users(inv)
    return {
        "unit": RESULTS_UNIT,
        "address": results_address(inv),
        "port": inv.results.port,
        "tls": inv.tls.enabled,
        "acl_path": str(ACL_PATH),
        "admin_user": RESULTS_ADMIN,
        "admin_secret": next(u.secret for u in users if u.name == RESULTS_ADMIN),
        "users": [{"name": u.name, "secret": u.secret} for u in users],
    }


def build_ansible_inventory(
    inv: Inventory,
    artifacts: list[Artifact],
    parts: Iterable[str] = PARTS,
    inventory_path: Path = Path("inventory.yml"),
) -> dict[str, Any]:
    """Build the Ansible inventory (hosts, groups, non-secret variables) for the selected parts."""
    selected = set(parts)
    plans = {name: _HostPlan() for name in inv.hosts}
    if "broker" in selected:
        for node in inv.broker.hosts:
            plans[node].broker = True
            plans[node].apt.update({"rabbitmq-server", "python3-requests"})
    if "workers" in selected:
        _plan_workers(inv, plans)
    if "beat" in selected:
        _plan_beat(inv, plans)
    by_host = units_by_host(inv)
    for host, units in by_host.items():
        plans[host].services = [
            _service(u)
            for u in units
            if u.role not in ("broker", "results") and _PART_OF_ROLE[u.role] in selected
        ]
    if "flower" in selected:
        _plan_flower(inv, plans)
        if inv.flower is not None:
            cfg = "/etc/qsetup/flower"
            plans[inv.flower.host].dirs[cfg] = {
                "path": cfg,
                "owner": "root",
                "group": inv.flower.group,
                "mode": "0750",
            }

    if "results" in selected and inv.results is not None:
        plans[inv.results.host].results = True
        plans[inv.results.host].apt.add(RESULTS_PACKAGE)

    # The firewall goes with every part: a partial deploy opens what its clients need.
    firewalls = firewall_rules(inv)
    for name in firewalls:
        plans[name].apt.add(FIREWALL_PACKAGE)
    roles = {_ROLE_OF_PART[p] for p in selected} | {"firewall"}
    endpoints = ssh_endpoints(inv, inventory_path)
    manifests = host_manifests(inv, artifacts)
    epmd = epmd_addresses(inv)
    hosts: dict[str, Any] = {}
    for name, plan in plans.items():
        arts = [a for a in artifacts if a.host == name and a.role in roles]
        _add_dirs(plan, arts)
        # Every host records its manifest there, even one qsetup puts nothing on (yet).
        plan.dirs.setdefault(
            str(ETC), {"path": str(ETC), "owner": "root", "group": "root", "mode": "0755"}
        )
        if plan.ship_code:
            apps = str(code_dir(inv).parent)
            plan.dirs[apps] = {"path": apps, "owner": "root", "group": "root", "mode": "0755"}
        watched = [str(a.path) for a in arts]
        if plan.broker:
            watched.append(DROPIN_PATH)
        watched += [d for d in plan.dirs]
        watched += [v["marker"] for v in plan.venvs.values()]
        if plan.ship_code:
            watched += [f"{code_dir(inv)}.tar", str(code_dir(inv))]
        hv = _ssh_vars(endpoints[name])
        hv.update(
            {
                "qsetup_apt_packages": apt_packages_by_release(plan.apt),
                "qsetup_manifest": manifests[name],
                "qsetup_os_groups": sorted(plan.groups),
                "qsetup_os_users": [{"user": u, "group": g} for u, g in sorted(plan.users.items())],
                "qsetup_dirs": sorted(plan.dirs.values(), key=lambda d: d["path"]),
                "qsetup_venvs": list(plan.venvs.values()),
                "qsetup_files": _file_vars(
                    a for a in arts if a.role not in ("broker", "firewall", "results")
                ),
                "qsetup_broker_files": _file_vars(a for a in arts if a.role == "broker"),
                "qsetup_results_files": _file_vars(a for a in arts if a.role == "results"),
                "qsetup_is_results": plan.results,
                "qsetup_services": plan.services,
                # Every worker on the host, whatever --tags picked: after RabbitMQ restarts
                # (a --tags broker deploy too) those that ran wait to answer again.
                "qsetup_worker_services": [
                    _service(u) for u in by_host[name] if u.role == "worker"
                ],
                "qsetup_ship_code": plan.ship_code,
                "qsetup_is_broker": plan.broker,
                "qsetup_is_broker_primary": plan.broker and name == inv.broker.host,
                # Where epmd listens, before the host's own name is read (see desired.epmd).
                "qsetup_epmd": list(epmd[name]) if plan.broker else None,
                "qsetup_min_versions": _min_versions(inv, name) if "workers" in selected else [],
                # Port -> allowed sources (the qsetup_firewall module loads it rendered).
                "qsetup_firewall": (
                    {str(k): list(v) for k, v in firewalls[name].allowed.items()}
                    if name in firewalls
                    else None
                ),
                "qsetup_flower_port": plan.flower_port,
                "qsetup_flower_address": plan.flower_address,
                "qsetup_find_paths": sorted({str(PurePosixPath(w).parent) for w in watched}),
                "qsetup_find_patterns": sorted({PurePosixPath(w).name for w in watched}),
            }
        )
        hosts[name] = hv
    service_hosts = {n: None for n, p in plans.items() if p.services}
    worker_hosts = {n: None for n, hv in hosts.items() if hv["qsetup_worker_services"]}
    common = {
        "qsetup_app_name": inv.app.name,
        "qsetup_releases": dict(RELEASES),
        "qsetup_venv_apt": sorted(VENV_APT),
        # blockinfile's marker text around the cluster's /etc/hosts lines; the
        # preflight reads the block between the same markers.
        "qsetup_hosts_marker": "qsetup: RabbitMQ cluster nodes",
        "qsetup_manifest_path": MANIFEST_PATH,
        "qsetup_code_dir": str(code_dir(inv)),
        "qsetup_app_shim": APP_SHIM,
        "qsetup_shim_dir": str(SHIM_DIR),
        "qsetup_broker": _broker_vars(inv),
        # Each node's inventory name and address; the first is where users,
        # vhosts and policies are managed, and the others join its cluster.
        # A queue's type cannot change: the preflight refuses a consumed queue
        # that exists with another type (converge.compare.queue_type_refusals).
        "qsetup_queue_type": queue_type(inv),
        "qsetup_consumed_queues": [
            {"vhost": v, "name": n, "groups": list(g)} for (v, n), g in consumed_queues(inv).items()
        ],
        "qsetup_broker_nodes": [{"host": h, "address": a} for h, a in broker_nodes(inv)],
        "qsetup_results": _results_vars(inv),
        # A standby beat: status reads each beat host's lock and recent sends.
        "qsetup_beat_standby": (
            {"window": inv.beat.lock_timeout + BEAT_LOOP_INTERVAL}
            if inv.beat is not None and inv.beat.redbeat
            else None
        ),
    }
    for hv in hosts.values():
        # The preflight's read asks what status asks (the admin's password is added there).
        hv["qsetup_read_params"] = read_params(hv, common, None, preflight=True)
    return {
        "all": {
            "hosts": hosts,
            "vars": common,
            "children": {
                "qsetup_services": {"hosts": service_hosts},
                # whose workers wait to answer again after RabbitMQ restarted
                # (broker/tasks/reconnecting.yml)
                "qsetup_workers": {"hosts": worker_hosts},
                "qsetup_brokers": {"hosts": {n: None for n in inv.broker.hosts if plans[n].broker}},
            },
        }
    }
