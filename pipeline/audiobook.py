"""Audiobooks (``[speech.assemble]``): at the end of a speech run, every book whose rows are all
done is joined into one file under ``books/``, and ``books.<fmt>`` lists each book's chapters.

A book is rebuilt only when what it is made of changed: its record in the journal (meta
``audiobooks``) holds a digest of its rows (keys, order, audio paths, their sizes and mtimes,
chapters, tags, format); a book whose digest and file are as recorded is left alone. A book is
written to ``.pipeline/tmp`` and renamed into place, then recorded: a kill in between leaves a
whole book that the next run rebuilds, never half a book. Names come from the group value, made
path-safe as audio files are (``filenames.safe_stem``), ``~2`` when two books (or a file of
yours) would share one. A book rebuilt in another format replaces its old file (removed once
the new one is recorded); only files directly in ``books/`` are ever a book's.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, Final

import orjson
import polars as pl

from pipeline import audio
from pipeline.audiobook_audio import BOOK_SUFFIX, write_book
from pipeline.audiobook_options import AssembleSpec
from pipeline.audiobook_rows import BookPlan, missing_rows, plan_books
from pipeline.filenames import safe_stem
from pipeline.job import OutputFormat
from pipeline.journal import Journal
from pipeline.plan import Plan
from pipeline.writers import csv_cell_value, fill, journal_error, storing

log = logging.getLogger(__name__)
BOOKS_FOLDER: Final = "books"
MANIFEST: Final = "books"  # books.<output format>
STATE: Final = "audiobooks"  # the journal's meta record: {"books": {name: record}}
LOGGED_BOOKS: Final = 10  # incomplete books named in the log (a --limit trial leaves many)
VERSION: Final = 1  # part of every digest: a new way of assembling rebuilds the books
MANIFEST_SCHEMA: Final = pl.Schema(
    {
        "book": pl.String,
        "book_path": pl.String,
        "chapter": pl.Int64,
        "chapter_title": pl.String,
        "start_s": pl.Float64,
        "duration_s": pl.Float64,
        "first_key": pl.String,
        "rows": pl.Int64,
    }
)


def assemble(plan: Plan, journal: Journal, *, stopped: bool) -> dict[str, Any] | None:
    """Build the books of a speech job with ``[speech.assemble]`` (None for any other job);
    returns the summary's ``books`` entry. Raises StorageError when a book cannot be written."""
    spec: AssembleSpec | None = getattr(plan.kind, "assemble", None)
    if spec is None:
        return None
    output_dir = plan.job.output.dir
    manifest = f"{MANIFEST}.{plan.job.output.format}"
    summary: dict[str, Any] = {"format": spec.format, "manifest": manifest}
    if stopped:  # a signal or a bound wants the run over: assembling can wait for the next
        log.warning("books not assembled: the run stopped early; the next run assembles them")
        return {**summary, "skipped": "the run stopped early"}
    job = plan.job
    books = plan_books(spec, plan.input, job.input.key, output_dir, job.output.format, job.name)
    state: dict[str, Any] = journal.meta(STATE) or _adopted(output_dir, job.output.format)
    built, unchanged, refused = [], [], dict(books.refused)
    stale: list[str] = []  # a book's file in the format it had before: gone once recorded
    for book in books.complete:
        try:
            if not _build(book, spec, output_dir, state, stale):
                unchanged.append(book.name)
                continue
        except audio.AudioError as error:
            refused[book.name] = error.message
            log.error("book %r not assembled: %s", book.name, error.message)
            continue
        built.append(book.name)
        try:
            journal.set_meta(STATE, state)  # each book recorded once it is in place
        except sqlite3.Error as exc:
            raise journal_error(output_dir, exc) from exc
        while stale:
            (output_dir / stale.pop()).unlink(missing_ok=True)
    incomplete = {name: missing_rows(book, journal) for name, book in books.incomplete.items()}
    _say(incomplete, books.refused)
    _write_manifest(output_dir, plan.job.output.format, state)
    if books.rows_without_book:
        log.warning("%d row(s) have no group value: they are in no book", books.rows_without_book)
    return {
        **summary,
        "assembled": built,
        "unchanged": unchanged,
        "incomplete": incomplete,
        "not_assembled": refused,
        "rows_without_book": books.rows_without_book,
    }


def _say(incomplete: dict[str, dict[str, int]], refused: dict[str, str]) -> None:
    """One log line per book not assembled (the first few incomplete ones: a --limit trial
    leaves many), naming it and what is missing."""
    for name, counts in list(incomplete.items())[:LOGGED_BOOKS]:
        log.warning(
            "book %r not assembled: %d of its %d row(s) missing (%d failed, %d pending)",
            name,
            counts["missing"],
            counts["rows"],
            counts["failed"],
            counts["pending"],
        )
    if len(incomplete) > LOGGED_BOOKS:
        log.warning(
            "... and %d more incomplete book(s): see summary.json", len(incomplete) - LOGGED_BOOKS
        )
    for name, why in refused.items():
        log.error("book %r not assembled: %s", name, why)


