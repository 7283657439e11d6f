"""Filters that let a no-op deploy be a few comparisons instead of many module runs.

Each takes what one read-only call found on a host (a ``find`` over qsetup's files,
the broker's ``/api/definitions``) and what qsetup wants, and returns only what
differs. They return names and paths, never a secret.
"""

from __future__ import annotations

import re
from typing import Any


def _found_by_path(found: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    files = (found or {}).get("files") or []
    return {f["path"]: f for f in files if isinstance(f, dict) and "path" in f}


def _same_meta(now: dict[str, Any], want: dict[str, Any]) -> bool:
    return (
        str(now.get("mode", "")).lstrip("0") == str(want.get("mode", "")).lstrip("0")
        and now.get("pw_name") == want.get("owner")
        and now.get("gr_name") == want.get("group")
    )


def qsetup_stale_files(
    files: list[dict[str, Any]], found: dict[str, Any] | None, sums: dict[str, str]
) -> list[str]:
    """Destinations whose content, mode, owner or group differ from what qsetup renders."""
    now = _found_by_path(found)
    stale = []
    for f in files:
        cur = now.get(f["dest"])
        if cur is None or cur.get("checksum") != sums.get(f["src"]) or not _same_meta(cur, f):
            stale.append(f["dest"])
    return stale


def qsetup_stale_dirs(dirs: list[dict[str, Any]], found: dict[str, Any] | None) -> list[str]:
    """Directories that are missing or have another mode, owner or group."""
    now = _found_by_path(found)
    stale = []
    for d in dirs:
        cur = now.get(d["path"])
        if cur is None or not cur.get("isdir") or not _same_meta(cur, d):
            stale.append(d["path"])
    return stale


def qsetup_stale_venvs(venvs: list[dict[str, Any]], found: dict[str, Any] | None) -> list[str]:
    """Virtualenvs whose marker (what pip last installed there) differs from the plan."""
    now = _found_by_path(found)
    return [
        v["name"] for v in venvs if (now.get(v["marker"]) or {}).get("checksum") != v["marker_sum"]
    ]


def _password_matches(user: dict[str, Any], password: str) -> bool:
    from qsetup.converge.passwords import password_matches

    return password_matches(user, password)


def _tags(value: Any) -> set[str]:
    if isinstance(value, list):
        return {str(t) for t in value if t}
    return {t for t in str(value or "").split(",") if t}


def qsetup_broker_drift(
    definitions: dict[str, Any] | None, wanted: dict[str, Any], secrets: dict[str, str]
) -> dict[str, Any]:
    """Compare the broker's definitions with the plan; return what must be applied.

    Returns:
        ``vhosts`` to create, ``users`` whose existence, tags or permissions differ,
        ``passwords`` (user names) whose password differs, ``policies`` as
        ``vhost/name`` keys, and ``guest`` (True when guest must be deleted).
    """
    defs = definitions or {}
    vhosts_now = {v.get("name") for v in defs.get("vhosts") or []}
    users_now = {u.get("name"): u for u in defs.get("users") or []}
    perms_now: dict[str, dict[str, tuple[str, str, str]]] = {}
    for p in defs.get("permissions") or []:
        perms_now.setdefault(p["user"], {})[p["vhost"]] = (p["configure"], p["write"], p["read"])
    topics_now: dict[str, dict[tuple[str, str], tuple[str, str]]] = {}
    for t in defs.get("topic_permissions") or []:
        topics_now.setdefault(t["user"], {})[(t["vhost"], t["exchange"])] = (t["write"], t["read"])
    policies_now = {(p.get("vhost"), p.get("name")): p for p in defs.get("policies") or []}

    users, passwords = [], []
    for u in wanted.get("users") or []:
        name = u["name"]
        cur = users_now.get(name)
        if cur is None:
            users.append(name)
            continue
        perms = {
            p["vhost"]: (p["configure_priv"], p["write_priv"], p["read_priv"])
            for p in u.get("permissions") or []
        }
        if not perms:
            # community.rabbitmq gives a user without permissions "^$" rights on "/".
            perms = {"/": ("^$", "^$", "^$")}
        topics = {
            (t["vhost"], t["exchange"]): (t["write_priv"], t["read_priv"])
            for t in u.get("topic_permissions") or []
        }
        if (
            _tags(cur.get("tags")) != _tags(u.get("tags"))
            or perms_now.get(name, {}) != perms
            or topics_now.get(name, {}) != topics
        ):
            users.append(name)
        if not _password_matches(cur, secrets.get(u["secret"], "")):
            passwords.append(name)

    policies = []
    for p in wanted.get("policies") or []:
        cur = policies_now.get((p["vhost"], p["name"]))
        if (
            cur is None
            or cur.get("pattern") != p["pattern"]
            or cur.get("apply-to") != p["apply_to"]
            or int(cur.get("priority", 0)) != int(p["priority"])
            or cur.get("definition") != p["definition"]
        ):
            policies.append(f"{p['vhost']}/{p['name']}")

    return {
        "vhosts": [v for v in wanted.get("vhosts") or [] if v not in vhosts_now],
        "users": users,
        "passwords": passwords,
        "policies": policies,
        "guest": bool(wanted.get("delete_guest")) and "guest" in users_now,
    }


def qsetup_broker_changes(
    drift: dict[str, Any], wanted: dict[str, Any], removals: dict[str, Any]
) -> dict[str, Any]:
    """What qsetup_broker_objects applies: ``drift`` (qsetup_broker_drift) and the removals.

    Users whose existence, tags or permissions differ get their permissions set too; users
    whose password alone differs get the password and tags. No password is in the result
    (qsetup_broker_passwords gives them to the module's no_log argument).
    """
    by_name = {u["name"]: u for u in wanted.get("users") or []}
    users = []
    for name in dict.fromkeys([*drift.get("users", []), *drift.get("passwords", [])]):
        u = by_name[name]
        full = name in drift.get("users", [])
        # A user without permissions gets "^$" on "/" (what community.rabbitmq gave it,
        # and what qsetup_broker_drift expects).
        perms = u.get("permissions") or [
            {"vhost": "/", "configure_priv": "^$", "write_priv": "^$", "read_priv": "^$"}
        ]
        users.append(
            {
                "name": name,
                "tags": u.get("tags", ""),
                "permissions": perms if full else None,
                "topic_permissions": (u.get("topic_permissions") or []) if full else None,
            }
        )
    keys = set(drift.get("policies") or [])
    return {
        "vhosts": list(drift.get("vhosts") or []),
        "users": users,
        "policies": [
            p for p in wanted.get("policies") or [] if f"{p['vhost']}/{p['name']}" in keys
        ],
        "delete_guest": bool(drift.get("guest")),
        "delete_users": [
            u for u in removals.get("broker_users") or [] if u != wanted.get("admin_user")
        ],
        "delete_policies": list(removals.get("broker_policies") or []),
        "delete_vhosts": list(removals.get("broker_vhosts") or []),
    }


def qsetup_broker_passwords(
    changes: dict[str, Any], wanted: dict[str, Any], secrets: dict[str, str]
) -> dict[str, str]:
    """The password (from the secrets file) of each user ``changes`` sets."""
    secret_of = {u["name"]: u["secret"] for u in wanted.get("users") or []}
    return {u["name"]: secrets.get(secret_of[u["name"]], "") for u in changes["users"]}


def qsetup_services_of_stale(files: list[dict[str, Any]], stale: list[str]) -> list[str]:
    """The services (unit or unit template) whose installed files were stale."""
    stale_set = set(stale)
    return sorted({f["service"] for f in files if f["dest"] in stale_set})


def qsetup_marker_files(venv_results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The marker files (for qsetup_files) of the virtualenvs whose build finished.

    ``venv_results`` are async_status results whose ``item.item`` is the plan's venv.
    """
    return [
        {
            "dest": r["item"]["item"]["marker"],
            "content": r["item"]["item"]["marker_content"],
            "owner": "root",
            "group": "root",
            "mode": "0644",
        }
        for r in venv_results
        if "finished" in r
    ]


def qsetup_units_in_state(
    services: list[dict[str, Any]], states: dict[str, dict[str, str]] | None, active: str
) -> list[str]:
    """The services' units whose ActiveState (as the preflight read it) is ``active``."""
    now = states or {}
    return [s["unit"] for s in services if (now.get(s["unit"]) or {}).get("ActiveState") == active]


def qsetup_units_not_running(
    services: list[dict[str, Any]], states: dict[str, dict[str, str]] | None
) -> list[dict[str, Any]]:
    """Services whose unit the preflight did not see both active and enabled."""
    now = states or {}
    out = []
    for s in services:
        props = now.get(s["unit"]) or {}
        if props.get("ActiveState") != "active" or props.get("UnitFileState") not in (
            "enabled",
            "enabled-runtime",
        ):
            out.append(s)
    return out


def qsetup_units_to_restart(
    services: list[dict[str, Any]],
    started: list[str] | None,
    code_changed: bool,
    changed_venvs: list[str],
    changed_services: list[str],
) -> list[dict[str, Any]]:
    """Services already running whose code, packages, environment or unit changed.

    A service that the deploy has just started (``started``: the units qsetup_services
    enabled or started) runs the new version already.
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


def qsetup_node_name(pattern: str, hostname: str) -> str:
    """The exact Celery node name of a unit (``%i`` already filled) on a host."""
    from qsetup.desired.names import expand_node_name

    return expand_node_name(str(pattern), 1, str(hostname))


def qsetup_ping_answered(stdout: str, node: str) -> bool:
    """True when ``celery inspect ping`` output holds an OK answer from exactly ``node``."""
    for line in str(stdout).splitlines():
        text = line.strip()
        if text.startswith("->"):
            name, _, rest = text[2:].strip().partition(":")
            if name.strip() == node and "OK" in rest:
                return True
    return False


def qsetup_silent_units(ping: dict[str, Any] | None, hostname: str) -> list[dict[str, Any]]:
    """The units whose exact node did not answer in a looped ping result."""
    silent = []
    for res in (ping or {}).get("results") or []:
        if not isinstance(res, dict) or res.get("skipped") or "item" not in res:
            continue
        unit = res["item"]
        node = qsetup_node_name(unit["node_pattern"], hostname)
        if not qsetup_ping_answered(str(res.get("stdout", "")), node):
            silent.append({**unit, "node": node})
    return silent


_SYSTEMD_NOISE = (
    "Started ",
    "Stopped ",
    "Stopping ",
    "Starting ",
    "Failed to start ",
    "Scheduled restart job",
    "Start request repeated",
    "Failed with result",
    "Main process exited",
    "Consumed ",
    "Deactivated successfully",
    "Failed to kill control group",
)


_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@'\"]*):[^\s@'\"]*@")


def redact_urls(text: str) -> str:
    """Replace the password in every ``scheme://user:password@`` with ``***``."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


def _python_error(journal: str) -> list[str]:
    """The last lines of a unit's journal that are not systemd's own (the Python error).

    A password in a URL (Celery logs broker URLs in some warnings) is replaced by ***.
    """
    lines = [redact_urls(x.strip()) for x in journal.splitlines() if x.strip()]
    ours = [x for x in lines if not any(n in x for n in _SYSTEMD_NOISE)]
    # The last traceback's file line and exception line say what broke.
    for i in range(len(ours) - 1, -1, -1):
        if ours[i].startswith("Traceback"):
            tail = ours[i:]
            files = [x for x in tail if x.startswith('File "')]
            return [*files[-1:], *tail[-2:]] if files else tail[-3:]
    return ours[-4:]


def qsetup_journal_tail(journal: dict[str, Any] | None) -> list[str]:
    """One line per silent unit: unit, node, and the last lines its journal holds."""
    lines = []
    for res in (journal or {}).get("results") or []:
        if not isinstance(res, dict) or "item" not in res:
            continue
        unit = res["item"]
        tail = _python_error(str(res.get("stdout", "")))
        lines.append(
            f"{unit['unit']} (node {unit['node']}) does not answer ping; its journal ends: "
            + " | ".join(tail)
        )
    return lines


def qsetup_code_check_problems(check: dict[str, Any] | None) -> list[str]:
    """One line per service whose app did not load, with the end of the Python error."""
    problems = []
    for res in (check or {}).get("results") or []:
        if not isinstance(res, dict) or res.get("skipped") or "item" not in res:
            continue
        out = str(res.get("stdout", ""))
        if res.get("rc") == 0 and "qsetup-app-loads" in out:
            continue
        unit = res["item"]
        error = _python_error(str(res.get("stderr", "")) + "\n" + out)
        problems.append(
            f"the app does not load for {unit['unit']} ({unit['python']}): "
            + (" | ".join(error) or f"exit code {res.get('rc')}")
        )
    return problems


def qsetup_removals(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """What an earlier deploy recorded on the host that the inventory no longer has."""
    from qsetup.converge.removals import removals

    return removals(old, new)


def qsetup_manifest_pending(new: dict[str, Any], removals: dict[str, Any]) -> dict[str, Any]:
    """The manifest to record before removals: the new one plus what is still to remove."""
    from qsetup.converge.removals import manifest_pending

    return manifest_pending(new, removals)


def qsetup_host_clean(host: dict[str, Any], plan: dict[str, Any]) -> bool:
    """True when the preflight's read shows nothing on this host differs from the plan.

    ``host`` is what qsetup_host_facts returned; ``plan`` holds the host's planned files,
    broker files, file checksums, directories, virtualenvs, code, OS users and groups,
    services, broker state, secrets, manifest and removals. A clean host has nothing to
    install, start, restart or remove, so a deploy can stop reading it after the preflight.
    """
    found = host.get("found") or {}
    files = list(plan["files"]) + list(plan["broker_files"])
    sums = plan["sums"]
    if qsetup_stale_files(files, found, sums) or qsetup_stale_dirs(plan["dirs"], found):
        return False
    if qsetup_stale_venvs(plan["venvs"], found):
        return False
    if plan["ship_code"]:
        by_path = _found_by_path(found)
        tar = by_path.get(f"{plan['code_dir']}.tar") or {}
        if tar.get("checksum") != sums.get("app.tar") or plan["code_dir"] not in by_path:
            return False
    if set(host.get("packages") or []) - set(host.get("installed") or []):
        return False
    if set(plan["os_groups"]) - set(host.get("groups") or []):
        return False
    if {u["user"] for u in plan["os_users"]} - set(host.get("users") or []):
        return False
    removals = plan["removals"]
    if removals["any"] or qsetup_manifest_pending(plan["manifest"], removals) != host.get(
        "manifest"
    ):
        return False
    units = [s["unit"] for s in plan["services"]]
    if plan["is_broker"]:
        units.append("rabbitmq-server.service")
    states = host.get("units") or {}
    for unit in units:
        props = states.get(unit) or {}
        if props.get("ActiveState") != "active" or props.get("UnitFileState") != "enabled":
            return False
    if plan["is_broker"]:
        definitions = host.get("definitions")
        if not definitions:
            return False
        drift = qsetup_broker_drift(definitions, plan["broker"], plan["secrets"])
        if drift["guest"] or any(drift[k] for k in ("vhosts", "users", "passwords", "policies")):
            return False
        # Every node of the cluster (one for a single node) known and running.
        cluster = host.get("cluster") or []
        if len(cluster) != plan.get("cluster_size", 1) or not all(n["running"] for n in cluster):
            return False
    return True


class FilterModule:
    """Ansible's entry point for filter plugins."""

    def filters(self) -> dict[str, Any]:
        """Name the filters."""
        return {
            "qsetup_stale_files": qsetup_stale_files,
            "qsetup_stale_dirs": qsetup_stale_dirs,
            "qsetup_stale_venvs": qsetup_stale_venvs,
            "qsetup_broker_drift": qsetup_broker_drift,
            "qsetup_units_to_restart": qsetup_units_to_restart,
            "qsetup_node_name": qsetup_node_name,
            "qsetup_ping_answered": qsetup_ping_answered,
            "qsetup_silent_units": qsetup_silent_units,
            "qsetup_journal_tail": qsetup_journal_tail,
            "qsetup_code_check_problems": qsetup_code_check_problems,
            "qsetup_removals": qsetup_removals,
            "qsetup_services_of_stale": qsetup_services_of_stale,
            "qsetup_marker_files": qsetup_marker_files,
            "qsetup_broker_changes": qsetup_broker_changes,
            "qsetup_broker_passwords": qsetup_broker_passwords,
            "qsetup_units_in_state": qsetup_units_in_state,
            "qsetup_host_clean": qsetup_host_clean,
            "qsetup_units_not_running": qsetup_units_not_running,
            "qsetup_manifest_pending": qsetup_manifest_pending,
        }
