"""The preflight module's parsing (playbooks/library/qsetup_host_facts.py) and releases."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from qsetup.desired import CELERY_APT_MARK, RELEASES, apt_packages_by_release

_PATH = Path(__file__).resolve().parents[2] / "playbooks" / "library" / "qsetup_host_facts.py"
_spec = importlib.util.spec_from_file_location("qsetup_host_facts", _PATH)
assert _spec is not None and _spec.loader is not None
facts: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(facts)


def test_os_release() -> None:
    text = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_CODENAME=trixie\n'
    parsed = facts.parse_os_release(text)
    assert parsed["ID"] == "debian" and parsed["VERSION_CODENAME"] == "trixie"
    assert parsed["PRETTY_NAME"] == "Debian GNU/Linux 13 (trixie)"


def test_dpkg_installed_ignores_removed_and_config_files_only() -> None:
    out = "ii  rabbitmq-server\nrc  celery\nii  python3-celery:amd64\nun  flower\n"
    assert facts.parse_dpkg_installed(out) == {"rabbitmq-server", "python3-celery"}


def test_apt_candidates() -> None:
    out = (
        "celery:\n  Installed: (none)\n  Candidate: 5.5.2-1\n  Version table:\n"
        "python-celery-common:\n  Installed: (none)\n  Candidate: (none)\n"
    )
    assert facts.parse_apt_candidates(out) == {"celery"}


def test_celery_packages_follow_the_release() -> None:
    by_release = apt_packages_by_release({CELERY_APT_MARK, "python3-venv"})
    assert set(by_release) == set(RELEASES)
    assert by_release["bookworm"] == ["python-celery-common", "python3-venv"]
    assert by_release["trixie"] == ["celery", "python3-celery", "python3-venv"]
    assert apt_packages_by_release({"rabbitmq-server"})["trixie"] == ["rabbitmq-server"]
