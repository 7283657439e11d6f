"""One SSH round trip per host, every host at once (fabric connections, one thread each).

Each host runs the one read (``playbooks/module_utils/qsetup_read.py``, the program
the deploy's preflight runs as an Ansible module): ``python3 -c`` with a short boot
line, the read's parameters as JSON and then its source on standard input, so no
parameter (the broker admin's password) is ever in a command line. Connect and
command timeouts bound each host, so a dead host costs at most its timeout and never
hides the others. A host whose endpoint has ``become`` (a login user other than root)
runs it under ``sudo -n``.
"""

from __future__ import annotations

import errno
import json
import logging
import shlex
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from qsetup.desired.state import SshEndpoint, ssh_endpoints
from qsetup.errors import QsetupError
from qsetup.inventory.loader import LoadedInventory
from qsetup.inventory.model import Inventory
from qsetup.resources import resource_dir
from qsetup.status.hosts import Outcome

# paramiko logs a failed handshake as an ERROR; without a handler Python would print it
# on stderr. The host's line in the report already says what happened.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


SshTarget = SshEndpoint


def ssh_targets(loaded: LoadedInventory) -> list[SshTarget]:
    """Each host's address, port, user and key, as deploy reaches it too."""
    return list(ssh_endpoints(loaded.inventory, loaded.path).values())


