#!/usr/bin/python
"""Ansible module: read what a deploy must know about a host before changing it.

One round trip per host: the Debian release (``/etc/os-release``), the hostname the
host reports (what Celery's ``%h`` becomes), which of the packages the plan needs are
installed (``dpkg-query``), and, for the missing ones, whether apt can install them
(``apt-cache policy``; the package lists are refreshed first when older than a day).
It changes nothing that a service reads: at most apt's package lists.
"""

from __future__ import annotations

import base64
import fnmatch
import grp
import hashlib
import json
import pwd
import stat
import time
import urllib.request
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: qsetup_host_facts
short_description: Read a host's release, hostname and package state for qsetup's preflight
options:
  packages:
    description: Debian packages the plan needs, per release codename.
    type: dict
    required: true
  releases:
    description: Supported release codenames mapped to a human name.
    type: dict
    required: true
  manifest:
    description: Path of qsetup's manifest on the host (what an earlier deploy installed).
    type: str
    required: false
  find_paths:
    description: Directories whose entries matching find_patterns are reported (not recursive).
    type: list
    required: false
  find_patterns:
    description: Shell patterns of the entry names to report.
    type: list
    required: false
  units:
    description: systemd units whose state is reported.
    type: list
    required: false
  broker_api:
    description: On a broker host, the management API (port, user, password) whose
      definitions and cluster nodes are reported.
    type: dict
    required: false
  min_versions:
    description: Debian packages (package, version, problem) whose installed or
      candidate version must be at least version; problem is reported otherwise.
    type: list
    required: false
