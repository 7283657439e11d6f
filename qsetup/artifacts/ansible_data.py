"""Hand values to Ansible as data: every value is tagged ``!unsafe``.

Ansible evaluates any string it reads from an inventory or a vars file as a Jinja
template when a task uses it, so a password such as ``Ab{{ 7 * 7 }}cd`` would reach the
broker as ``Ab49cd``, and ``{{ lookup('pipe', ...) }}`` would run a command on the
controller. Everything qsetup writes for Ansible (the inventory's variables, the scratch
secrets file) goes through these functions, which tag values ``!unsafe``: Ansible then
uses them exactly as written and never templates them.

ansible-core resolves the type of a ``!unsafe`` scalar again as if it were unquoted
(``!unsafe "0755"`` would become the integer 493), so the tag goes on containers
(everything inside a tagged container is untrusted too, with its own quoting kept) and
on strings only when their unquoted form still reads as a string. A string that holds a
template (``{{``, ``{%``, ``{#``) always reads as a string, so it is always tagged.
"""

from __future__ import annotations

from typing import Any

import yaml

UNSAFE = "!unsafe"
_STR_TAG = "tag:yaml.org,2002:str"


class _Unsafe:
    """A value to be written with the ``!unsafe`` tag."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes :class:`_Unsafe` values tagged ``!unsafe``."""


def _represent_unsafe(dumper: yaml.SafeDumper, wrapped: _Unsafe) -> yaml.Node:
    value = wrapped.value
    if isinstance(value, dict | list | tuple):
        node: yaml.Node = (
            dumper.represent_dict(value)
            if isinstance(value, dict)
            else dumper.represent_list(list(value))
        )
        node.tag = UNSAFE
        return node
    if isinstance(value, str):
        resolved = dumper.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
        if resolved == _STR_TAG:
            return dumper.represent_scalar(UNSAFE, value, style='"')
        # Reads as a number, bool or null when unquoted: quoted, it stays a string,
        # and it cannot hold a template.
        return dumper.represent_scalar(_STR_TAG, value, style='"')
    return dumper.represent_data(value)


_Dumper.add_representer(_Unsafe, _represent_unsafe)


def _plain(value: Any) -> Any:
    """Plain dicts, lists and values (tuples become lists) for the dumper."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def unsafe_vars(variables: dict[str, Any]) -> dict[str, Any]:
    """Variables (name -> value) with every value marked unsafe; names stay plain."""
    return {str(k): _Unsafe(_plain(v)) for k, v in variables.items()}


def dump(data: Any) -> str:
    """YAML for Ansible; values wrapped by :func:`unsafe_vars` are written ``!unsafe``."""
    return yaml.dump(
        data,
        Dumper=_Dumper,
        default_flow_style=False,
        sort_keys=False,
        allow_unicode=True,
        width=4096,
    )


def dump_vars_file(variables: dict[str, Any]) -> str:
    """A vars file in which no value can be evaluated as a template."""
    return dump(unsafe_vars(variables))


def dump_inventory(inventory: dict[str, Any]) -> str:
    """An Ansible YAML inventory (``all: hosts/vars/children``) with every variable unsafe."""

    def group(node: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "hosts" in node:
            out["hosts"] = {
                name: (unsafe_vars(hv) if hv else hv) for name, hv in (node["hosts"] or {}).items()
            }
        if "vars" in node:
            out["vars"] = unsafe_vars(node["vars"])
        if "children" in node:
            out["children"] = {name: group(child) for name, child in node["children"].items()}
        return out

    return dump({name: group(node) for name, node in inventory.items()})
