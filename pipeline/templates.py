"""``{column}`` templates in request bodies: which columns they name, and rendering them per row.

A string that is exactly ``"{col}"`` takes the column's value with its type; inside longer text
values are formatted in. ``{{`` and ``}}`` stand for literal braces.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.errors import RowError

_WHOLE = re.compile(r"^\{([^{}]+)\}$")
_FORMATTER = string.Formatter()


@dataclass(frozen=True)
class Template:
    """A compiled request body: nested dicts/lists/strings, some naming columns."""

    body: Any
    columns: frozenset[str]

    def render(self, row: Mapping[str, Any]) -> Any:
        """The body with this row's values filled in; RowError names a null column."""
        return _render(self.body, row, "")


def compile_template(body: Any) -> Template:
    """Parse a body from a job file; ValueError names a malformed placeholder."""
    return Template(body=body, columns=frozenset(_columns(body)))


def _columns(node: Any) -> set[str]:
    if isinstance(node, str):
        return set(_placeholders(node))
    if isinstance(node, Mapping):
        return set().union(*(_columns(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_columns(value) for value in node))
    return set()


def _placeholders(text: str) -> list[str]:
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as exc:
        raise ValueError(
            f"malformed template {text!r} ({exc}); write {{{{ and }}}} for braces"
        ) from exc
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name or spec or conversion:
            raise ValueError(f"template {text!r}: use plain {{column}} placeholders")
        names.append(name)
    return names


def _render(node: Any, row: Mapping[str, Any], where: str) -> Any:
    if isinstance(node, str):
        return _render_text(node, row, where)
    if isinstance(node, Mapping):
        return {k: _render(v, row, f"{where}.{k}" if where else k) for k, v in node.items()}
    if isinstance(node, list):
        return [_render(v, row, f"{where}[{i}]") for i, v in enumerate(node)]
    return node


def _render_text(text: str, row: Mapping[str, Any], where: str) -> Any:
    if "{" not in text and "}" not in text:
        return text
    whole = _WHOLE.match(text)
    if whole:
        return _value(row, whole.group(1), where)
    parts = []
    for literal, name, _, _ in _FORMATTER.parse(text):
        parts.append(literal)
        if name is not None:
            parts.append(str(_value(row, name, where)))
    return "".join(parts)


def _value(row: Mapping[str, Any], column: str, where: str) -> Any:
    value = row[column]
    if value is None:
        raise RowError(f"column '{column}' is empty (null), needed for {where}", field=where)
    return value