"""

LISTS_MAX_AGE = 86400


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


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest an earlier deploy wrote, or an empty one (none, or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def stat_entry(path: Path) -> dict[str, Any] | None:
    """What ansible.builtin.find reports of one entry (the fields qsetup's filters read)."""
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
        digest = hashlib.sha1()  # noqa: S324 - the checksum Ansible's modules report
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


def parse_systemctl_show(text: str) -> dict[str, dict[str, str]]:
    """``systemctl show -p Id,...`` output (blank-line separated blocks) by unit."""
    units: dict[str, dict[str, str]] = {}
    for block in text.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            units[props["Id"]] = props
    return units


def _names_in(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return []
    return [line.split(":", 1)[0] for line in text.splitlines() if ":" in line]


def read_definitions(port: int, user: str, password: str) -> dict[str, Any] | None:
    """The broker's definitions from the local management API, or None when unreadable."""
    data = read_api(port, user, password, "definitions")
    return data if isinstance(data, dict) else None


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


def read_api(port: int, user: str, password: str, path: str) -> Any:
    """One GET from the local management API (None when it cannot be read)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/{path}")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - loopback
            data = json.loads(resp.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return data


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


def main() -> None:
    """Run the module."""
    module = AnsibleModule(
        argument_spec={
            "packages": {"type": "dict", "required": True},
            "releases": {"type": "dict", "required": True},
            "manifest": {"type": "str", "required": False, "default": None},
            "find_paths": {"type": "list", "elements": "str", "required": False, "default": []},
            "find_patterns": {
                "type": "list",
                "elements": "str",
                "required": False,
                "default": [],
            },
            "units": {"type": "list", "elements": "str", "required": False, "default": []},
            "hosts_marker": {"type": "str", "required": False, "default": None},
            "min_versions": {
                "type": "list",
                "elements": "dict",
                "required": False,
                "default": [],
                "options": {
                    "package": {"type": "str", "required": True},
                    "version": {"type": "str", "required": True},
                    "problem": {"type": "str", "required": True},
                },
            },
            "broker_api": {
                "type": "dict",
                "required": False,
                "default": None,
                "options": {
                    "port": {"type": "int", "required": True},
                    "user": {"type": "str", "required": True},
                    "password": {"type": "str", "required": True, "no_log": True},
                },
            },
        },
        supports_check_mode=True,
    )
    result: dict[str, Any] = {"changed": False, "problems": [], "manifest": {}}
    if module.params["manifest"]:
        result["manifest"] = read_manifest(Path(module.params["manifest"]))
    result["found"] = {
        "files": find_entries(module.params["find_paths"], module.params["find_patterns"])
    }
    if module.params["hosts_marker"]:
        result["hosts_block"] = read_block(Path("/etc/hosts"), module.params["hosts_marker"])
    result["users"] = _names_in("/etc/passwd")
    result["groups"] = _names_in("/etc/group")
    result["units"] = {}
    if module.params["units"]:
        _rc, out, _err = module.run_command(
            ["systemctl", "show", "-p", "Id,LoadState,ActiveState,SubState,UnitFileState",
             "--", *module.params["units"]]
        )  # fmt: skip
        result["units"] = parse_systemctl_show(out)
    if module.params["broker_api"]:
        api = module.params["broker_api"]
        result["definitions"] = read_definitions(api["port"], api["user"], api["password"])
        result["cluster"] = read_cluster(api["port"], api["user"], api["password"])
    try:
        os_release = parse_os_release(Path("/etc/os-release").read_text(encoding="utf-8"))
    except OSError as exc:
        os_release = {}
        result["problems"].append(f"cannot read /etc/os-release ({exc.strerror})")
    result["hostname"] = Path("/proc/sys/kernel/hostname").read_text(encoding="utf-8").strip()
    release = os_release.get("VERSION_CODENAME", "")
    result["release"] = release
    result["pretty_name"] = os_release.get("PRETTY_NAME", release or "an unknown system")
    releases: dict[str, str] = module.params["releases"]
    if os_release.get("ID") != "debian" or release not in releases:
        result["problems"].append(
            f"runs {result['pretty_name']} (release '{release or 'unknown'}'); "
            f"qsetup supports {' and '.join(releases.values())}"
        )
        result["packages"] = []
        result["installed"] = []
        module.exit_json(**result)
    wanted = sorted(set(module.params["packages"].get(release) or []))
    result["packages"] = wanted
    installed: set[str] = set()
    if wanted:
        _rc, out, _err = module.run_command(
            ["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Package}\\n", *wanted]
        )
        installed = parse_dpkg_installed(out)
    result["installed"] = sorted(installed)
    missing = [p for p in wanted if p not in installed]
    if missing:
        if _lists_age() > LISTS_MAX_AGE:
            rc, _out, err = module.run_command(["apt-get", "update", "-q"])
            if rc != 0:
                last = (err.strip().splitlines() or ["apt-get update failed"])[-1]
                result["problems"].append(f"apt-get update failed: {last}")
        _rc, out, _err = module.run_command(["apt-cache", "policy", *missing])
        available = parse_apt_candidates(out)
        for name in missing:
            if name not in available:
                result["problems"].append(
                    f"Debian package '{name}' is not available on {result['pretty_name']}"
                    " (apt-cache policy shows no candidate)"
                )
    for need in module.params["min_versions"]:
        version = package_version(module, need["package"])
        if version is None:
            continue  # not installable: reported above when the plan needs it
        rc, _out, _err = module.run_command(
            ["dpkg", "--compare-versions", version, "lt", need["version"]]
        )
        if rc == 0:
            result["problems"].append(
                f"{need['problem']} (Debian's {need['package']} here is {version})"
            )
    module.exit_json(**result)


def package_version(module: Any, name: str) -> str | None:
    """The installed version of a package, else the version apt would install."""
    rc, out, _err = module.run_command(
        ["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}", name]
    )
    if rc == 0 and out.startswith("ii "):
        return out.split()[-1]
    _rc, out, _err = module.run_command(["apt-cache", "policy", name])
    for line in out.splitlines():
        if line.strip().startswith("Candidate:"):
            value = line.split(":", 1)[1].strip()
            return None if value in ("", "(none)") else value
    return None


if __name__ == "__main__":
    main()
