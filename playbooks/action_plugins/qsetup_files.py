"""Action plugin for qsetup_files (library/): read the files' contents on the controller.

Each file's ``src`` is read from ``files_dir`` (qsetup's rendered files, on the
controller) or its ``content`` is taken as given, and the module gets them all in one
call. With ``packages`` (Debian package names) the missing packages are installed
first, by the qsetup_files module itself, in the same module run as the host's users,
directories and files (one Python start on the host instead of two). With
``wait_jobs`` (the virtualenv builds started in the background, as their async
results) the same module run then waits on the host for each build
(module_utils/qsetup_jobs.py) and writes what each virtualenv now holds (its marker
file) with the other files; ``venvs_changed`` names the virtualenvs the builds changed.
A build still running after two minutes makes the module answer ``pending`` and the
action call it again (packages already installed), up to an hour.
With ``restart`` (qsetup_services' arguments) the services those files
configure are restarted by qsetup_services (library/) in the same task when the files
changed (RabbitMQ's: one task result where a handler was another); ``restarted`` then
holds its answer. With ``firewall`` (qsetup_firewall's arguments) qsetup's nftables
ruleset is loaded last (qsetup_firewall, library/: nftables is among the packages
installed first), in the same task; ``firewall`` then holds its answer. The contents
travel as module arguments: on the module's stdin with pipelining, never in a process
list; the module's ``invocation`` (which would repeat them) is dropped from the
result, so no content reaches events, logs or the run directory.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

_KEEP = ("dest", "owner", "group", "mode", "secret")


class ActionModule(ActionBase):
    """Read file contents here, then run the qsetup_files module once on the host."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(
        (
            "packages",
            "groups",
            "users",
            "dirs",
            "files",
            "files_dir",
            "wait_jobs",
            "restart",
            "firewall",
        )
    )
    WAIT_ROUNDS = 30
    """How many two-minute waits a build gets (the async job's own limit is 30 minutes)."""

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run the module with every file's content; return its result without the args."""
        result: dict[str, Any] = super().run(tmp, task_vars)
        args = self._task.args
        packages = list(args.get("packages") or [])
        files_dir = args.get("files_dir")
        files = [self._entry(item, files_dir) for item in args.get("files") or []]
        jobs = [
            {
                "jid": job["ansible_job_id"],
                "results_file": job["results_file"],
                "name": job["item"]["name"],
                "marker": self._entry(
                    {
                        "dest": job["item"]["marker"],
                        "content": job["item"]["marker_content"],
                        "owner": "root",
                        "group": "root",
                        "mode": "0644",
                    },
                    files_dir,
                ),
            }
            for job in args.get("wait_jobs") or []
        ]
        if not (packages or files or jobs or args.get("groups") or args.get("users")
                or args.get("dirs")):  # fmt: skip
            result.setdefault("changed", False)
            return self._firewall(result, task_vars)  # no files: no round trip for them
        module_args = {
            "packages": packages,
            "groups": list(args.get("groups") or []),
            "users": [{"user": u["user"], "group": u["group"]} for u in args.get("users") or []],
            "dirs": list(args.get("dirs") or []),
            "files": files,
            "jobs": jobs,
        }
        installed: list[str] = []
        for _ in range(self.WAIT_ROUNDS):
            module_result = self._execute_module(
                module_name="qsetup_files", module_args=module_args, task_vars=task_vars
            )
            installed += list(module_result.get("installed") or [])
            if not module_result.get("pending"):
                break
            module_args["packages"] = []  # installed by the first call
        else:
            names = ", ".join(str(j["name"]) for j in jobs)
            module_result = {"failed": True, "msg": f"building the virtualenvs {names}: did "
                             f"not finish in {self.WAIT_ROUNDS * 2} minutes"}  # fmt: skip
        module_result.pop("invocation", None)
        restart = args.get("restart")
        if restart and module_result.get("changed") and not module_result.get("failed"):
            restarted = self._execute_module(
                module_name="qsetup_services", module_args=dict(restart), task_vars=task_vars
            )
            restarted.pop("invocation", None)
            module_result["restarted"] = restarted
            if restarted.get("failed"):
                module_result.update(failed=True, msg=restarted.get("msg", "the restart failed"))
        module_result["changed"] = bool(module_result.get("changed") or installed)
        module_result["venvs_changed"] = list(module_result.get("venvs_changed") or [])
        if installed:
            module_result["installed"] = installed
        result.update(module_result)
        if result.get("failed"):
            return result
        return self._firewall(result, task_vars)

    def _firewall(self, result: dict[str, Any], task_vars: dict[str, Any] | None) -> dict[str, Any]:
        """Load qsetup's firewall last when asked (``firewall``), into the same result."""
        firewall = self._task.args.get("firewall")
        if not firewall:
            return result
        loaded = self._execute_module(
            module_name="qsetup_firewall", module_args=dict(firewall), task_vars=task_vars
        )
        loaded.pop("invocation", None)
        result["firewall"] = loaded
        result["changed"] = bool(result.get("changed")) or bool(loaded.get("changed"))
        if loaded.get("failed"):
            result.update(failed=True, msg=loaded.get("msg", "the firewall did not load"))
        return result

    @staticmethod
    def _entry(item: dict[str, Any], files_dir: Any) -> dict[str, Any]:
        """The module's entry for one file: its content read here, base64."""
        entry = {k: item[k] for k in _KEEP if k in item}
        if "src" in item:
            if not files_dir:
                raise AnsibleActionFail("qsetup_files: src given without files_dir")
            path = Path(str(files_dir)) / str(item["src"])
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise AnsibleActionFail(f"qsetup_files: cannot read {path}: {exc}") from None
        else:
            data = str(item.get("content", "")).encode("utf-8")
        entry["content"] = base64.b64encode(data).decode("ascii")
        return entry
