"""``qsetup secrets``: encrypt, decrypt, view, edit the secrets at rest, and rotate one password.

Encryption covers every file beside the inventory that holds a secret or a private key:
the secrets file, qsetup's CA key (``<stem>.ca-key.pem``), the host keys in
``<stem>.tls/``, your own CA's host keys (``tls.certificates``) that lie in the
inventory's folder and the backups written beside the inventory
(``<stem>.backup-*.json``). Each file is checked first (an encrypted one must open with
the password given), so a wrong password changes nothing; then each is replaced
atomically.

A rotation writes a new value for one broker or Flower password and deploys: the deploy's
own comparison finds the broker user's password hash and the files that hold it (the
worker and beat environment files, Flower's configuration) different, sets the password
and restarts only the services whose files changed, rolling and gated on ping as every
deploy. Status then checks that everything reconnected.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qsetup.artifacts.tls import ca_key_path, cache_dir
from qsetup.errors import InventoryError, QsetupError, SecretsError
from qsetup.inventory.fields import resolve_relative
from qsetup.inventory.loader import (
    LoadedInventory,
    load_inventory,
    read_document,
    validate_document,
)
from qsetup.inventory.secrets import (
    check_private,
    default_secrets_path,
    generate_password,
    load_secrets_document,
    replace_secret,
)
from qsetup.inventory.vault import (
    PasswordSource,
    Vault,
    decrypt_bytes,
    encrypt_bytes,
    is_encrypted,
    private_dir,
    write_private,
)
from qsetup.ops.deploy import DeployOptions, run_deploy
from qsetup.remote.runner import DeployEvent, DeployResult
from qsetup.status.check import check_status
from qsetup.status.model import SystemStatus


def secrets_file(inventory: Path, secrets: Path | None) -> Path:
    """The secrets file: ``--secrets`` or ``<inventory stem>.secrets.yml``."""
    return secrets or default_secrets_path(inventory)


def vault_files(inventory: Path, secrets: Path | None = None) -> list[Path]:
    """Every file beside the inventory that holds a secret or a private key (that exists)."""
    found = [secrets_file(inventory, secrets), ca_key_path(inventory)]
    folder = cache_dir(inventory)
    if folder.is_dir():
        found += sorted(folder.glob("*.key"))
    found += sorted(inventory.parent.glob(f"{inventory.stem}.backup-*.json"))
    found += _own_keys(inventory)
    return list(dict.fromkeys(p for p in found if p.is_file()))


def _own_keys(inventory: Path) -> list[Path]:
    """The host keys of ``tls.certificates`` (your own CA) inside the inventory's folder.

    Keys kept elsewhere (an operator's key store) are left as they are; qsetup reads
    either form. An inventory that does not load has none here.
    """
    try:
        inv = validate_document(read_document(inventory, "inventory"))
    except (QsetupError, OSError):
        return []
    top = inventory.parent.resolve()
    keys = (resolve_relative(inventory, f.key) for f in inv.tls.certificates.values())
    return sorted(k for k in keys if k.resolve().is_relative_to(top))


@dataclass(frozen=True)
class VaultChange:
    """What ``encrypt`` or ``decrypt`` did: files changed, files already as asked."""

    changed: tuple[Path, ...]
    unchanged: tuple[Path, ...]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SecretsError(f"{path}: cannot read it ({exc.strerror})") from None


def _write(path: Path, data: bytes) -> None:
    try:
        write_private(path, data)
    except OSError as exc:
        raise SecretsError(f"{path}: cannot write it ({exc.strerror})") from None


def encrypt_files(inventory: Path, secrets: Path | None, passwords: PasswordSource) -> VaultChange:
    """Encrypt the secrets file and every key and backup beside the inventory.

    Raises:
        SecretsError: no password, a wrong one for a file already encrypted, or a file
            that cannot be read or written (checked before any file changes).
    """
    main = secrets_file(inventory, secrets)
    check_private(main)
    files = vault_files(inventory, secrets)
    password = passwords.password(main)
    contents = {p: _read(p) for p in files}
    for path, data in contents.items():
        if is_encrypted(data):
            decrypt_bytes(path, data, password)  # a wrong password stops here
    changed = []
    for path, data in contents.items():
        if not is_encrypted(data):
            _write(path, encrypt_bytes(data, password))
            changed.append(path)
    return VaultChange(tuple(changed), tuple(p for p in files if p not in changed))


def decrypt_files(inventory: Path, secrets: Path | None, passwords: PasswordSource) -> VaultChange:
    """Write the secrets file and every key and backup beside the inventory in plain text (0600).

    Raises:
        SecretsError: as :func:`encrypt_files`.
    """
    files = vault_files(inventory, secrets)
    if not files:
        check_private(secrets_file(inventory, secrets))  # says the file is missing
    contents = {p: _read(p) for p in files}
    plain = {
        p: decrypt_bytes(p, data, passwords.password(p))
        for p, data in contents.items()
        if is_encrypted(data)
    }
    for path, data in plain.items():
        _write(path, data)
    return VaultChange(tuple(plain), tuple(p for p in files if p not in plain))


def view_secrets(inventory: Path, secrets: Path | None, passwords: PasswordSource) -> str:
    """The secrets file's plain text (decrypted in memory).

    Raises:
        SecretsError: the file is missing, open to others, or does not decrypt.
    """
    path = secrets_file(inventory, secrets)
    check_private(path)
    return Vault(passwords).open_bytes(path, _read(path)).decode("utf-8")


def edit_secrets(
    inventory: Path,
    secrets: Path | None,
    passwords: PasswordSource,
    run_editor: Callable[[Path], int],
) -> bool:
    """Let the user edit the secrets in a private plain copy; write them back as they were.

    The copy is a 0600 file in a 0700 folder (in RAM where possible), removed afterwards.
    What the editor left must be a valid secrets file, else nothing is saved. Returns
    whether the file changed.

    Raises:
        SecretsError: the file does not open, or the editor failed.
        InventoryError: what the editor left is not a valid secrets file (nothing saved).
    """
    path = secrets_file(inventory, secrets)
    check_private(path)
    raw = _read(path)
    encrypted = is_encrypted(raw)
    vault = Vault(passwords, encrypt=encrypted)
    before = vault.open_bytes(path, raw)
    with private_dir() as folder:
        copy = folder / path.name
        write_private(copy, before)
        code = run_editor(copy)
        if code != 0:
            raise SecretsError(f"the editor exited with {code}; {path} was not changed")
        after = copy.read_bytes()
        if after == before:
            return False
        copy.chmod(0o600)  # an editor may have written a new file with its own mode
        try:
            load_secrets_document(copy, read_document)
        except InventoryError as exc:
            lines = [line.replace(str(copy), str(path), 1) for line in exc.lines()]
            raise InventoryError([*lines, f"{path} was not changed; run edit again"]) from None
    vault.write_bytes(path, after)
    return True


@dataclass(frozen=True)
class RotateResult:
    """One password rotated: the deploy that applied it and the status after."""

    name: str
    deploy: DeployResult
    status: SystemStatus | None
    """None when the deploy failed (status was not checked)."""
    seconds: float

    @property
    def ok(self) -> bool:
        """The deploy succeeded and everything is healthy with the new password."""
        return self.deploy.ok and self.status is not None and self.status.healthy


def rotatable(loaded: LoadedInventory) -> dict[str, str]:
    """Secret name -> what uses it, for every broker and Flower password."""
    inv = loaded.inventory
    found = {u.secret: f"broker user {u.name}" for u in inv.broker.users}
    if inv.flower is not None:
        found.setdefault(inv.flower.broker_api_secret, f"broker user {inv.flower.broker_api_user}")
        for fu in inv.flower.basic_auth:
            found.setdefault(fu.secret, f"Flower user {fu.name}")
    return found


def rotate_secret(
    loaded: LoadedInventory,
    name: str,
    progress: Callable[[DeployEvent], None] | None = None,
    status_timeout: float | None = None,
    settle: float = 20.0,
) -> RotateResult:
    """Give secret ``name`` a new random value, deploy it and check status.

    The new value is written to the secrets file first (encrypted when the file is), so a
    deploy that stops half-way is finished by the next ``qsetup deploy``.

    Raises:
        SecretsError: ``name`` is not a broker or Flower password of this inventory.
    """
    started = time.monotonic()
    choices = rotatable(loaded)
    if name not in choices:
        raise SecretsError(
            f"{name}: not a broker or Flower password of {loaded.path}; rotate one of: "
            + ", ".join(sorted(choices))
        )
    path = loaded.secrets_path
    text = loaded.vault.read_text(path)
    loaded.vault.write_text(path, replace_secret(text, name, generate_password()))
    fresh = load_inventory(loaded.path, path, check_files=True, passwords=loaded.vault.passwords)
    result = run_deploy(fresh, DeployOptions(), progress)
    if not result.ok:
        return RotateResult(name, result, None, time.monotonic() - started)
    status = check_status(fresh, status_timeout)
    deadline = time.monotonic() + settle
    while not status.healthy and time.monotonic() < deadline:
        time.sleep(2.0)  # a service restarted last may still be connecting
        status = check_status(fresh, status_timeout)
    return RotateResult(name, result, status, time.monotonic() - started)


def default_editor() -> list[str]:
    """The editor to run: $VISUAL, else $EDITOR, else ``editor`` (Debian's alternative)."""
    import shlex

    chosen = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "editor"
    words = shlex.split(chosen)
    if not words:
        raise QsetupError("$EDITOR is empty; set it to an editor, e.g. EDITOR=nano")
    return words
