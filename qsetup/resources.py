"""Locate the playbooks, templates and examples shipped with qsetup."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """Return the directory of a shipped resource (``playbooks``, ``templates``, ``examples``).

    An installed wheel carries them under ``qsetup/_data/``; a source checkout
    keeps them at the repository root.
    """
    installed = _PACKAGE_DIR / "_data" / name
    if installed.is_dir():
        return installed
    return _PACKAGE_DIR.parent / name
