"""Fixtures for the unit tier."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from unitdata import BASE_INVENTORY, BASE_SECRETS, WriteInventory, write_secrets


@pytest.fixture
def write_inventory(tmp_path: Path) -> WriteInventory:
    """Write an inventory text, its secrets (0600) and an app/ directory; return the path."""

    def write(
        text: str = BASE_INVENTORY,
        secrets: Mapping[str, str] | None = None,
        *,
        name: str = "inventory.yml",
        secrets_mode: int = 0o600,
    ) -> Path:
        # A real app directory: validate/deploy refuse an empty one.
        (tmp_path / "app" / "proj").mkdir(parents=True, exist_ok=True)
        (tmp_path / "app" / "proj" / "__init__.py").touch()
        inventory = tmp_path / name
        inventory.write_text(text, encoding="utf-8")
        stem = inventory.stem
        write_secrets(
            tmp_path / f"{stem}.secrets.yml",
            BASE_SECRETS if secrets is None else secrets,
            secrets_mode,
        )
        return inventory

    return write


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ansible's module payloads (qsetup.remote.runner.payload_cache_dir) go to a test's
    own cache, never the user's ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
