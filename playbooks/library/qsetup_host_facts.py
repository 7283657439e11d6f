#!/usr/bin/python
"""Ansible module: the one read of a host (``module_utils/qsetup_read.py``).

The deploy's preflight runs it; ``qsetup status`` and the deploy's no-op check run the
same program over SSH. What it returns is compared with the desired state by one
function, ``qsetup.converge.compare_host``. It changes nothing that a service reads:
at most apt's package lists.
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.qsetup_read import read_host, run_argv

DOCUMENTATION = r"""
module: qsetup_host_facts
short_description: Read a host's release, hostname, files, units, packages and broker for qsetup
options:
  params:
    description: The read's parameters as the plan records them (qsetup_read_params, built
      by qsetup/artifacts/readparams.py; status sends the same over SSH). Passed whole, so
      a parameter the read gains needs no change here.
    type: dict
    required: true
  results_api:
    description: On the managed result backend's host, qsetup's reader's password there
      (the rest of the connection is in params.results).
    type: str
    required: false
  broker_api:
    description: On a broker node, the management API's port, user and password
      (definitions, cluster, feature flags).
    type: dict
    required: false
"""


def main() -> None:
    """Run the module: the one read (module_utils/qsetup_read.py) with these parameters."""
    module = AnsibleModule(
        argument_spec={
            "params": {"type": "dict", "required": True},
            "results_api": {"type": "str", "required": False, "default": None, "no_log": True},
            "broker_api": {
                "type": "dict",
                "required": False,
                "default": None,
                "options": {
                    "port": {"type": "int", "required": True},
                    "user": {"type": "str", "required": True},
                    "password": {"type": "str", "required": True, "no_log": True},
                },
            },
        },
        supports_check_mode=True,
    )

    params = dict(module.params["params"])
    if module.params.get("results_api") and params.get("results"):
        params["results"] = {**params["results"], "password": module.params["results_api"]}
    if module.params.get("broker_api"):
        params["broker_api"] = module.params["broker_api"]
    # run_argv, not module.run_command: the read runs commands on several threads at once,
    # and run_command's environ_update swaps os.environ for the whole process.
    module.exit_json(**read_host(params, run_argv))


if __name__ == "__main__":
    main()
