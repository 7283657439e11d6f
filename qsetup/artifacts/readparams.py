"""The one read's parameters for a host (``playbooks/module_utils/qsetup_read.py``).

The plan records them per host (``qsetup_read_params``) for the deploy's preflight;
status and the deploy's first read build them with the same function, so every caller
asks the hosts the same questions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qsetup.desired.beat import ACQUIRED, RELEASED, SENDING
from qsetup.desired.firewall import FIREWALL_UNIT, RULESET_PATH, TABLE
from qsetup.desired.results import RESULTS_PACKAGE, RESULTS_UNIT
from qsetup.desired.state import (
    BEAT_UNIT,
    RABBIT_DATA_DIR,
    RABBIT_DATA_NEEDS,
    UNIT_PREFIX,
    venv_dir,
)


def read_params(
    hv: Mapping[str, Any],
    common: Mapping[str, Any],
    admin_password: str | None,
    preflight: bool = False,
    results_password: str | None = None,
) -> dict[str, Any]:
    """The one read's parameters for a host, from its plan variables.

    ``admin_password``: the broker admin's password, for the broker's definitions and
    cluster on a broker node (None: left to the caller; the plan holds no secret).
    ``preflight``: the deploy's read, which also asks whether apt can install a missing
    package (refreshing apt's lists when they are older than a day) and checks minimum
    package versions; status never refreshes anything. ``results_password``: qsetup's
    reader's password on the managed result backend's host, for its state and ACL users
    (None: left to the caller).
    """
    services = list(hv.get("qsetup_services") or ())
    broker = bool(hv.get("qsetup_is_broker"))
    executables = list(
        dict.fromkeys(str(s["celery_argv"][0]) for s in services if s.get("celery_argv"))
    )
    dists = [{"prefix": e.rsplit("/bin/", 1)[0], "name": "celery"} for e in executables]
    if any(s.get("role") == "flower" for s in services):
        dists.append({"prefix": str(venv_dir("flower")), "name": "flower"})
    params: dict[str, Any] = {
        "packages": dict(hv.get("qsetup_apt_packages") or {}),
        "releases": dict(common["qsetup_releases"]),
        "manifest": str(common["qsetup_manifest_path"]),
        "find_paths": list(hv.get("qsetup_find_paths") or ()),
        "find_patterns": list(hv.get("qsetup_find_patterns") or ()),
        "units": [str(s["unit"]) for s in services]
        + (["rabbitmq-server.service"] if broker else []),
        "discover": UNIT_PREFIX,
        "executables": executables,
        "dists": dists,
        "deb_versions": ["rabbitmq-server"] if broker else [],
        "check_candidates": preflight,
        "min_versions": list(hv.get("qsetup_min_versions") or ()) if preflight else [],
    }
    if hv.get("qsetup_firewall") is not None:
        params["units"].append(FIREWALL_UNIT)
        params["firewall"] = {"table": TABLE, "path": RULESET_PATH}
    results = common.get("qsetup_results")
    if hv.get("qsetup_is_results") and results:
        params["units"].append(RESULTS_UNIT)
        params["deb_versions"].append(RESULTS_PACKAGE)
        params["results"] = {
            "address": str(results["address"]),
            "port": int(results["port"]),
            "tls": bool(results["tls"]),
            "user": str(results["admin_user"]),
        }
        if results_password is not None:
            params["results"]["password"] = results_password
    standby = common.get("qsetup_beat_standby")
    if standby and any(s.get("unit") == BEAT_UNIT for s in services):
        params["beat_log"] = {
            "unit": BEAT_UNIT,
            "acquired": ACQUIRED,
            "released": RELEASED,
            "sending": SENDING,
            "window": int(standby["window"]),
        }
    if broker:
        params["hosts_marker"] = str(common["qsetup_hosts_marker"])
        params["rabbit_data"] = {"dir": RABBIT_DATA_DIR, "needs": dict(RABBIT_DATA_NEEDS)}
        # What rabbit@<short hostname> resolves to there: epmd must listen on it.
        params["name_addresses"] = True
        if admin_password is not None:
            wanted = common["qsetup_broker"]
            params["broker_api"] = {
                "port": int(wanted["management_port"]),
                "user": str(wanted["admin_user"]),
                "password": admin_password,
            }
    return params
