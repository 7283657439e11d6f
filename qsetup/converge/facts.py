"""What the one read found on a host, typed.

``playbooks/module_utils/qsetup_read.py`` runs on the host (as the deploy preflight's
module, or sent over SSH by status and the deploy's no-op check) and returns plain
JSON; :meth:`HostFacts.from_read` is the one parser of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class FileFact:
    """One of qsetup's files or directories as the host holds it."""

    path: str
    mode: str
    owner: str
    group: str
    isdir: bool
    checksum: str | None


@dataclass(frozen=True)
class UnitFact:
    """One unit as ``systemctl show`` reports it."""

    name: str
    load_state: str
    active_state: str
    sub_state: str
    unit_file_state: str
    since: str | None = None
    """When the unit entered its current state (ISO 8601, UTC), if known."""
    restarts: int | None = None

    @property
    def running(self) -> bool:
        """Loaded, active and running."""
        return (
            self.load_state == "loaded"
            and self.active_state == "active"
            and self.sub_state == "running"
        )

    @property
    def enabled(self) -> bool:
        """Enabled to start at boot."""
        return self.unit_file_state in ("enabled", "enabled-runtime")

    @property
    def present(self) -> bool:
        """Loaded, active or enabled: more than a name systemd still remembers."""
        return (
            self.load_state == "loaded"
            or self.active_state not in ("inactive", "failed", "")
            or self.unit_file_state.startswith("enabled")
        )

    @classmethod
    def from_show(cls, name: str, props: Mapping[str, str] | None) -> UnitFact:
        """From ``systemctl show`` properties (None: systemd did not report it)."""
        p = props or {}
        restarts = str(p.get("NRestarts", ""))
        return cls(
            name=name,
            load_state=str(p.get("LoadState", "unknown")),
            active_state=str(p.get("ActiveState", "unknown")),
            sub_state=str(p.get("SubState", "unknown")),
            unit_file_state=str(p.get("UnitFileState", "")),
            since=since_text(str(p.get("StateChangeTimestamp", ""))),
            restarts=int(restarts) if restarts.isdigit() else None,
        )


def since_text(value: str) -> str | None:
    """A systemd timestamp (``@<unix seconds>`` or local text) as ISO 8601 UTC, or None."""
    value = value.strip()
    if not value or value in ("n/a", "0"):
        return None
    if value.startswith("@") and value[1:].isdigit():
        stamp = int(value[1:])
        if stamp == 0:
            return None
        return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")
    return value  # an older systemd's local time, passed on as it printed it


@dataclass(frozen=True)
class ClusterNode:
    """A RabbitMQ node as the local node's API lists it."""

    name: str
    running: bool


@dataclass(frozen=True)
class FeatureFlag:
    """A RabbitMQ feature flag as the API lists it."""

    name: str
    state: str
    """enabled, disabled, or unavailable (a node does not know it)."""
    stability: str
    """stable, experimental or required."""


def parse_flags(raw: object) -> tuple[FeatureFlag, ...] | None:
    """``/api/feature-flags`` (or the read's copy of it) as typed flags; None when unread."""
    if not isinstance(raw, list):
        return None
    return tuple(
        FeatureFlag(str(f.get("name", "")), str(f.get("state", "")), str(f.get("stability", "")))
        for f in raw
        if isinstance(f, dict)
    )


@dataclass(frozen=True)
class FirewallFact:
    """qsetup's nftables table as the read found it."""

    loaded: bool
    live: str | None = None
    """Fingerprint of the loaded table's listing."""
    file: str | None = None
    """Fingerprint of the same listing of the ruleset file (None: no file)."""
    error: str | None = None

    @classmethod
    def from_read(cls, data: object) -> FirewallFact | None:
        """From the read's ``firewall`` entry (None: the read did not look)."""
        if not isinstance(data, Mapping):
            return None
        return cls(
            loaded=bool(data.get("loaded")),
            live=data.get("live"),
            file=data.get("file"),
            error=data.get("error"),
        )


