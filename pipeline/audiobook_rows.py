"""The books of a speech job, planned: the input's book columns joined with the results (by
key), grouped by book, ordered, cut into chapters and tagged; nothing is read but the input's
few columns and the results' audio columns, nothing is written.

A book is complete when every input row of its group has a result (an audio file); the rows
that have none are counted by their journal state (failed, or pending: sent, queued or not read
yet). Rows whose group value is null are in no book.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import polars as pl

from pipeline import keys, readers
from pipeline.audiobook_audio import Chapter, Source
from pipeline.audiobook_options import AssembleSpec
from pipeline.errors import RowError
from pipeline.journal import Journal
from pipeline.templates import Template, as_text
from pipeline.writers import csv_cell_value, csv_header_name

KEY: Final = "__key"  # the canonical key text, to join input rows with their results
POSITION: Final = "__position"  # input order: ties in the order column keep it
RESULT: Final = {"audio_path": "__audio_path", "format": "__format", "voice": "__voice"}
AUDIO_PATH, FORMAT, VOICE = RESULT.values()  # renamed: the input may have such columns too


@dataclass(frozen=True)
class BookPlan:
    """One book whose rows are all done: what to join, in order, and how to tag it."""

    name: str  # the group value as text (or the title without a group column)
    keys: list[str]
    sources: list[Source]
    audio_paths: list[str]
    chapters: list[Chapter]
    tags: dict[str, str]


@dataclass(frozen=True)
class Incomplete:
    """A book some of whose rows have no audio yet: its row count and the keys missing."""

    rows: int
    missing: list[str]


@dataclass
class Books:
    """Every book of the input: the complete ones planned, the others said why not."""

    complete: list[BookPlan] = field(default_factory=list)
    incomplete: dict[str, Incomplete] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # name -> why it cannot be made
    rows_without_book: int = 0


def plan_books(
    spec: AssembleSpec,
    input_info: readers.InputInfo,
    key: str,
    output_dir: Path,
    fmt: str,
    default_title: str,
) -> Books:
    """The input's books, from its rows joined with their results; ``default_title`` names a
    book without a group column or title (the job's name)."""
    table = _input_rows(spec, input_info, key).join(
        _results(output_dir, key, fmt), on=KEY, how="left"
    )
    books = Books()
    if spec.group is not None:
        books.rows_without_book = table.get_column(spec.group).null_count()
        table = table.filter(pl.col(spec.group).is_not_null())
        grouped = table.with_columns(pl.col(spec.group).cast(pl.String).alias("__book"))
        groups = grouped.partition_by("__book", maintain_order=True, as_dict=True)
        parts = [(str(name[0]), frame.drop("__book")) for name, frame in groups.items()]
    else:
        parts = [(default_title, table)] if len(table) else []
    for name, rows in parts:
        _plan_book(spec, name, rows, output_dir, books)
    return books


def missing_rows(book: Incomplete, journal: Journal) -> dict[str, int]:
    """How many of a book's rows are missing, by why: failed, or pending (not done yet)."""
    states = journal.known(book.missing)
    failed = sum(1 for key in book.missing if key in states and states[key][0] == "failed")
    return {
        "rows": book.rows,
        "missing": len(book.missing),
        "failed": failed,
        "pending": len(book.missing) - failed,
    }


def _plan_book(
    spec: AssembleSpec, name: str, rows: pl.DataFrame, output_dir: Path, books: Books
) -> None:
    missing = rows.filter(pl.col(AUDIO_PATH).is_null())
    unordered = (
        rows.select(pl.any_horizontal(pl.col(spec.order).is_null()).sum()).item()
        if spec.order
        else 0
    )
    rows = rows.sort([*spec.order, POSITION])
    first = rows.row(0, named=True)
    title = _text(spec.title, first) or name
    book = name if spec.group is not None else title
    if len(missing):
        books.incomplete[book] = Incomplete(len(rows), missing.get_column(KEY).to_list())
        return
    if unordered:
        books.refused[book] = (
            f"{unordered} row(s) have no value in the order column(s) {', '.join(spec.order)}"
        )
        return
    records = rows.to_dicts()
    voices = list(dict.fromkeys(str(row[VOICE]) for row in records if row[VOICE]))
    author = _text(spec.author, first)
    tags = {"title": title, "album": title, "genre": "Audiobook"}
    if author:
        tags |= {"artist": author, "album_artist": author}
    if voices:
        narrator = ", ".join(voices)
        tags |= {"composer": narrator, "comment": f"Narrated by {narrator}"}
    books.complete.append(
        BookPlan(
            name=book,
            keys=[row[KEY] for row in records],
            sources=[Source(output_dir / row[AUDIO_PATH], row[FORMAT]) for row in records],
            audio_paths=[row[AUDIO_PATH] for row in records],
            chapters=_chapters(spec, records, title),
            tags=tags,
        )
    )


def _chapters(spec: AssembleSpec, records: list[dict[str, Any]], title: str) -> list[Chapter]:
    """A chapter where the chapter column's value changes (a null continues the chapter)."""
    if spec.chapter is None:
        return [Chapter(title, 0)]
    chapters: list[Chapter] = []
    current: Any = object()
    for index, row in enumerate(records):
        value = row[spec.chapter]
        if index and (value is None or value == current):
            continue
        current = value
        named = _text(spec.chapter_title, row) or as_text(value) or str(len(chapters) + 1)
        chapters.append(Chapter(named, index))
    return chapters


def _text(template: Template | None, row: Mapping[str, Any]) -> str | None:
    """A tag from ``row``; None when unset or a column it names is null."""
    if template is None:
        return None
    try:
        value = template.render(row)
    except RowError:
        return None
    text = as_text(value)
    return (text if text is not None else str(value)).strip() or None


def _input_rows(spec: AssembleSpec, input_info: readers.InputInfo, key: str) -> pl.DataFrame:
    columns = list(dict.fromkeys([key, *spec.columns()]))
    frames = list(readers.iter_batches(input_info.files, columns, batch_size=100_000))
    schema = {column: input_info.schema[column] for column in columns}
    table = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
    return table.with_columns(
        keys.canonical(table.get_column(key)).alias(KEY),
        pl.int_range(pl.len(), dtype=pl.Int64).alias(POSITION),
    )


def _results(output_dir: Path, key: str, fmt: str) -> pl.DataFrame:
    """Each done key's audio columns, from the results output (every result is there once the
    run's final flush is done)."""
    empty = pl.DataFrame(schema={KEY: pl.String, **dict.fromkeys(RESULT.values(), pl.String)})
    path = output_dir / f"results.{fmt}"
    if not path.exists() or (path.is_file() and not path.stat().st_size):
        return empty
    wanted = [key, *RESULT]
    if fmt == "parquet":
        frame = pl.read_parquet(path, columns=wanted)
    elif fmt == "jsonl":
        frame = pl.read_ndjson(path).select(wanted)
    else:  # every text cell may carry the apostrophe that neutralised a formula
        text = pl.read_csv(path, infer_schema=False, columns=[csv_header_name(c) for c in wanted])
        frame = text.rename(csv_cell_value).with_columns(
            pl.when(pl.col(c).str.starts_with("'"))
            .then(pl.col(c).str.slice(1))
            .otherwise(pl.col(c))
            for c in (key, "audio_path", "voice")
        )
    return frame.select(
        keys.canonical(frame.get_column(key)).alias(KEY),
        *(pl.col(name).cast(pl.String).alias(alias) for name, alias in RESULT.items()),
    )
