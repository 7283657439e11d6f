"""Running commands with timeouts, and recognising the processes the sandbox started."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from qsetup.errors import SandboxError

DEFAULT_TIMEOUT = 60.0


def run(
    args: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command (argument list, no shell) and capture its output.

    Args:
        args: the command and its arguments.
        timeout: seconds before the command is killed.
        check: raise when the command exits non-zero.
        input_text: text fed to the command's stdin.

    Returns:
        The completed process with text stdout and stderr.

    Raises:
        SandboxError: the command is missing, timed out, or (with ``check``) failed.
    """
    try:
        proc = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        raise SandboxError(
            f"command not found: {args[0]}; run `qsetup sandbox up` once to see which "
            "Debian packages to install"
        ) from None
    except subprocess.TimeoutExpired:
        raise SandboxError(
            f"`{' '.join(args)}` did not finish within {timeout:.0f} s; check the machine's "
            "load and try again"
        ) from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        last = detail[-1] if detail else f"exit code {proc.returncode}"
        raise SandboxError(f"`{' '.join(args)}` failed: {last}")
    return proc


def have_command(name: str) -> bool:
    """Return whether ``name`` is on PATH (also looking in the sbin directories)."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
    return shutil.which(name, path=path) is not None


def process_start_time(pid: int) -> int | None:
    """Return the start time of ``pid`` in clock ticks since boot, or None if it is gone.

    Together with the PID it identifies a process: a recycled PID has another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses; fields after it are plain.
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def is_same_process(pid: int | None, start: int | None) -> bool:
    """Return whether the process we recorded (PID and start time) is still alive."""
    if pid is None or start is None:
        return False
    return process_start_time(pid) == start


def child_pids(pid: int) -> list[int]:
    """Return the direct children of ``pid`` (empty if it is gone)."""
    children: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return children
    for task in tasks:
        try:
            text = (task / "children").read_text(encoding="utf-8")
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.extend(int(p) for p in text.split())
    return children


def signal_recorded(pid: int | None, start: int | None, sig: int) -> bool:
    """Send ``sig`` to a recorded process only if it is still that process.

    Returns:
        True if the signal was sent.
    """
    if pid is None or not is_same_process(pid, start):
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our child (avoids zombies in long runs)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_gone(pids: Sequence[tuple[int | None, int | None]], timeout: float) -> bool:
    """Wait until none of the recorded processes is alive.

    Args:
        pids: (pid, start time) pairs.
        timeout: seconds to wait.

    Returns:
        True if all are gone within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        alive = [(p, s) for p, s in pids if p is not None and is_same_process(p, s)]
        for p, _ in alive:
            reap(p)
        alive = [(p, s) for p, s in alive if is_same_process(p, s)]
        if not alive:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
