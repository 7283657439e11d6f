"""What an earlier deploy recorded on a host that the inventory no longer has.

Pure functions on manifests (``qsetup.manifest``): the recorded one, read from the
host by the one read, and the one this deploy writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qsetup.desired.results import RESULTS_UNIT


def _names(manifest: Mapping[str, Any] | None, key: str) -> list[Any]:
    value = (manifest or {}).get(key) or []
    return list(value) if isinstance(value, list) else []


# A manifest names only what qsetup installs; anything else in one is never removed.
_REMOVABLE_PREFIXES = ("/etc/qsetup/", "/etc/systemd/system/qsetup-", "/opt/qsetup/")


def _removable(path: str) -> bool:
    return (
        path.startswith(_REMOVABLE_PREFIXES)
        and "/../" not in path
        and not path.endswith("/..")
        and path.rstrip("/") not in {p.rstrip("/") for p in _REMOVABLE_PREFIXES}
    )


def removals(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """What an earlier deploy recorded on the host that the inventory no longer has.

    Returns units (with their role), files, virtualenvs, code directories and, on the
    broker host, broker users, vhosts and policies (``vhost/name``) to remove, and
    ``any`` (True when there is something to remove).
    """
    new_units = {u["unit"] for u in _names(new, "units") if isinstance(u, dict)}
    units = [
        u
        for u in _names(old, "units")
        if isinstance(u, dict)
        and str(u.get("unit", "")).startswith("qsetup-")
        and u["unit"] not in new_units
    ]

    def gone(key: str) -> list[str]:
        keep = set(_names(new, key))
        return sorted({str(x) for x in _names(old, key) if x not in keep and _removable(str(x))})

    old_broker = (old or {}).get("broker") or {}
    new_broker = new.get("broker") or {}

    def broker_gone(key: str) -> list[str]:
        if not isinstance(old_broker, dict):
            return []
        keep = set(new_broker.get(key) or []) if isinstance(new_broker, dict) else set()
        return sorted({str(x) for x in old_broker.get(key) or [] if x not in keep})

    # The managed result backend's server is Debian's (its unit and files stay), but a
    # host that no longer holds it stops and disables it: nothing serves results there.
    old_results, new_results = (old or {}).get("results"), new.get("results")
    if isinstance(old_results, dict) and not new_results:
        unit = str(old_results.get("unit", ""))
        if unit == RESULTS_UNIT:  # the one unit outside qsetup-* a removal may stop
            units.append({"unit": unit, "role": "results"})
    out: dict[str, Any] = {
        "units": sorted(units, key=lambda u: str(u["unit"])),
        "firewall": _firewall_gone(old, new),
        "files": gone("files"),
        "venvs": gone("venvs"),
        "code": gone("code"),
        "broker_users": broker_gone("users"),
        "broker_vhosts": broker_gone("vhosts"),
        "broker_policies": broker_gone("policies"),
    }
    out["any"] = any(out[k] for k in list(out))
    return out


def _firewall_gone(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, list[str]]:
    """Sources the recorded firewall allowed that the new one no longer does, per port.

    Only while the host keeps a firewall: a host whose firewall goes removes its unit
    (whose stop deletes the table) instead.
    """
    before, after = (old or {}).get("firewall"), new.get("firewall")
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return {}
    out = {}
    for port, sources in before.items():
        if not isinstance(sources, list):
            continue
        keep = set(after.get(port) or [])
        gone = sorted({str(s) for s in sources} - keep)
        if gone:
            out[str(port)] = gone
    return out


def manifest_pending(new: Mapping[str, Any], gone: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest to record before removals: the new one plus what is still to remove."""
    pending = dict(new)
    pending["units"] = sorted([*new.get("units", []), *gone["units"]], key=lambda u: str(u["unit"]))
    for key in ("files", "venvs", "code"):
        pending[key] = sorted({*new.get(key, []), *gone[key]})
    if gone.get("firewall") and isinstance(new.get("firewall"), Mapping):
        firewall = {str(k): list(v) for k, v in new["firewall"].items()}
        for port, sources in gone["firewall"].items():
            firewall[port] = sorted({*firewall.get(port, []), *sources})
        pending["firewall"] = firewall
    if gone["broker_users"] or gone["broker_vhosts"] or gone["broker_policies"]:
        broker = dict(new.get("broker") or {})
        broker["users"] = sorted({*broker.get("users", []), *gone["broker_users"]})
        broker["vhosts"] = sorted({*broker.get("vhosts", []), *gone["broker_vhosts"]})
        broker["policies"] = sorted({*broker.get("policies", []), *gone["broker_policies"]})
        pending["broker"] = broker
    return pending
