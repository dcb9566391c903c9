"""Whose an output folder is: the job it belongs to, the key family its journal holds, and adopting
the results and errors files of a folder whose journal was lost (``--rebuild-journal``).

Checked at the start of a run, before anything is sent: another job's folder, a key type change
whose meaning cannot be decided, or output files without a journal are each exit 2 (JobError).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import keys, readers
from pipeline.errors import JobError
from pipeline.job import JobSpec
from pipeline.journal import (
    JOB_IDENTITY,
    KEY_FAMILY,
    RESULT_COLUMNS,
    STATE_DIR,
    Journal,
    State,
    rows_held,
)
from pipeline.outcomes import ERROR_FIELDS
from pipeline.writers import csv_cell_value, csv_header_name, output_paths

KEY_DTYPE = "key_dtype"  # meta: the key column type every key held fits (the last one written)


def output_files(output_dir: Path) -> list[Path]:
    """The results and errors a run wrote in ``output_dir``, in any format: files, and the
    results.parquet folder of parts (or the single file an older version wrote)."""
    return [
        path
        for path in output_paths(output_dir)
        if path.is_file() or (path.suffix == ".parquet" and path.is_dir())
    ]


def check_journal_present(output_dir: Path, rebuild: bool) -> bool:
    """Whether the journal must be rebuilt from the output files; JobError when it is missing
    while outputs are there and the user did not say --rebuild-journal."""
    # A journal holding no row is as good as none: one a killed --rebuild-journal left, say.
    if rows_held(output_dir):
        if rebuild:
            raise JobError(
                f"--rebuild-journal: {output_dir} has its journal; run without the option",
                path=str(output_dir),
            )
        return False
    found = [path for path in output_files(output_dir) if _holds_rows(path)]
    audio = output_dir / "audio"  # a speech job's files, even with its results gone
    if audio.is_dir() and any(path.is_file() for path in audio.iterdir()):
        found.append(audio)
    if found and not rebuild:
        raise JobError(
            f"{output_dir} holds {', '.join(p.name for p in found)} but no journal "
            f"({STATE_DIR}/ was deleted?): a run would send every row again. Run with "
            "--rebuild-journal to adopt those results and errors, or use a new output folder",
            path=str(output_dir),
        )
    return bool(found)


def _holds_rows(path: Path) -> bool:
    """Whether an output file has a row (one that cannot be read counts: better to ask)."""
    try:
        if path.is_dir():
            return any(_holds_rows(part) for part in path.glob("*.parquet"))
        if path.suffix == ".parquet":
            return bool(pq.ParquetFile(path).metadata.num_rows)
        with path.open("rb") as handle:
            lines = (line for line in handle if line.strip())
            return next(lines, None) is not None and (
                path.suffix == ".jsonl" or next(lines, None) is not None  # a CSV has a header
            )
    except (OSError, pa.ArrowException):
        return True


def identity(job: JobSpec) -> dict[str, str]:
    return {"kind": job.kind, "key": job.input.key, "name": job.name}


def claim(journal: Journal, job: JobSpec) -> None:
    """Record the job the folder belongs to, or JobError if it belongs to another one. A journal
    written before identities were recorded adopts this job."""
    mine = identity(job)
    theirs = journal.meta(JOB_IDENTITY)
    if theirs is None:
        journal.set_meta(JOB_IDENTITY, mine)
        return
    if theirs != mine:
        raise JobError(
            f"the output folder {job.output.dir} belongs to another job ({_describe(theirs)}); "
            f"this one is {_describe(mine)}: use a new output folder, or, if it is the same job "
            f'renamed, set name = "{theirs.get("name")}" (an output folder holds one job)',
            path=str(job.path),
            field="output.dir",
        )


def _describe(who: dict[str, Any]) -> str:
    return f"{who.get('kind')} job {who.get('name')!r} keyed by {who.get('key')!r}"


def check_key_family(journal: Journal, info: readers.InputInfo, key: str) -> keys.Family:
    """Record the input's key family, or reconcile it with the journal's; returns the family of
    the keys the journal holds from now on. JobError where a key's meaning cannot be decided."""
    now: keys.Family = info.key_family
    stored: keys.Family | None = journal.meta(KEY_FAMILY)
    if stored is None or journal.next_seq == 1:  # nothing held yet: the input decides
        journal.set_meta(KEY_FAMILY, now)
        return now
    if stored == now:
        return now
    if "text" not in (stored, now):  # integer <-> date: no value names the same row in both
        raise keys.refuse_drift(stored, now, None, "")
    typed: keys.Family = now if stored == "text" else stored
    ambiguous = keys.ambiguous_pattern(typed)
    assert ambiguous is not None
    if stored == "text":  # the journal's text keys against typed keys now
        example = journal.first_key("key REGEXP ?", ambiguous)
        if example is not None:
            raise keys.refuse_drift(stored, now, example, "in the journal")
        untyped = journal.first_key("NOT key REGEXP ?", keys.canonical_pattern(now))
        if now == "date" and untyped is None:  # 2024-02-30 has the form but is no date
            untyped = journal.first_key("date(key) IS NOT key")
        merged: keys.Family = now if untyped is None else "text"
    else:  # typed keys in the journal, text keys in the input now
        found = _first_text_key(info, key, ambiguous)
        if found is not None:
            raise keys.refuse_drift(stored, now, found[0], f"row {found[2]} of {found[1]}")
        merged = "text"
    journal.set_meta(KEY_FAMILY, merged)
    return merged


