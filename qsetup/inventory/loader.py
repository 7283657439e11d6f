"""Load and validate an inventory and its secrets, naming file, line and field for every problem."""

from __future__ import annotations

import difflib
import glob
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from qsetup.errors import InventoryError
from qsetup.inventory.crosscheck import check_references, secret_names
from qsetup.inventory.fields import (
    BACKEND_URL_RE,
    EXCHANGE_RE,
    HOSTLIKE_RE,
    LISTEN_RE,
    MODULE_RE,
    POLICY_KEY_RE,
    resolve_relative,
)
from qsetup.inventory.model import Inventory
from qsetup.inventory.secrets import (
    Secrets,
    default_secrets_path,
    erlang_cookie_problem,
    load_secrets_document,
    password_problem,
)
from qsetup.inventory.tlscheck import check_tls_files, check_tls_names
from qsetup.inventory.vault import PasswordSource, Vault, is_encrypted
from qsetup.inventory.yamlsource import (
    PathKey,
    Position,
    YamlDocument,
    YamlSourceError,
    bad_character,
    parse_yaml,
    printable,
    read_text,
)

_PATTERN_HELP = {
    "^[a-z][a-z0-9-]{0,30}$": "use lowercase letters, digits and '-', starting with a letter",
    "^[a-z0-9][a-z0-9_.-]{0,62}$": "use lowercase letters, digits, '_', '.' and '-'",
    "^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$": "use letters, digits, '_', '.', '@' and '-'",
    "^/?[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$|^/$": "use '/' or letters, digits, '_', '.' and '-'",
    "^[a-z_][a-z0-9_-]{0,30}$": "use a Unix name: lowercase letters, digits, '_' and '-'",
    HOSTLIKE_RE: "use an IP address or a DNS name",
    "^rabbitmq_[a-z0-9_]+$": "plugin names look like rabbitmq_management",
    "^[A-Z_][A-Z0-9_]*$": "environment variable names use A-Z, 0-9 and '_'",
    LISTEN_RE: "use an IP address (0.0.0.0 for all) or a host name",
    BACKEND_URL_RE: "use a URL such as rpc:// or redis://host:6379/0, without spaces or quotes",
    MODULE_RE: "use a Python module path such as proj or proj.celery:app",
    "^[A-Za-z0-9_.:-]{1,128}$": "queue names use letters, digits, '_', '.', ':' and '-'",
    "^[A-Za-z0-9_.-]{1,64}$": "use letters, digits, '_', '.' and '-' (at most 64)",
    "^[A-Za-z0-9_.@-]{1,64}$": "use letters, digits, '_', '.', '@' and '-' (at most 64)",
    "^[A-Za-z0-9_/-]{0,64}$": "use letters, digits, '_', '-' and '/', e.g. flower",
    EXCHANGE_RE: "exchange names use letters, digits, '_', '.', ':' and '-', e.g. amq.topic",
    POLICY_KEY_RE: "policy keys look like message-ttl or max-length",
}


@dataclass(frozen=True)
class LoadedInventory:
    """A validated inventory with the files it came from."""

    inventory: Inventory
    path: Path
    secrets: Secrets
    secrets_path: Path
    vault: Vault = field(default_factory=Vault)
    """Opens encrypted files; encrypts what qsetup writes when the secrets file is encrypted."""


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_path(path: PathKey) -> str:
    """Render a field path as ``workers[0].hosts[1]``; odd keys as ``hosts['a b']``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.fullmatch(part):
            out += f"[{part!r}]"  # blank, dotted or spaced keys stay visible and unambiguous
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def _line(doc_path: Path, pos: Position, field: PathKey, message: str) -> str:
    return printable(f"{doc_path}:{pos.line}:{pos.column}: {format_path(field)}: {message}")


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, int]:
    """Find the model inside an annotation and how many container levels wrap it."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, 0
    if origin is typing.Annotated:
        return _model_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found, depth = _model_in(arg)
            if found is not None:
                return found, depth
        return None, 0
    if origin in (tuple, list, dict):
        args = typing.get_args(annotation)
        inner = args[-1] if origin is dict else args[0]
        found, depth = _model_in(inner)
        return found, depth + 1
    return None, 0


