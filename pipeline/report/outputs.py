"""What a report reads from an output folder: summary.json, the results (a folder of parts, or
one csv / jsonl file) and errors as lazy frames typed by the kind's schema, and the timeline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from pipeline.errors import JobError
from pipeline.kinds import kind_classes
from pipeline.outcomes import ERROR_SCHEMA
from pipeline.timeline import read_timeline

SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class Outputs:
    """One output folder, read lazily: a frame is scanned only when a section aggregates it."""

    dir: Path
    summary: dict[str, Any]
    results: pl.LazyFrame
    errors: pl.LazyFrame
    key: str  # the key column's name (the first column of both files)
    keep: tuple[str, ...]  # the job's keep columns, after the key in both files
    timeline_header: dict[str, Any]
    samples: list[dict[str, Any]]

    @property
    def kind(self) -> str:
        return str(self.summary["kind"])


def read_outputs(output_dir: Path) -> Outputs:
    """The folder's outputs; JobError (exit 2) when it holds no summary.json of a run."""
    summary_path = output_dir / SUMMARY_FILE
    try:
        summary = orjson.loads(summary_path.read_bytes())
    except FileNotFoundError:
        raise JobError(
            f"{output_dir} holds no {SUMMARY_FILE}: run the job first (pipeline run JOB.toml)",
            path=str(output_dir),
        ) from None
    except (OSError, orjson.JSONDecodeError) as error:
        raise JobError(f"{summary_path} cannot be read: {error}", path=str(summary_path)) from None
    kinds = kind_classes()
    if not isinstance(summary, dict) or summary.get("kind") not in kinds:
        raise JobError(f"{summary_path} is not a pipeline run's summary", path=str(summary_path))
    kind_schema = pl.DataFrame(kinds[summary["kind"]].result_schema.empty_table()).schema
    error_schema = pl.DataFrame(ERROR_SCHEMA.empty_table()).schema
    outputs = summary.get("outputs") or {}
    results = _scan(output_dir / outputs.get("results", "results.parquet"), kind_schema)
    errors = _scan(output_dir / outputs.get("errors", "errors.parquet"), error_schema)
    columns = results.collect_schema().names()
    first_kind_column = next(iter(kind_schema))
    if first_kind_column in columns:
        key, keep = columns[0], tuple(columns[1 : columns.index(first_kind_column)])
    else:  # no result yet: the errors file names them
        names = errors.collect_schema().names()
        first_error_column = next(iter(error_schema))
        stop = names.index(first_error_column) if first_error_column in names else 1
        key, keep = (names[0] if names else "key"), tuple(names[1:stop])
    header, samples = read_timeline(output_dir)
    return Outputs(output_dir, summary, results, errors, key, keep, header, samples)


def _scan(path: Path, schema: pl.Schema) -> pl.LazyFrame:
    """A results or errors output as a lazy frame, the kind's columns cast to their types; an
    output not written yet is an empty frame of those columns."""
    suffix = path.suffix
    if suffix == ".parquet":
        files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
        files = [file for file in files if file.is_file()]
        if not files:
            return pl.LazyFrame(schema=schema)
        return pl.scan_parquet(files)
    if not path.is_file() or path.stat().st_size == 0:
        return pl.LazyFrame(schema=schema)
    if suffix == ".jsonl":
        frame = pl.scan_ndjson(path, infer_schema_length=None)
    else:  # csv: every cell text; a spreadsheet-neutralising apostrophe taken off
        frame = pl.scan_csv(path, infer_schema=False)
        frame = frame.with_columns(
            pl.when(pl.col(pl.String).str.starts_with("'"))
            .then(pl.col(pl.String).str.slice(1))
            .otherwise(pl.col(pl.String))
        )
    present = frame.collect_schema().names()
    return frame.with_columns(
        _cast(name, dtype) for name, dtype in schema.items() if name in present
    )


def _cast(name: str, dtype: pl.DataType) -> pl.Expr:
    column = pl.col(name)
    if dtype == pl.Boolean:
        text = column.cast(pl.String).str.to_lowercase()
        return text.replace_strict({"true": True, "false": False}, default=None).alias(name)
    return column.cast(dtype, strict=False)
