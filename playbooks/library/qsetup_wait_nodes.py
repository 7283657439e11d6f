#!/usr/bin/python
"""Ansible module: wait until each started worker answers ping as its own node, and Flower listens.

After a start or a restart (celery/start.yml, celery/rolling.yml): one process per
worker unit, all at once, each running the worker's interpreter as its user with its
environment file (so the broker password is never on a command line) and qsetup's shim
(the -A module: TLS and queue settings), pings its node about once a second until it
answers or ``seconds`` pass. Only an answer from exactly that node counts
(``name-N@<the hostname this host reports>``), never a neighbour's. A unit that does not
answer fails the module with the end of its journal (the Python error, URL passwords
replaced); nothing else of the journal leaves the host. With ``listen`` (Flower's
address and port, when Flower was started too) it also waits until that port accepts a
connection.
"""

from __future__ import annotations

import socket
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.qsetup_units import as_service, ping_answered, python_error, run_all

DOCUMENTATION = r"""
module: qsetup_wait_nodes
short_description: Wait until each worker unit answers ping as its own node
options:
  units:
    description: Worker units, each with unit, python, user, env_file.
    type: list
    elements: dict
    required: true
  nodes:
    description: The exact node name of each unit, in the same order.
    type: list
    elements: str
    required: true
  shim:
    description: The shim's module name (it holds the app, as the -A argument).
    type: str
    required: true
  listen:
    description: Flower's address and port (host, port), to wait until it listens.
    type: dict
  seconds:
    description: How long each node may take to answer (a busy host's first start of a
      worker can take half a minute).
    type: int
    default: 60
"""

# Prints what `celery inspect ping` prints for an answer.
PING = """\
import importlib, signal, sys, time
node, seconds = sys.argv[1], float(sys.argv[2])
signal.alarm(int(seconds) + 15)  # a broker that hangs ends it too
app = importlib.import_module(sys.argv[3]).app
deadline = time.monotonic() + seconds
while True:
    try:
        replies = app.control.ping(destination=[node], timeout=1.0) or []
    except Exception:
        replies = []
        time.sleep(1)
    if any(node in reply for reply in replies):
        print(f"->  {node}: OK\\n        pong")
        break
    if time.monotonic() > deadline:
        sys.exit(1)
"""


def journal_end(unit: str) -> list[str]:
    """The end of a unit's journal that is not systemd's own (its Python error)."""
    out = subprocess.run(  # noqa: S603 - an argv list
        ["journalctl", "--no-pager", "--output=cat", "--lines=40", "--unit", unit],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    lines: list[str] = python_error(out)
    return lines


def wait_listening(host: str, port: int, seconds: float) -> bool:
    """True once ``host:port`` accepts a TCP connection, False after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)


def main() -> None:
    """Ping every unit's node at once; fail naming each that does not answer."""
    module = AnsibleModule(
        argument_spec={
            "units": {"type": "list", "elements": "dict", "required": True},
            "nodes": {"type": "list", "elements": "str", "required": True},
            "shim": {"type": "str", "required": True},
            "listen": {"type": "dict"},
            "seconds": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    units, nodes, seconds = module.params["units"], module.params["nodes"], module.params["seconds"]
    if len(units) != len(nodes):
        module.fail_json(msg="qsetup_wait_nodes: one node name per unit")
    if module.check_mode:
        module.exit_json(changed=False, answered=[])
    argvs = [
        as_service(str(u["env_file"]), str(u["user"]),
                   [str(u["python"]), "-c", PING, node, str(seconds), module.params["shim"]])
        for u, node in zip(units, nodes, strict=True)
    ]  # fmt: skip
    silent = []
    for unit, node, (_rc, out, _err) in zip(
        units, nodes, run_all(argvs, seconds + 30), strict=True
    ):
        if not ping_answered(out, node):
            silent.append(
                f"{unit['unit']} (node {node}) does not answer ping; its journal ends: "
                + " | ".join(journal_end(str(unit["unit"])))
            )
    listen = module.params.get("listen")
    if listen and not wait_listening(str(listen["host"]), int(listen["port"]), seconds):
        silent.append(
            f"Flower does not listen on {listen['host']}:{listen['port']} after {seconds} s"
        )
    if silent:
        module.fail_json(msg="; ".join(silent), silent=silent)
    module.exit_json(changed=False, answered=list(nodes))


if __name__ == "__main__":
    main()
