"""One sandbox host: its overlay root, the files written into it, its nspawn process.

Also the SSH plumbing the sandbox uses to ask a host whether it is ready.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from qsetup.errors import SandboxError
from qsetup.sandbox import cgroup
from qsetup.sandbox.login import ensure_login_user
from qsetup.sandbox.procs import (
    child_pids,
    is_same_process,
    process_start_time,
    reap,
    run,
    signal_recorded,
)
from qsetup.sandbox.rootfs import install_extra_cas, update_ca_certificates
from qsetup.sandbox.state import HostRecord

Progress = Callable[[str], None]
READY_STATES = ("running", "degraded")
SSH_CONNECT_TIMEOUT = 2


@dataclass(frozen=True)
class HostStatus:
    """What the sandbox knows about one host right now.

    Attributes:
        name: host name.
        address: IPv4 address on the bridge.
        state: ``running``, ``degraded``, ``starting``, ``stopping`` or ``dead``.
        failed_units: failed systemd units when ``degraded``.
        pid: PID of its systemd-nspawn process, if alive.
    """

    name: str
    address: str
    state: str
    failed_units: tuple[str, ...] = ()
    pid: int | None = None

    def as_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict (``name``, ``address``, ``state``, ...)."""
        return {
            "name": self.name,
            "address": self.address,
            "state": self.state,
            "failed_units": list(self.failed_units),
            "pid": self.pid,
        }


def ssh_args(key: Path, address: str, *, tty: bool = False, user: str = "root") -> list[str]:
    """Return the ssh command line (without a remote command) for a sandbox host."""
    args = [
        "ssh",
        "-i",
        str(key),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={SSH_CONNECT_TIMEOUT}",
    ]
    if tty:
        args.append("-t")
    args.append(f"{user}@{address}")
    return args


def ensure_keypair(state_dir: Path) -> Path:
    """Return the sandbox's private key (ed25519, 0600), generating it once."""
    key = state_dir / "id_ed25519"
    if not key.is_file() or not key.with_suffix(".pub").is_file():
        key.unlink(missing_ok=True)
        key.with_suffix(".pub").unlink(missing_ok=True)
        run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "qsetup-sandbox", "-f", str(key)],
            timeout=30,
        )
    key.chmod(0o600)
    return key


def render_etc_hosts(hosts: Sequence[tuple[str, str]]) -> str:
    """Return /etc/hosts naming every sandbox host (``(name, address)`` pairs)."""
    lines = [
        "# written by qsetup sandbox",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
    ]
    lines.extend(f"{address}\t{name}" for name, address in hosts)
    return "\n".join(lines) + "\n"


def render_apt_proxy(proxy_url: str) -> str:
    """Return the apt configuration sending all downloads through the sandbox proxy."""
    return f'Acquire::http::Proxy "{proxy_url}";\nAcquire::https::Proxy "{proxy_url}";\n'


def render_pip_conf(proxy_url: str) -> str:
    """Return /etc/pip.conf: pip through the sandbox proxy, trusting the system CAs."""
    return f"[global]\nproxy = {proxy_url}\ncert = /etc/ssl/certs/ca-certificates.crt\n"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.qsetup-tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(mode)
    tmp.replace(path)


def mount_overlay(rec: HostRecord, lower: Path) -> None:
    """Mount the host's overlay (lower = cached tree) at ``rec.merged``."""
    for path in (rec.upper, rec.work, rec.merged):
        path.mkdir(parents=True, exist_ok=True)
    if is_mounted(rec.merged):
        return
    run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={lower},upperdir={rec.upper},workdir={rec.work}",
            str(rec.merged),
        ],
        timeout=30,
    )


def is_mounted(path: Path) -> bool:
    """Return whether something is mounted exactly at ``path``."""
    target = str(path.resolve())
    with Path("/proc/self/mountinfo").open(encoding="utf-8") as fh:
        return any(line.split()[4].replace("\\040", " ") == target for line in fh)


