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

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.qsetup_units import wait_for

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
    silent = wait_for(units, nodes, module.params["shim"], module.params.get("listen"), seconds)
    if silent:
        module.fail_json(msg="; ".join(silent), silent=silent)
    module.exit_json(changed=False, answered=list(nodes))


if __name__ == "__main__":
    main()
