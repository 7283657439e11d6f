"""Status's SSH clients, started from the last run's command lines before the inventory loads.

Loading the inventory (pydantic, the models, YAML) takes about 0.18 s, and the read's
SSH clients could only start after it: on 3 hosts that was a quarter of status. So
each run records the clients' command lines, keyed by the inventory's bytes and the
``--timeout`` given; the next run with the same key starts those clients first thing.
This is a guess, never a source: once the inventory is loaded the read computes every
command line as always (:class:`qsetup.status.ssh.ReadRound`), takes over a started
client only when its command line is exactly the one it computed, and ends the others.

Only stdlib imports here: this runs before the rest of qsetup is imported. The record
holds command lines (addresses, ports, users, key paths, options), never a secret; it
lives in ``$XDG_CACHE_HOME/qsetup/status`` (``~/.cache/qsetup/status``). A cache that
cannot be read or written is skipped.
"""

from __future__ import annotations

import functools
import hashlib
import json
import marshal
import os
import subprocess
import sys
import zlib
from collections.abc import Mapping, Sequence
from importlib.util import MAGIC_NUMBER
from pathlib import Path

from qsetup.resources import resource_dir

Client = subprocess.Popen[bytes] | OSError

_VERSION = 1


def read_source_path() -> Path:
    """The one read's source, as qsetup ships it with the playbooks."""
    return resource_dir("playbooks") / "module_utils" / "qsetup_read.py"


def compiled(path: Path, source: bytes) -> bytes:
    """The read's code for this Python, marshalled (empty: this Python caches none).

    A host whose Python is this one's minor version runs it without compiling the
    source (7 ms of each host's read). From the bytecode pip wrote beside the installed
    source when it still matches that source (timestamp and size, as Python's own
    import checks them: the same trust as the source itself); else compiled here, once
    for every host.
    """
    tag = sys.implementation.cache_tag
    if tag is None:
        return b""
    try:
        data = (path.parent / "__pycache__" / f"{path.stem}.{tag}.pyc").read_bytes()
        st = path.stat()
    except OSError:
        data = b""
    if (
        len(data) > 16
        and data[:4] == MAGIC_NUMBER
        and int.from_bytes(data[4:8], "little") == 0  # checked by timestamp, not hash
        and int.from_bytes(data[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
        and int.from_bytes(data[12:16], "little") == len(source) & 0xFFFFFFFF
    ):
        return data[16:]
    return marshal.dumps(compile(source, "qsetup_read.py", "exec"))


@functools.cache
def read_preamble() -> bytes:
    """What a client sends as soon as it starts: the read, source and code (see BOOT).

    A header line (the compressed source's length, the compressed code's, this
    Python's cache tag), then both: a host whose Python has the same tag runs the code,
    any other compiles the source. It must fit in a pipe's buffer (64 KiB on Linux) so
    the write never waits for the host; a unit test holds the shipped read to that.
    """
    path = read_source_path()
    source = path.read_bytes()
    packed, code = zlib.compress(source, 1), zlib.compress(compiled(path, source), 1)
    tag = str(sys.implementation.cache_tag).encode()
    return b"%d %d %s\n" % (len(packed), len(code), tag) + packed + code


def spawn(argv: Sequence[str], first: bytes) -> Client:
    """Start one host's client with ``first`` on its input (or why it did not start).

    ``first`` (smaller than a pipe's buffer) waits in the pipe until the client is
    connected; the rest of the input follows in the read's collect step.
    """
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # no terminal: ssh never prompts
        )
    except OSError as exc:
        return exc
    try:
        assert proc.stdin is not None
        proc.stdin.write(first)
        proc.stdin.flush()
    except OSError:  # the client ended already: the collect step reads why
        pass
    return proc


def end(client: Client) -> None:
    """End a started client that is not used (kill it and reap it)."""
    if isinstance(client, OSError):
        return
    client.kill()
    client.communicate()


def _cache_file(inventory: Path) -> Path:
    home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    name = hashlib.sha256(str(inventory.resolve()).encode("utf-8")).hexdigest()[:24]
    return Path(home) / "qsetup" / "status" / f"{name}.json"


def _key(inventory: Path, timeout: float | None) -> str:
    digest = hashlib.sha256(inventory.read_bytes())
    digest.update(f"\0{_VERSION}\0{timeout!r}".encode())
    return digest.hexdigest()


class Prefetch:
    """The clients started from the last run's record (none when there is no record)."""

    def __init__(self, inventory: Path, timeout: float | None) -> None:
        self._made_for = (inventory, timeout)
        self._file: Path | None = None
        self._key = ""
        self._recorded: dict[str, list[str]] = {}
        self._clients: dict[str, Client] = {}
        try:
            self._file = _cache_file(inventory)
            self._key = _key(inventory, timeout)
        except (OSError, RuntimeError):  # no inventory (load says so) or no home
            self._file = None

    def made_for(self, inventory: Path, timeout: float | None) -> bool:
        """Whether these clients were started for this inventory path and timeout."""
        return self._made_for == (inventory, timeout)

    def start(self) -> Prefetch:
        """Start the recorded clients when the record's key is this run's."""
        if self._file is None:
            return self
        try:
            record = json.loads(self._file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return self
        if not isinstance(record, dict) or record.get("key") != self._key:
            return self
        argvs = record.get("argv")
        if not isinstance(argvs, dict):
            return self
        first = read_preamble()
        for name, argv in argvs.items():
            # Only OpenSSH's client, as the read starts it: a record edited to run anything
            # else starts nothing.
            if (
                isinstance(argv, list)
                and argv
                and argv[0] == "ssh"
                and all(isinstance(a, str) for a in argv)
            ):
                self._recorded[str(name)] = argv
                self._clients[str(name)] = spawn(argv, first)
        return self

    def take(self, name: str, argv: Sequence[str]) -> Client | None:
        """The started client of ``name`` when it runs exactly ``argv``; else None."""
        client = self._clients.pop(name, None)
        if client is None:
            return None
        if self._recorded.get(name) == list(argv):
            return client
        end(client)
        return None

    def settle(self, argvs: Mapping[str, Sequence[str]]) -> None:
        """End the clients nobody took, and record this run's command lines."""
        self.discard()
        wanted = {name: list(argv) for name, argv in argvs.items()}
        if self._file is None or wanted == self._recorded:
            return
        try:
            self._file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._file.with_name(f"{self._file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"key": self._key, "argv": wanted}), encoding="utf-8")
            tmp.replace(self._file)
        except OSError:
            pass

    def discard(self) -> None:
        """End every started client not taken (the run stopped before its read)."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            end(client)
