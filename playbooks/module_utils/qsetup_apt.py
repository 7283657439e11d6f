"""Installing missing Debian packages on the host, services held until configured.

Used by ``library/qsetup_files.py``: the packages virtualenvs are built with, then the
host's other packages, in the same module run that starts the builds and puts the
users, directories and files in place (one Python start on the host, about 160 ms of
its CPU, where each was a module run of its own).

One ``apt-get install`` of the missing packages with a ``policy-rc.d`` in place, so that
no package starts its service (RabbitMQ would boot once with a random Erlang cookie and
default settings) before qsetup's files arrive; the ``policy-rc.d`` is removed again
whatever apt did, and only when this code created it. A download that fails because the
lists went stale since the preflight is retried once after ``apt-get update``.

Standard library only (and the caller's AnsibleModule for running commands).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

POLICY_RC = Path("/usr/sbin/policy-rc.d")
POLICY_TEXT = "#!/bin/sh\n# qsetup: installing packages; services start once configured\nexit 101\n"
ENV = {"DEBIAN_FRONTEND": "noninteractive", "APT_LISTCHANGES_FRONTEND": "none", "LC_ALL": "C"}


def last_lines(*texts: str, count: int = 3) -> str:
    """The end of apt's output that says why: its E:/W:/dpkg: lines, else the last lines."""
    lines = [ln.strip() for t in texts for ln in t.splitlines() if ln.strip()]
    keep = [ln for ln in lines if ln.startswith(("E:", "W:", "dpkg:"))] or lines
    return " | ".join(keep[-count:]) or "no output"


def _install(module: Any, names: list[str], lock_timeout: int) -> tuple[int, str, str]:
    argv = [
        "apt-get",
        "install",
        "-y",
        "-q",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
        "-o",
        f"DPkg::Lock::Timeout={lock_timeout}",
        *names,
    ]
    rc, out, err = module.run_command(argv, environ_update=ENV)
    return int(rc), str(out), str(err)


def install_missing(
    module: Any,
    names: list[str],
    hold_services: bool = True,
    lock_timeout: int = 120,
    policy_rc: Path | None = None,
) -> str | None:
    """Install ``names`` (not in check mode); None when done, else why it failed."""
    if not names or module.check_mode:
        return None
    policy_rc = policy_rc or POLICY_RC
    created = False
    if hold_services and not policy_rc.exists():
        fd = os.open(policy_rc, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
        with os.fdopen(fd, "w") as fh:
            fh.write(POLICY_TEXT)
        created = True
    try:
        rc, out, err = _install(module, names, lock_timeout)
        if rc != 0 and ("Failed to fetch" in err or "Unable to fetch" in err):
            # Lists that went stale between the preflight and now: refresh once, retry.
            module.run_command(["apt-get", "update", "-q"], environ_update=ENV)
            rc, out, err = _install(module, names, lock_timeout)
    finally:
        if created:
            policy_rc.unlink(missing_ok=True)
    if rc != 0:
        return f"apt-get install {' '.join(names)} failed (exit {rc}): {last_lines(out, err)}"
    return None