def describe_ssh_error(exc: BaseException, timeout: float) -> str:
    """Say in a few words why a host could not be checked."""
    import paramiko
    from invoke.exceptions import CommandTimedOut
    from paramiko.ssh_exception import NoValidConnectionsError

    if isinstance(exc, CommandTimedOut | ReadTimedOut):
        return f"the read did not finish within {timeout:g} s"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s (SSH connect timeout)"
    if isinstance(exc, NoValidConnectionsError):
        codes = {getattr(e, "errno", None) for e in exc.errors.values()}
        if errno.ECONNREFUSED in codes:
            return f"connection refused on port {_port(exc)} (is sshd running?)"
        return _oserror_text(next(iter(exc.errors.values())))
    if isinstance(exc, paramiko.BadHostKeyException):
        return (
            "its host key differs from the known one; if the host was rebuilt, "
            "remove its line from the known_hosts file"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return "SSH authentication failed; check ssh.user and ssh.key"
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return (
            "its host key is not in the known_hosts file and host_key_checking is strict; "
            "run qsetup deploy with accept-new once"
        )
    if isinstance(exc, paramiko.SSHException) and (
        "banner" in str(exc) or "No existing session" in str(exc)
    ):
        return f"no SSH greeting within {timeout:g} s (the port answers, sshd does not)"
    if isinstance(exc, OSError):
        return _oserror_text(exc)
    return f"{type(exc).__name__}: {exc}"


def _port(exc: Any) -> str:
    ports = {str(key[1]) for key in getattr(exc, "errors", {}) if len(key) > 1}
    return ", ".join(sorted(ports)) or "?"


def _oserror_text(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "no route to host (is it powered on?)"
        if exc.errno == errno.ECONNREFUSED:
            return "connection refused (is sshd running?)"
        if exc.strerror:
            return exc.strerror
    return str(exc) or type(exc).__name__


def _connection(target: SshTarget, inv: Inventory, known_hosts: Path, timeout: float) -> Any:
    import paramiko
    from fabric import Config, Connection

    seconds = max(1, round(timeout))
    kwargs: dict[str, Any] = {
        "banner_timeout": timeout,
        "auth_timeout": timeout,
        "channel_timeout": timeout,
    }
    if target.key is not None:
        kwargs["key_filename"] = str(target.key)
    config = Config(overrides={"run": {"in_stream": False, "hide": True, "warn": True}})
    cxn = Connection(
        target.address,
        user=target.user,
        port=target.port,
        config=config,
        connect_timeout=seconds,
        connect_kwargs=kwargs,
    )
    checking = inv.ssh.host_key_checking
    client = cxn.client
    if checking == "off":
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        return cxn
    if known_hosts.is_file():
        # HostKeys.load, not load_host_keys: status reads the file deploy keeps, never writes it.
        client.get_host_keys().load(str(known_hosts))
    if checking == "strict":
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
    else:
        # accept-new: an unknown key is accepted (in memory); a changed one is refused by
        # paramiko itself (BadHostKeyException) because the known key was loaded.
        client.set_missing_host_key_policy(_AcceptNew())
    return cxn


class _AcceptNew:
    """Accept a host key not yet known, without writing it anywhere."""

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        """Remember the key for this connection only."""
        client.get_host_keys().add(hostname, key.get_name(), key)


def known_hosts_path(loaded: LoadedInventory) -> Path:
    """The known_hosts file ``qsetup deploy`` keeps beside the inventory."""
    return loaded.path.resolve().parent / ".qsetup" / "known_hosts"


MARK = "@@qsetup-read "
"""Starts the line that holds the read's answer (JSON), whatever else the host prints."""

# Runs the read's source (after the parameters' line on stdin) as a module of its own
# and prints its answer on one marked line.
BOOT = (
    "import json,sys\n"
    "p=json.loads(sys.stdin.readline())\n"
    "g={'__name__':'qsetup_read'}\n"
    "exec(compile(sys.stdin.read(),'qsetup_read.py','exec'),g)\n"
    f"sys.stdout.write({MARK!r}+json.dumps(g['read_host'](p,g['run_argv']))+'\\n')\n"
)


def read_source() -> str:
    """The one read's source, as qsetup ships it with the playbooks."""
    path = resource_dir("playbooks") / "module_utils" / "qsetup_read.py"
    return path.read_text(encoding="utf-8")


def read_command(target: SshTarget) -> str:
    """The remote command that runs the read on a host (no secret in it).

    With ``become`` and a login user other than root it runs under ``sudo -n`` (never
    a password prompt: one would hang until the timeout): what it reads (the manifest,
    secret files' checksums) is root's.
    """
    command = "python3 -c " + shlex.quote(BOOT)
    return "sudo -n " + command if uses_sudo(target) else command


def uses_sudo(target: SshTarget) -> bool:
    """Whether reads on this host go through ``sudo -n`` (become, as a user not root)."""
    return target.become and target.user != "root"


def read_round(
    loaded: LoadedInventory, timeout: float, params: Mapping[str, Mapping[str, Any]]
) -> dict[str, Outcome]:
    """Run the one read on every host in ``params`` at once; each host's outcome.

    ``params`` maps inventory host names to the read's parameters for that host.
    Hosts that are one machine (the same SSH endpoint) are each read on their own
    connection; their outcomes name each other (``same_endpoint``).
    """
    inv = loaded.inventory
    targets = [t for t in ssh_targets(loaded) if t.name in params]
    for key in dict.fromkeys(t.key for t in targets if t.key is not None):
        if not key.is_file():
            raise QsetupError(
                f"SSH key {key} does not exist; fix ssh.key (or a host's ssh_key) in {loaded.path}"
            )
    known_hosts = known_hosts_path(loaded)
    source = read_source()
    machines: dict[tuple[str, int, str], list[str]] = {}
    for t in ssh_targets(loaded):
        machines.setdefault((t.address, t.port, t.user), []).append(t.name)
    jobs = {t.name: (_connection(t, inv, known_hosts, timeout), t) for t in targets}
    results = _run_all(
        {
            cxn: (read_command(t), json.dumps(dict(params[t.name])) + "\n" + source)
            for cxn, t in jobs.values()
        },
        max(1, round(timeout)),
    )
    outcomes = {}
    for t in targets:
        cxn, _ = jobs[t.name]
        outcome = _outcome(t.address, results.get(cxn), timeout, t)
        same = machines[(t.address, t.port, t.user)]
        if len(same) > 1:
            outcome = replace(outcome, same_endpoint=tuple(same))
        outcomes[t.name] = outcome
    return outcomes


def _run_all(commands: Mapping[Any, tuple[str, str]], timeout: int) -> dict[Any, Any]:
    """Run each connection's own command with its own input, all at once.

    A Result or the exception for each; what fabric's ThreadingGroup does, with one
    command and one standard input per connection.
    """

    def one(cxn: Any) -> Any:
        command, stdin = commands[cxn]
        try:
            return _exec(cxn, command, stdin, timeout)
        except Exception as exc:  # noqa: BLE001 - reported as the host's outcome
            return exc
        finally:
            cxn.close()

    if not commands:
        return {}
    with ThreadPoolExecutor(max_workers=min(64, len(commands))) as pool:
        return dict(zip(commands, pool.map(one, commands), strict=True))


@dataclass(frozen=True)
class _Result:
    stdout: str
    stderr: str
    exited: int


class ReadTimedOut(Exception):
    """The read did not finish within the host's timeout."""


def _exec(cxn: Any, command: str, stdin: str, timeout: float) -> _Result:
    """Run ``command`` on an open session with ``stdin`` sent whole, then closed.

    Straight on paramiko's channel: invoke's runner feeds a stream one byte per 10 ms
    (about 3 minutes for the read's 17 KB source).
    """
    cxn.open()
    chan = cxn.client.get_transport().open_session(timeout=timeout)
    deadline = time.monotonic() + timeout
    try:
        chan.exec_command(command)
        chan.sendall(stdin.encode("utf-8"))
        chan.shutdown_write()
        out, err = bytearray(), bytearray()
        while True:
            busy = False
            if chan.recv_ready():
                out += chan.recv(65536)
                busy = True
            if chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
                busy = True
            if not busy:
                if chan.exit_status_ready():
                    break
                if time.monotonic() > deadline:
                    raise ReadTimedOut
                time.sleep(0.005)
        return _Result(
            out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), chan.recv_exit_status()
        )
    finally:
        chan.close()


def _outcome(address: str, result: Any, timeout: float, target: SshTarget) -> Outcome:
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
