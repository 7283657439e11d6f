"""Every third-party module qsetup imports is declared in ``[project.dependencies]``.

A user installs qsetup with ``pip install .`` (no extras); an import that only a test
extra or a transitive dependency happens to provide breaks their first ``status``.
Imports inside functions count too: the scan walks the whole syntax tree.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = [ROOT / "qsetup", ROOT / "playbooks" / "filter_plugins"]


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    names = set()
    for req in data["project"]["dependencies"]:
        match = re.match(r"[A-Za-z0-9_.-]+", req)
        assert match, req
        names.add(_normalize(match.group(0)))
    return names


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _third_party_imports() -> dict[str, list[str]]:
    where: dict[str, list[str]] = {}
    for base in SCANNED:
        for path in sorted(base.rglob("*.py")):
            if "_data" in path.parts:
                continue
            for name in _imports(path):
                if name in sys.stdlib_module_names or name in ("qsetup", "__future__"):
                    continue
                where.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return where


def test_scan_sees_imports_inside_functions() -> None:
    # status/broker.py imports requests inside a function: the scan must see it.
    assert "requests" in _third_party_imports()


def test_every_imported_distribution_is_declared() -> None:
    declared = _declared()
    dists = importlib.metadata.packages_distributions()
    missing = []
    for module, files in sorted(_third_party_imports().items()):
        owners = {_normalize(d) for d in dists.get(module, [])}
        if module == "ansible":
            # ansible-core provides the module; the declared 'ansible' package pulls it
            # with the community.rabbitmq collection the playbooks use.
            owners |= {"ansible"}
        if not owners & declared:
            missing.append(f"{module} (from {owners or 'an unknown package'}) in {files[0]}")
    assert not missing, "imported but not in [project.dependencies]: " + "; ".join(missing)
