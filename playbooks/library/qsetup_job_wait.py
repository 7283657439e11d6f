#!/usr/bin/python
"""Ansible module: wait on the host for an async job to finish, then report it.

``async_status`` answers at once, so a playbook waits for a job by calling it again
every few seconds: with 20 hosts building virtualenvs for two minutes that was
hundreds of module runs competing for the CPU the builds needed. This module reads
the job's results file on the host every half second for up to ``wait`` seconds and
answers exactly as ``async_status`` does (the job's own result with ``finished``, or
``finished: false`` when it is still running), so an ``until`` loop around it makes
one round trip per ``wait`` seconds instead of one per poll.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: qsetup_job_wait
short_description: Block until an async job finishes (or wait seconds pass), like async_status
options:
  jid:
    description: The job id (ansible_job_id of the async task).
    type: str
    required: true
  results_file:
    description: The job's results file (results_file of the async task).
    type: path
    required: true
  wait:
    description: Seconds to wait in this call before answering finished=false.
    type: int
    default: 120
"""


def read_job(path: Path) -> dict[str, object] | None:
    """The job's result once it finished (async_wrapper drops ``started`` then), else None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # not written yet, or being replaced
    if not isinstance(data, dict) or "started" in data:
        return None
    return data


def main() -> None:
    """Wait for the job; print its result the way async_status does."""
    module = AnsibleModule(
        argument_spec={
            "jid": {"type": "str", "required": True},
            "results_file": {"type": "path", "required": True},
            "wait": {"type": "int", "default": 120},
        },
    )
    jid = module.params["jid"]
    path = Path(module.params["results_file"])
    deadline = time.monotonic() + module.params["wait"]
    while True:
        if not path.exists():  # written before the async task returned: the job is lost
            module.fail_json(msg=f"could not find job {jid}", ansible_job_id=jid, finished=True)
        data = read_job(path)
        if data is not None:
            data["finished"] = True
            data["ansible_job_id"] = jid
            # As async_status: the job's own result, unprocessed (it already was).
            print(f"\n{json.dumps(data)}")
            sys.exit(0)
        if time.monotonic() >= deadline:
            module.exit_json(
                ansible_job_id=jid, results_file=str(path), started=True, finished=False
            )
        time.sleep(0.5)


if __name__ == "__main__":
    main()
