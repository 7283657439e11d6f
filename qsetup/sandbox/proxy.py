"""The forward proxy (tinyproxy) the sandbox runs on its bridge for package access.

It is our own tinyproxy process with its own config, not the system service. It
resolves registry names through this machine's /etc/hosts, so nothing about the
registries is written here.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import time
from pathlib import Path

from qsetup.errors import SandboxError
from qsetup.sandbox.procs import process_start_time

PROXY_PORT = 3128


def render_config(listen: str, subnet: ipaddress.IPv4Network, port: int = PROXY_PORT) -> str:
    """Return a tinyproxy configuration that serves only the sandbox subnet."""
    return (
        "# qsetup sandbox forward proxy (started and stopped by qsetup sandbox)\n"
        "User nobody\n"
        "Group nogroup\n"
        f"Port {port}\n"
        f"Listen {listen}\n"
        "Timeout 600\n"
        "MaxClients 200\n"
        "LogLevel Warning\n"
        "DisableViaHeader Yes\n"
        f"Allow {subnet}\n"
        "ConnectPort 443\n"
        "ConnectPort 80\n"
    )


def start_proxy(
    state_dir: Path, listen: str, subnet: ipaddress.IPv4Network, port: int = PROXY_PORT
) -> tuple[int, int]:
    """Start tinyproxy in the foreground of its own session, logging into ``state_dir``.

    Returns:
        (pid, start time) of the tinyproxy process.

    Raises:
        SandboxError: tinyproxy is missing or did not start listening.
    """
    conf = state_dir / "tinyproxy.conf"
    conf.write_text(render_config(listen, subnet, port), encoding="utf-8")
    conf.chmod(0o644)
    log_path = state_dir / "tinyproxy.log"
    with log_path.open("ab") as log:
        try:
            proc = subprocess.Popen(
                ["tinyproxy", "-d", "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError:
            raise SandboxError(
                "tinyproxy is not installed; run: apt-get install -y tinyproxy"
            ) from None
    start = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        start = start or process_start_time(proc.pid)
        if proc.poll() is not None:
            break
        if _listening(listen, port):
            if start is None:
                break
            return proc.pid, start
        time.sleep(0.05)
    tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    raise SandboxError(
        f"the sandbox proxy (tinyproxy) did not start on {listen}:{port}: {' / '.join(tail)}; "
        f"is something else using port {port}? see {log_path}"
    )


def _listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def proxy_alive(pid: int | None, start: int | None, listen: str, port: int) -> bool:
    """Return whether our recorded proxy process is alive and accepting connections."""
    if pid is None or start is None or process_start_time(pid) != start:
        return False
    return _listening(listen, port)