def _build(
    book: BookPlan, spec: AssembleSpec, output_dir: Path, state: dict[str, Any], stale: list[str]
) -> bool:
    """Write ``book`` unless its recorded file is up to date; whether it was written. Its
    recorded file of another format goes to ``stale``."""
    records: dict[str, Any] = state["books"]
    digest = _digest(book, spec)
    record = records.get(book.name)
    if record is not None and record["digest"] == digest and _intact(output_dir, record):
        return False
    relative = _claim(book.name, BOOK_SUFFIX[spec.format], output_dir, records)
    path = output_dir / relative
    log.info(
        "assembling book %r: %d row(s), %d chapter(s)",
        book.name,
        len(book.keys),
        len(book.chapters),
    )
    with storing(path, output_dir) as tmp:
        path.parent.mkdir(parents=True, exist_ok=True)
        samples = write_book(tmp, spec.format, book.sources, book.chapters, book.tags)
    if record is not None and record["file"] != relative:
        stale.append(str(record["file"]))
    records[book.name] = {
        "file": relative,
        "digest": digest,
        "bytes": path.stat().st_size,
        "chapters": _chapter_rows(book, relative, samples),
    }
    return True


def _digest(book: BookPlan, spec: AssembleSpec) -> str:
    """What the book is made of: a changed, added, removed or reordered row changes it."""
    files = []
    for key, relative, source in zip(book.keys, book.audio_paths, book.sources, strict=True):
        try:
            stat = source.path.stat()
            files.append([key, relative, source.format, stat.st_size, stat.st_mtime_ns])
        except OSError:
            files.append([key, relative, source.format, None, None])  # refused when read
    chapters = [[chapter.title, chapter.first_row] for chapter in book.chapters]
    what = [VERSION, spec.format, sorted(book.tags.items()), chapters, files]
    return hashlib.sha256(orjson.dumps(what)).hexdigest()


def _intact(output_dir: Path, record: dict[str, Any]) -> bool:
    try:
        return bool((output_dir / record["file"]).stat().st_size == record["bytes"])
    except OSError:
        return False


def _claim(name: str, suffix: str, output_dir: Path, records: dict[str, Any]) -> str:
    """The book's file, relative to the output folder: its recorded one while the format is the
    same, else a new safe name that no other book has and no file of yours is at."""
    mine = records.get(name, {}).get("file")
    if mine is not None and mine.endswith(suffix):
        return str(mine)
    others = {str(record["file"]).lower() for other, record in records.items() if other != name}
    stem = safe_stem(name)
    attempt = 1
    while True:
        relative = (
            f"{BOOKS_FOLDER}/{stem}{suffix}"
            if attempt == 1
            else f"{BOOKS_FOLDER}/{stem}~{attempt}{suffix}"
        )
        if relative.lower() not in others and not (output_dir / relative).exists():
            return relative
        attempt += 1


def _chapter_rows(book: BookPlan, relative: str, samples: list[int]) -> list[dict[str, Any]]:
    """The manifest's rows for the book: one per chapter, times from the decoded samples."""
    offsets = [0, *itertools.accumulate(samples)]  # offsets[i]: where row i starts
    starts = [chapter.first_row for chapter in book.chapters]
    ends = [*starts[1:], len(book.keys)]
    rows = []
    for number, (chapter, end) in enumerate(zip(book.chapters, ends, strict=True), 1):
        start = offsets[chapter.first_row]
        length = offsets[end] - start
        rows.append(
            {
                "book": book.name,
                "book_path": relative,
                "chapter": number,
                "chapter_title": chapter.title,
                "start_s": round(start / audio.SAMPLE_RATE, 3),
                "duration_s": round(length / audio.SAMPLE_RATE, 3),
                "first_key": book.keys[chapter.first_row],
                "rows": end - chapter.first_row,
            }
        )
    return rows


def _adopted(output_dir: Path, fmt: OutputFormat) -> dict[str, Any]:
    """A journal without book records (new, or rebuilt): the books the manifest lists are ours
    to rebuild in place, not files of yours to keep away from."""
    path = output_dir / f"{MANIFEST}.{fmt}"
    books: dict[str, Any] = {}
    try:
        frame = (
            pl.read_parquet(path)
            if fmt == "parquet"
            else pl.read_ndjson(path)
            if fmt == "jsonl"
            else pl.read_csv(path, infer_schema=False).rename(csv_cell_value)
        )
        pairs = frame.select("book", "book_path").unique(maintain_order=True).iter_rows()
    except (OSError, pl.exceptions.PolarsError):
        return {"books": {}}  # no manifest (or not one of ours): nothing to adopt
    for book, relative in pairs:
        if fmt == "csv":
            book, relative = csv_cell_value(str(book)), csv_cell_value(str(relative))
        if not _in_books(str(relative)):
            continue  # an edited manifest never leads a book (or its removal) out of books/
        books[str(book)] = {"file": str(relative), "digest": None, "bytes": -1, "chapters": []}
    return {"books": books}


def _in_books(relative: str) -> bool:
    """Whether ``relative`` is a file directly in ``books/`` (the only place books go)."""
    parts = PurePosixPath(relative).parts
    return (
        len(parts) == 2 and parts[0] == BOOKS_FOLDER and "\\" not in relative and parts[1] != ".."
    )


def _write_manifest(output_dir: Path, fmt: OutputFormat, state: dict[str, Any]) -> None:
    """``books.<fmt>``: the chapters of every book file recorded (those still in place)."""
    rows = [
        row
        for record in state["books"].values()
        if _intact(output_dir, record)
        for row in record["chapters"]
    ]

    def frames() -> Iterator[pl.DataFrame]:
        yield pl.DataFrame(rows, schema=MANIFEST_SCHEMA)

    with storing(output_dir / f"{MANIFEST}.{fmt}", output_dir) as tmp:
        fill(frames(), tmp, fmt, MANIFEST_SCHEMA)
