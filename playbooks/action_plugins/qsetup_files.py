"""Action plugin for qsetup_files (library/): read the files' contents on the controller.

Each file's ``src`` is read from ``files_dir`` (qsetup's rendered files, on the
controller) or its ``content`` is taken as given, and the module gets them all in one
call. With ``packages`` (Debian package names) the missing packages are installed
first, by qsetup_packages (library/), in the same task: the host's users, directories
and manifest follow in one task result instead of two. The contents travel as module
arguments: on the module's stdin with pipelining, never in a process list; the
module's ``invocation`` (which would repeat them) is dropped from the result, so no
content reaches events, logs or the run directory.
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
    _VALID_ARGS = frozenset(("packages", "groups", "users", "dirs", "files", "files_dir"))

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run the module with every file's content; return its result without the args."""
        result: dict[str, Any] = super().run(tmp, task_vars)
        args = self._task.args
        packages = list(args.get("packages") or [])
        if packages:
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
        for item in args.get("files") or []:
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
        module_result = self._execute_module(
            module_name="qsetup_files",
            module_args={
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
        module_result["changed"] = bool(module_result.get("changed")) or bool(result.get("changed"))
        result.update(module_result)
        return result