def _first_text_key(
    info: readers.InputInfo, key: str, pattern: str
) -> tuple[str, Path, int] | None:
    """The first input key that matches ``pattern``, with its file and data row."""
    for file, start, names in readers.key_frames(info.files, key, info.schema[key]):
        hits = names.str.contains(pattern).fill_null(False)
        if hits.any():
            index = int(hits.arg_true()[0])
            return str(names[index]), file, start + index + 1
    return None


def key_dtype(
    journal: Journal, info: readers.InputInfo, key: str, family: keys.Family
) -> pl.DataType:
    """The key column's type in the output files: the input's, unless a key the journal holds
    (from an earlier run or input) does not fit it; then the family's widest type, or text."""
    chosen = _key_dtype(journal, info.schema[key], family != info.key_family)
    journal.set_meta(KEY_DTYPE, str(chosen))
    return chosen


def _key_dtype(journal: Journal, dtype: pl.DataType, mixed: bool) -> pl.DataType:
    if mixed:
        return pl.String()
    if journal.meta(KEY_DTYPE) == str(dtype):  # every key held fits it already
        return dtype
    if isinstance(dtype, pl.Enum):
        categories = orjson.dumps(dtype.categories.to_list()).decode()
        outside = journal.first_key("key NOT IN (SELECT value FROM json_each(?))", categories)
        return pl.String() if outside is not None else dtype
    if not dtype.is_integer():
        return dtype
    bounds = journal.key_bounds()
    for candidate in (dtype, pl.Int64(), pl.UInt64()):
        assert isinstance(candidate, pl.datatypes.IntegerType)  # the integer family
        low, high = pl.select(candidate.min().alias("low"), candidate.max().alias("high")).row(0)
        if bounds is None or (low <= bounds[0] and bounds[1] <= high):
            return candidate
    return pl.String()


def adopt_outputs(journal: Journal, job: JobSpec, result_schema: pa.Schema) -> int:
    """Record the keys of the results and errors as done and failed, in one transaction;
    returns how many. The results are held in the journal until the run flushes them again
    (in this version's layout: a folder of parts is read as one table, an older single file
    too). Files of the job's output format are read (else those of the format found); on any
    error the new journal is deleted, so the folder is as it was."""
    found = output_files(job.output.dir)
    mine = [p for p in found if p.suffix == f".{job.output.format}"]
    paths = mine or [p for p in found if p.suffix == found[0].suffix]
    try:
        journal.set_meta(RESULT_COLUMNS, result_schema.names)
        rows = (
            row
            for path in paths
            for row in _adopted_rows(
                path, "done" if path.stem == "results" else "failed", job, result_schema
            )
        )
        adopted = journal.adopt(rows)
        if "audio_path" in result_schema.names:  # the adopted keys own their audio files
            journal.adopt_names(_audio_names(paths, job.input.key))
        return adopted
    except BaseException:
        journal.discard()
        raise


def _adopted_rows(
    path: Path, state: State, job: JobSpec, result_schema: pa.Schema
) -> Iterator[tuple[str, State, dict[str, Any], Any, int]]:
    key, keep = job.input.key, job.input.keep
    frame = _read_output(path, key)
    names = result_schema.names if state == "done" else ERROR_FIELDS
    missing = [name for name in (key, *names) if name not in frame.columns]
    if missing:
        raise JobError(
            f"{path} has no column {missing[0]!r}: it was not written by this job (a "
            f"{job.kind} job keyed by {key!r}); move it away or use a new output folder",
            path=str(path),
        )
    canonical = keys.canonical(frame.get_column(key))
    for row_key, row in zip(canonical.to_list(), frame.iter_rows(named=True), strict=True):
        kept = {col: row.get(col) for col in keep}
        if state == "done":
            value: Any = [row.get(name) for name in names]
        else:
            value = {name: row.get(name) for name in names}
        yield row_key, state, kept, value, int(row.get("attempts") or 0)


def _audio_names(paths: list[Path], key: str) -> Iterator[tuple[str, str]]:
    """(key, file name) of each adopted result's ``audio_path``."""
    for path in paths:
        if path.stem == "results":
            frame = _read_output(path, key).drop_nulls("audio_path")
            names = frame.get_column("audio_path").str.split("/").list.last()
            yield from zip(
                keys.canonical(frame.get_column(key)).to_list(), names.to_list(), strict=True
            )


def _read_output(path: Path, key: str) -> pl.DataFrame:
    try:
        if path.suffix == ".parquet":
            return pl.read_parquet(path)
        if path.suffix == ".jsonl":
            return pl.read_ndjson(path)
        # The key as written ("007" stays "007"); the other columns by inference.
        frame = pl.read_csv(
            path, infer_schema_length=None, schema_overrides={csv_header_name(key): pl.String}
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise JobError(f"--rebuild-journal cannot read {path}: {exc}", path=str(path)) from exc
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    return frame.with_columns(  # undo the writer's neutralising apostrophe, exactly once
        pl.when(pl.col(name).str.starts_with("'"))
        .then(pl.col(name).str.slice(1))
        .otherwise(pl.col(name))
        for name in text
    ).rename(csv_cell_value)
