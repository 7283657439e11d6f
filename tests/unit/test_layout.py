"""The package follows the pipeline: no module imports a stage that comes after its own.

Data flows one way: inventory -> desired -> converge -> artifacts -> remote/sandbox -> status
-> ops -> ui -> cli. A module may import its own stage, any earlier stage, and the shared
``qsetup.errors`` and ``qsetup.resources``; ``qsetup/cli.py`` (and ``__main__``) may import
anything. typer is imported by ``cli.py`` alone, rich by ``cli.py`` and ``qsetup/ui/``.
Checked on the source with ``ast`` (function-level imports included), so a violation
names the file, the line and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Earliest first; stages on one line may not import each other.
STAGES: list[tuple[str, ...]] = [
    ("inventory",),
    ("desired",),
    ("converge",),
    ("artifacts",),
    ("remote", "sandbox"),
    ("status",),
    ("ops",),
    ("ui",),
]
RANK = {name: rank for rank, names in enumerate(STAGES) for name in names}
SHARED = {"errors", "resources"}
"""Modules every stage may import (they import no other qsetup module)."""
TOP = {"cli", "__main__"}
"""May import anything; nothing imports them (but each other)."""
ONLY_FROM = {
    "typer": ({"cli"}, "qsetup/cli.py"),
    "rich": ({"cli", "ui"}, "qsetup/cli.py and qsetup/ui/"),
}
"""Third-party packages only some stages may import, and where they belong."""


def _stage_of(parts: tuple[str, ...]) -> str:
    """``('qsetup', 'artifacts', 'render')`` -> ``artifacts``; ``('qsetup',)`` -> ``__init__``."""
    if len(parts) < 2:
        return "__init__"
    return parts[1]


def _allowed(source: str, target: str) -> bool:
    if source in TOP or target == source or target in SHARED:
        return True
    if target in TOP:
        return False
    if source in SHARED or source == "__init__":
        return target in SHARED or target == "__init__"
    if target == "__init__":
        return True  # the package itself: ``from qsetup import __version__``
    return target in RANK and source in RANK and RANK[target] < RANK[source]


def _imports(tree: ast.AST, package: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in the tree, relative ones resolved."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join(anchor + ((base,) if base else ()))
            if base == "qsetup":
                # ``from qsetup import sandbox`` imports the subpackage qsetup.sandbox.
                found += [(node.lineno, f"qsetup.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, base))
    return found


def _rule(stage: str) -> str:
    if stage in SHARED or stage == "__init__":
        return "it may import only qsetup.errors and qsetup.resources"
    if stage not in RANK:
        return f"'{stage}' is no stage of the pipeline; place it in one (see STAGES)"
    earlier = [name for name, rank in RANK.items() if rank < RANK[stage]]
    if not earlier:
        return f"{stage} comes first and may import only qsetup.errors and qsetup.resources"
    return f"{stage} may import only {', '.join(earlier)}, qsetup.errors and qsetup.resources"


def layout_violations(root: Path) -> list[str]:
    """One ``FILE:LINE: ...`` line per import that runs against the pipeline."""
    problems: list[str] = []
    for path in sorted((root / "qsetup").rglob("*.py")):
        rel = path.relative_to(root)
        module = rel.with_suffix("").parts
        if module[-1] == "__init__":
            module = package = module[:-1]
        else:
            package = module[:-1]
        stage = _stage_of(module)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(rel))
        for line, name in _imports(tree, package):
            top = name.split(".")[0]
            if top in ONLY_FROM and stage not in ONLY_FROM[top][0]:
                where = ONLY_FROM[top][1]
                problems.append(f"{rel}:{line}: imports {name}: only {where} may import {top}")
            if top != "qsetup":
                continue
            target = _stage_of(tuple(name.split(".")))
            if not _allowed(stage, target):
                problems.append(f"{rel}:{line}: imports {name}: {_rule(stage)}")
    return problems


def test_every_import_follows_the_pipeline() -> None:
    problems = layout_violations(ROOT)
    assert not problems, "imports against the pipeline:\n" + "\n".join(problems)


def test_every_module_belongs_to_a_stage() -> None:
    loose = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "qsetup").iterdir()
        if (p.is_dir() and (p / "__init__.py").exists() and p.name not in RANK)
        or (p.suffix == ".py" and p.stem not in SHARED | TOP | {"__init__"})
    ]
    assert not loose, f"place these in a stage of tests/unit/test_layout.py's STAGES: {loose}"


def test_a_violation_is_named_by_file_line_and_import(tmp_path: Path) -> None:
    def write(rel: str, text: str) -> None:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    write("qsetup/__init__.py", "")
    write("qsetup/inventory/__init__.py", "")
    write(
        "qsetup/inventory/loader.py",
        "from qsetup.errors import QsetupError\n"
        "from qsetup.inventory.model import Inventory\n"
        "\n"
        "def load():\n"
        "    from qsetup.artifacts.render import render_all\n",
    )
    write("qsetup/artifacts/tls.py", "import rich.table\nfrom ..desired import state\n")
    write("qsetup/desired/state.py", "from ..ops import deploy\n")
    write("qsetup/errors.py", "from qsetup.inventory import loader\n")
    write("qsetup/ops/demo.py", "from qsetup import sandbox\nfrom qsetup.cli import app\n")
    write("qsetup/sandbox/host.py", "from qsetup.remote import runner\n")
    write("qsetup/ui/report.py", "import rich\nimport typer\nfrom qsetup.ops.deploy import x\n")
    write("qsetup/cli.py", "import typer\nfrom qsetup.ui.report import x\n")

    problems = layout_violations(tmp_path)

    assert problems == [
        "qsetup/artifacts/tls.py:1: imports rich.table: "
        "only qsetup/cli.py and qsetup/ui/ may import rich",
        "qsetup/desired/state.py:1: imports qsetup.ops: desired may import only inventory, "
        "qsetup.errors and qsetup.resources",
        "qsetup/errors.py:1: imports qsetup.inventory: "
        "it may import only qsetup.errors and qsetup.resources",
        "qsetup/inventory/loader.py:5: imports qsetup.artifacts.render: "
        "inventory comes first and may import only qsetup.errors and qsetup.resources",
        "qsetup/ops/demo.py:2: imports qsetup.cli: ops may import only inventory, desired, "
        "converge, artifacts, remote, sandbox, status, qsetup.errors and qsetup.resources",
        "qsetup/sandbox/host.py:1: imports qsetup.remote: sandbox may import only inventory, "
        "desired, converge, artifacts, qsetup.errors and qsetup.resources",
        "qsetup/ui/report.py:2: imports typer: only qsetup/cli.py may import typer",
    ]
