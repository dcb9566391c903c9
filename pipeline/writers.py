"""Output files: results, errors and summary.json, each written to a temporary name and replaced.

Rows stream from the journal in chunks into the file, so memory does not grow with the job.
CSV cells that a spreadsheet would run as a formula are neutralised with a leading apostrophe.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import keys as key_contract
from pipeline.filenames import safe_stem
from pipeline.job import OutputFormat
from pipeline.journal import RESULT_COLUMNS, Journal

ERROR_SCHEMA = pa.schema(
    [
        ("stage", pa.string()),
        ("error_type", pa.string()),
        ("http_status", pa.int64()),
        ("error_code", pa.string()),
        ("message", pa.string()),
        ("attempts", pa.int64()),
    ]
)
_FORMULA_START = r"^[=+\-@\t\r]"


def write_outputs(
    journal: Journal,
    output_dir: Path,
    fmt: OutputFormat,
    key: str,
    input_schema: Mapping[str, pl.DataType],
    keep: tuple[str, ...],
    result_schema: pa.Schema,
) -> dict[str, Path]:
    """Write results.<fmt> and errors.<fmt> from the journal; returns their paths."""
    front = {key: input_schema[key], **{col: input_schema[col] for col in keep}}
    results = _schema(front, result_schema)
    errors = _schema(front, ERROR_SCHEMA)
    stored = journal.meta(RESULT_COLUMNS) or result_schema.names

    def result_values(values: list[Any], _attempts: int) -> list[Any]:
        if stored == result_schema.names:
            return values
        by_name = dict(zip(stored, values, strict=True))  # written by another version
        return [by_name.get(name) for name in result_schema.names]

    def error_values(values: dict[str, Any], attempts: int) -> list[Any]:
        return [*(values.get(name) for name in ERROR_SCHEMA.names[:-1]), attempts]

    done = (_frame(chunk, key, keep, results, result_values) for chunk in journal.settled("done"))
    failed = (_frame(chunk, key, keep, errors, error_values) for chunk in journal.settled("failed"))
    return {
        "results": _write(done, output_dir / f"results.{fmt}", fmt, results),
        "errors": _write(failed, output_dir / f"errors.{fmt}", fmt, errors),
    }


class OutputFiles:
    """Files a kind writes beside the results (speech audio): unique safe names, atomic writes."""

    def __init__(self, output_dir: Path, journal: Journal) -> None:
        self.output_dir = output_dir
        self._journal = journal

    def claim(self, folder: str, stem: str, suffix: str, key: Any) -> str:
        """The path (relative to the output folder) this key's file gets; stable across runs."""
        name = self._journal.claim_name(safe_stem(stem), suffix, key)
        return f"{folder}/{name}"

    def write(self, relative: str, data: bytes) -> Path:
        """Write to a temporary name, then replace: a reader never sees half a file."""
        path = self.output_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp(path)
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return path


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary name, then os.replace)."""
    tmp = _tmp(path)
    tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    os.replace(tmp, path)


def remove_stale_temporaries(output_dir: Path) -> None:
    """Drop temporary files a killed run left behind (never the real outputs)."""
    if output_dir.is_dir():
        for stale in output_dir.rglob("*.tmp-*"):
            stale.unlink(missing_ok=True)


def _schema(front: Mapping[str, pl.DataType], kind_schema: pa.Schema) -> pl.Schema:
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
        if isinstance(dtype, pl.Datetime):
            return text.str.to_datetime(strict=False).cast(dtype, strict=False)
        return text
    return pl.Series(name, values, dtype=dtype, strict=False)


def _write(
    frames: Iterator[pl.DataFrame], path: Path, fmt: OutputFormat, schema: pl.Schema
) -> Path:
    tmp = _tmp(path)
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
        with tmp.open("wb") as out:
            first = True
            for frame in frames:
                _write_text(frame, out, fmt, header=first)
                first = False
            if first and fmt == "csv":
                _write_text(empty, out, fmt, header=True)
    os.replace(tmp, path)
    return path


def _write_text(frame: pl.DataFrame, out: Any, fmt: OutputFormat, *, header: bool) -> None:
    if fmt == "jsonl":
        frame.write_ndjson(out)
        return
    nested = [name for name, dtype in frame.schema.items() if dtype.is_nested()]
    frame = frame.with_columns(  # CSV has no nesting: such cells hold their JSON
        pl.Series(
            name,
            [None if v is None else orjson.dumps(v).decode() for v in frame[name].to_list()],
            dtype=pl.String,
        )
        for name in nested
    )
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    frame.with_columns(
        pl.when(pl.col(name).str.contains(_FORMULA_START))
        .then(pl.lit("'") + pl.col(name))
        .otherwise(pl.col(name))
        .alias(name)
        for name in text
    ).write_csv(out, include_header=header)


def _tmp(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")