def _fields_by_key(model: type[BaseModel]) -> dict[str, Any]:
    """A model's fields by the key an inventory writes (its alias, if it has one)."""
    return {f.alias or n: f for n, f in model.model_fields.items()}


def _model_at(path: PathKey) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Inventory
    parts = list(path)
    while parts and model is not None:
        name = parts.pop(0)
        field = _fields_by_key(model).get(str(name))
        if field is None:
            return None
        model, depth = _model_in(field.annotation)
        del parts[:depth]
    return model


def _data_path(loc: tuple[Any, ...], data: Any) -> tuple[PathKey, bool]:
    """Map a pydantic loc onto the data, dropping union tags; say whether it ends on a key."""
    path: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if part == "[key]":
            return tuple(path), True
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif i == len(loc) - 1 and isinstance(part, str) and isinstance(node, dict):
            path.append(part)  # a missing field: name it, point at its parent
        # anything else is a union member tag such as 'str' or 'function-after[...]'
    return tuple(path), False


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _allowed(path: PathKey) -> list[str]:
    """The keys the mapping holding ``path`` allows."""
    model = _model_at(path[:-1])
    return sorted(_fields_by_key(model)) if model is not None else []


def _suggest(path: PathKey) -> str | None:
    """The allowed key closest to a misspelt one, if any is close."""
    key = str(path[-1]) if path else ""
    close = difflib.get_close_matches(key, _allowed(path), n=1, cutoff=0.6)
    return close[0] if close else None


def _count(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


def _message(err: dict[str, Any], path: PathKey) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if kind == "missing":
        last = err["loc"][-1] if err["loc"] else None
        if isinstance(last, int):  # a fixed-length list such as autoscale [max, min]
            return f"needs {last + 1} items, got {last}; add the missing one"
        return "required field is missing; add it"
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        close = _suggest(path)
        if close:
            return f"unknown key '{key}'; did you mean '{close}'?"
        return f"unknown key '{key}'; allowed keys: {', '.join(_allowed(path))}"
    if kind == "string_pattern_mismatch":
        hint = _PATTERN_HELP.get(str(ctx.get("pattern")), f"must match {ctx.get('pattern')}")
        return f"{_describe(value)} is not allowed here; {hint}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping (key: value lines), got {_describe(value)}"
    if kind in ("tuple_type", "list_type"):
        return f"expected a list, got {_describe(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {_describe(value)}"
    if kind == "int_parsing_size":
        return f"the number is far too large, got {_describe(value)}"
    if kind == "string_type":
        return f"expected a string (quote it if it looks like another type), got {_describe(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {_describe(value)}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {
            "greater_than_equal": f"at least {ctx.get('ge')}",
            "greater_than": f"more than {ctx.get('gt')}",
            "less_than_equal": f"at most {ctx.get('le')}",
            "less_than": f"less than {ctx.get('lt')}",
        }[kind]
        return f"must be {bound}, got {_describe(value)}"
    if kind == "too_short":
        want, got = int(ctx.get("min_length", 1)), int(ctx.get("actual_length", 0))
        return f"needs at least {_count(want)}, got {got}; add one"
    if kind == "too_long":
        want, got = int(ctx.get("max_length", 0)), int(ctx.get("actual_length", 0))
        return f"takes at most {_count(want)}, got {got}; remove some"
    if kind == "string_too_short":
        return f"must not be empty, got {_describe(value)}"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters long"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if kind == "literal_error":
        return f"got {_describe(value)}; {str(err['msg']).replace('Input should be', 'use')}"
    msg = str(err["msg"])
    msg = msg.replace("Input should be", "expected").replace("Input", "value")
    return f"{msg}, got {_describe(value)}"


