"""Action plugin for qsetup_files (library/): read the files' contents on the controller.

Each file's ``src`` is read from ``files_dir`` (qsetup's rendered files, on the
controller) or its ``content`` is taken as given, and the module gets them all in one
call. With ``packages`` (Debian package names) the missing packages are installed
first, in the same task: by the qsetup_files module itself, in the same module run as
the host's users, directories and manifest (one Python start on the host instead of
two), or, when builds are to be waited for first, by qsetup_packages (library/). With
``wait_jobs`` (the virtualenv builds started in the background, as their async
results) it first waits on the host for each build (qsetup_job_wait, library/: one
round trip per two minutes of building) and records what each virtualenv now holds
(its marker file) with the other files; ``venvs_changed`` names the virtualenvs the
builds changed. With ``restart`` (qsetup_services' arguments) the services those files
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
        # Without builds to wait for first, the packages go in the files module's own run
        # (one Python start on the host, not two); with them, before the wait as before.
        merged = packages if not args.get("wait_jobs") else []
        if packages and not merged:
            installed = self._execute_module(
                module_name="qsetup_packages", module_args={"names": packages}, task_vars=task_vars
            )
            installed.pop("invocation", None)
            if installed.get("failed"):
                result.update(installed)
                return result
            result["installed"] = list(installed.get("installed") or [])
            result["changed"] = bool(installed.get("changed"))
        files_dir = args.get("files_dir")
        files = []
        markers, changed_venvs, failure = self._wait(args.get("wait_jobs") or [], task_vars)
        if failure is not None:
            result.update(failed=True, msg=failure)
            return result
        result["venvs_changed"] = changed_venvs
        for item in [*(args.get("files") or []), *markers]:
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
            files.append(entry)
        if not (merged or files or args.get("groups") or args.get("users") or args.get("dirs")):
            result.setdefault("changed", False)
            return self._firewall(result, task_vars)  # no files: no round trip for them
        module_result = self._execute_module(
            module_name="qsetup_files",
            module_args={
                "packages": merged,
                "groups": list(args.get("groups") or []),
                "users": [
                    {"user": u["user"], "group": u["group"]} for u in args.get("users") or []
                ],
                "dirs": list(args.get("dirs") or []),
                "files": files,
            },
            task_vars=task_vars,
        )
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
        module_result["changed"] = (
            bool(module_result.get("changed")) or bool(result.get("changed")) or bool(changed_venvs)
        )
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

    def _wait(
        self, jobs: list[dict[str, Any]], task_vars: dict[str, Any] | None
    ) -> tuple[list[dict[str, Any]], list[str], str | None]:
        """Wait for each build: its marker file, the venvs it changed, or why it failed."""
        markers: list[dict[str, Any]] = []
        changed: list[str] = []
        for job in jobs:
            venv = job["item"]
            answer: dict[str, Any] = {}
            for _ in range(self.WAIT_ROUNDS):
                answer = self._execute_module(
                    module_name="qsetup_job_wait",
                    module_args={"jid": job["ansible_job_id"], "results_file": job["results_file"]},
                    task_vars=task_vars,
                )
                if answer.get("finished") or answer.get("failed"):
                    break
            if answer.get("failed") or not answer.get("finished"):
                why = answer.get("msg") or "did not finish in time"
                return [], [], f"building the virtualenv {venv['name']} failed: {why}"
            if answer.get("changed"):
                changed.append(str(venv["name"]))
            markers.append(
                {
                    "dest": venv["marker"],
                    "content": venv["marker_content"],
                    "owner": "root",
                    "group": "root",
                    "mode": "0644",
                }
            )
        return markers, changed, None
