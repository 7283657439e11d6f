#!/usr/bin/python
"""Ansible module: put a host's directories and files in place in one round trip.

Ansible's ``file`` and ``copy`` in a loop cost one to three round trips per item (a
stat, a transfer, the module); a fresh host gets a dozen such items, and with 20 hosts
on a small controller that was a minute of a first deploy. This module takes every
directory and file at once: the contents come from the ``qsetup_files`` action plugin
(action_plugins/), which reads qsetup's rendered files on the controller. Each file is
written to a temporary file beside it and renamed over the old one (never half
written); owner, group and mode are set before the rename. Only what differs is
touched. Secret files never appear in the result or in a diff.

One module run does, in this order, what the task asks of it (each step was a module
run of its own, and each costs the host a Python start and Ansible's imports, about
0.2 core-seconds):
1. ``venv_packages``, then ``venvs``: the Debian packages virtualenvs are built with,
   then one detached build per virtualenv (module_utils/qsetup_venv.py); their jobs
   come back in ``jobs`` for a later step to wait for.
2. ``packages``: the other missing Debian packages (module_utils/qsetup_apt.py,
   services held until configured).
3. ``code``: the app's new code staged beside the live code (module_utils/qsetup_code.py).
4. ``jobs``: the virtualenv builds waited for (module_utils/qsetup_jobs.py), their
   markers written with the files.
5. groups, users, directories, files.
6. ``check``: the app loaded as each service will run it (module_utils/qsetup_units.py),
   when code was staged or a build changed a virtualenv; ``problems`` names each
   service whose app does not load, and the module fails. Nothing restarts here.
"""

from __future__ import annotations

import base64
import grp
import os
import pwd
import stat
import tempfile
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.qsetup_apt import install_missing
from ansible.module_utils.qsetup_code import CodeError, stage
from ansible.module_utils.qsetup_jobs import wait_jobs
from ansible.module_utils.qsetup_units import check_app
from ansible.module_utils.qsetup_venv import start_builds

DOCUMENTATION = r"""
module: qsetup_files
short_description: Ensure directories and whole files with owner, group and mode, in one call
options:
  venv_packages:
    description: Debian packages virtualenvs are built with, installed before anything else.
    type: list
    elements: str
    default: []
  venvs:
    description: >-
      Virtualenvs to start building (name, path, packages, site_packages, marker, ...);
      each comes back as its job's item in ``jobs``.
    type: list
    elements: dict
    default: []
  packages:
    description: >-
      Debian packages to install, services held until configured
      (module_utils/qsetup_apt.py).
    type: list
    elements: str
    default: []
  code:
    description: The app's archive on the host (archive) and the live code directory (code_dir).
    type: dict
  groups:
    description: System groups to create when missing (before the directories).
    type: list
    elements: str
    default: []
  users:
    description: >-
      System users to create when missing (user, group): no login shell, no home.
    type: list
    elements: dict
    default: []
  dirs:
    description: Directories to ensure (path, owner, group, mode); created with parents.
    type: list
    elements: dict
    default: []
  files:
    description: Files to ensure (dest, content base64, owner, group, mode, secret).
    type: list
    elements: dict
    default: []
  jobs:
    description: >-
      Virtualenv builds started in the background (jid, results_file, name, marker: a
      file entry), waited for after the packages and before the files; each build's
      marker file is written with the files once it succeeded.
    type: list
    elements: dict
    default: []
  wait:
    description: >-
      Seconds to wait for the builds in this call; when one is still running the
      module answers pending (packages installed, code staged, nothing else done).
    type: int
    default: 120
  check:
    description: >-
      The app check (services, code_dir, shim_dir, shim, timeout): run when ``staged``
      is true or a build changed a virtualenv.
    type: dict
  staged:
    description: Whether this deploy staged new code (here, or in an earlier call).
    type: bool
    default: false
"""

MAX_DIFF = 104448  # Ansible's MAX_FILE_SIZE_FOR_DIFF