def ensure_host_key(host_keys_dir: Path, address: str) -> Path:
    """Return the SSH host key of the host at ``address``, generating it once.

    Keys are kept per address across ``down``/``up`` so a client's known_hosts
    (``accept-new``) stays valid when hosts are rebuilt.
    """
    host_keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = host_keys_dir / f"{address}_ed25519"
    if not key.is_file() or not Path(f"{key}.pub").is_file():
        key.unlink(missing_ok=True)
        Path(f"{key}.pub").unlink(missing_ok=True)
        run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"qsetup-sandbox@{address}"]
            + ["-f", str(key)],
            timeout=30,
        )
    return key


def write_host_files(
    rec: HostRecord,
    hosts: Sequence[tuple[str, str]],
    public_key: str,
    proxy_url: str,
    host_keys_dir: Path,
) -> None:
    """Write the host's identity and configuration into its (mounted) root.

    Hostname, /etc/hosts, root's authorized_keys, the login user (passwordless sudo,
    the same key; see ``login``), apt and pip proxy settings, the machine's extra CA
    certificates, a machine id and an SSH host key of its own (kept in
    ``host_keys_dir`` per address).
    """
    root = rec.merged
    _write(root / "etc/hostname", f"{rec.name}\n")
    _write(root / "etc/hosts", render_etc_hosts(hosts))
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    ssh_dir.chmod(0o700)
    _write(ssh_dir / "authorized_keys", public_key.strip() + "\n", 0o600)
    ensure_login_user(root, public_key)
    _write(root / "etc/apt/apt.conf.d/01qsetup-sandbox-proxy", render_apt_proxy(proxy_url))
    _write(root / "etc/pip.conf", render_pip_conf(proxy_url))
    machine_id = root / "etc/machine-id"
    if not machine_id.is_file() or not machine_id.read_text(encoding="utf-8").strip():
        _write(machine_id, uuid.uuid4().hex + "\n", 0o444)
    saved = ensure_host_key(host_keys_dir, rec.address)
    for suffix in ("", ".pub"):
        data = Path(f"{saved}{suffix}").read_bytes()
        target = root / f"etc/ssh/ssh_host_ed25519_key{suffix}"
        target.write_bytes(data)
        target.chmod(0o600 if not suffix else 0o644)
    # The cached tree has the CAs of build time; the machine may have gained some since.
    if install_extra_cas(root):
        update_ca_certificates(root)


def kept_blocks(text: str) -> str:
    """The ``# BEGIN``/``# END`` blocks in ``text`` (a deploy's cluster node names), as they are."""
    kept: list[str] = []
    inside = False
    for line in text.splitlines():
        inside = inside or line.startswith("# BEGIN ")
        if inside:
            kept.append(line)
        inside = inside and not line.startswith("# END ")
    return "".join(f"{line}\n" for line in kept)


def update_etc_hosts(rec: HostRecord, hosts: Sequence[tuple[str, str]]) -> bool:
    """Rewrite a host's /etc/hosts if the list of hosts changed; return whether it did.

    Blocks a deploy added (the cluster's node names) stay: wiping them would hide from
    the tests what a real host keeps.
    """
    path = rec.merged / "etc/hosts"
    text = render_etc_hosts(hosts)
    try:
        now = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        now = ""
    if now.startswith(text):
        return False
    _write(path, text + kept_blocks(now))
    return True


def nspawn_args(rec: HostRecord) -> list[str]:
    """Return the systemd-nspawn command line that boots the host."""
    return [
        "systemd-nspawn",
        "--boot",
        "--register=no",
        "--keep-unit",
        f"--machine={rec.name}",
        f"--directory={rec.merged}",
        f"--network-namespace-path=/run/netns/{rec.netns}",
        # nspawn drops CAP_NET_ADMIN; the host gets it back for its own network namespace
        # only (a firewall of its own, as root on a real machine has: nft, firewall.enabled).
        "--capability=CAP_NET_ADMIN",
        "--console=read-only",
        "--link-journal=no",
        "--resolv-conf=off",
        "--timezone=off",
    ]


