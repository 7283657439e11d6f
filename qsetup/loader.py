"""Load and validate an inventory and its secrets, naming file, line and field for every problem."""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from qsetup.errors import InventoryError
from qsetup.inventory import (
    BACKEND_URL_RE,
    LISTEN_RE,
    Inventory,
    check_references,
    resolve_relative,
    secret_names,
)
from qsetup.secrets import Secrets, default_secrets_path, load_secrets_document
from qsetup.yamlsource import (
    PathKey,
    Position,
    YamlDocument,
    YamlSourceError,
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
    "^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252})$": "use an IP address or a DNS name",
    "^rabbitmq_[a-z0-9_]+$": "plugin names look like rabbitmq_management",
    "^[A-Z_][A-Z0-9_]*$": "environment variable names use A-Z, 0-9 and '_'",
    LISTEN_RE: "use an IP address (0.0.0.0 for all) or a host name",
    BACKEND_URL_RE: "use a URL such as rpc:// or redis://host:6379/0, without spaces or quotes",
    "^[A-Za-z_][A-Za-z0-9_.:]*$": "use a Python module path such as proj or proj.celery:app",
    "^[A-Za-z0-9_.:-]{1,128}$": "queue names use letters, digits, '_', '.', ':' and '-'",
    "^[A-Za-z0-9_.-]{1,64}$": "use letters, digits, '_', '.' and '-' (at most 64)",
    "^[A-Za-z0-9_.@-]{1,64}$": "use letters, digits, '_', '.', '@' and '-' (at most 64)",
    "^[A-Za-z0-9_/-]{0,64}$": "use letters, digits, '_', '-' and '/', e.g. flower",
}


@dataclass(frozen=True)
class LoadedInventory:
    """A validated inventory with the files it came from."""

    inventory: Inventory
    path: Path
    secrets: Secrets
    secrets_path: Path


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


def _model_at(path: PathKey) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Inventory
    parts = list(path)
    while parts and model is not None:
        name = parts.pop(0)
        field = model.model_fields.get(str(name))
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
    return sorted(model.model_fields) if model is not None else []


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


def _pydantic_problems(doc: YamlDocument, exc: ValidationError) -> list[str]:
    problems: list[tuple[Position, str]] = []
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
        problems.append((pos, _line(doc.path, pos, path, _message(dict(err), path))))
    return _in_file_order(problems)


def _in_file_order(problems: list[tuple[Position, str]]) -> list[str]:
    return [line for _, line in sorted(problems, key=lambda p: (p[0].line, p[0].column))]


def read_document(path: Path, what: str) -> YamlDocument:
    """Read a YAML file into a positioned document or raise InventoryError with one line."""
    try:
        text = read_text(path)
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
    try:
        inv = Inventory.model_validate(doc.data)
    except ValidationError as exc:
        raise InventoryError(_pydantic_problems(doc, exc)) from None
    problems = _in_file_order(
        [
            (doc.position(field), _line(doc.path, doc.position(field), field, message))
            for field, message in check_references(inv)
        ]
    )
    if problems:
        raise InventoryError(problems)
    return inv


def load_inventory(path: Path, secrets_path: Path | None = None) -> LoadedInventory:
    """Load, validate and cross-check an inventory and its secrets file.

    Args:
        path: the inventory YAML file.
        secrets_path: the secrets file (default: ``<inventory stem>.secrets.yml`` beside it).

    Raises:
        InventoryError: one line per problem, ``FILE:LINE:COL: field.path: message``.
    """
    doc = read_document(path, "inventory")
    inv = validate_document(doc)
    if inv.app.source.path is not None:
        source = resolve_relative(path, inv.app.source.path)
        if not source.is_dir():
            field: PathKey = ("app", "source", "path")
            what = "is not a directory" if source.exists() else "does not exist"
            raise InventoryError(
                [
                    _line(
                        doc.path,
                        doc.position(field),
                        field,
                        f"{source} {what}; point it at the directory with the app's code",
                    )
                ]
            )
    secrets_file = secrets_path or default_secrets_path(path)
    secrets = load_secrets_document(secrets_file, read_document)
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
    if missing:
        raise InventoryError(missing)
    return LoadedInventory(inventory=inv, path=path, secrets=secrets, secrets_path=secrets_file)
