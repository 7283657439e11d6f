"""One SSH round trip per host, every host at once (OpenSSH's client, one process each).

Each host runs the one read (``playbooks/module_utils/qsetup_read.py``, the program
the deploy's preflight runs as an Ansible module): ``python3 -c`` with a short boot
line, the read's parameters as JSON and then its source on standard input, so no
parameter (the broker admin's password) is ever in a command line. The client is the
one Ansible runs for the deploy, with the same host key file and checking, so status
reaches a host exactly when a deploy would. Connect and command timeouts bound each
host, so a dead host costs at most its timeout and never hides the others. A host
whose endpoint has ``become`` (a login user other than root) runs it under ``sudo -n``.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from qsetup.desired.state import SshEndpoint, ssh_endpoints
from qsetup.errors import QsetupError
from qsetup.inventory.loader import LoadedInventory
from qsetup.inventory.model import Inventory
from qsetup.status.background import Background
from qsetup.status.hosts import Outcome
from qsetup.status.prefetch import Client, Prefetch, read_preamble, spawn

SshTarget = SshEndpoint


def ssh_targets(loaded: LoadedInventory) -> list[SshTarget]:
    """Each host's address, port, user and key, as deploy reaches it too."""
    return list(ssh_endpoints(loaded.inventory, loaded.path).values())


class ReadTimedOut(Exception):
    """The read did not finish within the host's timeout."""


# What OpenSSH's client prints (exit 255) when it could not run the command, and what
# that means for the user: the first pattern found in its error output wins.
_SSH_FAILURES: tuple[tuple[str, str], ...] = (
    (
        "during banner exchange",
        "no SSH greeting within {timeout:g} s (the port answers, sshd does not)",
    ),
    ("Connection refused", "connection refused on port {port} (is sshd running?)"),
    ("No route to host", "no route to host (is it powered on?)"),
    ("Network is unreachable", "no route to host (is it powered on?)"),
    ("timed out", "no answer within {timeout:g} s (SSH connect timeout; is it powered on?)"),
    (
        "IDENTIFICATION HAS CHANGED",
        "its host key differs from the known one; if the host was rebuilt, "
        "remove its line from the known_hosts file",
    ),
    (
        "Host key verification failed",
        "its host key is not in the known_hosts file and host_key_checking is strict; "
        "run qsetup deploy with accept-new once",
    ),
    ("Permission denied", "SSH authentication failed; check ssh.user and ssh.key"),
    ("Could not resolve hostname", "its address does not resolve; check hosts.{host}.address"),
)


def describe_ssh_failure(stderr: str, timeout: float, port: int, host: str = "<name>") -> str:
    """Say in a few words why OpenSSH's client could not run the read on ``host``."""
    for pattern, text in _SSH_FAILURES:
        if pattern in stderr:
            return text.format(timeout=timeout, port=port, host=host)
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return f"SSH failed: {lines[-1]}" if lines else "SSH failed without saying why"


def describe_ssh_error(exc: BaseException, timeout: float) -> str:
    """Say in a few words why the client could not be run or did not finish."""
    if isinstance(exc, ReadTimedOut):
        return f"the read did not finish within {timeout:g} s"
    if isinstance(exc, FileNotFoundError):
        return "the ssh client is not installed here; install openssh-client"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


KEX = "curve25519-sha256"
"""The key exchange the read's clients offer first (see :func:`ssh_argv`)."""


def ssh_argv(target: SshTarget, inv: Inventory, known_hosts: Path, timeout: float) -> list[str]:
    """The ``ssh`` command line that reaches ``target`` (the remote command appended later).

    The host key options are the deploy's (``remote.runner.ansible_envvars``), except
    that status never writes the known_hosts file: with accept-new a key not yet known is
    accepted for this connection and recorded in ``/dev/null`` (the first file named),
    while a changed one is still refused because the kept file is read too.
    """
    seconds = max(1, round(timeout))
    argv = [
        "ssh", "-T", "-p", str(target.port), "-l", target.user,
        "-o", "BatchMode=yes", "-o", f"ConnectTimeout={seconds}",
        "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "LogLevel=ERROR",
        # curve25519 first (the rest of the default list after it): the key exchange
        # paramiko made before. OpenSSH 9's default, sntrup761x25519, cost about 70 ms
        # of client CPU per host here: 1.45 of 1.5 core-seconds for 20 hosts.
        "-o", f"KexAlgorithms=^{KEX}",
    ]  # fmt: skip
    if target.key is not None:
        argv += ["-i", str(target.key)]
    checking = inv.ssh.host_key_checking
    kept = '"' + str(known_hosts).replace('"', "") + '"'
    if checking == "off":
        argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    elif checking == "strict":
        argv += ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={kept}"]
    else:
        argv += [
            "-o", "StrictHostKeyChecking=accept-new",
            "-o", f"UserKnownHostsFile=/dev/null {kept}",
        ]  # fmt: skip
    return [*argv, "--", target.address]