class FileError(Exception):
    """A path that cannot be put in place: the message names it."""


def _ids(owner: str, group: str) -> tuple[int, int] | None:
    """The uid and gid, or None when either does not exist (yet, in check mode)."""
    try:
        uid = int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        return None
    return uid, gid


def _wanted(item: dict[str, Any], check: bool) -> tuple[int, int, int] | None:
    ids = _ids(str(item.get("owner") or "root"), str(item.get("group") or "root"))
    if ids is None:
        if check:
            return None
        raise FileError(
            f"{item.get('path') or item.get('dest')}: owner {item.get('owner')!r} or group "
            f"{item.get('group')!r} does not exist"
        )
    return ids[0], ids[1], int(str(item.get("mode") or "0644"), 8)


def _differs(st: os.stat_result, want: tuple[int, int, int] | None) -> bool:
    return want is None or (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != want


def _set_attrs(path: Path, want: tuple[int, int, int] | None) -> None:
    assert want is not None  # only None in check mode, which changes nothing
    os.chown(path, want[0], want[1])
    path.chmod(want[2])


def ensure_group(module: Any, name: str, check: bool) -> bool:
    """Create the system group ``name`` unless it exists; True if created."""
    try:
        grp.getgrnam(name)
        return False
    except KeyError:
        pass
    if not check:
        rc, _out, err = module.run_command(["groupadd", "--system", "--", name])
        if rc != 0:
            raise FileError(f"group {name}: groupadd failed: {err.strip()}")
    return True


def ensure_user(module: Any, item: dict[str, Any], check: bool) -> bool:
    """Create the system user ``item['user']`` (no login, no home) unless it exists."""
    name = str(item["user"])
    try:
        pwd.getpwnam(name)
        return False
    except KeyError:
        pass
    if not check:
        argv = ["useradd", "--system", "--gid", str(item["group"]), "--shell",
                "/usr/sbin/nologin", "--home-dir", "/nonexistent", "--no-create-home",
                "--", name]  # fmt: skip
        rc, _out, err = module.run_command(argv)
        if rc != 0:
            raise FileError(f"user {name}: useradd failed: {err.strip()}")
    return True


def ensure_dir(item: dict[str, Any], check: bool) -> bool:
    """Make ``item['path']`` a directory with its owner, group and mode; True if changed."""
    path = Path(item["path"])
    want = _wanted(item, check)
    try:
        st = path.stat()
    except FileNotFoundError:
        if check:
            return True
        path.mkdir(parents=True, exist_ok=True)
        _set_attrs(path, want)
        return True
    if not stat.S_ISDIR(st.st_mode):
        raise FileError(f"{path}: exists and is not a directory; move it away")
    if not _differs(st, want):
        return False
    if not check:
        _set_attrs(path, want)
    return True


def ensure_file(item: dict[str, Any], check: bool) -> tuple[bool, bytes | None]:
    """Make ``item['dest']`` hold ``content`` with its owner, group and mode.

    Returns (changed, the old content when it differed, else None).
    """
    dest = Path(item["dest"])
    content = base64.b64decode(item["content"])
    want = _wanted(item, check)
    old: bytes | None = None
    try:
        st = dest.lstat()
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise FileError(f"{dest}: is a directory; qsetup writes a file there")
    if st is not None and stat.S_ISREG(st.st_mode):
        old = dest.read_bytes()
        if old == content:
            if not _differs(st, want):
                return False, None
            if not check:
                _set_attrs(dest, want)
            return True, None
    else:
        old = b""
    if check:
        return True, old
    assert want is not None
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.qsetup-")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchown(fh.fileno(), want[0], want[1])
            os.fchmod(fh.fileno(), want[2])
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True, old


def _diff(dest: str, old: bytes, new: bytes) -> dict[str, str] | None:
    if len(old) > MAX_DIFF or len(new) > MAX_DIFF:
        return None
    try:
        before, after = old.decode("utf-8"), new.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return {"before": before, "after": after, "before_header": dest, "after_header": dest}


def main() -> None:
    """The steps the task asks for, in order (see above); report what changed."""
    module = AnsibleModule(
        argument_spec={
            "venv_packages": {"type": "list", "elements": "str", "default": []},
            "venvs": {"type": "list", "elements": "dict", "default": []},
            "packages": {"type": "list", "elements": "str", "default": []},
            "code": {"type": "dict"},
            "groups": {"type": "list", "elements": "str", "default": []},
            "users": {"type": "list", "elements": "dict", "default": []},
            "dirs": {"type": "list", "elements": "dict", "default": []},
            "files": {"type": "list", "elements": "dict", "default": []},
            "jobs": {"type": "list", "elements": "dict", "default": []},
            "wait": {"type": "int", "default": 120},
            "check": {"type": "dict"},
            "staged": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    check = module.check_mode
    changed: list[str] = []
    diffs: list[dict[str, str]] = []
    result: dict[str, Any] = {"installed": [], "jobs": [], "paths": changed}

    def fail(msg: str, **extra: Any) -> None:
        result.update(extra)
        module.fail_json(msg=msg, changed=True, **result)

    for names in (p.get("venv_packages") or [], None, p.get("packages") or []):
        if names is None:  # between the two: the builds start while the rest installs
            if p.get("venvs") and not check:
                try:
                    result["jobs"] = start_builds(p.get("venvs"))
                except OSError as exc:
                    fail(f"cannot start building the virtualenvs: {exc}")
            continue
        names = sorted(set(names))
        failure = install_missing(module, names)
        result["installed"] += names
        if failure is not None:
            fail(failure)
    code = p.get("code")
    if code and not check:
        try:
            result["staged"] = str(stage(Path(code["archive"]), str(code["code_dir"])))
        except CodeError as exc:
            fail(str(exc))
    jobs = p.get("jobs") or []
    done, failures, venvs_changed = wait_jobs(jobs, p.get("wait", 120))
    if failures:
        for job in jobs:
            Path(str(job["results_file"])).unlink(missing_ok=True)
        fail(failures[0])
    if not done:
        module.exit_json(changed=True, pending=True, **result)
    for job in jobs:  # read: the results files go (they hold no secret, only clutter)
        Path(str(job["results_file"])).unlink(missing_ok=True)
    files = [*p["files"], *(job["marker"] for job in jobs)]
    try:
        for name in p["groups"]:
            if ensure_group(module, name, check):
                changed.append(f"group {name}")
        for user in p["users"]:
            if ensure_user(module, user, check):
                changed.append(f"user {user['user']}")
        for item in p["dirs"]:
            if ensure_dir(item, check):
                changed.append(str(item["path"]))
        for item in files:
            did, old = ensure_file(item, check)
            if not did:
                continue
            changed.append(str(item["dest"]))
            if module._diff and old is not None and not item.get("secret"):
                diff = _diff(str(item["dest"]), old, base64.b64decode(item["content"]))
                if diff is not None:
                    diffs.append(diff)
    except (FileError, OSError) as exc:
        fail(str(exc))
    result["venvs_changed"] = venvs_changed
    app = p.get("check")
    if app and not check and (p.get("staged") or "staged" in result or venvs_changed):
        problems = check_app(
            app["services"], str(app["code_dir"]), str(app["shim_dir"]), str(app["shim"]),
            float(app.get("timeout") or 300),
        )  # fmt: skip
        result["checked"] = [str(s["unit"]) for s in app["services"]]
        if problems:
            fail("; ".join(problems), problems=problems)
    result["problems"] = []
    if diffs:
        result["diff"] = diffs
    # In check mode: the virtualenvs it would build change the host too.
    any_change = bool(changed or result["installed"] or p.get("venvs") or venvs_changed)
    module.exit_json(changed=any_change or "staged" in result, **result)


if __name__ == "__main__":
    main()
