"""The sandbox's state directory and its JSON record of every resource it made.

Each resource is recorded *before* it is created, so a crashed or killed ``up``
leaves a record that ``down`` can clean from.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from qsetup.errors import SandboxError

STATE_VERSION = 1
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,9}$")
MAX_NAME_LEN = 10


def state_dir() -> Path:
    """Return the sandbox state directory (``QSETUP_SANDBOX_DIR`` overrides it)."""
    return Path(os.environ.get("QSETUP_SANDBOX_DIR", "/var/lib/qsetup/sandbox"))


def cache_dir() -> Path:
    """Return the cache of built Debian trees (``QSETUP_CACHE_DIR`` overrides it)."""
    return Path(os.environ.get("QSETUP_CACHE_DIR", "/var/cache/qsetup"))


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid sandbox host name.

    Raises:
        SandboxError: the name is not lowercase letters, digits and dashes,
            starting with a letter, at most 10 characters.
    """
    if not NAME_RE.match(name) or name.endswith("-"):
        raise SandboxError(
            f"bad sandbox host name {name!r}: use lowercase letters, digits and dashes, "
            f"starting with a letter, at most {MAX_NAME_LEN} characters (e.g. --names qs1,qs2)"
        )
    return name


@dataclass(frozen=True)
class HostRecord:
    """Everything recorded about one sandbox host.

    Attributes:
        name: host name (also the nspawn machine name).
        address: IPv4 address on the bridge.
        netns: network namespace name (``/run/netns/<netns>``).
        veth_host: veth end attached to the bridge.
        veth_peer: veth end moved into the namespace (renamed ``eth0`` there).
        host_dir: directory holding ``upper``, ``work`` and ``merged``.
        mounted: whether the overlay mount at ``merged`` was attempted.
        pid: PID of the ``systemd-nspawn`` process, or None before start.
        pid_start: start time (clock ticks since boot) of that PID, to recognise it.
        leader_pid: host PID of the container's init (systemd), once known.
        leader_start: start time of ``leader_pid``.
        log: file receiving the nspawn console output.
    """

    name: str
    address: str
    netns: str
    veth_host: str
    veth_peer: str
    host_dir: str
    mounted: bool = False
    pid: int | None = None
    pid_start: int | None = None
    leader_pid: int | None = None
    leader_start: int | None = None
    log: str = ""

    @property
    def upper(self) -> Path:
        """Overlay upper directory (the host's own changes)."""
        return Path(self.host_dir) / "upper"

    @property
    def work(self) -> Path:
        """Overlay work directory."""
        return Path(self.host_dir) / "work"

    @property
    def merged(self) -> Path:
        """Overlay mount point: the host's root file system."""
        return Path(self.host_dir) / "merged"


@dataclass(frozen=True)
class SandboxState:
    """The whole sandbox as recorded in ``state.json``."""

    subnet: str
    bridge: str
    bridge_address: str
    release: str = ""
    rootfs: str = ""
    proxy_port: int = 3128
    proxy_pid: int | None = None
    proxy_start: int | None = None
    bridge_created: bool = False
    hosts: tuple[HostRecord, ...] = field(default_factory=tuple)

    def host(self, name: str) -> HostRecord | None:
        """Return the record of host ``name``, if any."""
        for rec in self.hosts:
            if rec.name == name:
                return rec
        return None

    def with_host(self, rec: HostRecord) -> SandboxState:
        """Return a copy with ``rec`` added or replacing the host of the same name."""
        hosts = [h for h in self.hosts if h.name != rec.name]
        if len(hosts) == len(self.hosts):
            return replace(self, hosts=(*self.hosts, rec))
        return replace(self, hosts=tuple(rec if h.name == rec.name else h for h in self.hosts))

    def without_host(self, name: str) -> SandboxState:
        """Return a copy without host ``name``."""
        return replace(self, hosts=tuple(h for h in self.hosts if h.name != name))

    @property
    def proxy_url(self) -> str:
        """URL of the forward proxy as the hosts see it."""
        return f"http://{self.bridge_address}:{self.proxy_port}"


def state_to_json(state: SandboxState) -> str:
    """Serialise a state to JSON text."""
    data: dict[str, Any] = asdict(state)
    data["version"] = STATE_VERSION
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def state_from_json(text: str) -> SandboxState:
    """Parse state JSON text.

    Raises:
        SandboxError: the text is not a state this version understands.
    """
    try:
        data = json.loads(text)
        data.pop("version", None)
        hosts = tuple(HostRecord(**h) for h in data.pop("hosts", []))
        return SandboxState(**data, hosts=hosts)
    except (ValueError, TypeError, AttributeError) as exc:
        raise SandboxError(
            f"the sandbox state file is unreadable ({exc}); remove it after checking "
            f"`ip netns`, `ip link` and `findmnt` by hand: {state_file()}"
        ) from exc


def state_file() -> Path:
    """Return the path of the JSON state file."""
    return state_dir() / "state.json"


def ensure_state_dir() -> Path:
    """Create the state directory (0700) and return it."""
    path = state_dir()
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def load_state() -> SandboxState | None:
    """Return the recorded state, or None when nothing is recorded."""
    path = state_file()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return state_from_json(text)


def save_state(state: SandboxState) -> None:
    """Write the state atomically (write a temp file, fsync, rename)."""
    path = state_file()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(state_to_json(state))
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def clear_state() -> None:
    """Remove the state file (after everything it records is gone)."""
    state_file().unlink(missing_ok=True)


@contextmanager
def state_lock() -> Iterator[None]:
    """Hold an exclusive lock on the state directory (one up/down at a time).

    Raises:
        SandboxError: another qsetup sandbox command holds the lock.
    """
    ensure_state_dir()
    fd = os.open(state_dir() / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SandboxError(
                "another `qsetup sandbox` command is running; wait for it to finish"
            ) from None
        yield
    finally:
        os.close(fd)