def _pydantic_problems(
    doc: YamlDocument, exc: ValidationError
) -> list[tuple[PathKey, Position, str]]:
    problems: list[tuple[PathKey, Position, str]] = []
    seen: set[PathKey] = set()
    errors = exc.errors(include_url=False)
    # A misspelt key also makes its correct spelling "missing"; the did-you-mean line says it.
    misspelt: set[PathKey] = set()
    for err in errors:
        if err["type"] == "extra_forbidden":
            path, _ = _data_path(tuple(err["loc"]), doc.data)
            close = _suggest(path)
            if close:
                misspelt.add((*path[:-1], close))
    for err in errors:
        if err["type"] == "string_unicode":
            continue  # a lone surrogate: _text_problems names it, at its own position
        loc = tuple(err["loc"])
        if err["type"] == "too_short" and any(
            len(other["loc"]) > len(loc) and tuple(other["loc"][: len(loc)]) == loc
            for other in errors
        ):
            # pydantic also reports a list as too short when its items failed; the item
            # errors are the real problem.
            continue
        path, on_key = _data_path(loc, doc.data)
        if err["type"] == "extra_forbidden":
            on_key = True
        if path in seen or (err["type"] == "missing" and path in misspelt):
            continue  # union members repeat the same problem; one line is enough
        seen.add(path)
        if err["type"] == "missing" and path[:-1] in doc.keys:
            pos = doc.keys[path[:-1]]  # the key of the mapping that lacks the field
        else:
            pos = doc.position(path, key=on_key)
        problems.append((path, pos, _line(doc.path, pos, path, _message(dict(err), path))))
    return problems


def _in_file_order(problems: list[tuple[Position, str]]) -> list[str]:
    return [line for _, line in sorted(problems, key=lambda p: (p[0].line, p[0].column))]


def read_document(path: Path, what: str, vault: Vault | None = None) -> YamlDocument:
    """Read a YAML file into a positioned document or raise InventoryError with one line.

    With ``vault``, a file in ansible-vault's format is decrypted first (in memory).
    """
    try:
        text = read_text(path)
        if vault is not None and is_encrypted(text.encode("utf-8")):
            text = vault.open_bytes(path, text.encode("utf-8")).decode("utf-8")
    except FileNotFoundError:
        raise InventoryError([f"{path}:1:1: (file): {what} not found; check the path"]) from None
    except IsADirectoryError:
        raise InventoryError(
            [f"{path}:1:1: (file): is a directory; give the path of the {what}"]
        ) from None
    except PermissionError:
        raise InventoryError(
            [f"{path}:1:1: (file): permission denied reading the {what}"]
        ) from None
    except UnicodeDecodeError:
        raise InventoryError(
            [f"{path}:1:1: (file): not a text file; the {what} must be UTF-8 YAML"]
        ) from None
    except OSError as exc:
        raise InventoryError(
            [f"{path}:1:1: (file): cannot read the {what} ({exc.strerror})"]
        ) from None
    try:
        return parse_yaml(path, text)
    except YamlSourceError as exc:
        pos = exc.position
        raise InventoryError(
            [printable(f"{path}:{pos.line}:{pos.column}: (yaml): {exc.message}")]
        ) from None


