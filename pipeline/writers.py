"""Output files: results, errors, summary.json and a kind's files (audio), each written atomically.

Every temporary file is made in ``<output>/.pipeline/tmp/`` (same file system, so ``os.replace``
into place is atomic) under a unique name; start-up empties that folder and nothing else, so a
user's own files under the output folder are never touched. A write that fails (disk full,
permission lost, I/O error) raises ``StorageError`` naming the path: the journal keeps every
answer not written yet, and a rerun writes it. The layout of the results (a folder of parts, or
one appended file) and its guarantees are ``pipeline.store``'s; this module writes the frames.

Rows stream from the journal in chunks into the file, so memory does not grow with the job.
CSV cells that a spreadsheet would run as a formula are neutralised with a leading apostrophe,
whatever the column's type (string, categorical, enum, nested values written as JSON) and in
the header too.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import keys as key_contract
from pipeline.errors import StorageError
from pipeline.filenames import safe_stem
from pipeline.job import OUTPUT_FORMATS, OutputFormat
from pipeline.journal import JOURNAL_FILE, STATE_DIR, Journal
from pipeline.outcomes import ERROR_FIELDS

# A cell a spreadsheet would run gets a leading apostrophe; so does one that starts with an
# apostrophe, so that --rebuild-journal can take exactly one off and read back what was written.
log = logging.getLogger(__name__)
OUTPUT_NAMES = ("results", "errors")  # each as results.<fmt>, errors.<fmt>
_FORMULA_START = r"^['=+\-@\t\r]"
_FORMULA_CHARS = ("'", "=", "+", "-", "@", "\t", "\r")
TMP_FOLDER = "tmp"  # inside .pipeline: the only place temporaries are made, and cleaned
_serial = itertools.count(1)
_STORAGE_CODES = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY}
STORAGE_FIX = (
    "free space or fix the permissions, then rerun: every answer not written yet is in the "
    "journal and the rerun writes it"
)


def result_frame(
    chunk: list[tuple[Any, dict[str, Any], Any, int]],
    key: str,
    keep: tuple[str, ...],
    schema: pl.Schema,
    stored: list[str],
) -> pl.DataFrame:
    """Held results (values in the journal's ``stored`` column order) as a frame of ``schema``:
    the values are matched to columns by name, never by position."""
    names = list(schema.names())[1 + len(keep) :]

    def values(row: list[Any], _attempts: int) -> list[Any]:
        if stored == names:
            return row
        by_name = dict(zip(stored, row, strict=True))  # written by another version
        return [by_name.get(name) for name in names]

    return _frame(chunk, key, keep, schema, values)


def error_frames(
    journal: Journal, key: str, keep: tuple[str, ...], schema: pl.Schema
) -> Iterator[pl.DataFrame]:
    """The failed rows of the journal as frames of the errors ``schema``."""

    def values(fields: dict[str, Any], attempts: int) -> list[Any]:
        return [*(fields.get(name) for name in ERROR_FIELDS), attempts]

    for chunk in journal.failed_rows():
        yield _frame(chunk, key, keep, schema, values)


def output_paths(output_dir: Path) -> list[Path]:
    """Every results and errors file a run may write in ``output_dir``, in any format."""
    return [output_dir / f"{name}.{fmt}" for name in OUTPUT_NAMES for fmt in OUTPUT_FORMATS]


class OutputFiles:
    """Files a kind writes beside the results (speech audio): unique safe names, atomic writes."""

    def __init__(self, output_dir: Path, journal: Journal) -> None:
        self.output_dir = output_dir
        self._journal = journal

    def claim(self, folder: str, stem: str, suffix: str, key: Any) -> str:
        """The path (relative to the output folder) this key's file gets; stable across runs."""
        where = self.output_dir / folder
        name = self._journal.claim_name(
            safe_stem(stem), suffix, key, taken=lambda name: (where / name).exists()
        )
        return f"{folder}/{name}"

    def write(self, relative: str, data: bytes) -> Path:
        """Write to a temporary name, then replace: a reader never sees half a file."""
        path = self.output_dir / relative
        with storing(path, self.output_dir) as tmp:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
        return path


def write_json(output_dir: Path, name: str, data: Any) -> Path:
    """Write ``output_dir/name`` as JSON atomically; raises StorageError."""
    path = output_dir / name
    with storing(path, output_dir) as tmp:
        tmp.write_bytes(
            orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        )
    return path


def temporary_folder(output_dir: Path) -> Path:
    """Where every temporary file of a run over ``output_dir`` is made."""
    return output_dir / STATE_DIR / TMP_FOLDER


def remove_stale_temporaries(output_dir: Path) -> None:
    """Empty ``.pipeline/tmp`` (what a killed run left); nothing else is ever deleted."""
    folder = temporary_folder(output_dir)
    if folder.is_dir() and not folder.is_symlink():  # never follow a link out of the folder
        for stale in folder.iterdir():
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


@contextmanager
def storing(path: Path, output_dir: Path) -> Iterator[Path]:
    """A unique temporary to fill, replaced onto ``path`` on success; OSError -> StorageError."""
    tmp = temporary_folder(output_dir) / f"{os.getpid()}-{next(_serial)}{path.suffix}"
    try:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise storage_error(path, exc) from exc
    except BaseException:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def journal_error(output_dir: Path, exc: BaseException) -> StorageError:
    """The StorageError for a journal write (SQLite) that failed, e.g. a full disk."""
    return storage_error(output_dir / STATE_DIR / JOURNAL_FILE, exc)


def out_of_storage(exc: sqlite3.Error) -> bool:
    """Whether SQLite failed for want of storage (full, I/O error, read-only), by its code."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _STORAGE_CODES


def storage_error(path: Path | str, exc: BaseException) -> StorageError:
    """The one-line StorageError for a write to ``path`` that failed with ``exc``."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return StorageError(f"cannot write: {reason}; {STORAGE_FIX}", path=str(path))


def probe_keep(column: str, dtype: pl.DataType, value: pl.Series, fmt: OutputFormat) -> str | None:
    """Push one keep value the way a run does (JSON into the journal, back, into an output file
    of ``fmt``, in memory); why it cannot be written, or None when it comes back equal."""
    try:
        kept = orjson.loads(orjson.dumps({column: value.to_list()[0]}))
    except TypeError as exc:
        return f"the journal cannot store it ({exc})"
    probe_key = f"{column}_key"
    schema = table_schema({probe_key: pl.String(), column: dtype}, pa.schema([]))
    try:
        frame = _frame([("probe", kept, None, 0)], probe_key, (column,), schema, lambda *_: [])
        back = frame.get_column(column)
        if not back.equals(value, check_dtypes=False, null_equal=True):
            return f"it comes back changed ({value.to_list()[0]!r} as {back.to_list()[0]!r})"
        fill(iter([frame]), io.BytesIO(), fmt, schema)
    except Exception as exc:  # whatever fails here would fail the real write after sending
        return f"it cannot be rebuilt and written as {fmt} ({type(exc).__name__}: {str(exc)[:160]})"
    return None


def table_schema(front: Mapping[str, pl.DataType], kind_schema: pa.Schema) -> pl.Schema:
    columns = dict(front)
    for field in kind_schema:
        columns[field.name] = pl.Series(pa.array([], type=field.type)).dtype
    return pl.Schema(columns)


def _frame(
    chunk: list[tuple[Any, dict[str, Any], Any, int]],
    key: str,
    keep: tuple[str, ...],
    schema: pl.Schema,
    kind_values: Callable[[Any, int], list[Any]],
) -> pl.DataFrame:
    """Journal rows as a frame: the key, the keep columns, then the kind's (or error) values."""
    rows = [
        [row_key, *(kept.get(col) for col in keep), *kind_values(values, attempts)]
        for row_key, kept, values, attempts in chunk
    ]
    columns = [list(column) for column in zip(*rows, strict=True)]
    return pl.DataFrame(
        [
            # the journal holds canonical text keys: back to the key column's type
            key_contract.restore(pl.Series(name, values, dtype=pl.String), dtype)
            if name == key
            else _series(name, values, dtype)
            for (name, dtype), values in zip(schema.items(), columns, strict=True)
        ]
    )


def _series(name: str, values: list[Any], dtype: pl.DataType) -> pl.Series:
    """Rebuild a column from JSON values; temporal values travelled as ISO strings."""
    if dtype.is_temporal() and any(isinstance(v, str) for v in values):
        text = pl.Series(name, values, dtype=pl.String)
        if dtype == pl.Date:
            return text.str.to_date(strict=False)
        if dtype == pl.Time:
            return text.str.to_time("%H:%M:%S%.f", strict=False)
        if isinstance(dtype, pl.Datetime):
            return text.str.to_datetime(strict=False).cast(dtype, strict=False)
        return text
    return pl.Series(name, values, dtype=dtype, strict=False)


def fill(
    frames: Iterator[pl.DataFrame], tmp: Path | BinaryIO, fmt: OutputFormat, schema: pl.Schema
) -> None:
    """Write the frames into ``tmp`` (a file, or memory for the pre-flight probe)."""
    empty = pl.DataFrame(schema=schema)
    if fmt == "parquet":
        with pq.ParquetWriter(tmp, empty.to_arrow().schema, compression="zstd") as writer:
            wrote = False
            for frame in frames:
                writer.write_table(frame.to_arrow().cast(empty.to_arrow().schema))
                wrote = True
            if not wrote:
                writer.write_table(empty.to_arrow())
    else:
        with tmp.open("wb") if isinstance(tmp, Path) else nullcontext(tmp) as out:
            first = True
            for frame in frames:
                write_text(frame, out, fmt, header=first)
                first = False
            if first and fmt == "csv":
                write_text(empty, out, fmt, header=True)


def write_text(frame: pl.DataFrame, out: Any, fmt: OutputFormat, *, header: bool) -> None:
    if fmt == "jsonl":
        frame.write_ndjson(out)
        return
    _neutralised(_as_csv_text(frame)).write_csv(out, include_header=header)


def _as_csv_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Every string-like column as String (categorical, enum, and nested values as JSON)."""
    nested = [name for name, dtype in frame.schema.items() if dtype.is_nested()]
    categorical = [
        name for name, dtype in frame.schema.items() if isinstance(dtype, pl.Categorical | pl.Enum)
    ]
    return frame.with_columns(  # CSV has no nesting: such cells hold their JSON
        *(
            pl.Series(
                name,
                [None if v is None else orjson.dumps(v).decode() for v in frame[name].to_list()],
                dtype=pl.String,
            )
            for name in nested
        ),
        *(pl.col(name).cast(pl.String) for name in categorical),
    )


def _neutralised(frame: pl.DataFrame) -> pl.DataFrame:
    """Cells and header names a spreadsheet would run as formulas get a leading apostrophe."""
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    frame = frame.with_columns(
        pl.when(pl.col(name).str.contains(_FORMULA_START))
        .then(pl.lit("'") + pl.col(name))
        .otherwise(pl.col(name))
        .alias(name)
        for name in text
    )
    return frame.rename({name: csv_header_name(name) for name in frame.columns})


def csv_header_name(text: str) -> str:
    """A column name as the CSV header writes it (a formula-like name gets an apostrophe)."""
    return f"'{text}" if text[:1] in _FORMULA_CHARS else text


def csv_cell_value(text: str) -> str:
    """What a CSV cell (or header) written by this module held before it was neutralised."""
    return text[1:] if text[:1] == "'" else text


def read_results(path: Path, fmt: OutputFormat, schema: pl.Schema) -> pl.DataFrame:
    """A results file (a part, or the csv/jsonl file) written under ``schema``, read back with
    its types: CSV cells lose the neutralising apostrophe, nested cells their JSON."""
    if fmt == "parquet":
        return pl.read_parquet(path)
    if fmt == "jsonl":
        return pl.read_ndjson(path, schema=schema)
    text = pl.read_csv(path, infer_schema=False).rename(csv_cell_value)
    columns = []
    for name, dtype in schema.items():
        raw = text.get_column(name)
        cells = pl.select(
            pl.when(raw.str.starts_with("'")).then(raw.str.slice(1)).otherwise(raw).alias(name)
        ).to_series()
        if dtype == pl.String:
            columns.append(cells)
        elif dtype.is_nested():
            columns.append(cells.str.json_decode(dtype))
        elif dtype == pl.Boolean:
            columns.append(cells.replace_strict({"true": True, "false": False}, default=None))
        elif dtype.is_temporal():
            columns.append(_series(name, cells.to_list(), dtype))
        else:
            columns.append(cells.cast(dtype, strict=False))
    return pl.DataFrame(columns)
