"""Secrets the inventory refers to by name: generated, loaded and saved 0600."""

from __future__ import annotations

import datetime
import re
import secrets as _random
import stat
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import SecretStr

from qsetup.errors import InventoryError, SecretsError
from qsetup.inventory.vault import Vault, is_encrypted
from qsetup.inventory.yamlsource import Position, bad_character, printable

if TYPE_CHECKING:
    from qsetup.inventory.yamlsource import YamlDocument

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class Secrets:
    """Named secret values; ``repr`` never shows a value."""

    path: Path
    values: Mapping[str, SecretStr] = field(default_factory=dict)
    positions: Mapping[str, Position] = field(default_factory=dict, repr=False, compare=False)
    """Where each secret's name is in the file, for problems about its value."""
    encrypted: bool = False
    """Whether the file is in ansible-vault's format (``qsetup secrets encrypt``)."""

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
    try:
        with path.open("rb") as fh:
            encrypted = is_encrypted(fh.read(64))
    except OSError:
        encrypted = False  # read_document says why it cannot read the file
    doc = read_document(path, "secrets file")
    if doc.data is None:
        return Secrets(path=path, encrypted=encrypted)
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
    positions: dict[str, Position] = {}
    for name, value in doc.data.items():
        pos = doc.position((name,), key=True)
        if not _NAME.fullmatch(name):
            problem: str | None = "secret names use lowercase letters, digits, '_', '.' and '-'"
        else:
            problem = secret_value_problem(value)  # never echoes the value
        if problem:
            problems.append(printable(f"{path}:{pos.line}:{pos.column}: {name}: {problem}"))
        else:
            values[name] = SecretStr(value)
            positions[name] = pos
    if problems:
        raise InventoryError(problems)
    return Secrets(path=path, values=values, positions=positions, encrypted=encrypted)


MAX_SECRET = 4096


def secret_value_problem(value: object) -> str | None:
    """Why a value from the secrets file cannot be a secret (never quoting it), or None."""
    if isinstance(value, bool):
        kind = "true/false"
    elif isinstance(value, int | float):
        kind = "a number"  # 0755 becomes 493, 1e3 becomes 1000.0: the password would change
    elif isinstance(value, datetime.date):
        kind = "a date"
    elif isinstance(value, str) and value:
        what = bad_character(value, show=False)
        if what:
            return f"the value contains {what}; a secret is one line of printable text"
        if len(value) > MAX_SECRET:
            return f"the value is longer than {MAX_SECRET} characters; use a shorter one"
        return None
    else:
        return "a secret must be a non-empty string"
    return f"YAML reads this value as {kind}, not as text, which changes it; put it in quotes"


MIN_PASSWORD = 8


def password_problem(value: str) -> str | None:
    """Why a value cannot be a broker or Flower password (never quoting it), or None."""
    advice = (
        f"a broker or Flower login needs at least {MIN_PASSWORD} characters, e.g. the "
        "output of: openssl rand -hex 16"
    )
    if not value.strip():
        return f"the value is blank (only spaces or tabs); {advice}"
    if len(value) < MIN_PASSWORD:
        return f"a value of {len(value)} character(s) is too short; {advice}"
    return None


def erlang_cookie_problem(value: str) -> str | None:
    """Why RabbitMQ cannot use a value as its Erlang cookie (never quoting it), or None."""
    advice = "use 20 to 255 letters and digits, e.g. the output of: openssl rand -hex 32"
    if len(value) < 20:
        return f"an Erlang cookie of {len(value)} characters is too short; {advice}"
    if len(value) > 255:
        return f"an Erlang cookie of {len(value)} characters is too long; {advice}"
    if not all("!" <= ch <= "~" and ch not in "'\"\\`" for ch in value):
        return f"an Erlang cookie must be printable ASCII without spaces or quotes; {advice}"
    return None


def secrets_text(values: Mapping[str, str]) -> str:
    """A secrets file's text: a short header and one ``name: value`` line per secret."""
    lines = [
        "# qsetup secrets: keep this file private (mode 0600) and out of version control,",
        "# or encrypt it with 'qsetup secrets encrypt'. The inventory refers to these by name.",
    ]
    for name, value in values.items():
        lines.append(yaml.safe_dump({name: value}, default_flow_style=False).strip())
    return "\n".join(lines) + "\n"


def save_secrets(
    path: Path, values: Mapping[str, str], *, force: bool = False, vault: Vault | None = None
) -> None:
    """Write secrets as YAML with mode 0600, atomically; refuse to overwrite unless forced.

    With a ``vault`` that encrypts, the file is written in ansible-vault's format.
    """
    if path.exists() and not force:
        raise SecretsError(f"{path} already exists; pass --force to overwrite it")
    (vault or Vault()).write_text(path, secrets_text(values))


def replace_secret(text: str, name: str, value: str) -> str:
    """``text`` (a secrets file) with ``name``'s value replaced, every other line kept.

    The value must be one line of letters and digits (a generated one). When the old
    value is not a one-line ``name: value`` entry, the whole file is written anew
    (comments then go).
    """
    lines = text.splitlines(keepends=True)
    entry = re.compile(rf"^{re.escape(name)}[ \t]*:[ \t]*\S.*$")
    for i, line in enumerate(lines):
        if entry.match(line.rstrip("\r\n")):
            follows = lines[i + 1] if i + 1 < len(lines) else ""
            if follows[:1] in (" ", "\t"):
                break  # a value that goes on over more lines
            ending = line[len(line.rstrip("\r\n")) :] or "\n"
            new = [*lines[:i], f"{name}: '{value}'{ending}", *lines[i + 1 :]]
            candidate = "".join(new)
            try:
                parsed = yaml.safe_load(candidate)
            except yaml.YAMLError:
                break
            if isinstance(parsed, dict) and parsed.get(name) == value:
                return candidate
            break
    values = yaml.safe_load(text) or {}
    values[name] = value
    return secrets_text({str(k): str(v) for k, v in values.items()})


def redactor(secrets: Secrets, extra: Iterable[str] = ()) -> Callable[[str], str]:
    """A function that replaces every secret value (as written and URL-quoted) with ***."""
    from urllib.parse import quote

    values = {v.get_secret_value() for v in secrets.values.values()} | set(extra)
    forms = sorted(
        {f for v in values if len(v) >= 4 for f in (v, quote(v, safe=""))}, key=len, reverse=True
    )

    def redact(text: str) -> str:
        for form in forms:
            if form in text:
                text = text.replace(form, "***")
        return text

    return redact
