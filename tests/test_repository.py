"""The repository tests alone: every schema a test names is vendored in tests/schemas/; files
and functions stay short."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent
NAMED = re.compile(r"""validator\(\s*["']([A-Za-z0-9]+)["']\s*\)""")


def test_every_schema_a_test_names_is_in_the_repository() -> None:
    named = {name for path in TESTS.rglob("*.py") for name in NAMED.findall(path.read_text())}
    assert len(named) >= 10, "the tests validate against the official schemas"
    files = {path.stem: path for path in (TESTS / "schemas").glob("*.json")}
    components = json.loads((TESTS / "schemas" / "openapi-components.json").read_text())
    vendored = set(files) | set(components.get("components", {}).get("schemas", components))
    assert named <= vendored, f"not vendored in tests/schemas: {sorted(named - vendored)}"
    for name in named & set(files):  # each file is a JSON Schema, not a stub
        schema = json.loads(files[name].read_text())
        assert isinstance(schema, dict) and len(json.dumps(schema)) > 200, name


def test_no_test_reads_the_shared_folder_beside_the_clone() -> None:
    """A clone has no ../shared: a path into it is a test that fails from a fresh clone."""
    offenders = [
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("*.py")
        if path.name != "test_repository.py"
        and re.search(r"""["']shared["']|/shared/|openai-spec""", path.read_text())
    ]
    assert offenders == []


MAX_FILE_LINES = 399
MAX_FUNCTION_LINES = 60


def _functions(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """(qualified name, lines from ``def`` to its last line) of every function, nested too."""

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    assert child.end_lineno is not None
                    yield name, child.end_lineno - child.lineno + 1
                yield from visit(child, name + ".")
            else:
                yield from visit(child, prefix)

    return visit(tree, "")


def _size_offenders() -> dict[tuple[str, str], int]:
    """(file, "" or function) -> lines, for each file and function over its limit."""
    root = TESTS.parent
    found: dict[tuple[str, str], int] = {}
    for package in ("pipeline", "bench"):
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            text = path.read_text(encoding="utf-8")
            if len(text.splitlines()) > MAX_FILE_LINES:
                found[(relative, "")] = len(text.splitlines())
            for name, lines in _functions(ast.parse(text, filename=relative)):
                if lines > MAX_FUNCTION_LINES:
                    found[(relative, name)] = lines
    return found


def test_files_and_functions_stay_short() -> None:
    """Files under 400 lines, functions under 61 (STYLE.md)."""
    offenders = _size_offenders()
    assert offenders == {}, "split these: files over 399 lines, functions over 60"


def test_the_size_check_sees_long_functions_and_nested_ones() -> None:
    """The checker itself: a nested function and a method are measured by their own lines."""
    body = "\n".join(f"            x{i} = {i}" for i in range(70))
    source = f"class A:\n    def f(self) -> None:\n        def g() -> None:\n{body}\n"
    measured = dict(_functions(ast.parse(source)))
    assert measured == {"A.f": 72, "A.f.g": 71}
