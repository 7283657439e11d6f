"""Action plugin qsetup_start: start a host's services, wait for them, queue its restart.

The start play's one task per host (celery/start.yml). Four things that were four
task results (one of them a play of its own) each host paid for:

0. The code gate: when the app check (celery/main.yml) failed on any host of
   the deploy, every host stops here, before any swaps its code or starts a service
   (the old code keeps running). Read from every host's ``qsetup_service_files`` on the
   controller: no round trip.
1. ``qsetup_services`` (library/): the checked code replaces the live code, systemd
   reloads changed unit files, units stuck at their start limit are reset, and every
   unit that is not enabled and active is enabled and started. Skipped (no round trip)
   when none of that is needed: a running service whose files changed restarts in the
   rolling play instead.
2. In the same module run (one Python start on the host, not two): the workers it
   started answer ping as their own exact node (``name-N@<the hostname the host
   reported>``), Flower listens (``qsetup_units.wait_for``, which ``qsetup_wait_nodes``
   runs after a rolling restart too). Not in check mode.
3. The host joins the group ``qsetup_rolling`` (as ``group_by`` would) when a service
   that was already running has new code, packages, environment or unit: site.yml's
   rolling play restarts it, one host at a time. Which ones: ``units_to_restart``.

The result holds ``started`` (the units enabled or started), ``answered`` (the nodes
that answered) and ``restart`` (the units the rolling play restarts: a unit that was
running but not enabled is enabled here and still restarts there, onto the new code).
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

ROLLING = "qsetup_rolling"


def app_check_failed(task_vars: dict[str, Any]) -> list[str]:
    """The hosts of this deploy whose app check (``qsetup_service_files``) found a problem.

    A failed app check fails its host, so only the play's hosts that are no longer in it
    (``ansible_play_hosts_all`` less ``ansible_play_hosts``) can have one: only their
    variables are read (reading another host's variables costs Ansible a vars
    computation; every host of the play reading every other's was O(hosts²)).
    """
    hostvars = task_vars.get("hostvars") or {}
    everyone = task_vars.get("ansible_play_hosts_all")
    if everyone is None:
        everyone = (task_vars.get("groups") or {}).get("all", [])
    left = set(task_vars.get("ansible_play_hosts") or [])
    failed = []
    for host in everyone:
        if host in left or host not in hostvars:
            continue
        check = hostvars[host].get("qsetup_service_files")
        if isinstance(check, dict) and check.get("problems"):
            failed.append(str(host))
    return failed


class ActionModule(ActionBase):
    """Run qsetup_services, which waits for what it started; queue a restart."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(
        (
            "code_dir",
            "daemon_reload",
            "reset_failed",
            "units",
            "services",
            "hostname",
            "shim",
            "flower",
            "code_changed",
            "changed_venvs",
            "changed_services",
        )
    )

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start, wait, queue; the merged result (the first failure stops it)."""
        from qsetup.converge.view import units_to_restart

        result: dict[str, Any] = super().run(tmp, task_vars)
        del tmp
        failed_hosts = app_check_failed(task_vars or {})
        if failed_hosts:
            result.update(
                failed=True,
                changed=False,
                msg=f"not restarted: the app does not load on {', '.join(failed_hosts)}; "
                "the old code keeps running",
            )
            return result
        args = self._task.args
        services = list(args.get("services") or [])
        code_dir = args.get("code_dir")
        start_args = {
            "daemon_reload": bool(args.get("daemon_reload")),
            "reset_failed": list(args.get("reset_failed") or []),
            "units": list(args.get("units") or []),
        }
        if code_dir:
            start_args["code_dir"] = str(code_dir)
        if not self._task.check_mode:
            start_args["wait"] = self._wait_args(args, services, list(args.get("units") or []))
        started: list[str] = []
        launched: list[str] = []
        result.update(changed=False, started=started, answered=[])
        if code_dir or start_args["daemon_reload"] or start_args["units"]:
            ran = self._execute_module(
                module_name="qsetup_services", module_args=start_args, task_vars=task_vars
            )
            ran.pop("invocation", None)
            started = list(ran.get("started") or [])
            launched = list(ran.get("launched") or [])
            result.update(
                changed=bool(ran.get("changed")),
                started=started,
                answered=list(ran.get("answered") or []),
            )
            if ran.get("failed"):
                result.update(failed=True, msg=ran.get("msg", "qsetup_services failed"))
                return result
        result["restart"] = [
            s["unit"]
            for s in units_to_restart(
                services,
                launched,
                bool(args.get("code_changed")),
                list(args.get("changed_venvs") or []),
                list(args.get("changed_services") or []),
            )
        ]
        if result["restart"]:
            result["add_group"] = ROLLING
            result["parent_groups"] = ["all"]
        return result

    def _wait_args(
        self, args: dict[str, Any], services: list[dict[str, Any]], starting: list[str]
    ) -> dict[str, Any]:
        """What qsetup_services waits for once it started, in the same module run.

        Each worker's exact node (``name-N@<the hostname the host reported>``), Flower's
        port; the module waits only for the units it started.
        """
        from qsetup.desired.names import expand_node_name

        workers = [s for s in services if s.get("role") == "workers"]
        hostname = str(args.get("hostname") or "")
        if not hostname and any(s["unit"] in starting for s in workers):
            raise AnsibleActionFail("qsetup_start: hostname is required to wait for workers")
        wait: dict[str, Any] = {
            "units": [
                {
                    "unit": s["unit"],
                    "python": s["python"],
                    "user": s["user"],
                    "env_file": s["env_file"],
                    "node": expand_node_name(str(s["node_pattern"]), 1, hostname),
                }
                for s in workers
                if hostname
            ],
            "shim": str(args.get("shim") or ""),
        }
        flower = args.get("flower")
        unit = next((s["unit"] for s in services if s.get("role") == "flower"), None)
        if flower and unit:
            wait["listen"] = {"host": flower["host"], "port": int(flower["port"]), "unit": unit}
        return wait
