"""Build virtualenvs in the background on the host: without ensurepip, with Debian's pip wheel.

``python3 -m venv`` copies pip (and on Python 3.11 setuptools) into every new
virtualenv with ensurepip, which installs and byte-compiles them: 2.1 s of CPU per
virtualenv on a bookworm sandbox host, more than the ``pip install`` of Celery itself
(1.6 s). qsetup never runs a virtualenv's own pip, so each is created with
``--without-pip`` (0.03 s) and its packages are installed by the pip of Debian's
``python3-pip-whl`` wheel (a dependency of ``python3-venv``), run by the virtualenv's
interpreter from the wheel (``python <wheel>/pip install``): 0.7 s more for the
``pip install`` (pip's own modules compile from the wheel), 1.4 s less in all. A host
without that wheel falls back to the virtualenv's pip (ensurepip).

Each build is a process of its own, detached from the module run that starts it; it
writes its outcome to a results file in the format of Ansible's async jobs, which the
files step waits for (module_utils/qsetup_jobs.py). The files live in ``JOBS_DIR``
(``/run``: a job lost to a reboot is found missing, not waited for). Standard library
only: it runs on the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

JOBS_DIR = Path("/run/qsetup-jobs")

# The build, run as ``python3 -c BUILD <results file>``: the spec (path, packages,
# site_packages) waits beside the results file (``.spec``, 0600) and is removed once read.
BUILD = r"""
import glob, json, os, subprocess, sys
job = sys.argv[1]
def finish(result):
    tmp = job + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh)
    os.replace(tmp, job)
def tail(text):
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    cut = [l if len(l) <= 240 else l[:240] + "..." for l in lines[-3:]]
    return " | ".join(cut)
try:
    with open(job + ".spec") as fh:
        spec = json.load(fh)
    os.unlink(job + ".spec")
    path = spec["path"]
    python = os.path.join(path, "bin", "python")
    wheels = sorted(glob.glob("/usr/share/python-wheels/pip-*.whl"))
    created = False
    if not os.path.exists(python):
        cmd = ["/usr/bin/python3", "-m", "venv"]
        cmd += ["--without-pip"] if wheels else []
        cmd += ["--system-site-packages"] if spec["site_packages"] else []
        run = subprocess.run(cmd + [path], capture_output=True, text=True)
        if run.returncode != 0:
            finish({"failed": True, "changed": False, "rc": run.returncode,
                    "msg": "python3 -m venv failed (exit %d): %s" % (
                        run.returncode, tail(run.stderr + run.stdout))})
            sys.exit(0)
        created = True
    if wheels:
        pip = [python, wheels[-1] + "/pip"]
    elif os.path.exists(os.path.join(path, "bin", "pip")):
        pip = [os.path.join(path, "bin", "pip")]
    else:
        pip = [python, "-m", "pip"]
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    run = subprocess.run(pip + ["install"] + list(spec["packages"]),
                         capture_output=True, text=True, env=env)
    if run.returncode != 0:
        finish({"failed": True, "changed": created, "rc": run.returncode,
                "msg": "pip install failed (exit %d): %s" % (
                    run.returncode, tail(run.stderr or run.stdout))})
    else:
        finish({"failed": False, "rc": 0,
                "changed": created or "Successfully installed" in run.stdout})
except Exception as exc:
    finish({"failed": True, "changed": False, "msg": "%s: %s" % (type(exc).__name__, exc)})
"""


def start_builds(
    venvs: Sequence[Mapping[str, Any]], jobs_dir: Path = JOBS_DIR
) -> list[dict[str, Any]]:
    """Start one detached build per virtualenv (path, packages, site_packages).

    Returns each build's job (``ansible_job_id``, ``results_file``, ``item``: the
    virtualenv as given), as Ansible's async tasks register them.
    """
    jobs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    jobs = []
    for venv in venvs:
        jid = f"qsetup-{uuid.uuid4().hex}"
        results = jobs_dir / jid
        spec = {
            "path": str(venv["path"]),
            "packages": [str(p) for p in venv["packages"]],
            "site_packages": bool(venv.get("site_packages")),
        }
        fd = os.open(f"{results}.spec", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(spec, fh)
        results.write_text(json.dumps({"started": 1, "finished": 0, "ansible_job_id": jid}))
        subprocess.Popen(  # noqa: S603 - an argv list; detached, outlives the module run
            ["/usr/bin/python3", "-c", BUILD, str(results)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )
        jobs.append({"ansible_job_id": jid, "results_file": str(results), "item": dict(venv)})
    return jobs
