"""Files kept encrypted at rest in ansible-vault's format (ansible-core's own VaultLib).

Every file qsetup reads or writes that holds a secret or a private key goes through
:class:`Vault`: the secrets file, the generated CA's key, the host keys and backups. A
file is judged by its own first bytes (``$ANSIBLE_VAULT;``), so plain and encrypted
files can be read side by side; what qsetup writes is encrypted exactly when the
secrets file is (``Vault.encrypt``). The password is asked for only when an encrypted
file is met: from ``--vault-password-file``, else the file ``QSETUP_VAULT_PASSWORD_FILE``
names, else a prompt when there is a terminal.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from qsetup.errors import SecretsError

HEADER = b"$ANSIBLE_VAULT;"
PASSWORD_ENV = "QSETUP_VAULT_PASSWORD_FILE"
MAX_PASSWORD_FILE = 64 * 1024


def is_encrypted(data: bytes) -> bool:
    """Whether ``data`` is an ansible-vault envelope (leading whitespace allowed)."""
    return data.lstrip().startswith(HEADER)


class PasswordSource:
    """Where the vault password comes from; read once, on first need, then kept in memory.

    Args:
        file: ``--vault-password-file`` (wins over the environment variable).
        prompt: asks on a terminal (the CLI passes one only when stdin is a terminal).
        environ: the environment to read :data:`PASSWORD_ENV` from (default ``os.environ``).
    """

    def __init__(
        self,
        file: Path | None = None,
        prompt: Callable[[str], str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """Keep where to look; nothing is read yet."""
        env = os.environ if environ is None else environ
        named = env.get(PASSWORD_ENV, "")
        self._file = file if file is not None else (Path(named) if named else None)
        self._prompt = prompt
        self._password: bytes | None = None

    def __repr__(self) -> str:
        """Never shows the password."""
        return f"PasswordSource(file={self._file!r})"

    @property
    def given(self) -> bool:
        """Whether a password can be had without failing (a file named, or a prompt)."""
        return self._file is not None or self._prompt is not None

    def password(self, for_path: Path) -> bytes:
        """The vault password, to open (or write) ``for_path``.

        Raises:
            SecretsError: no password was given, or its file cannot be read or is empty.
        """
        if self._password is None:
            self._password = self._fetch(for_path)
        return self._password

    def _fetch(self, for_path: Path) -> bytes:
        if self._file is not None:
            return read_password_file(self._file)
        if self._prompt is not None:
            answer = self._prompt(f"Vault password for {for_path}").encode("utf-8").strip()
            if not answer:
                raise SecretsError(f"{for_path}: an empty vault password was given")
            return answer
        raise SecretsError(
            f"{for_path} is encrypted: give --vault-password-file or set {PASSWORD_ENV}"
        )


def read_password_file(path: Path) -> bytes:
    """The password in a vault password file (surrounding whitespace removed, as Ansible does).

    Raises:
        SecretsError: the file cannot be read, is too large or holds nothing.
    """
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_PASSWORD_FILE + 1)
    except OSError as exc:
        raise SecretsError(
            f"{path}: cannot read the vault password file ({exc.strerror}); check the path"
        ) from None
    if len(raw) > MAX_PASSWORD_FILE:
        raise SecretsError(f"{path}: too large for a vault password file; is it the right file?")
    password = raw.strip()
    if not password:
        raise SecretsError(f"{path}: the vault password file is empty")
    return password


def _vault_lib(password: bytes):  # type: ignore[no-untyped-def]  # ansible is untyped
    # Imported here: ansible is only needed once an encrypted file is met.
    from ansible.parsing.vault import VaultLib, VaultSecret

    return VaultLib([("default", VaultSecret(password))])


def encrypt_bytes(data: bytes, password: bytes) -> bytes:
    """``data`` in ansible-vault's format (AES256, version 1.1), as ``ansible-vault`` writes."""
    out: bytes = _vault_lib(password).encrypt(data)
    return out


def decrypt_bytes(path: Path, data: bytes, password: bytes) -> bytes:
    """The plain contents of the vault envelope ``data`` read from ``path``.

    Raises:
        SecretsError: the password does not open it (one line naming the file), or the
            envelope is damaged.
    """
    from ansible.errors import AnsibleError
    from ansible.parsing.vault import AnsibleVaultFormatError

    try:
        plain: bytes = _vault_lib(password).decrypt(data)
    except AnsibleVaultFormatError:
        raise SecretsError(
            f"{path}: the vault envelope is damaged; restore the file from version control"
        ) from None
    except AnsibleError:
        raise SecretsError(
            f"{path}: the vault password does not decrypt it (wrong password?); "
            "give the password it was encrypted with"
        ) from None
    return bytes(plain)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically (a private file renamed in place)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Vault:
    """Reads files plain or encrypted; writes them encrypted when ``encrypt`` is set."""

    passwords: PasswordSource = field(default_factory=PasswordSource)
    encrypt: bool = False
    """True when the secrets file is encrypted: every secret or key qsetup writes is too."""

    def open_bytes(self, path: Path, data: bytes) -> bytes:
        """``data`` (read from ``path``) decrypted when it is a vault envelope."""
        if not is_encrypted(data):
            return data
        return decrypt_bytes(path, data, self.passwords.password(path))

    def read_bytes(self, path: Path) -> bytes:
        """A file's plain contents (OSError passes through, for the caller's message)."""
        return self.open_bytes(path, path.read_bytes())

    def read_text(self, path: Path) -> str:
        """A UTF-8 file's plain contents."""
        return self.read_bytes(path).decode("utf-8")

    def seal(self, path: Path, data: bytes) -> bytes:
        """What writing ``data`` to ``path`` puts there: encrypted when ``encrypt``."""
        return encrypt_bytes(data, self.passwords.password(path)) if self.encrypt else data

    def write_bytes(self, path: Path, data: bytes) -> None:
        """Write a private file (0600), encrypted when ``encrypt``."""
        write_private(path, self.seal(path, data))

    def write_text(self, path: Path, text: str) -> None:
        """Write a private UTF-8 text file (0600), encrypted when ``encrypt``."""
        self.write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def private_dir(prefix: str = "qsetup-vault-") -> Iterator[Path]:
    """A 0700 folder for plain copies (in RAM when /dev/shm exists), removed afterwards."""
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None  # noqa: S108 - private 0700 dir
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        path.chmod(0o700)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
