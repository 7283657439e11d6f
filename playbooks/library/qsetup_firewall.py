#!/usr/bin/python
"""Ansible module: load qsetup's nftables table and keep it loaded at boot.

One round trip: writes the ruleset file and the oneshot unit that loads it at boot
(when they differ), loads the file with ``nft -f`` (the file replaces ``table inet
qsetup`` in one transaction and touches no other table), then enables and starts the
unit. The deploy runs it where the preflight's comparison found the firewall differs:
early with the union of the new rules and those an earlier deploy allowed, and, once
the clients the inventory dropped have stopped, with exactly the new rules.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: qsetup_firewall
short_description: Load qsetup's nftables table from a ruleset and keep it loaded at boot
options:
  ruleset:
    description: The nftables file (it replaces only qsetup's table).
    type: str
    required: true
  ruleset_path:
    description: Where the file goes.
    type: str
    required: true
  unit:
    description: The oneshot unit that loads the file at boot.
    type: str
    required: true
  unit_name:
    description: The unit's name (under /etc/systemd/system).
    type: str
    required: true
"""


def _write(path: Path, content: str) -> bool:
    """Write ``content`` atomically (mode 0644); False when the file already held it."""
    try:
        if path.read_text(encoding="utf-8") == content:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(content)
    os.chmod(tmp, 0o644)  # noqa: PTH101 - a file descriptor's path, not a Path
    Path(tmp).replace(path)
    return True


def main() -> None:
    """Write the files that differ, load the ruleset, enable and start the unit."""
    module = AnsibleModule(
        argument_spec={
            "ruleset": {"type": "str", "required": True},
            "ruleset_path": {"type": "str", "required": True},
            "unit": {"type": "str", "required": True},
            "unit_name": {"type": "str", "required": True},
        },
        supports_check_mode=True,
    )
    if module.check_mode:
        module.exit_json(changed=True)
    params = module.params
    unit_name = str(params["unit_name"])
    path = Path(str(params["ruleset_path"]))
    nft = module.get_bin_path("nft", required=True, opt_dirs=["/usr/sbin", "/sbin"])
    # Checked before anything is written: a ruleset nft refuses leaves the host as it was.
    with tempfile.NamedTemporaryFile("w", suffix=".nft", encoding="utf-8") as fh:
        fh.write(str(params["ruleset"]))
        fh.flush()
        rc, _out, err = module.run_command([nft, "-c", "-f", fh.name])
    if rc != 0:
        module.fail_json(msg=f"nft refused qsetup's ruleset: {err.strip()}")
    unit_changed = _write(Path("/etc/systemd/system") / unit_name, str(params["unit"]))
    _write(path, str(params["ruleset"]))
    if unit_changed:
        module.run_command(["systemctl", "daemon-reload"], check_rc=True)
    rc, _out, err = module.run_command([nft, "-f", str(path)])
    if rc != 0:
        module.fail_json(msg=f"nft could not load {path}: {err.strip()}")
    rc, out, _err = module.run_command(["systemctl", "is-enabled", unit_name])
    if out.strip() != "enabled":
        module.run_command(["systemctl", "enable", unit_name], check_rc=True)
    # Active already: it loaded an older file at boot and needs no start (loaded above).
    module.run_command(["systemctl", "start", unit_name], check_rc=True)
    module.exit_json(changed=True)


if __name__ == "__main__":
    main()
