#!/usr/bin/python
"""Ansible module: apply what differs on the broker, through its management API, at once.

definitions.yml reads the broker's definitions once and a filter (qsetup_broker_apply,
over qsetup.converge) turns the difference into this module's arguments; the module
makes the calls in one round trip: vhosts, users (password, tags, permissions, topic
permissions), policies, then the deletions (guest, the users, policies and vhosts the
inventory dropped), then the stable feature flags left disabled.
Ansible's community.rabbitmq modules did the same with one module run per object
(about 0.5 s each on a small host). Passwords go in the request bodies of calls to
127.0.0.1 only, from a no_log argument; the result names objects, never a password.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: qsetup_broker_objects
short_description: Create, update and delete RabbitMQ vhosts, users and policies in one call
options:
  port:
    description: The management API's port on 127.0.0.1.
    type: int
    required: true
  login_user:
    description: An administrator of the broker.
    type: str
    required: true
  login_password:
    description: Its password.
    type: str
    required: true
    no_log: true
  changes:
    description: What to apply (the qsetup_broker_apply filter's output; no passwords).
    type: dict
    required: true
  passwords:
    description: The password of each user in changes.users, by user name.
    type: dict
    required: false
    no_log: true
"""


GONE = object()  # what a DELETE of something already gone answers


def _q(text: str) -> str:
    return quote(text, safe="")


class Api:
    """The management API on 127.0.0.1, as one administrator."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.base = f"http://127.0.0.1:{port}/api"
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One request; the parsed JSON answer (None when empty); raises on an error."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(  # noqa: S310 - a fixed http://127.0.0.1 base
            self.base + path, data=data, method=method, headers=self.headers
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
                text = resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            if method == "DELETE" and exc.code == 404:
                return GONE
            reason = exc.read().decode("utf-8", "replace")[:300]
            raise RuntimeError(f"{method} /api{path}: HTTP {exc.code} {reason}") from None
        except OSError as exc:
            raise RuntimeError(f"{method} /api{path}: {exc}") from None
        return json.loads(text) if text.strip() else None


def apply_changes(api: Api, changes: dict[str, Any], passwords: dict[str, str]) -> list[str]:
    """Make the calls ``changes`` asks for, in order; return what was done, by name."""
    done: list[str] = []
    for vhost in changes.get("vhosts") or []:
        api.call("PUT", f"/vhosts/{_q(vhost)}", {})
        done.append(f"vhost {vhost} created")
    for user in changes.get("users") or []:
        name = user["name"]
        if name not in passwords:
            raise RuntimeError(f"user {name}: no password given")
        api.call("PUT", f"/users/{_q(name)}", {"password": passwords[name], "tags": user["tags"]})
        done.append(f"user {name} set")
        if user.get("permissions") is not None:
            _set_permissions(api, name, user["permissions"])
        if user.get("topic_permissions") is not None:
            _set_topic_permissions(api, name, user["topic_permissions"])
    for p in changes.get("policies") or []:
        body = {
            "pattern": p["pattern"],
            "apply-to": p["apply_to"],
            "priority": int(p["priority"]),
            "definition": p["definition"],
        }
        api.call("PUT", f"/policies/{_q(p['vhost'])}/{_q(p['name'])}", body)
        done.append(f"policy {p['vhost']}/{p['name']} set")
    deletions = [("/users/guest", "user guest")] if changes.get("delete_guest") else []
    deletions += [(f"/users/{_q(n)}", f"user {n}") for n in changes.get("delete_users") or []]
    for key in changes.get("delete_policies") or []:
        vhost, _, name = key.rpartition("/")
        deletions.append((f"/policies/{_q(vhost or '/')}/{_q(name)}", f"policy {key}"))
    deletions += [(f"/vhosts/{_q(v)}", f"vhost {v}") for v in changes.get("delete_vhosts") or []]
    for path, what in deletions:
        if api.call("DELETE", path) is not GONE:
            done.append(f"{what} deleted")
    for flag in changes.get("enable_flags") or []:
        api.call("PUT", f"/feature-flags/{_q(flag)}/enable", {})
        done.append(f"feature flag {flag} enabled")
    return done


def _set_permissions(api: Api, name: str, wanted: list[dict[str, str]]) -> None:
    now = {p["vhost"] for p in api.call("GET", f"/users/{_q(name)}/permissions") or []}
    for p in wanted:
        body = {"configure": p["configure_priv"], "write": p["write_priv"], "read": p["read_priv"]}
        api.call("PUT", f"/permissions/{_q(p['vhost'])}/{_q(name)}", body)
    for vhost in sorted(now - {p["vhost"] for p in wanted}):
        api.call("DELETE", f"/permissions/{_q(vhost)}/{_q(name)}")


def _set_topic_permissions(api: Api, name: str, wanted: list[dict[str, str]]) -> None:
    now = {t["vhost"] for t in api.call("GET", f"/users/{_q(name)}/topic-permissions") or []}
    # A DELETE drops every exchange's topic permission on a vhost: clear first, then set.
    for vhost in sorted(now):
        api.call("DELETE", f"/topic-permissions/{_q(vhost)}/{_q(name)}")
    for t in wanted:
        body = {"exchange": t["exchange"], "write": t["write_priv"], "read": t["read_priv"]}
        api.call("PUT", f"/topic-permissions/{_q(t['vhost'])}/{_q(name)}", body)


def _nothing(changes: dict[str, Any]) -> bool:
    return not any(changes.get(k) for k in changes)


def main() -> None:
    """Apply the changes (or, in check mode, say whether there are any)."""
    module = AnsibleModule(
        argument_spec={
            "port": {"type": "int", "required": True},
            "login_user": {"type": "str", "required": True},
            "login_password": {"type": "str", "required": True, "no_log": True},
            "changes": {"type": "dict", "required": True},
            "passwords": {"type": "dict", "default": {}, "no_log": True},
        },
        supports_check_mode=True,
    )
    changes = module.params["changes"]
    if _nothing(changes) or module.check_mode:
        module.exit_json(changed=not _nothing(changes), done=[])
    api = Api(module.params["port"], module.params["login_user"], module.params["login_password"])
    try:
        done = apply_changes(api, changes, module.params["passwords"])
    except RuntimeError as exc:
        module.fail_json(msg=str(exc), changed=True)
    module.exit_json(changed=bool(done), done=done)


if __name__ == "__main__":
    main()