def start_nspawn(rec: HostRecord) -> tuple[int, int]:
    """Start systemd-nspawn in the background (own session, console to ``rec.log``).

    Returns:
        (pid, start time) of the nspawn process.
    """
    log_path = Path(rec.log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # In a cgroup of its own: hosts that share one also share their units' cgroups (cgroup.py).
    argv = cgroup.joining(cgroup.prepare(rec.name), nspawn_args(rec))
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    start = process_start_time(proc.pid)
    if start is None:
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise SandboxError(
            f"systemd-nspawn for {rec.name} exited at once: {' / '.join(tail)} (see {log_path})"
        )
    return proc.pid, start


def find_leader(rec: HostRecord) -> tuple[int, int] | None:
    """Return (pid, start time) of the container's init once nspawn has started it."""
    if rec.pid is None or not is_same_process(rec.pid, rec.pid_start):
        return None
    for child in child_pids(rec.pid):
        try:
            comm = Path(f"/proc/{child}/comm").read_text(encoding="utf-8").strip()
        except (FileNotFoundError, ProcessLookupError):  # a child that ended meanwhile
            continue
        start = process_start_time(child)
        if comm == "systemd" and start is not None:
            return child, start
    return None


def host_alive(rec: HostRecord) -> bool:
    """Return whether both the nspawn process and the container's init are alive."""
    nspawn_ok = is_same_process(rec.pid, rec.pid_start)
    if rec.leader_pid is None:
        return nspawn_ok
    return nspawn_ok and is_same_process(rec.leader_pid, rec.leader_start)


def any_process_alive(rec: HostRecord) -> bool:
    """Return whether the nspawn process or the container's init is still alive."""
    return is_same_process(rec.pid, rec.pid_start) or is_same_process(
        rec.leader_pid, rec.leader_start
    )


def request_stop(rec: HostRecord) -> None:
    """Ask the host to power off: SIGTERM to nspawn makes it stop the container cleanly."""
    if not signal_recorded(rec.pid, rec.pid_start, signal.SIGTERM):
        # nspawn is gone but the container may live on: SIGRTMIN+3 is systemd's poweroff.
        signal_recorded(rec.leader_pid, rec.leader_start, signal.SIGRTMIN + 3)


def force_stop(rec: HostRecord) -> None:
    """SIGKILL the container's init (ending its PID namespace) and the nspawn process."""
    signal_recorded(rec.leader_pid, rec.leader_start, signal.SIGKILL)
    signal_recorded(rec.pid, rec.pid_start, signal.SIGKILL)


def reap_host(rec: HostRecord) -> None:
    """Collect exit statuses of the host's processes where they are our children."""
    for pid in (rec.pid, rec.leader_pid):
        if pid is not None:
            reap(pid)


def unmount_overlay(rec: HostRecord, timeout: float = 10.0) -> str | None:
    """Unmount the host's overlay; return a problem description or None."""
    deadline = time.monotonic() + timeout
    while is_mounted(rec.merged):
        proc = run(["umount", str(rec.merged)], timeout=30, check=False)
        if proc.returncode == 0:
            continue
        if time.monotonic() >= deadline:
            return f"overlay {rec.merged} is still mounted: {proc.stderr.strip()}"
        time.sleep(0.2)
    return None


class ReadyProbe:
    """One ``systemctl is-system-running`` over SSH, run as a background process."""

    def __init__(self, key: Path, rec: HostRecord, timeout: float) -> None:
        self.rec = rec
        self.deadline = time.monotonic() + timeout
        script = (
            's=$(systemctl is-system-running); echo "$s"; '
            'if [ "$s" = degraded ]; then systemctl --failed --plain --no-legend; fi'
        )
        self.proc = subprocess.Popen(
            [*ssh_args(key, rec.address), script],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def result(self) -> HostStatus | None:
        """Return the status once the probe finished (or timed out), else None."""
        if self.proc.poll() is None:
            if time.monotonic() < self.deadline:
                return None
            self.proc.kill()
            self.proc.wait(timeout=5)
            return HostStatus(self.rec.name, self.rec.address, "starting", pid=self.rec.pid)
        out = self.proc.stdout.read() if self.proc.stdout else ""
        if self.proc.stdout:
            self.proc.stdout.close()
        return parse_probe(self.rec, self.proc.returncode, out)


def parse_probe(rec: HostRecord, returncode: int, out: str) -> HostStatus:
    """Turn the output of the readiness probe into a HostStatus."""
    lines = out.strip().splitlines()
    if returncode == 255 or not lines:  # ssh itself failed: sshd not up yet
        return HostStatus(rec.name, rec.address, "starting", pid=rec.pid)
    state = lines[0].strip()
    if state == "degraded":
        units = tuple(line.split()[0] for line in lines[1:] if line.split())
        return HostStatus(rec.name, rec.address, "degraded", units, pid=rec.pid)
    if state in ("running", "stopping"):
        return HostStatus(rec.name, rec.address, state, pid=rec.pid)
    return HostStatus(rec.name, rec.address, "starting", pid=rec.pid)


def probe_hosts(key: Path, recs: Sequence[HostRecord], timeout: float = 5.0) -> list[HostStatus]:
    """Ask every host once, in parallel, whether it is running; dead hosts are ``dead``."""
    results: dict[str, HostStatus] = {}
    probes: list[ReadyProbe] = []
    for rec in recs:
        if host_alive(rec):
            probes.append(ReadyProbe(key, rec, timeout))
        else:
            results[rec.name] = HostStatus(rec.name, rec.address, "dead")
    while probes:
        pending = []
        for probe in probes:
            status = probe.result()
            if status is None:
                pending.append(probe)
            else:
                results[probe.rec.name] = status
        probes = pending
        if probes:
            time.sleep(0.05)
    return [results[rec.name] for rec in recs]


def wait_ready(
    key: Path,
    recs: Sequence[HostRecord],
    timeout: float,
    progress: Progress,
    on_leader: Callable[[HostRecord, int, int], HostRecord],
) -> list[HostStatus]:
    """Poll every host over SSH until each says ``running`` or ``degraded``.

    Args:
        key: the sandbox's private key.
        recs: the hosts to wait for.
        timeout: overall seconds to wait.
        progress: called with one line per host that becomes ready.
        on_leader: called when a host's container init PID is found; returns the
            updated record (the caller records it in the state file).

    Returns:
        The final status of every host, in the order of ``recs``.

    Raises:
        SandboxError: a host died, or did not become ready in time.
    """
    deadline = time.monotonic() + timeout
    current = {rec.name: rec for rec in recs}
    done: dict[str, HostStatus] = {}
    probes: dict[str, ReadyProbe] = {}
    last_try: dict[str, float] = {}
    while len(done) < len(recs):
        for name, rec in list(current.items()):
            if name in done:
                continue
            if rec.leader_pid is None:
                found = find_leader(rec)
                if found is not None:
                    rec = current[name] = on_leader(rec, *found)
            if not host_alive(rec):
                for other in probes.values():
                    other.proc.kill()
                raise SandboxError(
                    f"sandbox host {name} stopped while booting; see {rec.log}, then run "
                    "`qsetup sandbox down` and try again"
                )
            probe = probes.get(name)
            if probe is None:
                if time.monotonic() - last_try.get(name, 0.0) >= 0.5:
                    probes[name] = ReadyProbe(key, rec, SSH_CONNECT_TIMEOUT + 3)
                    last_try[name] = time.monotonic()
                continue
            status = probe.result()
            if status is None:
                continue
            del probes[name]
            if status.state in READY_STATES:
                done[name] = status
                extra = f" (failed units: {', '.join(status.failed_units)})"
                progress(
                    f"{name} ({rec.address}) is {status.state}"
                    + (extra if status.failed_units else "")
                )
        if len(done) < len(recs) and time.monotonic() >= deadline:
            for other in probes.values():
                other.proc.kill()
            late = sorted(set(current) - set(done))
            raise SandboxError(
                f"sandbox hosts {', '.join(late)} did not become ready within {timeout:.0f} s; "
                f"see the logs in {Path(recs[0].log).parent}, then run `qsetup sandbox down`"
            )
        time.sleep(0.1)
    return [done[rec.name] for rec in recs]


def wipe_host_dir(rec: HostRecord) -> None:
    """Delete the host's overlay directories (only after the overlay is unmounted)."""
    if is_mounted(rec.merged):
        raise SandboxError(f"refusing to delete {rec.host_dir}: {rec.merged} is still mounted")
    if Path(rec.host_dir).exists():
        shutil.rmtree(rec.host_dir)