def known_hosts_path(loaded: LoadedInventory) -> Path:
    """The known_hosts file ``qsetup deploy`` keeps beside the inventory."""
    return loaded.path.resolve().parent / ".qsetup" / "known_hosts"


MARK = "@@qsetup-read "
"""Starts the line that holds the read's answer (JSON), whatever else the host prints."""

# Loads the read (prefetch.read_preamble: a header line, then the compressed source and
# the compressed code, which each client sends as it starts, so the host loads it while
# the controller plans): the code when the host's Python has the controller's cache tag,
# else the source compiled. Then it waits for the parameters' line, runs the read and
# prints its answer on one marked line.
BOOT = (
    "import json,sys,zlib\n"
    "b=sys.stdin.buffer\n"
    "n,m,t=b.readline().split()\n"
    "s=b.read(int(n))\n"
    "c=b.read(int(m))\n"
    "g={'__name__':'qsetup_read'}\n"
    "if t.decode()==str(sys.implementation.cache_tag):\n"
    " import marshal\n"
    " k=marshal.loads(zlib.decompress(c))\n"
    "else:\n"
    " k=compile(zlib.decompress(s),'qsetup_read.py','exec')\n"
    "exec(k,g)\n"
    "p=json.loads(b.readline())\n"
    f"sys.stdout.write({MARK!r}+json.dumps(g['read_host'](p,g['run_argv']))+'\\n')\n"
)


def read_command(target: SshTarget) -> str:
    """The remote command that runs the read on a host (no secret in it).

    With ``become`` and a login user other than root it runs under ``sudo -n`` (never
    a password prompt: one would hang until the timeout): what it reads (the manifest,
    secret files' checksums) is root's.
    """
    # -S: no site module (the read needs the standard library only; 2 ms of each host).
    command = "python3 -S -c " + shlex.quote(BOOT)
    return "sudo -n " + command if uses_sudo(target) else command


def uses_sudo(target: SshTarget) -> bool:
    """Whether reads on this host go through ``sudo -n`` (become, as a user not root)."""
    return target.become and target.user != "root"


DEFAULT_TIMEOUT = 5.0
"""Status's per-host timeout when none is given: the inventory's connect timeout, at most this."""


def effective_timeout(loaded: LoadedInventory, timeout: float | None) -> float:
    """The per-host timeout: the one given, else the inventory's connect timeout up to 5 s."""
    if timeout is not None:
        return timeout
    return float(min(loaded.inventory.ssh.connect_timeout, DEFAULT_TIMEOUT))


def start_reading(
    loaded: LoadedInventory, seconds: float, prefetch: Prefetch | None = None
) -> ReadRound:
    """Every host's SSH client, started: they connect while status prepares the rest.

    ``prefetch``: clients started before the inventory loaded; each is used only when its
    command line is the one computed here (see :mod:`qsetup.status.prefetch`).
    """
    return ReadRound(loaded, seconds, loaded.inventory.hosts, prefetch=prefetch)


def read_round(
    loaded: LoadedInventory, timeout: float, params: Mapping[str, Mapping[str, Any]]
) -> dict[str, Outcome]:
    """Run the one read on every host in ``params`` at once; each host's outcome.

    ``params`` maps inventory host names to the read's parameters for that host.
    """
    return ReadRound(loaded, timeout, params).finish(params)


