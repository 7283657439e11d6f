#!/usr/bin/python
"""Ansible module: put checked code in place and start a host's services, in one call.

The start play did this in four tasks (a shell swap of the code, a systemd reload, a
reset of failed units, and ``systemd_service`` once per unit, each of which runs
``systemctl show``, ``is-enabled``, ``enable`` and ``start``): on a fresh worker host
that was six to eight round trips before a worker could start. Here it is one: the
staged code (``<code_dir>.next`` and its archive) replaces the live code, systemd
reloads its unit files when they changed, units that hit their start limit are reset,
and every unit that is not enabled and active is enabled and started, with one
``systemctl`` call each for the reading, the enabling and the starting. The result
names the units this call enabled or started (``started``; with ``wait``, the same
call then waits for them to answer ping, see ``qsetup_units.wait_for``) and those it
started (``launched``: they run the new code already; a unit that was running, only
not enabled, still runs the old). RabbitMQ's files
task (broker/main.yml, through the qsetup_files action) also uses it to restart
RabbitMQ, with epmd (``restart``) when epmd's addresses changed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.qsetup_units import wait_for

DOCUMENTATION = r"""
module: qsetup_services
short_description: Swap in checked code, reload systemd and start every service, in one call
options:
  code_dir:
    description: >-
      The live code directory; <code_dir>.next and <code_dir>.next.tar (staged and
      checked) replace it and <code_dir>.tar. Omitted when no code was staged.
    type: str
  daemon_reload:
    description: Reload systemd's unit files first (they changed).
    type: bool
    default: false
  reset_failed:
    description: Units to clear from systemd's failed state (start limit) before starting.
    type: list
    elements: str
    default: []
  restart:
    description: >-
      Units to restart after the reload: stopped one after another in the order given
      (each waits for the one before it to be down), then started in one call (systemd
      orders the starts by their dependencies). A unit that still needs another while
      it stops comes before it.
    type: list
    elements: str
    default: []
  no_block:
    description: Queue the starts without waiting for them to finish (stops always wait).
    type: bool
    default: false
  units:
    description: Units to ensure enabled and active.
    type: list
    elements: str
    default: []
  wait:
    description: >-
      After the starts, in the same call: each worker unit (unit, python, user,
      env_file, node) this call started answers ping as its exact node, and Flower
      (listen: host, port, unit) listens when its unit was started (shim: the -A module;
      seconds: how long each may take). Not in check mode.
    type: dict
