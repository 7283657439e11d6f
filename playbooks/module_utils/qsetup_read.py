"""The one read of a host: everything qsetup compares with its desired state.

One program, two callers: the deploy's preflight runs it as an Ansible module
(``library/qsetup_host_facts.py``), and ``qsetup status`` and the deploy's no-op check
send this file's source over SSH and run it with ``python3`` (``main`` reads its
parameters as JSON on standard input, so no password is ever in a command line).
Both get the same facts: the Debian release, the hostname the host reports (Celery's
``%h``), the packages the plan needs and whether apt can install the missing ones,
qsetup's files with their checksums, modes and owners, users and groups, the state of
every unit qsetup runs there and of every ``qsetup-*`` unit systemd knows, the
manifest an earlier deploy wrote, the executables the units run and the Celery and
Flower versions they import, and on a broker node the broker's definitions and cluster.

It imports nothing but Python's standard library (it runs on the host), and changes
nothing that a service reads: at most apt's package lists, when the plan needs a
package that is missing and the lists are older than a day.
"""

from __future__ import annotations

import fnmatch
import grp
import json
import os
import pwd
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

TYPE_CHECKING = False  # typing is not imported on the host: 2 ms of every read
if TYPE_CHECKING:
    from collections.abc import Callable
    from hashlib import sha1
    from typing import Any

    Run = Callable[[list[str]], tuple[int, str, str]]
    """Runs argv, returns (exit code, stdout, stderr)."""
else:
    try:  # the C module itself: hashlib loads OpenSSL first (3 ms of every read)
        from _sha1 import sha1
    except ImportError:  # pragma: no cover - a Python built without it
        from hashlib import sha1

LISTS_MAX_AGE = 86400
UNIT_PROPS = "Id,LoadState,ActiveState,SubState,UnitFileState,StateChangeTimestamp,NRestarts"


def parse_os_release(text: str) -> dict[str, str]:
    """Parse ``/etc/os-release`` (KEY=VALUE lines, values optionally quoted)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key] = value
    return out


def parse_dpkg_installed(text: str) -> set[str]:
    """Package names that dpkg-query shows installed (``${db:Status-Abbrev} ${Package}``)."""
    installed = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("ii"):
            installed.add(parts[-1].split(":")[0])
    return installed


def parse_apt_candidates(text: str) -> set[str]:
    """Package names that ``apt-cache policy`` shows with an installable candidate."""
    available = set()
    current = None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            current = line.rstrip()[:-1].split(":")[0]
        elif current and line.strip().startswith("Candidate:"):
            if line.split(":", 1)[1].strip() not in ("", "(none)"):
                available.add(current)
    return available


def parse_systemctl_show(text: str) -> dict[str, dict[str, str]]:
    """``systemctl show -p Id,...`` output (blank-line separated blocks) by unit ``Id``."""
    units: dict[str, dict[str, str]] = {}
    for block in re.split(r"\n\s*\n", text.strip()):
        props: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                props[key.strip()] = value
        if props.get("Id"):
            units[props["Id"]] = props
    return units


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest an earlier deploy wrote, or an empty one (none, or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def stat_entry(path: Path) -> dict[str, Any] | None:
    """Mode, owner, group, type and (for a regular file) SHA-1 checksum of one entry."""
    try:
        st = path.lstat()
    except OSError:
        return None
    entry: dict[str, Any] = {
        "path": str(path),
        "mode": f"{stat.S_IMODE(st.st_mode):04o}",
        "isdir": stat.S_ISDIR(st.st_mode),
        "isreg": stat.S_ISREG(st.st_mode),
        "islnk": stat.S_ISLNK(st.st_mode),
        "pw_name": _name_of(pwd.getpwuid, st.st_uid),
        "gr_name": _name_of(grp.getgrgid, st.st_gid),
        "size": st.st_size,
    }
    if entry["isreg"]:
        digest = sha1()  # noqa: S324 - the checksum Ansible's modules report
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        entry["checksum"] = digest.hexdigest()
    return entry


def _name_of(lookup: Any, ident: int) -> str:
    try:
        return str(lookup(ident)[0])
    except KeyError:
        return str(ident)


def find_entries(paths: list[str], patterns: list[str]) -> list[dict[str, Any]]:
    """Entries of each directory whose names match a pattern, hidden ones included."""
    found = []
    for base in paths:
        try:
            names = sorted(p.name for p in Path(base).iterdir())
        except OSError:
            continue
        for name in names:
            if any(fnmatch.fnmatchcase(name, pat) for pat in patterns):
                entry = stat_entry(Path(base) / name)
                if entry is not None:
                    found.append(entry)
    return found


def read_block(path: Path, marker: str) -> str | None:
    """The lines between blockinfile's ``# BEGIN <marker>`` and ``# END <marker>``, or None."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    begin, end = f"# BEGIN {marker}", f"# END {marker}"
    if begin not in lines:
        return None
    start = lines.index(begin) + 1
    stop = lines.index(end, start) if end in lines[start:] else len(lines)
    return "\n".join(lines[start:stop]).strip()


