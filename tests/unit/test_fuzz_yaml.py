"""Random documents through `qsetup validate`: exit 0 or 1, one line per problem, no traceback."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner
from unitdata import BASE_INVENTORY, BASE_SECRETS, FULL_INVENTORY, write_secrets

from qsetup.cli import app

runner = CliRunner()
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PROBLEM_LINE = re.compile(r"^.+:\d+:\d+: \S.*: .+$")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["root", "pip", "apt", "yum", "0.0.0.0", "/", "rabbit1", "[/red]", "%i"]),
)
keys = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["hosts", "broker", "app", "workers", "beat", "flower", "version", "ssh", "users"]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("fuzz")
    (path / "app").mkdir()
    write_secrets(path / "inventory.secrets.yml", BASE_SECRETS)
    yield path


def check(workdir: Path, content: bytes) -> None:
    inventory = workdir / "inventory.yml"
    inventory.write_bytes(content)
    result = runner.invoke(app, ["validate", "--inventory", str(inventory)])
    output = result.output
    assert result.exit_code in (0, 1), (result.exit_code, output, content[:300])
    assert "Traceback" not in output, output
    assert "internal error" not in output, output
    if result.exit_code == 1:
        lines = output.splitlines()
        assert lines, content[:300]
        for line in lines:
            assert PROBLEM_LINE.match(line), (line, content[:300])


@SETTINGS
@given(document=values)
def test_random_yaml_documents(workdir: Path, document: Any) -> None:
    check(workdir, yaml.safe_dump(document, allow_unicode=True).encode())


@SETTINGS
@given(text=st.text(max_size=300))
def test_random_text(workdir: Path, text: str) -> None:
    check(workdir, text.encode("utf-8", errors="surrogatepass"))


@SETTINGS
@given(data=st.binary(max_size=300))
def test_random_bytes(workdir: Path, data: bytes) -> None:
    check(workdir, data)


YAML_PIECES = st.sampled_from(
    [
        "\t",
        "  ",
        "- ",
        ": ",
        "[",
        "]",
        "{",
        "}",
        "&a ",
        "*a",
        "<<: ",
        "!!",
        "'",
        '"',
        "#",
        "---\n",
        "\n",
        "%YAML 1.1\n",
        "? ",
        "|\n",
        ">-\n",
        "~",
        "!!binary ",
        "!!set ",
        "@",
    ]
)


@SETTINGS
@given(
    base=st.sampled_from([BASE_INVENTORY, FULL_INVENTORY]),
    edits=st.lists(
        st.tuples(st.integers(0, 10_000), YAML_PIECES | st.text(max_size=5)), max_size=4
    ),
)
def test_text_mutations_of_valid_inventories(
    workdir: Path, base: str, edits: list[tuple[int, str]]
) -> None:
    text = base
    for where, piece in edits:
        at = where % (len(text) + 1)
        text = text[:at] + piece + text[at:]
    check(workdir, text.encode("utf-8", errors="surrogatepass"))


def paths_of(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths_of(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += paths_of(value, (*prefix, i))
    return found


@SETTINGS
@given(data=st.data(), base=st.sampled_from([BASE_INVENTORY, FULL_INVENTORY]))
def test_value_mutations_of_valid_inventories(
    workdir: Path, data: st.DataObject, base: str
) -> None:
    document = copy.deepcopy(yaml.safe_load(base))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = paths_of(document)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        if data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(values)
    check(workdir, yaml.safe_dump(document, allow_unicode=True, sort_keys=False).encode())


def test_the_unmutated_bases_are_valid(workdir: Path) -> None:
    # The mutation tests start from valid documents (FULL needs its own secrets, so it
    # exits 1 here only for missing secrets, never for its shape).
    inventory = workdir / "inventory.yml"
    inventory.write_text(BASE_INVENTORY)
    result = runner.invoke(app, ["validate", "--inventory", str(inventory)])
    assert result.exit_code == 0, result.output
