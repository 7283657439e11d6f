"""What qsetup manages on each host, recorded there so a later deploy can remove it.

The manifest (``/etc/qsetup/manifest.json``, root only) lists the units, files,
virtualenvs and code a host got from qsetup, and on the broker host the broker objects
qsetup created. A deploy compares the recorded manifest with this one and removes
what the inventory no longer has; what qsetup never recorded is left alone.
Computed from the whole desired state, whatever ``--tags`` selects, so a partial
deploy never mistakes the parts it skips for removals. Holds no secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from qsetup.artifacts.render import Artifact
from qsetup.desired.firewall import FIREWALL_UNIT, firewall_rules
from qsetup.desired.results import RESULTS_UNIT
from qsetup.desired.state import UNIT_DIR, broker_state, code_dir, units_by_host, venv_dir
from qsetup.inventory.model import Inventory

MANIFEST_PATH = "/etc/qsetup/manifest.json"
MANIFEST_VERSION = 1


def host_manifests(inv: Inventory, artifacts: Iterable[Artifact]) -> dict[str, dict[str, Any]]:
    """The manifest each host should hold after this deploy."""
    arts = list(artifacts)
    firewalls = firewall_rules(inv)
    out: dict[str, dict[str, Any]] = {}
    for host, units in units_by_host(inv).items():
        # RabbitMQ's and the result backend's units and files are Debian's packages' (their
        # configuration files included): dropping them from the inventory leaves them (the
        # result backend's server is stopped and disabled: see "results" below).
        services = [u for u in units if u.role not in ("broker", "results")]
        files = {
            str(a.path) for a in arts if a.host == host and a.role not in ("broker", "results")
        }
        files |= {str(UNIT_DIR / u.unit_file) for u in services}
        manifest: dict[str, Any] = {
            "version": MANIFEST_VERSION,
            "units": sorted(
                [{"unit": u.name, "role": u.role} for u in services], key=lambda x: x["unit"]
            ),
            "files": sorted(files),
            "venvs": sorted({str(venv_dir(u.venv)) for u in services if u.venv}),
            "code": sorted({str(code_dir(inv))} if any(u.code for u in services) else set()),
        }
        if host in firewalls:
            # The unit's ExecStop deletes the table: removing it opens the ports again.
            manifest["units"] = sorted(
                [*manifest["units"], {"unit": FIREWALL_UNIT, "role": "firewall"}],
                key=lambda x: x["unit"],
            )
            # Who may reach what: the next deploy keeps these open until the clients the
            # inventory dropped have stopped (converge.removals).
            manifest["firewall"] = {
                str(port): list(sources) for port, sources in firewalls[host].allowed.items()
            }
        if inv.results is not None and host == inv.results.host:
            # Recorded so that a host that no longer holds it stops the server.
            manifest["results"] = {"unit": RESULTS_UNIT}
        if host == inv.broker.host:
            state = broker_state(inv)
            manifest["broker"] = {
                "vhosts": sorted(state.vhosts),
                "users": sorted(u.name for u in state.users),
                "policies": sorted(f"{p.vhost}/{p.name}" for p in state.policies),
            }
        out[host] = manifest
    return out
