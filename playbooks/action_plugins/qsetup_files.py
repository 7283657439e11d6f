"""Action plugin for qsetup_files (library/): read the files' contents on the controller.

Each file's ``src`` is read from ``files_dir`` (qsetup's rendered files, on the
controller) or its ``content`` is taken as given, and the module gets them all in one
call, with whatever else the task asks of the same module run (library/qsetup_files.py
lists the order): ``venv_packages`` and ``venvs`` (the virtualenvs that start building,
their jobs in the result's ``jobs``), ``packages``, ``code`` (the app's archive, sent
here into Ansible's remote temporary directory and staged as ``<code_dir>.next``: in
check mode nothing is sent and ``code_sent`` only says it would be), ``wait_jobs`` (the
builds started earlier, as registered: the module waits on the host for each, then
writes what each virtualenv now holds with the other files; ``venvs_changed`` names
those the builds changed) and ``check`` (the app check, once the files are in place:
``problems``). A build still running after two minutes makes the module answer
``pending`` and the action call it again (packages installed and code staged already),
up to an hour.
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
            "venv_packages",
            "venvs",
            "packages",
            "code",
            "check",
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
        venvs = list(args.get("venvs") or [])
        code = args.get("code") or None
        if not (packages or files or jobs or venvs or code or args.get("venv_packages")
                or args.get("groups") or args.get("users") or args.get("dirs")):  # fmt: skip
            result.setdefault("changed", False)
            return self._firewall(result, task_vars)  # no files: no round trip for them
        module_args: dict[str, Any] = {
            "venv_packages": list(args.get("venv_packages") or []),
            "venvs": venvs,
            "packages": packages,
            "groups": list(args.get("groups") or []),
            "users": [{"user": u["user"], "group": u["group"]} for u in args.get("users") or []],
            "dirs": list(args.get("dirs") or []),
            "files": files,
            "jobs": jobs,
        }
        if args.get("check"):
            module_args["check"] = dict(args["check"])
        sent_to = None
        try:
            if code and not self._task.check_mode:
                sent_to = self._make_tmp_path()
                module_args["code"] = {
                    "archive": self._send_code(str(code["src"]), sent_to),
                    "code_dir": str(code["code_dir"]),
                }
            module_result = self._run_module(module_args, task_vars)
        finally:
            if sent_to is not None:
                self._remove_tmp_path(sent_to)
        if code:  # new code is a change, also in check mode (which sends nothing)
            module_result.update(code_sent=True, changed=True)
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
        module_result["changed"] = bool(
            module_result.get("changed") or module_result.get("installed")
        )
        module_result["venvs_changed"] = list(module_result.get("venvs_changed") or [])
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

    def _run_module(
        self, module_args: dict[str, Any], task_vars: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Run the module, again while a build is still running (``pending``)."""
        installed: list[str] = []
        jobs: list[Any] = []
        staged = None
        for _ in range(self.WAIT_ROUNDS):
            module_result: dict[str, Any] = self._execute_module(
                module_name="qsetup_files", module_args=module_args, task_vars=task_vars
            )
            installed += list(module_result.get("installed") or [])
            jobs += list(module_result.get("jobs") or [])
            staged = module_result.get("staged") or staged
            if not module_result.get("pending"):
                break
            # Done by the first call: the packages, the builds' starts, the staging.
            module_args.update(venv_packages=[], venvs=[], packages=[], staged=bool(staged))
            module_args.pop("code", None)
        else:
            names = ", ".join(str(j["name"]) for j in module_args["jobs"])
            module_result = {"failed": True, "msg": f"building the virtualenvs {names}: did "
                             f"not finish in {self.WAIT_ROUNDS * 2} minutes"}  # fmt: skip
        module_result.update(installed=installed, jobs=jobs)
        if staged:
            module_result["staged"] = staged
        return module_result

    def _send_code(self, src: str, tmpdir: str) -> str:
        """Send the app's archive into the remote temporary directory; its path there.

        Ansible's copy cost a stat, a temporary directory, the transfer and the copy
        module: here only the temporary directory and the transfer.
        """
        remote = self._connection._shell.join_path(tmpdir, "app.tar")
        self._transfer_file(src, remote)
        self._fixup_perms2((tmpdir, remote))
        return str(remote)

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
