"""The ``[speech.assemble]`` table of a speech job: which columns make the books, their chapters
and tags, and the book format; every complaint is a JobError naming the field (exit 2).

```toml
[speech.assemble]
group = "book"                     # the column naming the book (omitted: every row, one book)
order = ["chapter", "paragraph"]   # the column(s) ordering a book's rows (omitted: input order)
chapter = "chapter"                # a new chapter starts where this column's value changes
chapter_title = "{chapter_title}"  # the chapter's name, from its first row (default: {chapter})
format = "m4b"                     # m4b (AAC in MP4, chapters) | mp3 (ID3 tags and chapters)
title = "{book_title}"             # from the book's first row, or a constant (default: group)
author = "Lewis Carroll"           # the same; omitted: no author tag
```
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from pipeline.errors import JobError
from pipeline.templates import Template, compile_template

BookFormat = Literal["m4b", "mp3"]
BOOK_FORMATS: Final[tuple[BookFormat, ...]] = ("m4b", "mp3")
SECTION: Final = "speech.assemble"
_COLUMN_KEYS: Final = ("group", "order", "chapter")
_TEMPLATE_KEYS: Final = ("chapter_title", "title", "author")
KEYS: Final = (*_COLUMN_KEYS, "format", *_TEMPLATE_KEYS)


@dataclass(frozen=True)
class AssembleSpec:
    """How a speech job's rows become books; ``None`` columns mean "not set" (see the module)."""

    format: BookFormat = "m4b"
    group: str | None = None
    order: tuple[str, ...] = ()
    chapter: str | None = None
    chapter_title: Template | None = None
    title: Template | None = None
    author: Template | None = None

    def named_columns(self) -> list[tuple[str, str]]:
        """(input column, the field naming it) for every column these settings read."""
        named = [(column, f"{SECTION}.order") for column in self.order]
        named += [
            (column, f"{SECTION}.{key}")
            for key, column in (("group", self.group), ("chapter", self.chapter))
            if column is not None
        ]
        for key in _TEMPLATE_KEYS:
            template: Template | None = getattr(self, key)
            if template is not None:
                named += [(column, f"{SECTION}.{key}") for column in sorted(template.columns)]
        return named

    def columns(self) -> list[str]:
        """The input columns to read for the books, each once."""
        return list(dict.fromkeys(column for column, _ in self.named_columns()))


def parse_assemble(raw: Any, where: str) -> AssembleSpec | None:
    """``[speech] assemble`` (a table, or ``false``/absent for no books), checked."""
    if raw is None or raw is False:
        return None
    if not isinstance(raw, Mapping):
        raise JobError(
            'must be a table: [speech.assemble] with group, order, chapter, format = "m4b"',
            path=where,
            field=SECTION,
        )
    for key in raw:
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(KEYS)}"
            raise JobError(f"unknown key; {hint}", path=where, field=f"{SECTION}.{key}")
    fmt = raw.get("format", "m4b")
    if fmt not in BOOK_FORMATS:
        raise JobError(
            f'must be "m4b" or "mp3", got {fmt!r}', path=where, field=f"{SECTION}.format"
        )
    return AssembleSpec(
        format=fmt,
        group=_column(raw, "group", where),
        order=_order(raw, where),
        chapter=_column(raw, "chapter", where),
        chapter_title=_template(raw, "chapter_title", where),
        title=_template(raw, "title", where),
        author=_template(raw, "author", where),
    )


def _column(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise JobError(
            f"must be the name of an input column, got {value!r}",
            path=where,
            field=f"{SECTION}.{key}",
        )
    return value


def _order(raw: Mapping[str, Any], where: str) -> tuple[str, ...]:
    value = raw.get("order", [])
    columns = [value] if isinstance(value, str) else value
    if not isinstance(columns, list) or not all(
        isinstance(column, str) and column.strip() for column in columns
    ):
        raise JobError(
            f'must be a column name or a list of them ("paragraph", ["chapter", "paragraph"]), '
            f"got {value!r}",
            path=where,
            field=f"{SECTION}.order",
        )
    return tuple(columns)


def _template(raw: Mapping[str, Any], key: str, where: str) -> Template | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise JobError(
            f'must be text or a template such as "{{column}}", got {value!r}',
            path=where,
            field=f"{SECTION}.{key}",
        )
    try:
        return compile_template(value, key)
    except ValueError as exc:
        raise JobError(str(exc), path=where, field=f"{SECTION}.{key}") from None