def _text_problems(doc: YamlDocument) -> list[tuple[PathKey, Position, str, bool]]:
    """Keys and strings holding NUL, surrogates or control characters: (path, pos, line, severe)."""
    found: list[tuple[PathKey, Position, str, bool]] = []
    named: set[PathKey] = set()

    def add(path: PathKey, text: str, on_key: bool) -> None:
        what = bad_character(text)
        if what and path not in named:
            named.add(path)
            pos = doc.position(path, key=on_key)
            severe = what.startswith(("a NUL", "a lone"))
            found.append(
                (path, pos, _line(doc.path, pos, path, f"contains {what}; remove it"), severe)
            )

    def walk(node: Any, path: PathKey) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str):
                    add((*path, key), key, True)
                walk(value, (*path, key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, (*path, i))
        elif isinstance(node, str):
            add(path, node, False)

    walk(doc.data, ())
    for path, written in doc.odd_numbers.items():
        pos = doc.position(path)
        value = _describe(_value_at(doc.data, path))
        message = (
            f"YAML reads {written} as {value}; write the number in plain decimal, or quote it "
            "if it is text"
        )
        found.append((path, pos, _line(doc.path, pos, path, message), True))
    return found


def _value_at(data: Any, path: PathKey) -> Any:
    try:
        for part in path:
            data = data[part]
    except (KeyError, IndexError, TypeError):
        return "another number"
    return data


def validate_document(doc: YamlDocument) -> Inventory:
    """Validate a parsed inventory document; raise InventoryError listing every problem."""
    if doc.data is None:
        raise InventoryError(
            [
                f"{doc.path}:1:1: (top level): the inventory is empty; "
                "run 'qsetup init' to write a starting one"
            ]
        )
    if not isinstance(doc.data, dict):
        raise InventoryError(
            [
                f"{doc.path}:1:1: (top level): expected a mapping with hosts, broker, app and "
                f"workers, got {_describe(doc.data)}"
            ]
        )
    text = _text_problems(doc)
    try:
        inv = Inventory.model_validate(doc.data)
    except ValidationError as exc:
        # A NUL or a surrogate is the problem wherever it is; other control characters
        # are usually refused by a field's own rule, which says more.
        severe = {path for path, _, _, bad in text if bad}
        shape = [p for p in _pydantic_problems(doc, exc) if p[0] not in severe]
        reported = {path for path, _, _ in shape}
        found = [(pos, line) for _, pos, line in shape]
        found += [(pos, line) for path, pos, line, _ in text if path not in reported]
        raise InventoryError(_in_file_order(found)) from None
    if text:
        raise InventoryError(_in_file_order([(pos, line) for _, pos, line, _ in text]))
    problems = _in_file_order(
        [
            (doc.position(field), _line(doc.path, doc.position(field), field, message))
            for field, message in check_references(inv) + check_tls_names(inv)
        ]
    )
    if problems:
        raise InventoryError(problems)
    return inv


def load_inventory(
    path: Path,
    secrets_path: Path | None = None,
    *,
    check_files: bool = False,
    passwords: PasswordSource | None = None,
) -> LoadedInventory:
    """Load, validate and cross-check an inventory and its secrets file.

    Args:
        path: the inventory YAML file.
        secrets_path: the secrets file (default: ``<inventory stem>.secrets.yml`` beside it).
        check_files: also refuse what only matters when deploying from this machine: a
            missing SSH key file and an app source directory without files (``validate``
            and ``deploy`` check them; ``status`` and ``render`` need neither).
        passwords: where the vault password comes from when a file is encrypted
            (default: the file ``QSETUP_VAULT_PASSWORD_FILE`` names, else none).

    Raises:
        InventoryError: one line per problem, ``FILE:LINE:COL: field.path: message``.
    """
    doc = read_document(path, "inventory")
    inv = validate_document(doc)
    secrets_file = secrets_path or default_secrets_path(path)
    problems = _file_problems(doc, inv, secrets_file, strict=check_files)
    opener = Vault(passwords or PasswordSource())
    problems += [
        (doc.position(field), _line(doc.path, doc.position(field), field, message))
        for field, message in check_tls_files(doc.path, inv, opener)
    ]
    if problems:
        raise InventoryError(_in_file_order(problems))
    secrets = load_secrets_document(secrets_file, lambda p, what: read_document(p, what, opener))
    missing = [
        _line(
            doc.path,
            doc.position(field),
            field,
            f"secret '{name}' is not in {secrets_file}; add a line '{name}: <long random value>' "
            "there",
        )
        for field, name in secret_names(inv)
        if name not in secrets.values
    ]
    cookie = inv.broker.erlang_cookie_secret
    checks = {name: password_problem for _, name in secret_names(inv)}
    checks[cookie] = erlang_cookie_problem
    for name, check in checks.items():
        problem = check(secrets.get(name)) if name in secrets.values else None
        if problem:
            pos = secrets.positions.get(name, Position(1, 1))
            missing.append(printable(f"{secrets_file}:{pos.line}:{pos.column}: {name}: {problem}"))
    if missing:
        raise InventoryError(missing)
    return LoadedInventory(
        inventory=inv,
        path=path,
        secrets=secrets,
        secrets_path=secrets_file,
        vault=Vault(opener.passwords, encrypt=secrets.encrypted),
    )


def _inside(path: Path, directory: Path) -> bool:
    try:
        return path.resolve().is_relative_to(directory.resolve())
    except (OSError, ValueError, RuntimeError):
        return False


def _top_module(module: str) -> str:
    return module.partition(":")[0].partition(".")[0]


def _holds_module(directory: Path, module: str) -> bool:
    """Whether ``directory`` holds the top-level package or module of ``module``."""
    top = _top_module(module)
    if (directory / top).is_dir():
        return True
    return any(
        p.is_file() and p.suffix in (".py", ".pyc", ".so")
        for p in directory.glob(f"{glob.escape(top)}.*")
    )


def _has_files(directory: Path, budget: int = 10_000) -> bool:
    """True when the tree holds a regular file (looks at no more than ``budget`` entries)."""
    for _, dirs, files in os.walk(directory):
        if files:
            return True
        budget -= len(dirs) + 1
        if budget <= 0:
            return True  # a huge tree of directories: not worth walking to the end
    return False


def _key_files(doc: YamlDocument, inv: Inventory) -> list[tuple[PathKey, Path]]:
    keys: list[tuple[PathKey, Path]] = []
    if inv.ssh.key is not None:
        keys.append((("ssh", "key"), resolve_relative(doc.path, inv.ssh.key)))
    for name, host in inv.hosts.items():
        if host.ssh_key is not None:
            keys.append((("hosts", name, "ssh_key"), resolve_relative(doc.path, host.ssh_key)))
    return keys


def _file_problems(
    doc: YamlDocument, inv: Inventory, secrets_file: Path, *, strict: bool
) -> list[tuple[Position, str]]:
    """The local files the inventory names: the app's source directory and the SSH keys."""
    found: list[tuple[Position, str]] = []

    def add(field: PathKey, message: str) -> None:
        pos = doc.position(field)
        found.append((pos, _line(doc.path, pos, field, message)))

    keys = _key_files(doc, inv)
    field: PathKey
    for field, key in keys:
        try:
            if key.is_dir():
                add(field, f"{key} is a directory; give the SSH private key file")
            elif key.exists() and not os.access(key, os.R_OK):
                add(field, f"{key} cannot be read (permission denied); check the file's owner")
            elif strict and not key.exists():
                add(
                    field,
                    f"SSH key {key} does not exist; check the path (relative paths start at "
                    "the inventory's directory)",
                )
        except (OSError, ValueError) as exc:
            add(field, f"{key} cannot be used ({getattr(exc, 'strerror', None) or exc})")
    if inv.app.source.path is not None:
        field = ("app", "source", "path")
        source = resolve_relative(doc.path, inv.app.source.path)
        hint = "point it at the directory with the app's code"
        try:
            if not source.is_dir():
                what = "is not a directory" if source.exists() else "does not exist"
                add(field, f"{source} {what}; {hint}")
            elif source.resolve() == Path(source.anchor):
                add(field, f"{source} is the root directory; {hint}")
            elif not os.access(source, os.R_OK | os.X_OK):
                add(field, f"{source} cannot be read (permission denied); {hint}")
            elif _inside(secrets_file, source):
                add(
                    field,
                    f"{source} holds the secrets file {secrets_file}, which deploy would "
                    f"copy to the workers; {hint} only",
                )
            elif any(_inside(key, source) for _, key in keys):
                add(
                    field,
                    f"{source} holds the SSH key, which deploy would copy to the workers; "
                    f"{hint} only",
                )
            elif strict and not _has_files(source):
                add(field, f"{source} has no files; {hint}")
            elif strict and not _holds_module(source, inv.app.module):
                top = _top_module(inv.app.module)
                add(
                    field,
                    f"{source} holds neither {top}/ nor {top}.py, so the workers could not "
                    f"import app.module '{inv.app.module}'; {hint}",
                )
        except (OSError, ValueError) as exc:
            add(field, f"{source} cannot be used ({getattr(exc, 'strerror', None) or exc}); {hint}")
    return found
