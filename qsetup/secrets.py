"""Secrets the inventory refers to by name: generated, loaded and saved 0600."""

from __future__ import annotations

import os
import re
import secrets as _random
import stat
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import SecretStr

from qsetup.errors import InventoryError, SecretsError
from qsetup.yamlsource import printable

if TYPE_CHECKING:
    from qsetup.yamlsource import YamlDocument

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class Secrets:
    """Named secret values; ``repr`` never shows a value."""

    path: Path
    values: Mapping[str, SecretStr] = field(default_factory=dict)

    def get(self, name: str) -> str:
        """Return the plain value of one secret (only for writing it where it belongs)."""
        return self.values[name].get_secret_value()


def default_secrets_path(inventory: Path) -> Path:
    """Return ``<inventory stem>.secrets.yml`` beside the inventory."""
    return inventory.with_name(f"{inventory.stem}.secrets.yml")


def generate_password(length: int = 32) -> str:
    """Return a strong random password of letters and digits (safe in URLs and shells)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(_random.choice(alphabet) for _ in range(length))


def generate_erlang_cookie() -> str:
    """Return a random Erlang cookie (uppercase letters, as RabbitMQ generates them)."""
    return "".join(_random.choice(string.ascii_uppercase) for _ in range(32))


def check_private(path: Path) -> None:
    """Refuse a secrets file that others can read or write, saying how to fix it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SecretsError(
            f"{path}:1:1: (file): secrets file not found; run 'qsetup init' or create it "
            f"with 'install -m 600 /dev/null {path}' and add the secrets the inventory names"
        ) from None
    except OSError as exc:
        raise SecretsError(
            f"{path}:1:1: (file): cannot read the secrets file ({exc.strerror}); check the path"
        ) from None
    if stat.S_ISDIR(mode):
        raise SecretsError(f"{path}:1:1: (file): is a directory, not a secrets file")
    if stat.S_IMODE(mode) & 0o077:
        raise SecretsError(
            f"{path}:1:1: (file): secrets file is open to other users "
            f"(mode {stat.S_IMODE(mode):04o}); fix it with: chmod 600 {path}"
        )


def load_secrets_document(
    path: Path, read_document: Callable[[Path, str], YamlDocument]
) -> Secrets:
    """Load a secrets file (a mapping of name to string) after checking its mode."""
    check_private(path)
    doc = read_document(path, "secrets file")
    if doc.data is None:
        return Secrets(path=path)
    if not isinstance(doc.data, dict):
        got = "a list" if isinstance(doc.data, list) else "one value"
        raise InventoryError(
            [
                f"{path}:1:1: (top level): expected a mapping of secret names to values "
                f"('name: value' lines), got {got}"
            ]
        )
    problems: list[str] = []
    values: dict[str, SecretStr] = {}
    for name, value in doc.data.items():
        pos = doc.position((name,), key=True)
        if not _NAME.fullmatch(name):
            problems.append(
                printable(
                    f"{path}:{pos.line}:{pos.column}: {name}: secret names use lowercase "
                    "letters, digits, '_', '.' and '-'"
                )
            )
        elif not isinstance(value, str | int) or isinstance(value, bool) or value == "":
            # The value itself is never echoed back.
            problems.append(
                printable(
                    f"{path}:{pos.line}:{pos.column}: {name}: a secret must be a non-empty string"
                )
            )
        else:
            values[name] = SecretStr(str(value))
    if problems:
        raise InventoryError(problems)
    return Secrets(path=path, values=values)


def save_secrets(path: Path, values: Mapping[str, str], *, force: bool = False) -> None:
    """Write secrets as YAML with mode 0600, atomically; refuse to overwrite unless forced."""
    if path.exists() and not force:
        raise SecretsError(f"{path} already exists; pass --force to overwrite it")
    lines = [
        "# qsetup secrets: keep this file private (mode 0600) and out of version control.",
        "# The inventory refers to these by name.",
    ]
    for name, value in values.items():
        lines.append(yaml.safe_dump({name: value}, default_flow_style=False).strip())
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        tmp.chmod(0o600)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