@dataclass(frozen=True)
class AclUser:
    """One user of the result backend as ``ACL LIST`` shows it (hashes, never passwords)."""

    name: str
    enabled: bool
    hashes: tuple[str, ...]
    patterns: tuple[str, ...]
    """Its key (``~``) and channel (``&``) patterns."""

    @classmethod
    def parse(cls, line: str) -> AclUser | None:
        """From one ``user NAME on #HASH ~keys &channels +@cmds`` line (None: not one)."""
        words = line.split()
        if len(words) < 2 or words[0] != "user":
            return None
        return cls(
            name=words[1],
            enabled="on" in words[2:],
            hashes=tuple(w[1:] for w in words[2:] if w.startswith("#")),
            patterns=tuple(w for w in words[2:] if w[:1] in ("~", "&")),
        )


@dataclass(frozen=True)
class ResultsFact:
    """The managed result backend as qsetup's reader found it."""

    error: str | None = None
    """Why it could not be read (down, refused the reader, TLS failed)."""
    version: str = ""
    role: str = ""
    used_memory: str = ""
    """Human-readable, as the server reports it (``1.02M``)."""
    maxmemory_policy: str = ""
    aof_enabled: bool = False
    aof_ok: bool = True
    clients: int | None = None
    users: tuple[AclUser, ...] = ()

    @classmethod
    def from_read(cls, data: object) -> ResultsFact | None:
        """From the read's ``results`` entry (None: the read did not look)."""
        if not isinstance(data, Mapping):
            return None
        if data.get("error"):
            return cls(error=str(data["error"]))
        clients = str(data.get("connected_clients", ""))
        return cls(
            version=str(data.get("redis_version", "")),
            role=str(data.get("role", "")),
            used_memory=str(data.get("used_memory_human", "")),
            maxmemory_policy=str(data.get("maxmemory_policy", "")),
            aof_enabled=str(data.get("aof_enabled", "")) == "1",
            aof_ok=str(data.get("aof_last_write_status", "ok")) in ("ok", ""),
            clients=int(clients) if clients.isdigit() else None,
            users=tuple(
                u for u in (AclUser.parse(str(x)) for x in data.get("acl") or ()) if u is not None
            ),
        )


@dataclass(frozen=True)
class NameAddresses:
    """What the host's short name (RabbitMQ's ``rabbit@<name>``) resolves to on the host."""

    name: str
    addresses: tuple[str, ...]
    """Every IPv4 address the host's resolver returns for it (none: it does not resolve)."""
    own: tuple[str, ...]
    """Those of them the host holds (loopback, or on one of its interfaces)."""

    @property
    def foreign(self) -> tuple[str, ...]:
        """The addresses it resolves to that are not the host's."""
        return tuple(a for a in self.addresses if a not in self.own)

    @classmethod
    def from_read(cls, data: object) -> NameAddresses | None:
        """From the read's ``name_addresses`` entry (None: the read did not look)."""
        if not isinstance(data, dict):
            return None
        return cls(
            name=str(data.get("name") or ""),
            addresses=tuple(str(a) for a in data.get("addresses") or ()),
            own=tuple(str(a) for a in data.get("own") or ()),
        )


