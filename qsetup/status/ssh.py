"""One SSH round trip per host, every host at once (fabric connections, one thread each).

Connect and command timeouts bound each host, so a dead host costs at most its
timeout and never hides the others. A host whose endpoint has ``become`` (a login
user other than root) runs the status script under ``sudo -n``.
"""

from __future__ import annotations

import errno
import logging
import shlex
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from qsetup.desired.state import SshEndpoint, ssh_endpoints
from qsetup.errors import QsetupError
from qsetup.inventory.loader import LoadedInventory
from qsetup.inventory.model import Inventory
from qsetup.status.hosts import MARK, Outcome, assemble_hosts, build_script
from qsetup.status.model import HostStatus

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

    if isinstance(exc, CommandTimedOut):
        return f"the status command did not finish within {timeout:g} s"
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


def status_command(script: str, target: SshTarget) -> str:
    """The remote command that runs the status script on a host.

    With ``become`` and a login user other than root the script runs under ``sudo -n``
    (never a password prompt: one would hang until the timeout): what it reads, and
    what later reads may need (root-only files, journals), is root's. The script holds
    no secret, so nothing secret reaches argv.
    """
    command = "sh -c " + shlex.quote(script)
    return "sudo -n " + command if uses_sudo(target) else command


def uses_sudo(target: SshTarget) -> bool:
    """Whether reads on this host go through ``sudo -n`` (become, as a user not root)."""
    return target.become and target.user != "root"


def run_round(loaded: LoadedInventory, timeout: float) -> dict[str, HostStatus]:
    """Run the status script on every host in parallel; one HostStatus per host."""
    inv = loaded.inventory
    targets = ssh_targets(loaded)
    for key in dict.fromkeys(t.key for t in targets if t.key is not None):
        if not key.is_file():
            raise QsetupError(
                f"SSH key {key} does not exist; fix ssh.key (or a host's ssh_key) in {loaded.path}"
            )
    known_hosts = known_hosts_path(loaded)
    script = build_script(inv)
    # Hosts that are the same SSH endpoint share one connection (and one answer); it
    # uses sudo when any of them asks for become.
    names: dict[tuple[str, int, str], list[SshTarget]] = {}
    for t in targets:
        names.setdefault((t.address, t.port, t.user), []).append(t)
    jobs: dict[tuple[str, int, str], tuple[Any, SshTarget]] = {}
    for endpoint, same in names.items():
        first = replace(same[0], become=any(t.become for t in same))
        jobs[endpoint] = (_connection(first, inv, known_hosts, timeout), first)
    results = _run_all(
        {cxn: status_command(script, t) for cxn, t in jobs.values()}, max(1, round(timeout))
    )
    outcomes = {}
    for t in targets:
        endpoint = (t.address, t.port, t.user)
        cxn, first = jobs[endpoint]
        outcome = _outcome(t.address, results.get(cxn), timeout, first)
        if len(names[endpoint]) > 1:
            outcome = replace(outcome, same_endpoint=tuple(h.name for h in names[endpoint]))
        outcomes[t.name] = outcome
    return assemble_hosts(inv, outcomes)


def _run_all(commands: Mapping[Any, str], timeout: int) -> dict[Any, Any]:
    """Run each connection's own command, all at once; a Result or the exception for each.

    What fabric's ThreadingGroup does, with one command per connection (sudo or not).
    """

    def one(cxn: Any) -> Any:
        try:
            return cxn.run(commands[cxn], timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - reported as the host's outcome
            return exc
        finally:
            cxn.close()

    if not commands:
        return {}
    with ThreadPoolExecutor(max_workers=min(64, len(commands))) as pool:
        return dict(zip(commands, pool.map(one, commands), strict=True))


def _outcome(address: str, result: Any, timeout: float, target: SshTarget) -> Outcome:
    if result is None:
        return Outcome(address, None, "no result from the SSH round")
    if isinstance(result, BaseException):
        return Outcome(address, None, describe_ssh_error(result, timeout))
    stdout = str(result.stdout)
    if MARK not in stdout:
        stderr = str(result.stderr).strip().splitlines()
        why = stderr[-1] if stderr else "no output"
        if why.startswith("sudo:") and uses_sudo(target):
            return Outcome(
                address,
                None,
                f"`sudo -n` as {target.user} failed ({why}); ssh.become needs passwordless "
                f"sudo for {target.user} on the host",
            )
        return Outcome(address, None, f"the status command failed (exit {result.exited}): {why}")
    return Outcome(address, stdout, None)
