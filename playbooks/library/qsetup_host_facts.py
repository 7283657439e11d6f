#!/usr/bin/python
"""Ansible module: the one read of a host (``module_utils/qsetup_read.py``).

The deploy's preflight runs it; ``qsetup status`` and the deploy's no-op check run the
same program over SSH. What it returns is compared with the desired state by one
function, ``qsetup.converge.compare_host``. It changes nothing that a service reads:
at most apt's package lists.
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.qsetup_read import read_host

DOCUMENTATION = r"""
module: qsetup_host_facts
short_description: Read a host's release, hostname and package state for qsetup's preflight
options:
  packages:
    description: Debian packages the plan needs, per release codename.
    type: dict
    required: true
  releases:
    description: Supported release codenames mapped to a human name.
    type: dict
    required: true
  manifest:
    description: Path of qsetup's manifest on the host (what an earlier deploy installed).
    type: str
    required: false
  find_paths:
    description: Directories whose entries matching find_patterns are reported (not recursive).
    type: list
    required: false
  find_patterns:
    description: Shell patterns of the entry names to report.
    type: list
    required: false
  units:
    description: systemd units whose state is reported.
    type: list
    required: false
  broker_api:
    description: On a broker host, the management API (port, user, password) whose
      definitions and cluster nodes are reported.
    type: dict
    required: false
  discover:
    description: A unit name prefix; every such unit systemd knows is listed and shown.
    type: str
    required: false
  executables:
    description: Paths whose existence (as executables) is reported.
    type: list
    required: false
  dists:
    description: Python distributions (prefix, name) whose installed version is reported.
    type: list
    required: false
  deb_versions:
    description: Debian packages whose installed version is reported.
    type: list
    required: false
  check_candidates:
    description: For a planned package that is missing, ask apt whether it can install it
      (refreshing package lists older than a day).
    type: bool
    default: true
  hosts_marker:
    description: The blockinfile marker of the cluster's lines in /etc/hosts.
    type: str
    required: false
  firewall:
    description: qsetup's nftables table (table, path of its ruleset file) whose state is
      reported (loaded, and a fingerprint of it and of the file's rules).
    type: dict
    required: false
  min_versions:
    description: Debian packages (package, version, problem) whose installed or
      candidate version must be at least version; problem is reported otherwise.
    type: list
    required: false
"""


def main() -> None:
    """Run the module: the one read (module_utils/qsetup_read.py) with these parameters."""
    module = AnsibleModule(
        argument_spec={
            "packages": {"type": "dict", "required": True},
            "releases": {"type": "dict", "required": True},
            "manifest": {"type": "str", "required": False, "default": None},
            "find_paths": {"type": "list", "elements": "str", "required": False, "default": []},
            "find_patterns": {
                "type": "list",
                "elements": "str",
                "required": False,
                "default": [],
            },
            "units": {"type": "list", "elements": "str", "required": False, "default": []},
            "discover": {"type": "str", "required": False, "default": None},
            "hosts_marker": {"type": "str", "required": False, "default": None},
            "executables": {"type": "list", "elements": "str", "required": False, "default": []},
            "dists": {"type": "list", "elements": "dict", "required": False, "default": []},
            "deb_versions": {"type": "list", "elements": "str", "required": False, "default": []},
            "check_candidates": {"type": "bool", "required": False, "default": True},
            "min_versions": {
                "type": "list",
                "elements": "dict",
                "required": False,
                "default": [],
                "options": {
                    "package": {"type": "str", "required": True},
                    "version": {"type": "str", "required": True},
                    "problem": {"type": "str", "required": True},
                },
            },
            "firewall": {
                "type": "dict",
                "required": False,
                "default": None,
                "options": {
                    "table": {"type": "str", "required": True},
                    "path": {"type": "str", "required": True},
                },
            },
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

    def run(argv: list[str]) -> tuple[int, str, str]:
        rc, out, err = module.run_command(argv, environ_update={"LC_ALL": "C"})
        return int(rc), str(out), str(err)

    module.exit_json(**read_host(dict(module.params), run))


if __name__ == "__main__":
    main()
