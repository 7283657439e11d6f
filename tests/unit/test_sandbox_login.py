"""The sandbox's login user (passwordless sudo, the sandbox key) and the inventory using it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qsetup.errors import SandboxError
from qsetup.inventory.loader import load_inventory
from qsetup.sandbox import lifecycle, login
from qsetup.sandbox.state import HostRecord, SandboxState

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake qsetup"


def _tree(tmp_path: Path) -> Path:
    """A tree that already has the login user (as this process's uid, so no root is needed)."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/sudo").touch()
    (root / "home/deploy").mkdir(parents=True)
    uid, gid = os.getuid(), os.getgid()
    (root / "etc/passwd").write_text(
        f"root:x:0:0:root:/root:/bin/bash\ndeploy:x:{uid}:{gid}::/home/deploy:/bin/bash\n",
        encoding="utf-8",
    )
    return root


def test_the_sudoers_rule_is_passwordless_for_the_login_user() -> None:
    lines = [ln for ln in login.render_sudoers().splitlines() if not ln.startswith("#")]
    assert lines == ["deploy ALL=(ALL:ALL) NOPASSWD: ALL"]
    # sudo ignores sudoers.d names with a dot: the file would silently do nothing.
    assert "." not in Path(login.SUDOERS_FILE).name


def test_find_account_reads_uid_gid_and_home() -> None:
    text = "root:x:0:0:root:/root:/bin/bash\ndeploy:x:1000:1001::/home/deploy:/bin/bash\n"
    assert login.find_account(text, "deploy") == login.Account(1000, 1001, "/home/deploy")
    assert login.find_account(text, "nobody") is None


def test_login_user_gets_sudo_and_the_key_with_private_modes(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    assert login.ensure_login_user(root, KEY + "\n") is True
    ssh_dir = root / "home/deploy/.ssh"
    keys = ssh_dir / "authorized_keys"
    sudoers = root / login.SUDOERS_FILE
    assert keys.read_text(encoding="utf-8") == KEY + "\n"
    assert ssh_dir.stat().st_mode & 0o777 == 0o700
    assert keys.stat().st_mode & 0o777 == 0o600
    assert (keys.stat().st_uid, keys.stat().st_gid) == (os.getuid(), os.getgid())
    assert sudoers.stat().st_mode & 0o777 == 0o440
    assert "NOPASSWD: ALL" in sudoers.read_text(encoding="utf-8")
    assert not list(sudoers.parent.glob(".*"))  # no staged copy left behind
    # Idempotent: a second call (a later `sandbox up` on a running host) changes nothing.
    assert login.ensure_login_user(root, KEY) is False
    keys.chmod(0o644)
    assert login.ensure_login_user(root, KEY) is True
    assert keys.stat().st_mode & 0o777 == 0o600


def test_a_tree_without_sudo_is_refused_with_the_fix(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "usr/bin/sudo").unlink()
    with pytest.raises(SandboxError, match="no sudo; run `qsetup sandbox down`"):
        login.ensure_login_user(root, KEY)


def test_no_file_is_written_through_a_symlink_in_the_tree(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "home/deploy/.ssh").symlink_to(outside)
    with pytest.raises(SandboxError, match="symbolic link"):
        login.ensure_login_user(root, KEY)
    assert not list(outside.iterdir())


def test_the_sandbox_inventory_logs_in_as_the_login_user_with_become(tmp_path: Path) -> None:
    def rec(name: str, address: str) -> HostRecord:
        return HostRecord(
            name=name,
            address=address,
            netns=f"qs-{name}",
            veth_host=f"qsv-{name}",
            veth_peer=f"qsp-{name}",
            host_dir=f"/tmp/hosts/{name}",
        )

    state = SandboxState(
        subnet="10.213.7.0/24",
        bridge="qsbr0",
        bridge_address="10.213.7.1",
        hosts=(rec("qs1", "10.213.7.11"), rec("qs2", "10.213.7.12")),
    )
    key = tmp_path / "id_ed25519"
    key.write_text("not a real key\n", encoding="utf-8")
    inventory, _ = lifecycle.write_inventory(tmp_path / "inventory.yml", state, key)
    inv = load_inventory(inventory).inventory
    assert inv.ssh.user == login.LOGIN_USER
    assert inv.ssh.become is True
