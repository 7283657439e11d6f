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
from unitdata import BASE_INVENTORY, BASE_SECRETS, FULL_INVENTORY, FULL_SECRETS, write_secrets

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
    (path / "app" / "proj.py").write_text("app = None\n")
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


# --- one field of a valid inventory (or secrets file) replaced by a hostile value ----------

HOSTILE_SNIPPETS = [
    # YAML tags: refused wherever they are
    "!!python/object/apply:os.system ['true']",
    "!!python/name:os.system",
    "!!binary aGVsbG8=",
    "!!set {a: null}",
    "!!str 0755",
    "!!float '1'",
    "!!timestamp 2001-12-14",
    "! plain",
    "!local x",
    "!!map {a: 1}",
    # escapes that put characters into a value which the raw file cannot hold
    '"\\0"',
    '"a\\0b"',
    '"\\ud800"',
    '"x\\udfff"',
    '"line\\nbreak"',
    '"tab\\there"',
    '"cr\\r"',
    '"\\x1b[31m"',
    '"\\x85"',
    '"\\u2028"',
    '"\\ufeff"',
    '"\\U0010FFFF"',
    # numbers and words YAML 1.1 turns into other types
    "0755",
    "0x1F",
    "1.5e+3",
    "12:30:45",
    "2001-12-14",
    "yes",
    "~",
    ".nan",
    "-.inf",
    "99999999999999999999999999999999",
    "-1",
    "0",
    # shapes
    "[]",
    "{}",
    "[[[[[]]]]]",
    "{a: {b: {c: [1, {d: e}]}}}",
    "''",
    "' '",
    "'%%'",
    "'%x@%h'",
    "'amq.gen'",
    "'127.0.0.1'",
    "'localhost'",
    "'0.0.0.0:5672'",
    "'::1'",
    "'a..b'",
    "'-e .'",
    "'root'",
    "'rabbitmq'",
    "'flower'",
    "'qsetup-admin'",
    "'/'",
    "'..'",
    "'~nosuchuser/x'",
]

HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),  # hypothesis leaves out surrogates; the snippets bring them
    st.text(alphabet=st.characters(codec="utf-8", categories=["Cc", "Zl", "Zp"]), max_size=5),
    st.builds(lambda c, n: c * n, st.sampled_from("xA9/.-%@:"), st.integers(200, 20_000)),
)
HOSTILE_PYTHON = st.one_of(
    HOSTILE_TEXT,
    st.integers(min_value=-(2**100), max_value=2**100),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(HOSTILE_TEXT | st.integers(), max_size=5),
    st.dictionaries(HOSTILE_TEXT, HOSTILE_TEXT | st.integers(), max_size=3),
)
MARK = "qsetup-fuzz-hostile-value"


def _json_yaml(value: str) -> str:
    """A double-quoted YAML scalar for any text (JSON's escapes are YAML's), surrogates too."""
    import json

    return json.dumps(value)


def hostile_yaml(draw: st.DrawFn) -> str:
    """One hostile value as flow-style YAML text that fits after 'key: ' or '- '."""
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(st.sampled_from(HOSTILE_SNIPPETS))
    if kind == 1:
        return _json_yaml(draw(HOSTILE_TEXT))
    value = draw(HOSTILE_PYTHON)
    return yaml.safe_dump(value, default_flow_style=True, width=10**9).strip().removesuffix("\n...")


@st.composite
def hostile_field(draw: st.DrawFn, base: str) -> str:
    """A valid inventory with one value (or one key) replaced by something hostile."""
    document = yaml.safe_load(base)
    paths = paths_of(document)
    path = draw(st.sampled_from(paths))
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    if isinstance(parent, dict) and draw(st.booleans()):
        # rename the key instead of replacing the value
        new_key = draw(HOSTILE_TEXT)
        parent[new_key if new_key else MARK] = parent.pop(path[-1])
        return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    parent[path[-1]] = MARK
    text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=10**9)
    assert text.count(MARK) == 1
    return text.replace(MARK, hostile_yaml(draw))


@pytest.fixture(scope="module")
def fielddir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fields")
    (path / "app").mkdir()
    (path / "app" / "proj.py").write_text("app = None\n")
    (path / "keys").mkdir()
    (path / "keys" / "id_ed25519").write_text("key\n")
    write_secrets(path / "base.secrets.yml", BASE_SECRETS)
    write_secrets(path / "full.secrets.yml", FULL_SECRETS)
    return path


def check_load(inventory: Path, secrets: Path, check_files: bool) -> None:
    from qsetup.artifacts.render import render_all
    from qsetup.errors import QsetupError
    from qsetup.inventory.loader import load_inventory

    try:
        loaded = load_inventory(inventory, secrets, check_files=check_files)
    except QsetupError as exc:
        lines = exc.lines()
        assert lines
        for line in lines:
            assert PROBLEM_LINE.match(line), line
            assert line.isprintable(), line
            assert "Traceback" not in line, line
        return
    # Accepted: it must render (a RenderError is a refusal too, never a crash).
    try:
        render_all(loaded.inventory, loaded.secrets)
    except QsetupError:
        pass  # refused while rendering: a message, not a crash


@SETTINGS
@given(data=st.data(), which=st.sampled_from(["base", "full"]), check_files=st.booleans())
def test_hostile_value_in_one_field(
    fielddir: Path, data: st.DataObject, which: str, check_files: bool
) -> None:
    base = BASE_INVENTORY if which == "base" else FULL_INVENTORY
    inventory = fielddir / "inventory.yml"
    inventory.write_text(data.draw(hostile_field(base)), encoding="utf-8", errors="surrogatepass")
    check_load(inventory, fielddir / f"{which}.secrets.yml", check_files)


@SETTINGS
@given(data=st.data())
def test_hostile_value_in_the_secrets_file(fielddir: Path, data: st.DataObject) -> None:
    inventory = fielddir / "secrets-case.yml"
    inventory.write_text(BASE_INVENTORY)
    name = data.draw(st.sampled_from(sorted(BASE_SECRETS)))
    lines = [
        f"{key}: {hostile_yaml(data.draw) if key == name else repr(value)}"
        for key, value in BASE_SECRETS.items()
    ]
    secrets = fielddir / "hostile.secrets.yml"
    secrets.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    secrets.chmod(0o600)
    check_load(inventory, secrets, False)


@pytest.mark.parametrize("which", ["base", "full"])
def test_the_field_mutation_bases_are_valid(fielddir: Path, which: str) -> None:
    from qsetup.inventory.loader import load_inventory

    inventory = fielddir / f"{which}-unmutated.yml"
    inventory.write_text(BASE_INVENTORY if which == "base" else FULL_INVENTORY)
    load_inventory(inventory, fielddir / f"{which}.secrets.yml", check_files=True)
