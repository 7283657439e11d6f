"""Running Python as a service would run it, on the host: the app check and the ping gate.

Shared by ``library/qsetup_files.py`` (the app check, before any restart: the app
loads as each service will run it) and ``library/qsetup_wait_nodes.py`` (after a start: each worker
answers ping under its own exact node name). Both run the service's interpreter under
``systemd-run`` with the unit's user and environment file, so no password is ever on a
command line, and both report only redacted lines: the end of a Python error or of a
unit's journal, with the password of every URL replaced.

Standard library only: it runs on the host.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@'\"]*):[^\s@'\"]*@")

# Lines systemd writes into a unit's journal around the service's own output.
_SYSTEMD_NOISE = (
    "Started ",
    "Stopped ",
    "Stopping ",
    "Starting ",
    "Failed to start ",
    "Scheduled restart job",
    "Start request repeated",
    "Failed with result",
    "Main process exited",
    "Consumed ",
    "Deactivated successfully",
    "Failed to kill control group",
)


def redact_urls(text: str) -> str:
    """Replace the password in every ``scheme://user:password@`` with ``***``."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


def python_error(output: str) -> list[str]:
    """The last lines of a service's output that are not systemd's own (the Python error).

    A password in a URL (Celery logs broker URLs in some warnings) is replaced by ***.
    """
    lines = [redact_urls(x.strip()) for x in output.splitlines() if x.strip()]
    ours = [x for x in lines if not any(n in x for n in _SYSTEMD_NOISE)]
    # The last traceback's file line and exception line say what broke.
    for i in range(len(ours) - 1, -1, -1):
        if ours[i].startswith("Traceback"):
            tail = ours[i:]
            files = [x for x in tail if x.startswith('File "')]
            return [*files[-1:], *tail[-2:]] if files else tail[-3:]
    return ours[-4:]


def ping_answered(stdout: str, node: str) -> bool:
    """True when ``celery inspect ping`` output holds an OK answer from exactly ``node``."""
    for line in str(stdout).splitlines():
        text = line.strip()
        if text.startswith("->"):
            name, _, rest = text[2:].strip().partition(":")
            if name.strip() == node and "OK" in rest:
                return True
    return False


def as_service(
    env_file: str, user: str, argv: Sequence[str], workdir: str | None = None
) -> list[str]:
    """``argv`` run the way the unit runs: its user, its environment file, a scratch unit."""
    props = [f"--property=EnvironmentFile={env_file}", f"--property=User={user}"]
    if workdir:
        props.append(f"--property=WorkingDirectory={workdir}")
    return ["systemd-run", "--quiet", "--wait", "--pipe", "--collect", *props, *argv]


def run_all(argvs: Sequence[Sequence[str]], timeout: float) -> list[tuple[int, str, str]]:
    """Run every command at once; each one's exit code, stdout and stderr (-1: timed out)."""
    procs = [
        subprocess.Popen(  # noqa: S603 - argv lists, no shell
            list(a),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for a in argvs
    ]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
            results.append((proc.returncode, out, err))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            results.append((-1, out, err))
    return results


# The marker tells a load that finished from one that printed nothing and exited 0.
LOADS = "qsetup-app-loads"
CHECK = (
    "import sys; from celery.app.utils import find_app; app = find_app(sys.argv[1]); "
    "app.loader.import_default_modules(); app.finalize(auto=True); "
    f'print("{LOADS}", len(app.tasks))'
)


def check_app(
    services: Sequence[Mapping[str, Any]], code_dir: str, shim_dir: str, shim: str, timeout: float
) -> list[str]:
    """Load the app once per service (one per interpreter), all at once; what fails.

    Each loads from ``code_dir`` (the staged ``<code>.next`` after a push) as its unit
    will: its user, its interpreter, its own environment file, the -A module (qsetup's
    shim, which loads the app the environment file names); the app's task modules
    import and the app finalizes. One line per service whose app does not load, with
    the end of its Python error (URL passwords replaced).
    """
    argvs = [
        as_service(
            str(s["env_file"]),
            str(s["user"]),
            ["/usr/bin/env", f"PYTHONPATH={code_dir}:{shim_dir}", str(s["python"]),
             "-c", CHECK, shim],
            workdir=code_dir,
        )
        for s in services
    ]  # fmt: skip
    problems = []
    for service, (rc, out, err) in zip(services, run_all(argvs, timeout), strict=True):
        if rc == 0 and LOADS in out:
            continue
        error = python_error(err + "\n" + out)
        why = " | ".join(error) or (f"exit code {rc}" if rc >= 0 else "timed out")
        problems.append(f"the app does not load for {service['unit']} ({service['python']}): {why}")
    return problems


# Prints what `celery inspect ping` prints for an answer.
PING = """\
import importlib, signal, sys, time
node, seconds = sys.argv[1], float(sys.argv[2])
signal.alarm(int(seconds) + 15)  # a broker that hangs ends it too
app = importlib.import_module(sys.argv[3]).app
deadline = time.monotonic() + seconds
while True:
    try:
        replies = app.control.ping(destination=[node], timeout=1.0) or []
    except Exception:
        replies = []
        time.sleep(1)
    if any(node in reply for reply in replies):
        print(f"->  {node}: OK\\n        pong")
        break
    if time.monotonic() > deadline:
        sys.exit(1)
"""


def journal_end(unit: str) -> list[str]:
    """The end of a unit's journal that is not systemd's own (its Python error)."""
    out = subprocess.run(  # noqa: S603 - an argv list
        ["journalctl", "--no-pager", "--output=cat", "--lines=40", "--unit", unit],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    lines: list[str] = python_error(out)
    return lines


def wait_listening(host: str, port: int, seconds: float) -> bool:
    """True once ``host:port`` accepts a TCP connection, False after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)


def wait_for(
    units: Sequence[Mapping[str, Any]],
    nodes: Sequence[str],
    shim: str,
    listen: Mapping[str, Any] | None,
    seconds: int,
) -> list[str]:
    """Ping each unit's exact node at once, and wait for ``listen``; one line per silence.

    Each ping runs the worker's interpreter as its user with its environment file (so
    the broker password is never on a command line) and the shim (the -A module), about
    once a second until its node answers or ``seconds`` pass. Only an answer from
    exactly that node counts (``name-N@<the hostname this host reports>``). A silent
    unit's line ends with the end of its journal (the Python error, URL passwords
    replaced). ``listen`` (host, port): Flower's address, waited for until it accepts a
    connection.
    """
    argvs = [
        as_service(str(u["env_file"]), str(u["user"]),
                   [str(u["python"]), "-c", PING, node, str(seconds), shim])
        for u, node in zip(units, nodes, strict=True)
    ]  # fmt: skip
    silent = []
    for unit, node, (_rc, out, _err) in zip(
        units, nodes, run_all(argvs, seconds + 30), strict=True
    ):
        if not ping_answered(out, node):
            silent.append(
                f"{unit['unit']} (node {node}) does not answer ping; its journal ends: "
                + " | ".join(journal_end(str(unit["unit"])))
            )
    if listen and not wait_listening(str(listen["host"]), int(listen["port"]), seconds):
        silent.append(
            f"Flower does not listen on {listen['host']}:{listen['port']} after {seconds} s"
        )
    return silent