class ReadRound:
    """The one read on several hosts at once, connected before its parameters are known.

    Creating it starts each host's ``ssh`` (connect, authenticate, start the read, which
    then waits for its parameters on standard input), so the handshakes run while the
    caller plans what the hosts should hold; :meth:`finish` sends each host its
    parameters and the read's source and collects the outcomes. Hosts that are one
    machine (the same SSH endpoint) are each read on their own connection; their
    outcomes name each other (``same_endpoint``).
    """

    def __init__(
        self,
        loaded: LoadedInventory,
        timeout: float,
        hosts: Iterable[str],
        extra_seconds: float = 0.0,
        prefetch: Prefetch | None = None,
    ) -> None:
        wanted = set(hosts)
        self._timeout = timeout
        self._targets = [t for t in ssh_targets(loaded) if t.name in wanted]
        for key in dict.fromkeys(t.key for t in self._targets if t.key is not None):
            if not key.is_file():
                raise QsetupError(
                    f"SSH key {key} does not exist; fix ssh.key (or a host's ssh_key) in "
                    f"{loaded.path}"
                )
        self._machines: dict[tuple[str, int, str], list[str]] = {}
        for t in ssh_targets(loaded):
            self._machines.setdefault((t.address, t.port, t.user), []).append(t.name)
        known_hosts = known_hosts_path(loaded)
        preamble = read_preamble()
        # ``extra_seconds``: what the read itself may take beyond connecting.
        self._deadline = time.monotonic() + 2 * timeout + 1 + extra_seconds
        self._sent: Background[dict[str, SshResult | BaseException]] | None = None
        argvs = {
            t.name: [*ssh_argv(t, loaded.inventory, known_hosts, timeout), read_command(t)]
            for t in self._targets
        }
        self._clients: dict[str, Client] = {}
        for name, argv in argvs.items():
            taken = prefetch.take(name, argv) if prefetch is not None else None
            self._clients[name] = taken if taken is not None else _spawn(argv, preamble)
        if prefetch is not None:
            prefetch.settle(argvs)

    def send(self, params: Mapping[str, Mapping[str, Any]]) -> None:
        """Send each host its parameters now; :meth:`finish` collects (once only)."""
        if self._sent is not None:
            return
        stdin = {
            name: json.dumps(dict(params[name])) + "\n" for name in self._clients if name in params
        }
        self._sent = Background(partial(_collect, self._clients, stdin, self._deadline))

    def finish(self, params: Mapping[str, Mapping[str, Any]]) -> dict[str, Outcome]:
        """Collect every host's outcome (sending ``params`` first unless :meth:`send` did).

        A host missing from ``params`` gets none and is not read.
        """
        self.send(params)
        assert self._sent is not None
        results = self._sent.result()
        outcomes = {}
        for t in self._targets:
            if t.name not in params:
                continue
            outcome = _outcome(t.address, results.get(t.name), self._timeout, t)
            same = self._machines[(t.address, t.port, t.user)]
            if len(same) > 1:
                outcome = replace(outcome, same_endpoint=tuple(same))
            outcomes[t.name] = outcome
        return outcomes


@dataclass(frozen=True)
class SshResult:
    """What one host's ssh client printed, and its exit status."""

    stdout: str
    stderr: str
    exited: int


def _spawn(argv: Sequence[str], first: bytes) -> Client:
    """Start one host's client with ``first`` on its input (see :func:`prefetch.spawn`)."""
    return spawn(argv, first)


def _collect(
    clients: Mapping[str, Client],
    stdin: Mapping[str, str],
    deadline: float,
) -> dict[str, SshResult | BaseException]:
    """Feed every client its input and read what it prints, all at once.

    A thread per host only feeds and reads its pipes. A host gets the connect timeout
    and then as long again for the read; past that its client is killed and the host's
    outcome says so. A client with no input here is ended.
    """

    def one(name: str) -> SshResult | BaseException:
        proc = clients[name]
        if isinstance(proc, OSError):
            return proc
        if name not in stdin:
            proc.kill()
            proc.communicate()
            return ReadTimedOut()
        try:
            out, err = proc.communicate(
                stdin[name].encode("utf-8"), timeout=max(0.1, deadline - time.monotonic())
            )
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return ReadTimedOut()
        except BrokenPipeError:  # the client ended before it took its input
            out, err = proc.communicate()
        return SshResult(
            out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), proc.returncode
        )

    if not clients:
        return {}
    with ThreadPoolExecutor(max_workers=min(64, len(clients))) as pool:
        return dict(zip(clients, pool.map(one, clients), strict=True))


def _outcome(
    address: str, result: SshResult | BaseException | None, timeout: float, target: SshTarget
) -> Outcome:
    if result is None:
        return Outcome(address, None, "no result from the SSH round")
    if isinstance(result, BaseException):
        return Outcome(address, None, describe_ssh_error(result, timeout))
    for line in str(result.stdout).splitlines():
        if line.startswith(MARK):
            try:
                facts = json.loads(line[len(MARK) :])
            except ValueError:
                break
            if isinstance(facts, dict):
                return Outcome(address, facts, None)
    if result.exited == 255:  # the client's own failure: the read never ran
        return Outcome(
            address, None, describe_ssh_failure(result.stderr, timeout, target.port, target.name)
        )
    stderr = str(result.stderr).strip().splitlines()
    why = stderr[-1] if stderr else "no output"
    if why.startswith("sudo:") and uses_sudo(target):
        return Outcome(
            address,
            None,
            f"`sudo -n` as {target.user} failed ({why}); ssh.become needs passwordless "
            f"sudo for {target.user} on the host",
        )
    if result.exited == 127 or "python3: not found" in why or "python3: command not found" in why:
        return Outcome(
            address, None, "python3 is not installed there (qsetup needs it); install python3"
        )
    return Outcome(address, None, f"the read failed (exit {result.exited}): {why}")