@dataclass(frozen=True)
class HostFacts:
    """Everything the one read found on a host."""

    hostname: str
    release: str
    problems: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    """The Debian packages the plan needs on this release."""
    installed: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    files: Mapping[str, FileFact] = field(default_factory=dict)
    units: Mapping[str, UnitFact] = field(default_factory=dict)
    discovered: tuple[str, ...] = ()
    """Every ``qsetup-*`` unit systemd knows there (loaded, enabled, or linked)."""
    manifest: Mapping[str, Any] = field(default_factory=dict)
    hosts_block: str | None = None
    """The cluster's lines in /etc/hosts, None when there is no such block."""
    hosts_block_read: bool = False
    """Whether the read looked for that block (it does on broker nodes)."""
    definitions: Mapping[str, Any] | None = None
    """The broker's definitions (a broker node; None when its API did not answer)."""
    cluster: tuple[ClusterNode, ...] | None = None
    feature_flags: tuple[FeatureFlag, ...] | None = None
    deprecated_used: tuple[str, ...] | None = None
    rabbit_data: bool | None = None
    """Whether RabbitMQ's data directory holds a node's data (None: not read there)."""
    """Deprecated broker features in use (None: unread, or RabbitMQ before 3.13)."""
    firewall: FirewallFact | None = None
    """qsetup's nftables table (read where the plan puts a firewall)."""
    results: ResultsFact | None = None
    """The managed result backend (read on its host, with qsetup's reader's password)."""
    executables: Mapping[str, bool] = field(default_factory=dict)
    dists: Mapping[tuple[str, str], str | None] = field(default_factory=dict)
    """(prefix, distribution) -> installed version."""
    deb_versions: Mapping[str, str | None] = field(default_factory=dict)
    name_addresses: NameAddresses | None = None
    """What the host's own name resolves to there (read on broker nodes)."""

    def unit(self, name: str) -> UnitFact:
        """The unit's facts (``unknown`` states when the read did not report it)."""
        return self.units.get(name) or UnitFact.from_show(name, None)

    @classmethod
    def from_read(cls, data: Mapping[str, Any]) -> HostFacts:
        """Parse what ``qsetup_read.read_host`` returned."""
        files = {
            str(f["path"]): FileFact(
                path=str(f["path"]),
                mode=str(f.get("mode", "")),
                owner=str(f.get("pw_name", "")),
                group=str(f.get("gr_name", "")),
                isdir=bool(f.get("isdir")),
                checksum=f.get("checksum"),
            )
            for f in (data.get("found") or {}).get("files") or []
            if isinstance(f, dict) and "path" in f
        }
        units = {
            str(name): UnitFact.from_show(str(name), props)
            for name, props in (data.get("units") or {}).items()
        }
        cluster = data.get("cluster")
        definitions = data.get("definitions")
        return cls(
            hostname=str(data.get("hostname") or ""),
            release=str(data.get("release") or ""),
            problems=tuple(str(p) for p in data.get("problems") or ()),
            packages=tuple(str(p) for p in data.get("packages") or ()),
            installed=frozenset(str(p) for p in data.get("installed") or ()),
            users=frozenset(str(u) for u in data.get("users") or ()),
            groups=frozenset(str(g) for g in data.get("groups") or ()),
            files=files,
            units=units,
            discovered=tuple(str(u) for u in data.get("discovered") or ()),
            manifest=dict(data.get("manifest") or {}),
            hosts_block=data.get("hosts_block"),
            hosts_block_read="hosts_block" in data,
            definitions=definitions if isinstance(definitions, dict) else None,
            cluster=(
                tuple(ClusterNode(str(n["name"]), bool(n["running"])) for n in cluster)
                if isinstance(cluster, list)
                else None
            ),
            feature_flags=parse_flags(data.get("feature_flags")),
            rabbit_data=(
                data["rabbit_data"] if isinstance(data.get("rabbit_data"), bool) else None
            ),
            deprecated_used=(
                tuple(str(n) for n in data["deprecated_used"])
                if isinstance(data.get("deprecated_used"), list)
                else None
            ),
            firewall=FirewallFact.from_read(data.get("firewall")),
            results=ResultsFact.from_read(data.get("results")),
            executables={str(k): bool(v) for k, v in (data.get("executables") or {}).items()},
            dists={
                (str(d["prefix"]), str(d["name"])): d.get("version")
                for d in data.get("dists") or ()
                if isinstance(d, dict)
            },
            deb_versions=dict(data.get("deb_versions") or {}),
            name_addresses=NameAddresses.from_read(data.get("name_addresses")),
        )
