"""``{column}`` templates in request bodies: which columns they name, and rendering them per row.

A string that is exactly ``"{col}"`` takes the column's value with its type; inside longer text
values are formatted in. ``{{`` and ``}}`` stand for literal braces. A null or a NaN/infinite
number in a named column is a RowError naming the column and the field it fills.

Numbers as text (one rule, whatever the input format): where the API wants text, a number (int or
finite float, never a bool) is sent as its text, exactly as a CSV cell "5" is (``as_text``).
"""

from __future__ import annotations

import math
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
    field: str = ""  # what the body fills ("input"): named in messages when the body is one value

    def render(self, row: Mapping[str, Any]) -> Any:
        """The body with this row's values filled in; RowError names a null column."""
        return _render(self.body, row, self.field)

    def constant_fields(self) -> dict[str, Any]:
        """The top-level fields of a table body that name no column, as every row gets them:
        what a kind checks once at job load instead of failing each row alike."""
        if not isinstance(self.body, Mapping):
            return {}
        return {
            name: _render(value, {}, name)
            for name, value in self.body.items()
            if not _columns(value)
        }


def compile_template(body: Any, field: str = "") -> Template:
    """Parse a body from a job file; ValueError names a malformed placeholder. ``field`` names
    what a body that is one value fills (moderation's "input")."""
    return Template(body=body, columns=frozenset(_columns(body)), field=field)


def as_text(value: Any) -> str | None:
    """The text a value stands for where the API wants text: a string itself, a number (int or
    finite float, not bool) its text; None for anything else (the caller's RowError)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return str(value)
    return None


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
    needed, field = f"needed for {where or 'the request'}", where or None
    if value is None:
        raise RowError(f"column '{column}' is empty (null), {needed}", field=field)
    if isinstance(value, float) and not math.isfinite(value):
        raise RowError(f"column '{column}' is {value} (not a number), {needed}", field=field)
    return value
