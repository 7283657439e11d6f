#!/usr/bin/python
"""Ansible module: read the broker's definitions as qsetup's administrator, creating it first.

One round trip on the broker's first node. The definitions are read through the
management API on 127.0.0.1 as qsetup's administrator; when it is refused (a fresh
node, or a password changed in the secrets file), the administrator is created or its
password reset, then the definitions are read again:
- through the API as ``guest``, which a fresh node still has (RabbitMQ lets it in from
  127.0.0.1 only), or else
- with ``rabbitmqctl``, the password on its standard input, never on a command line.
Each rabbitmqctl call costs about half a second of Erlang start-up; a fresh node needs
none of them. With ``wait``, a node that has just (re)started is first given that
many seconds to open the API's port (no separate wait_for round trip).
"""

from __future__ import annotations

import base64
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: qsetup_broker_admin
short_description: Read RabbitMQ's definitions as qsetup's administrator (created when refused)
options:
  port:
    description: The management API's port on 127.0.0.1.
    type: int
    required: true
  user:
    description: qsetup's administrator.
    type: str
    required: true
  password:
    description: Its password.
    type: str
    required: true
    no_log: true
  wait:
    description: Seconds to wait for the API's port to accept connections first (0 = no wait).
    type: int
    default: 0
  unit:
    description: While waiting, stop at once when this systemd unit has failed.
    type: str
"""


class Refused(Exception):
    """The API answered 401: these credentials do not log in."""


BUSY_CODES = (500, 502, 503)
"""What RabbitMQ's management API can answer for a few seconds after its node started
(its port open, the node's agents not yet): a read is asked again meanwhile."""
BUSY_SECONDS = 30.0


def api(port: int, user: str, password: str, method: str, path: str, body: Any = None) -> Any:
    """One call to the API on 127.0.0.1; the parsed answer; Refused on 401.

    A GET answered 500, 502 or 503 is asked again every half second for up to
    ``BUSY_SECONDS`` (a node that has just started); anything else fails at once.
    """
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            return _call(port, user, password, method, path, body)
        except _Busy as busy:
            if method != "GET" or time.monotonic() >= deadline:
                raise RuntimeError(str(busy)) from None
            time.sleep(0.5)


class _Busy(Exception):
    """The API answered 500, 502 or 503."""


def _call(port: int, user: str, password: str, method: str, path: str, body: Any) -> Any:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(  # noqa: S310 - a fixed http://127.0.0.1 base
        f"http://127.0.0.1:{port}/api{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            text = resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise Refused from None
        reason = exc.read().decode("utf-8", "replace")[:300]
        if exc.code in BUSY_CODES:
            raise _Busy(f"{method} /api{path}: HTTP {exc.code} {reason}") from None
        raise RuntimeError(f"{method} /api{path}: HTTP {exc.code} {reason}") from None
    except OSError as exc:
        raise RuntimeError(f"{method} /api{path}: {exc}") from None
    return json.loads(text) if text.strip() else None


def wait_for_port(
    port: int, seconds: float, failed: Callable[[], bool] = lambda: False, unit: str = ""
) -> None:
    """Return once 127.0.0.1:port accepts a connection; RuntimeError after ``seconds``.

    ``failed`` is asked between tries: True (the unit that should open the port has
    failed) ends the wait at once.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if failed():
                raise RuntimeError(f"{unit} failed to start; see journalctl -u {unit}") from None
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"the management API on 127.0.0.1:{port} did not open within {seconds:g} s"
                ) from None
            time.sleep(0.2)


def _with_guest(port: int, user: str, password: str) -> bool:
    """Create or reset the administrator as guest; False when guest cannot log in."""
    try:
        api(port, "guest", "guest", "GET", "/whoami")
    except Refused:
        return False
    body = {"password": password, "tags": "administrator"}
    api(port, "guest", "guest", "PUT", f"/users/{quote(user, safe='')}", body)
    return True


def _with_rabbitmqctl(module: AnsibleModule, user: str, password: str) -> None:
    def ctl(*args: str, data: str | None = None) -> str:
        rc, out, err = module.run_command(["rabbitmqctl", *args], data=data)
        if rc != 0:
            raise RuntimeError(f"rabbitmqctl {args[0]} failed (exit {rc}): {err.strip()[-300:]}")
        return str(out)

    listed = ctl("list_users", "--quiet", "--no-table-headers")
    exists = user in {line.split()[0] for line in listed.splitlines() if line.split()}
    # Without a password argument rabbitmqctl reads it from standard input.
    ctl("change_password" if exists else "add_user", user, data=password)
    ctl("set_user_tags", user, "administrator")


def read_broker(port: int, user: str, password: str) -> dict[str, Any]:
    """The broker's definitions, feature flags and nodes (name, running)."""
    nodes = api(port, user, password, "GET", "/nodes?columns=name,running")
    return {
        "definitions": api(port, user, password, "GET", "/definitions"),
        "feature_flags": api(port, user, password, "GET", "/feature-flags"),
        "nodes": nodes if isinstance(nodes, list) else None,
    }


def main() -> None:
    """Return the definitions; create or reset the administrator when refused."""
    module = AnsibleModule(
        argument_spec={
            "port": {"type": "int", "required": True},
            "user": {"type": "str", "required": True},
            "password": {"type": "str", "required": True, "no_log": True},
            "wait": {"type": "int", "default": 0},
            "unit": {"type": "str", "required": False, "default": None},
        },
        supports_check_mode=True,
    )
    port, user, password = (module.params[k] for k in ("port", "user", "password"))
    try:
        wait = module.params.get("wait") or 0
        unit = module.params.get("unit")
        if wait > 0:

            def failed() -> bool:
                if not unit:
                    return False
                rc, _out, _err = module.run_command(["systemctl", "is-failed", "--quiet", unit])
                return bool(rc == 0)

            wait_for_port(port, wait, failed, unit or "")
        try:
            module.exit_json(changed=False, **read_broker(port, user, password))
        except Refused:
            pass
        if module.check_mode:
            module.exit_json(changed=True, definitions={})
        how = "api" if _with_guest(port, user, password) else "rabbitmqctl"
        if how == "rabbitmqctl":
            _with_rabbitmqctl(module, user, password)
        found = read_broker(port, user, password)
    except (Refused, RuntimeError) as exc:
        module.fail_json(msg=str(exc) or f"the broker refused {user} after its password was set")
    module.exit_json(changed=True, bootstrap=how, **found)


if __name__ == "__main__":
    main()
