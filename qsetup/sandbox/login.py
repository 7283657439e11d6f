"""The ordinary login user every sandbox host gets: passwordless sudo and the sandbox key.

Real servers are reached as such a user with ``become``; the inventory that ``sandbox up
--inventory-out`` writes logs in the same way, so every deploy, restart and status on
sandbox hosts goes through sudo. Root keeps the key too, for ``qsetup sandbox ssh``.

Everything is written into the host's (mounted) root from this machine: before boot for
a new host, and into the live tree of a host that is already running (the user is
created with the tree's own ``useradd``, in a chroot).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from qsetup.errors import SandboxError
from qsetup.sandbox.procs import run

LOGIN_USER = "deploy"
# sudo skips files in sudoers.d whose name has a dot (so the temporary copy is never read).
SUDOERS_FILE = "etc/sudoers.d/qsetup-sandbox-login"


@dataclass(frozen=True)
class Account:
    """A user's entry in a tree's /etc/passwd."""

    uid: int
    gid: int
    home: str


def render_sudoers(user: str = LOGIN_USER) -> str:
    """Return the sudoers.d rule giving ``user`` passwordless sudo to anything."""
    return (
        "# written by qsetup sandbox: the login user the sandbox inventory uses (become: true)\n"
        f"{user} ALL=(ALL:ALL) NOPASSWD: ALL\n"
    )


def find_account(passwd_text: str, user: str) -> Account | None:
    """Return ``user``'s uid, gid and home from /etc/passwd text, or None if absent."""
    for line in passwd_text.splitlines():
        fields = line.split(":")
        if len(fields) >= 7 and fields[0] == user and fields[2].isdigit() and fields[3].isdigit():
            return Account(int(fields[2]), int(fields[3]), fields[5])
    return None


def _inside(root: Path, path: str) -> Path:
    """``path`` (absolute, as the host sees it) under ``root``, with no symlink on the way.

    A running host's tree is live: a symlink there would point into this machine's own
    files when followed from outside, so none is followed.
    """
    target = root / path.lstrip("/")
    current = root
    for part in target.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            raise SandboxError(
                f"{current} is a symbolic link; refusing to write the sandbox login user's "
                "files through it (remove it, or rebuild the host with `qsetup sandbox down`)"
            )
    return target


def _write_if_changed(path: Path, text: str, mode: int, uid: int, gid: int) -> bool:
    """Write ``text`` atomically with owner and mode unless the file already matches."""
    try:
        st = path.lstat()
        same = (
            path.read_text(encoding="utf-8") == text
            and st.st_mode & 0o7777 == mode
            and (st.st_uid, st.st_gid) == (uid, gid)
        )
    except (FileNotFoundError, UnicodeDecodeError):
        same = False
    if same:
        return False
    tmp = path.with_name(f".{path.name}.qsetup-tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chown(tmp, uid, gid)
    tmp.chmod(mode)
    tmp.replace(path)
    return True


def _ensure_dir(path: Path, mode: int, uid: int, gid: int) -> bool:
    changed = False
    if not path.is_dir():
        path.mkdir(mode=mode)
        changed = True
    st = path.lstat()
    if st.st_mode & 0o7777 != mode or (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid)
        path.chmod(mode)
        changed = True
    return changed


def _ensure_account(root: Path, user: str) -> tuple[Account, bool]:
    passwd = root / "etc/passwd"
    account = find_account(passwd.read_text(encoding="utf-8"), user)
    if account is not None:
        return account, False
    # "*": no password can ever match, yet the account is not locked ("!"), which sshd
    # would refuse for key logins where PAM is off.
    run(
        ["chroot", str(root), "useradd", "--create-home", "--user-group"]
        + ["--shell", "/bin/bash", "--password", "*", user],
        timeout=60,
    )
    account = find_account(passwd.read_text(encoding="utf-8"), user)
    if account is None:
        raise SandboxError(f"useradd in {root} did not add {user} to /etc/passwd")
    return account, True


def _ensure_sudoers(root: Path, user: str) -> bool:
    if not (root / "usr/bin/sudo").exists():
        raise SandboxError(
            f"the sandbox tree under {root} has no sudo; run `qsetup sandbox down` and "
            "`qsetup sandbox up` again so the hosts boot from a tree built with it"
        )
    final = _inside(root, SUDOERS_FILE)
    text = render_sudoers(user)
    try:
        st = final.lstat()
        if final.read_text(encoding="utf-8") == text and st.st_mode & 0o7777 == 0o440:
            return False
    except FileNotFoundError:
        pass
    final.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    staged = final.with_name(f".{final.name}.qsetup-tmp")
    _write_if_changed(staged, text, 0o440, 0, 0)
    if (root / "usr/sbin/visudo").exists():
        check = run(
            ["chroot", str(root), "visudo", "-cf", "/" + str(staged.relative_to(root))],
            timeout=30,
            check=False,
        )
        if check.returncode != 0:
            staged.unlink(missing_ok=True)
            raise SandboxError(
                f"visudo refused the sandbox's sudoers rule for {user}: "
                f"{(check.stderr or check.stdout).strip()}"
            )
    staged.replace(final)
    return True


def ensure_login_user(root: Path, public_key: str, user: str = LOGIN_USER) -> bool:
    """Give the tree at ``root`` the login user, its sudo rule and the sandbox key.

    Creates the user (``useradd`` in a chroot) if missing, writes
    ``/etc/sudoers.d/qsetup-sandbox-login`` (0440, checked with ``visudo -cf`` when the
    tree has it) and ``~/.ssh/authorized_keys`` (0600 in a 0700 ``~/.ssh``, owned by the
    user). Idempotent: a tree that already has all of it is left untouched.

    Args:
        root: the host's mounted root (new or running).
        public_key: the sandbox's public key (one line).
        user: the login user's name.

    Returns:
        Whether anything was created or changed.

    Raises:
        SandboxError: the tree has no sudo, useradd or visudo failed, or a path on the
            way is a symbolic link.
    """
    account, changed = _ensure_account(root, user)
    changed |= _ensure_sudoers(root, user)
    home = _inside(root, account.home)
    if not home.is_dir():  # useradd makes it; a tree that lost it gets one back
        changed |= _ensure_dir(home, 0o750, account.uid, account.gid)
    ssh_dir = _inside(root, f"{account.home}/.ssh")
    changed |= _ensure_dir(ssh_dir, 0o700, account.uid, account.gid)
    keys = _inside(root, f"{account.home}/.ssh/authorized_keys")
    changed |= _write_if_changed(keys, public_key.strip() + "\n", 0o600, account.uid, account.gid)
    return changed
