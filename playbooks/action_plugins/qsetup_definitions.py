"""Action plugin qsetup_definitions: read the broker's definitions, apply what differs.

The broker step ``definitions`` (broker/definitions.yml), on the first RabbitMQ node.
Two modules, one task result (they were two tasks, the first one ``no_log``):

1. ``qsetup_broker_admin`` (library/): the broker's definitions, feature flags and
   nodes, as qsetup's administrator; when refused (a fresh node, a password changed in
   the secrets file) the administrator is created or reset first. With ``wait`` it
   first waits for the management API (RabbitMQ was just started).
2. On the controller, qsetup.converge's comparison of those definitions with the plan
   (``qsetup.converge.broker.broker_apply``: vhosts, users, permissions, policies,
   what the inventory dropped, the stable feature flags to enable), then
   ``qsetup_broker_objects`` (library/) applies it through the API in one call (no
   round trip when nothing differs, nor in check mode: the comparison says it all).

The definitions (password hashes) and the passwords never leave this plugin: the
result holds ``bootstrap`` (how the administrator was created, when it was),
``changes`` (the object names the apply touched, no password) and ``done``. In check
mode a broker that cannot be read yet (not installed) counts as holding nothing: the
result says what a deploy would apply, and does not fail.
"""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase

_READ_ARGS = ("port", "user", "password", "wait", "unit")


class ActionModule(ActionBase):
    """Read the definitions, compare them here, apply what differs: one task result."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset((*_READ_ARGS, "broker", "secrets", "removals", "cluster_size"))

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        """Read, compare, apply; the result without definitions or passwords."""
        from qsetup.converge.broker import broker_apply, broker_passwords

        result: dict[str, Any] = super().run(tmp, task_vars)
        del tmp
        args = self._task.args
        read_args = {k: args[k] for k in _READ_ARGS if k in args}
        read = self._execute_module(
            module_name="qsetup_broker_admin", module_args=read_args, task_vars=task_vars
        )
        read.pop("invocation", None)
        check = bool(self._task.check_mode)
        if read.get("failed"):
            if not check:
                result.update(failed=True, msg=str(read.get("msg") or "the broker was not read"))
                return result
            read = {}  # check mode, nothing installed yet: everything would be applied
        if read.get("bootstrap"):
            result["bootstrap"] = read["bootstrap"]
        wanted = dict(args.get("broker") or {})
        secrets = dict(args.get("secrets") or {})
        changes = broker_apply(
            read,
            wanted,
            secrets,
            dict(args.get("removals") or {}),
            int(args.get("cluster_size") or 1),
        )
        passwords = broker_passwords(changes, wanted, secrets)
        result["changes"] = changes
        pending = any(changes.get(k) for k in changes)
        result["changed"] = bool(read.get("changed")) or (pending and check)
        result["done"] = []
        if not pending or check:  # nothing differs, or only what would be applied
            return result
        applied = self._execute_module(
            module_name="qsetup_broker_objects",
            module_args={
                "port": args["port"],
                "login_user": args["user"],
                "login_password": args["password"],
                "changes": changes,
                "passwords": passwords,
            },
            task_vars=task_vars,
        )
        applied.pop("invocation", None)
        result["changed"] = bool(read.get("changed")) or bool(applied.get("changed"))
        result["done"] = list(applied.get("done") or [])
        if applied.get("failed"):
            result.update(failed=True, msg=str(applied.get("msg") or "the broker's objects failed"))
        return result
