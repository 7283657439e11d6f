"""Wait on the host for Ansible's async jobs (the virtualenv builds) to finish.

The builds start in the background (``async``/``poll: 0``); the files step waits for
them in its own module run (``library/qsetup_files.py``) by reading each job's results
file every half second, instead of ``async_status`` round trips or a module run of its
own. A job's results file holds ``started`` until async_wrapper replaces it with the
job module's result.

Standard library only: it runs on the host.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def read_job(path: Path) -> dict[str, Any] | None:
    """The job's result once it finished (async_wrapper drops ``started`` then), else None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # not written yet, or being replaced
    if not isinstance(data, dict) or "started" in data:
        return None
    return data


def wait_jobs(
    jobs: Sequence[Mapping[str, Any]], seconds: float, pause: float = 0.5
) -> tuple[bool, list[str], list[str]]:
    """Wait up to ``seconds`` for every job (jid, results_file, name).

    Returns (all finished, why each failed job failed, the names of those that changed
    something). A job whose results file is gone was lost (the host rebooted, or the
    file was removed): it fails at once.
    """
    deadline = time.monotonic() + seconds
    failures: list[str] = []
    changed: list[str] = []
    for job in jobs:
        path = Path(str(job["results_file"]))
        name = str(job["name"])
        while True:
            if not path.exists():
                failures.append(f"building the virtualenv {name} failed: could not find job "
                                f"{job['jid']}")  # fmt: skip
                break
            data = read_job(path)
            if data is not None:
                if data.get("failed"):
                    why = data.get("msg") or "did not finish in time"
                    failures.append(f"building the virtualenv {name} failed: {why}")
                elif data.get("changed"):
                    changed.append(name)
                break
            if time.monotonic() >= deadline:
                return False, failures, changed
            time.sleep(pause)
    return True, failures, changed