"""

ENABLED = ("enabled", "enabled-runtime")


def swap_code(code_dir: str) -> None:
    """Move the staged code and its archive in place; the old code goes once the new is live."""
    live = Path(code_dir)
    old = Path(f"{code_dir}.old")
    shutil.rmtree(old, ignore_errors=True)
    if live.exists() or live.is_symlink():
        live.rename(old)
    Path(f"{code_dir}.next").rename(live)
    Path(f"{code_dir}.next.tar").rename(Path(f"{code_dir}.tar"))
    shutil.rmtree(old, ignore_errors=True)


def parse_show(text: str) -> dict[str, dict[str, str]]:
    """``systemctl show -p Id,...`` output (blocks separated by blank lines) by unit Id."""
    units: dict[str, dict[str, str]] = {}
    for block in text.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            units[props["Id"]] = props
    return units


def plan_units(units: list[str], states: dict[str, dict[str, str]]) -> tuple[list[str], list[str]]:
    """The units to enable and the units to start, in the order given."""
    enable = [u for u in units if (states.get(u) or {}).get("UnitFileState") not in ENABLED]
    start = [u for u in units if (states.get(u) or {}).get("ActiveState") != "active"]
    return enable, start


def _last_line(text: str, default: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else default


def restart_in_order(module: Any, units: list[str], block: list[str], result: Any) -> None:
    """Stop ``units`` one at a time in the order given, then start them in one call."""
    for unit in units:
        rc, _out, err = module.run_command(["systemctl", "stop", "--", unit])
        if rc != 0:
            module.fail_json(msg=f"Unable to stop {unit}: {_last_line(err, 'failed')}", **result)
    rc, _out, err = module.run_command(["systemctl", *block, "start", "--", *reversed(units)])
    if rc != 0:
        module.fail_json(
            msg=f"Unable to start {', '.join(reversed(units))}: {_last_line(err, 'failed')}",
            **result,
        )


def main() -> None:
    """Swap, reload, reset, enable and start; report the units enabled or started."""
    module = AnsibleModule(
        argument_spec={
            "code_dir": {"type": "str", "required": False, "default": None},
            "daemon_reload": {"type": "bool", "default": False},
            "reset_failed": {"type": "list", "elements": "str", "default": []},
            "restart": {"type": "list", "elements": "str", "default": []},
            "no_block": {"type": "bool", "default": False},
            "units": {"type": "list", "elements": "str", "default": []},
            "wait": {"type": "dict", "default": None},
        },
        supports_check_mode=True,
    )
    params = module.params
    check = module.check_mode
    result: dict[str, Any] = {"changed": False, "started": [], "swapped": False}
    if params["code_dir"]:
        result["changed"] = result["swapped"] = True
        if not check:
            try:
                swap_code(params["code_dir"])
            except OSError as exc:
                module.fail_json(msg=f"cannot put the checked code in place: {exc}", **result)
    if params["daemon_reload"]:
        result["changed"] = True
        if not check:
            rc, _out, err = module.run_command(["systemctl", "daemon-reload"])
            if rc != 0:
                module.fail_json(msg=f"systemctl daemon-reload failed: {err.strip()}", **result)
    if params["reset_failed"] and not check:
        # Only clears a failed state; a unit that is not failed makes it complain: ignored.
        module.run_command(["systemctl", "reset-failed", "--", *params["reset_failed"]])
    block = ["--no-block"] if params["no_block"] else []
    if params["restart"]:
        result["changed"] = True
        if not check:
            restart_in_order(module, params["restart"], block, result)
    units: list[str] = params["units"]
    if units:
        rc, out, err = module.run_command(
            ["systemctl", "show", "-p", "Id,ActiveState,UnitFileState", "--", *units]
        )
        if rc != 0:
            module.fail_json(msg=f"systemctl show failed: {err.strip()}", **result)
        enable, start = plan_units(units, parse_show(out))
        result["started"] = [u for u in units if u in enable or u in start]
        result["launched"] = list(start)
        result["changed"] = result["changed"] or bool(result["started"])
        if not check and enable:
            rc, _out, err = module.run_command(["systemctl", "enable", "--", *enable])
            if rc != 0:
                module.fail_json(
                    msg=f"Unable to enable {', '.join(enable)}: {_last_line(err, 'failed')}",
                    **result,
                )
        if not check and start:
            rc, _out, err = module.run_command(["systemctl", *block, "start", "--", *start])
            if rc != 0:
                failed = [
                    u
                    for u, props in parse_show(
                        module.run_command(
                            ["systemctl", "show", "-p", "Id,ActiveState", "--", *start]
                        )[1]
                    ).items()
                    if props.get("ActiveState") != "active"
                ]
                module.fail_json(
                    msg=(
                        f"Unable to start service {', '.join(failed or start)}: "
                        f"{_last_line(err, 'failed')}"
                    ),
                    **result,
                )
    wait = params.get("wait")
    if wait and not check and result["started"]:
        wait_started(module, wait, result)
    module.exit_json(**result)


def wait_started(module: Any, wait: dict[str, Any], result: dict[str, Any]) -> None:
    """The started workers answer ping as their own nodes, a started Flower listens."""
    started = set(result["started"])
    workers = [u for u in wait.get("units") or [] if u["unit"] in started]
    listen = wait.get("listen")
    if listen and listen.get("unit") not in started:
        listen = None
    if not (workers or listen):
        return
    nodes = [str(u["node"]) for u in workers]
    silent = wait_for(
        workers, nodes, str(wait.get("shim") or ""), listen, int(wait.get("seconds") or 60)
    )
    result["answered"] = nodes
    if silent:
        result["answered"] = []
        module.fail_json(msg="; ".join(silent), silent=silent, **result)


if __name__ == "__main__":
    main()
