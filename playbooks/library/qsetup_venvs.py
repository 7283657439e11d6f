#!/usr/bin/python
"""Ansible module: install what virtualenvs are built with, then start building them.

One module run where there were one for the packages and one per virtualenv (Ansible's
``pip`` module, ``async``: each with async_wrapper's own Python start and pip's
ensurepip): the missing Debian packages (``python3-venv``: module_utils/qsetup_apt.py,
services held until configured), then one detached build per virtualenv
(module_utils/qsetup_venv.py: ``--without-pip``, Debian's pip wheel). The result's
``jobs`` are those builds, as Ansible's async tasks register theirs; the files step
waits for them (qsetup_files). In check mode nothing is installed or built.
"""

from __future__ import annotations

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.qsetup_apt import install_missing
from ansible.module_utils.qsetup_venv import start_builds

DOCUMENTATION = r"""
module: qsetup_venvs
short_description: Install the packages virtualenvs need, then build them in the background
options:
  packages:
    description: Missing Debian packages to install first, services held.
    type: list
    elements: str
    default: []
  venvs:
    description: >-
      Virtualenvs to build (name, path, packages, site_packages, marker, ...); each
      comes back as its job's item.
    type: list
    elements: dict
    default: []
"""


def main() -> None:
    """Install, start the builds; report the jobs."""
    module = AnsibleModule(
        argument_spec={
            "packages": {"type": "list", "elements": "str", "default": []},
            "venvs": {"type": "list", "elements": "dict", "default": []},
        },
        supports_check_mode=True,
    )
    packages = sorted(set(module.params["packages"]))
    venvs = module.params["venvs"]
    result: dict[str, Any] = {"changed": bool(packages or venvs), "installed": packages}
    failure = install_missing(module, packages)
    if failure is not None:
        module.fail_json(msg=failure, jobs=[], **result)
    if module.check_mode:
        module.exit_json(jobs=[], **result)
    try:
        jobs = start_builds(venvs)
    except OSError as exc:
        module.fail_json(msg=f"cannot start building the virtualenvs: {exc}", jobs=[], **result)
    module.exit_json(jobs=jobs, **result)


if __name__ == "__main__":
    main()