def _names_in(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return []
    return [line.split(":", 1)[0] for line in text.splitlines() if ":" in line]


def read_api(port: int, user: str, password: str, path: str) -> Any:
    """One GET from the local management API (None when it cannot be read)."""
    # Imported here: only a broker node asks (about 20 ms of every other host's read).
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/{path}")
    import base64  # only a broker node asks

    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - loopback
            return json.loads(resp.read().decode("utf-8"))
    except (OSError, ValueError):
        return None


def read_cluster(port: int, user: str, password: str) -> list[dict[str, Any]] | None:
    """The cluster's nodes (name, running) as the local node sees them, or None."""
    data = read_api(port, user, password, "nodes?columns=name,running")
    if not isinstance(data, list):
        return None
    return [
        {"name": str(n.get("name")), "running": n.get("running") is True}
        for n in data
        if isinstance(n, dict)
    ]


def read_flags(port: int, user: str, password: str) -> list[dict[str, str]] | None:
    """The broker's feature flags (name, state, stability), or None."""
    data = read_api(port, user, password, "feature-flags")
    if not isinstance(data, list):
        return None
    return [
        {k: str(f.get(k, "")) for k in ("name", "state", "stability")}
        for f in data
        if isinstance(f, dict)
    ]


def _deprecated_used(port: int, user: str, password: str) -> list[str] | None:
    used = read_api(port, user, password, "deprecated-features/used")
    if not isinstance(used, list):
        return None  # RabbitMQ before 3.13 has no such endpoint
    return sorted(str(f.get("name")) for f in used if isinstance(f, dict))


def _definitions(port: int, user: str, password: str) -> dict[str, Any] | None:
    data = read_api(port, user, password, "definitions")
    return data if isinstance(data, dict) else None


class _Later:
    """``fn(*args)`` on a thread of its own, started now; :meth:`result` waits for it.

    The read's parts that wait on something else (the broker's API, systemctl, nft,
    dpkg) run at once this way: on a broker node the read took 80 ms one after the
    other, most of it waiting. An exception is raised again by :meth:`result`.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        import threading

        self._fn = fn
        self._args = args
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._fn(*self._args)
        except BaseException as exc:  # noqa: BLE001 - raised again in result()
            self._error = exc

    def result(self) -> Any:
        """What ``fn`` returned (or raise what it raised)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _broker_reads(api: dict[str, Any]) -> dict[str, _Later]:
    """The local broker's definitions, cluster, feature flags, deprecated features in use.

    Each is asked of the management API on its own thread, all at once.
    """
    import urllib.request  # noqa: F401 - once, here, not in four threads at once

    creds = (api["port"], api["user"], api["password"])
    return {
        "definitions": _Later(_definitions, *creds),
        "cluster": _Later(read_cluster, *creds),
        "feature_flags": _Later(read_flags, *creds),
        "deprecated_used": _Later(_deprecated_used, *creds),
    }


def _units(run: Run, units: list[str], prefix: str | None) -> tuple[list[str] | None, Any]:
    """(the ``prefix*`` units systemd knows, or None without a prefix; each unit's state).

    One ``systemctl show`` answers both: the units named, the ``prefix*`` units linked
    from a ``.wants`` or ``.requires`` folder (enabled, their unit file maybe gone) and,
    through the pattern ``prefix*``, every ``prefix*`` unit systemd has loaded (running,
    failed, or still referenced after its file went). It was three systemctl runs
    (list-units, list-unit-files, show): each costs the host about 8 ms of CPU, its own
    and PID 1's. The named units carrying the prefix are in the list too (the caller's
    own, which it expects). Templates (``x@.service``) are unit files, not units.
    """
    if not prefix:
        return None, show_units(run, units)
    linked = linked_units(prefix)
    shown = show_units(run, [*units, *(u for u in linked if u not in units), f"{prefix}*"])
    found = {u for u in shown if u.startswith(prefix)} | set(linked)
    return sorted(u for u in found if "@." not in u and "*" not in u), shown


def has_rabbit_data(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds any node's data (``rabbit@<host>`` and its files).

    False for a node whose data was wiped (or never written): its first start is a
    blank node's, as on a host rebuilt empty.
    """
    try:
        return any(p.name.startswith("rabbit@") for p in data_dir.iterdir())
    except OSError:
        return False


RESULTS_CA = "/etc/redis/tls/ca.pem"
RESULTS_INFO = (
    "redis_version",
    "role",
    "used_memory",
    "used_memory_human",
    "maxmemory_policy",
    "aof_enabled",
    "aof_last_write_status",
    "connected_clients",
)


def _resp_command(*args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _resp_reply(stream: Any) -> Any:
    """One RESP2 reply; an error reply comes back as an exception."""
    line = stream.readline()
    if not line:
        raise OSError("the server closed the connection")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise ValueError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else stream.read(size + 2)[:-2].decode(errors="replace")
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_resp_reply(stream) for _ in range(count)]
    raise ValueError(f"unexpected reply {line[:20]!r}")


def read_results(spec: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """The result backend's state as qsetup's reader sees it (INFO and ACL LIST).

    Speaks Redis's protocol over the host's own address (TLS with the server's CA, the
    name not checked: this is the server's own host), so no client library is needed.
    Returns ``error`` when the server does not answer as that user.
    """
    import socket  # only the result backend's host asks

    try:
        sock = socket.create_connection((spec["address"], int(spec["port"])), timeout=timeout)
        if spec.get("tls"):
            import ssl  # only the result backend's host asks (see read_api)

            context = ssl.create_default_context(cafile=RESULTS_CA)
            context.check_hostname = False
            sock = context.wrap_socket(sock)
        with sock, sock.makefile("rb") as stream:
            sock.sendall(_resp_command("AUTH", spec["user"], spec["password"]))
            _resp_reply(stream)
            sock.sendall(_resp_command("INFO"))
            info = str(_resp_reply(stream) or "")
            sock.sendall(_resp_command("ACL", "LIST"))
            acl = _resp_reply(stream)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        return {"error": str(exc) or type(exc).__name__}
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    out: dict[str, Any] = {k: fields.get(k, "").strip() for k in RESULTS_INFO}
    out["acl"] = [str(line) for line in acl or []]
    return out


def read_beat_log(run: Run, spec: dict[str, Any]) -> dict[str, Any]:
    """What a standby beat's current run logged about its lock and its sends.

    ``spec``: ``unit``, ``acquired``/``released`` (redbeat's lock lines), ``sending`` (the
    line of a sent task) and ``window`` (seconds). Returns ``invocation`` (the unit's
    current run, "" when stopped), ``lock`` (``acquired``/``released``/None: the last
    lock line of that run) and ``sent`` (tasks that run sent in the last ``window`` s).
    Only the unit's current run counts: a beat that lost its lock has exited.
    """
    unit = str(spec["unit"])
    _rc, out, _err = run(["systemctl", "show", "--no-pager", "-p", "InvocationID", "--value", unit])
    invocation = out.strip()
    result: dict[str, Any] = {"invocation": invocation, "lock": None, "sent": 0}
    if not invocation:
        return result
    match = f"_SYSTEMD_INVOCATION_ID={invocation}"
    base = ["journalctl", "--no-pager", "-q", "-o", "cat", match]
    acquired, released = str(spec["acquired"]), str(spec["released"])
    _rc, out, _err = run([*base, "-g", f"{acquired}|{released}"])
    for line in reversed(out.splitlines()):
        if acquired in line or released in line:
            result["lock"] = "acquired" if acquired in line else "released"
            break
    since = f"-{int(spec['window'])}s"
    _rc, out, _err = run([*base, "--since", since, "-g", str(spec["sending"])])
    result["sent"] = sum(1 for line in out.splitlines() if str(spec["sending"]) in line)
    return result


def old_rabbit_data(data_dir: Path, flag: str) -> str | None:
    """A node's data under ``data_dir`` on which ``flag`` was never enabled, or None.

    RabbitMQ keeps the flags a node enabled in ``<node>-feature_flags`` beside its
    database; a release whose RabbitMQ requires ``flag`` cannot start on such data.
    """
    try:
        files = sorted(data_dir.glob("*-feature_flags"))
        for path in files:
            if flag not in re.findall(r"[a-z0-9_]+", path.read_text(encoding="utf-8")):
                return str(path)
    except OSError:
        return None
    return None


UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system")


def linked_units(prefix: str, roots: tuple[str, ...] = UNIT_DIRS) -> list[str]:
    """The ``prefix*`` units linked from a ``.wants`` or ``.requires`` folder: enabled.

    In ``/etc/systemd/system`` (``systemctl enable``) and ``/run/systemd/system``
    (``enable --runtime``): the enabled instances of templates too (``x@2.service``).
    """
    found: set[str] = set()
    for root in roots:
        for folder in ("wants", "requires"):
            found.update(p.name for p in Path(root).glob(f"*.{folder}/{prefix}*") if p.is_symlink())
    return sorted(found)


def show_units(run: Run, units: list[str]) -> dict[str, dict[str, str]]:
    """``systemctl show`` of each unit (times as ``@<unix seconds>`` where systemd can)."""
    if not units:
        return {}
    rc, out, _err = run(
        ["systemctl", "show", "--no-pager", "--timestamp=unix", "-p", UNIT_PROPS, "--", *units]
    )
    if rc != 0:  # systemd older than 251 has no --timestamp
        _rc, out, _err = run(["systemctl", "show", "--no-pager", "-p", UNIT_PROPS, "--", *units])
    return parse_systemctl_show(out)


_DIST = re.compile(
    r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[^-]+?)(?:-py\d[\d.]*)?\.(?:dist|egg)-info$"
)


def dist_version(prefix: str, name: str) -> str | None:
    """The version of distribution ``name`` a Python under ``prefix`` imports, from metadata.

    A virtualenv's own site-packages first, then Debian's dist-packages (a virtualenv
    made with the system's site-packages, or ``/usr`` itself). Reading metadata costs
    nothing; starting Python to ask ``celery --version`` costs a third of a second.
    """
    places = [] if prefix == "/usr" else sorted(Path(prefix).glob("lib/python3*/site-packages"))
    places.append(Path("/usr/lib/python3/dist-packages"))
    for place in places:
        for entry in sorted(place.glob(f"{name}-*-info")):
            match = _DIST.match(entry.name)
            if match and match.group("name").lower() == name.lower():
                return match.group("version")
    return None


def package_version(run: Run, name: str) -> str | None:
    """The installed version of a package, else the version apt would install."""
    rc, out, _err = run(["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}", name])
    if rc == 0 and out.startswith("ii "):
        return out.split()[-1]
    _rc, out, _err = run(["apt-cache", "policy", name])
    for line in out.splitlines():
        if line.strip().startswith("Candidate:"):
            value = line.split(":", 1)[1].strip()
            return None if value in ("", "(none)") else value
    return None


def installed_version(run: Run, name: str) -> str | None:
    """The installed version of a Debian package, or None."""
    rc, out, _err = run(["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}", name])
    return out.split()[-1] if rc == 0 and out.startswith("ii ") else None


def _lists_age() -> float:
    try:
        stamps = [
            path.stat().st_mtime
            for path in Path("/var/lib/apt/lists").iterdir()
            if "_Packages" in path.name
        ]
    except OSError:
        return float("inf")
    return time.time() - max(stamps) if stamps else float("inf")


def _listing_sum(text: str) -> str:
    """A fingerprint of ``nft list table`` output (blank lines and indentation ignored)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return sha1("\n".join(lines).encode()).hexdigest()  # noqa: S324


def read_firewall(run: Run, table: str, path: str) -> dict[str, Any]:
    """Whether ``table inet <table>`` is loaded, and fingerprints of it and of ``path``.

    ``live`` fingerprints the loaded table as ``nft list table`` prints it; ``file`` the
    same listing of the ruleset file, loaded into a scratch network namespace (so it
    changes nothing here, and both are printed by the same nft). They are equal exactly
    when the loaded table holds the file's rules. ``error`` says why nft could not tell.
    """
    out: dict[str, Any] = {"loaded": False, "live": None, "file": None, "error": None}
    import shutil  # only a host with a firewall asks (a few ms of every other host's read)

    nft = shutil.which("nft", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if nft is None:
        out["error"] = "nft is not installed (Debian package nftables)"
        return out
    rc, listing, err = run([nft, "list", "table", "inet", table])
    if rc == 0:
        out["loaded"], out["live"] = True, _listing_sum(listing)
    elif rc == 127 or "No such file or directory" not in err:
        out["error"] = (err.strip().splitlines() or [f"nft exited with {rc}"])[-1]
    if Path(path).is_file():
        script = '"$1" -f "$2" && "$1" list table inet "$3"'
        argv = ["unshare", "--net", "--", "sh", "-c", script, "sh", nft, path, table]
        rc, listing, err = run(argv)
        if rc == 0:
            out["file"] = _listing_sum(listing)
        elif out["error"] is None:
            out["error"] = (err.strip().splitlines() or [f"nft exited with {rc}"])[-1]
    return out


def is_own_address(address: str) -> bool:
    """Whether this host holds ``address`` (loopback, or on one of its interfaces).

    Binding a socket to it answers that without parsing ``ip``: the kernel refuses an
    address that is not the host's (EADDRNOTAVAIL).
    """
    import socket  # only a broker node asks

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
    except OSError:
        return False
    return True


def read_name_addresses(hostname: str) -> dict[str, Any]:
    """What the host's short name resolves to here (IPv4, as ``rabbitmqctl`` asks epmd).

    ``name`` is the short hostname (RabbitMQ's node is ``rabbit@<name>``), ``addresses``
    every IPv4 address the resolver returns for it (empty: it does not resolve), and
    ``own`` those of them this host holds.
    """
    import socket  # only a broker node asks

    name = hostname.split(".")[0]
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        infos = []
    addresses = sorted({str(info[4][0]) for info in infos})
    return {
        "name": name,
        "addresses": addresses,
        "own": [a for a in addresses if is_own_address(a)],
    }


def read_host(params: dict[str, Any], run: Run) -> dict[str, Any]:
    """Read the host as ``params`` ask (all optional but ``releases``).

    ``packages`` (release -> Debian packages the plan needs), ``releases`` (codename ->
    name), ``manifest`` (path), ``find_paths``/``find_patterns`` (qsetup's files),
    ``units`` (systemctl show of these), ``discover`` (a unit name prefix: every such
    unit systemd knows is listed and shown), ``hosts_marker`` (blockinfile marker in
    /etc/hosts), ``broker_api`` (port, user, password: definitions, cluster, feature
    flags, deprecated features in use), ``rabbit_data`` (dir, needs: release -> a flag
    that release's RabbitMQ needs enabled in the node's data; whether dir holds a
    node's data),
    ``min_versions`` (package, version, problem), ``executables`` (paths: do they
    exist), ``dists`` ({prefix, name}: versions), ``deb_versions`` (packages),
    ``firewall`` (table, path: see :func:`read_firewall`), ``results`` (address, port,
    tls, user, password: the result backend, see :func:`read_results`), ``beat_log``
    (a standby beat's lock and sends, see :func:`read_beat_log`), ``name_addresses``
    (what the host's own name resolves to, see :func:`read_name_addresses`).
    """
    result: dict[str, Any] = {"changed": False, "problems": [], "manifest": {}}
    # What waits on other programs starts first, each on its own thread.
    broker = _broker_reads(params["broker_api"]) if params.get("broker_api") else {}
    units = _Later(_units, run, list(params.get("units") or []), params.get("discover"))
    firewall = (
        _Later(read_firewall, run, params["firewall"]["table"], params["firewall"]["path"])
        if params.get("firewall")
        else None
    )
    debs = {name: _Later(installed_version, run, name) for name in params.get("deb_versions") or []}
    if params.get("manifest"):
        result["manifest"] = read_manifest(Path(params["manifest"]))
    result["found"] = {
        "files": find_entries(params.get("find_paths") or [], params.get("find_patterns") or [])
    }
    if params.get("hosts_marker"):
        result["hosts_block"] = read_block(Path("/etc/hosts"), params["hosts_marker"])
    result["users"] = _names_in("/etc/passwd")
    result["groups"] = _names_in("/etc/group")
    discovered, result["units"] = units.result()
    if discovered is not None:
        result["discovered"] = discovered
    result["executables"] = {
        path: os.access(path, os.X_OK) for path in params.get("executables") or []
    }
    result["dists"] = [
        {**d, "version": dist_version(d["prefix"], d["name"])} for d in params.get("dists") or []
    ]
    result["deb_versions"] = {name: later.result() for name, later in debs.items()}
    if firewall is not None:
        result["firewall"] = firewall.result()
    if (params.get("results") or {}).get("password"):
        result["results"] = read_results(params["results"])
    if params.get("beat_log"):
        result["beat_log"] = read_beat_log(run, params["beat_log"])
    result.update({key: later.result() for key, later in broker.items()})
    try:
        os_release = parse_os_release(Path("/etc/os-release").read_text(encoding="utf-8"))
    except OSError as exc:
        os_release = {}
        result["problems"].append(f"cannot read /etc/os-release ({exc.strerror})")
    result["hostname"] = Path("/proc/sys/kernel/hostname").read_text(encoding="utf-8").strip()
    if params.get("name_addresses"):
        result["name_addresses"] = read_name_addresses(result["hostname"])
    release = os_release.get("VERSION_CODENAME", "")
    result["release"] = release
    result["pretty_name"] = os_release.get("PRETTY_NAME", release or "an unknown system")
    releases: dict[str, str] = params["releases"]
    if os_release.get("ID") != "debian" or release not in releases:
        result["problems"].append(
            f"runs {result['pretty_name']} (release '{release or 'unknown'}'); "
            f"qsetup supports {' and '.join(releases.values())}"
        )
        result["packages"] = []
        result["installed"] = []
        return result
    data = params.get("rabbit_data") or {}
    if data.get("dir"):
        result["rabbit_data"] = has_rabbit_data(Path(data["dir"]))
    flag = (data.get("needs") or {}).get(release)
    if flag:
        old = old_rabbit_data(Path(data["dir"]), flag)
        if old is not None:
            result["problems"].append(
                f"{old} is the data of a RabbitMQ older than 3.13 (feature flag {flag} never "
                f"enabled), which the RabbitMQ of {result['pretty_name']} cannot start on "
                "(rabbitmq-server#15444); export it with qsetup backup where it ran, move "
                f"{data['dir']} aside, deploy, then qsetup restore the export"
            )
    _read_packages(params, run, result)
    return result


def _read_packages(params: dict[str, Any], run: Run, result: dict[str, Any]) -> None:
    """Which planned packages are installed; for the missing ones, whether apt has them."""
    wanted = sorted(set((params.get("packages") or {}).get(result["release"]) or []))
    result["packages"] = wanted
    installed: set[str] = set()
    if wanted:
        _rc, out, _err = run(["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Package}\\n", *wanted])
        installed = parse_dpkg_installed(out)
    result["installed"] = sorted(installed)
    missing = [p for p in wanted if p not in installed]
    if missing and params.get("check_candidates", True):
        if _lists_age() > LISTS_MAX_AGE:
            rc, _out, err = run(["apt-get", "update", "-q"])
            if rc != 0:
                last = (err.strip().splitlines() or ["apt-get update failed"])[-1]
                result["problems"].append(f"apt-get update failed: {last}")
        _rc, out, _err = run(["apt-cache", "policy", *missing])
        available = parse_apt_candidates(out)
        for name in missing:
            if name not in available:
                result["problems"].append(
                    f"Debian package '{name}' is not available on {result['pretty_name']}"
                    " (apt-cache policy shows no candidate)"
                )
    for need in params.get("min_versions") or []:
        version = package_version(run, need["package"])
        if version is None:
            continue  # not installable: reported above when the plan needs it
        rc, _out, _err = run(["dpkg", "--compare-versions", version, "lt", need["version"]])
        if rc == 0:
            result["problems"].append(
                f"{need['problem']} (Debian's {need['package']} here is {version})"
            )


def run_argv(argv: list[str]) -> tuple[int, str, str]:
    """Run a command with the C locale and no pager; (exit code, stdout, stderr)."""
    env = dict(os.environ, LC_ALL="C", SYSTEMD_PAGER="", SYSTEMD_COLORS="0")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)  # noqa: S603
    except OSError as exc:
        return 127, "", str(exc)
    return proc.returncode, proc.stdout, proc.stderr


def main() -> None:
    """Read the parameters (JSON) on standard input, print the facts as JSON."""
    params = json.loads(sys.stdin.readline())
    print(json.dumps(read_host(params, run_argv)))


if __name__ == "__main__":
    main()
