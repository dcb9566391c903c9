"""The repository tests alone: every schema a test names is vendored in tests/schemas/."""

from __future__ import annotations

import json
import re
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
