"""Action plugin for qsetup_code (library/): send the app's archive, then stage it.

Ansible's copy costs a stat, a temporary directory, the transfer and the copy module,
and unpacking took a command more: five round trips and two tasks per host. Here the
archive goes to the remote temporary directory that the action creates anyway, and
one module run moves it beside the live code and unpacks it (qsetup_code). In check
mode nothing is sent: the preflight already compared the archive's checksum.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    """Transfer ``src`` (on the controller), then run qsetup_code on the host."""

    TRANSFERS_FILES = True
    _VALID_ARGS = frozenset(("src", "code_dir"))

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send the archive and stage it; the module's result."""
        result: dict[str, Any] = super().run(tmp, task_vars)
        del tmp
        src = self._task.args.get("src")
        code_dir = self._task.args.get("code_dir")
        if not src or not code_dir:
            raise AnsibleActionFail("qsetup_code: src and code_dir are required")
        if self._task.check_mode:
            result.update(changed=True, staged=f"{code_dir}.next")
            return result
        try:
            shell = self._connection._shell
            remote = shell.join_path(shell.tmpdir, "app.tar")
            self._transfer_file(str(src), remote)
            self._fixup_perms2((shell.tmpdir, remote))
            result.update(
                self._execute_module(
                    module_name="qsetup_code",
                    module_args={"archive": remote, "code_dir": str(code_dir)},
                    task_vars=task_vars,
                )
            )
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
