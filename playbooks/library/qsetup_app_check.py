#!/usr/bin/python
"""Ansible module: check that the app loads as each service will run it (nothing restarts).

Before any worker or beat restarts (site.yml's configure play): for each interpreter
the host's services run, load the app from the code they will run (the staged code
when new code arrived), as the service's user, with its interpreter and its own
environment file, the way the unit will: the -A module (qsetup's shim, which loads the
app named in the environment file) imports, the app's task modules import, the app
finalizes. All interpreters at once, in one round trip; one line per service whose app
does not load, with the end of its Python error (URL passwords replaced), in
``problems``. The module fails when there is one; the code gate (the start play's
qsetup_start action, action_plugins/) reads ``problems`` of every host.
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.qsetup_units import as_service, python_error, run_all

DOCUMENTATION = r"""
module: qsetup_app_check
short_description: Load the Celery app as each service will run it, report what fails
options:
  services:
    description: One per interpreter, each with unit, python, user and env_file.
    type: list
    elements: dict
    required: true
  code_dir:
    description: The code the services will run (the staged <code>.next after a push).
    type: path
    required: true
  shim_dir:
    description: The directory of qsetup's shim module.
    type: path
    required: true
  shim:
    description: The shim's module name (the -A argument).
    type: str
    required: true
  timeout:
    description: Seconds each load may take.
    type: int
    default: 300
"""

# The marker tells a load that finished from one that printed nothing and exited 0.
LOADS = "qsetup-app-loads"
CHECK = (
    "import sys; from celery.app.utils import find_app; app = find_app(sys.argv[1]); "
    "app.loader.import_default_modules(); app.finalize(auto=True); "
    f'print("{LOADS}", len(app.tasks))'
)


def main() -> None:
    """Load the app once per interpreter; fail naming each service whose app does not load."""
    module = AnsibleModule(
        argument_spec={
            "services": {"type": "list", "elements": "dict", "required": True},
            "code_dir": {"type": "path", "required": True},
            "shim_dir": {"type": "path", "required": True},
            "shim": {"type": "str", "required": True},
            "timeout": {"type": "int", "default": 300},
        },
        supports_check_mode=True,
    )
    p = module.params
    if module.check_mode:
        module.exit_json(changed=False, problems=[])
    argvs = [
        as_service(
            str(s["env_file"]),
            str(s["user"]),
            ["/usr/bin/env", f"PYTHONPATH={p['code_dir']}:{p['shim_dir']}", str(s["python"]),
             "-c", CHECK, p["shim"]],
            workdir=p["code_dir"],
        )
        for s in p["services"]
    ]  # fmt: skip
    problems = []
    for service, (rc, out, err) in zip(p["services"], run_all(argvs, p["timeout"]), strict=True):
        if rc == 0 and LOADS in out:
            continue
        error = python_error(err + "\n" + out)
        why = " | ".join(error) or (f"exit code {rc}" if rc >= 0 else "timed out")
        problems.append(f"the app does not load for {service['unit']} ({service['python']}): {why}")
    if problems:
        module.fail_json(msg="; ".join(problems), problems=problems)
    module.exit_json(changed=False, problems=[], checked=[s["unit"] for s in p["services"]])


if __name__ == "__main__":
    main()
