"""Everything that can make the outputs fail, checked before the first request is paid for.

- The output folder: not a file; not an input folder, nor inside one, nor where the input's glob
  would read the results back; no input file where a run writes (results, errors, audio/,
  .pipeline/); writable (a run creates ``.pipeline/tmp``
  and a file in it).
- ``input.keep``: not the key, not a result or error column, no column twice; every kept column's
  type survives the journal (JSON) and the writer: its first value goes the way a run's would,
  into an output file of the job's format (in memory), and must come back equal.
- The input (a full run): every column the run needs reads to the end, so a file corrupt in the
  middle stops the job now, not after every row was sent. A ``--limit`` run reads only what it
  needs, so it skips this.

Each problem is a ``JobError`` (exit 2) naming the field and the fix.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import NoReturn

import polars as pl

from pipeline import readers
from pipeline.errors import JobError
from pipeline.job import JobSpec
from pipeline.kinds import Kind
from pipeline.outcomes import ERROR_SCHEMA
from pipeline.writers import output_paths, probe_keep, temporary_folder

_WRITTEN_FOLDERS = ("audio", ".pipeline")  # what a run writes inside the output folder
FRAME_INPUTS = Path(".pipeline", "input")  # the Python API's frames: a run reads, never writes
_SAMPLE_ROWS = 1_000


def check(job: JobSpec, kind: Kind, info: readers.InputInfo, *, create: bool, full: bool) -> None:
    """Raise JobError for the first thing that would make this job's outputs fail.

    ``create``: probe the output folder by creating ``.pipeline/tmp`` (a run); else only look
    (validate). ``full``: read every needed column to the end (not for --limit runs)."""
    check_output_folder(job, info.files, create=create)
    check_keep(job, kind, info)
    if full:
        needed = [*job.input.keep, *sorted(kind.columns)]
        columns = [col for col in dict.fromkeys(needed) if col != job.input.key]
        try:
            readers.check_readable(info.files, columns)
        except JobError as error:
            raise JobError(error.message, path=str(job.path), field=error.field) from None


def check_output_folder(job: JobSpec, files: tuple[Path, ...], *, create: bool) -> None:
    out = job.output.dir.resolve()
    if out.exists() and not out.is_dir():
        _fail(job, f"{out} is a file, not a folder; point output.dir at a folder (or move it)")
    fmt = job.output.format
    # results.parquet is a folder of parts; every other output is one file
    files_written = [f"errors.{fmt}", "summary.json"] + (
        [] if fmt == "parquet" else [f"results.{fmt}"]
    )
    for name in files_written:
        if (out / name).is_dir():
            _fail(job, f"{out / name} is a folder, so it cannot be replaced; move it away")
    written = output_paths(out)  # results.parquet: the folder, and every part in it
    for file in map(Path.resolve, files):  # a data file kept beside the outputs is fine
        if file.is_relative_to(out / FRAME_INPUTS):
            continue
        if any(file.is_relative_to(path) for path in written) or any(
            file.is_relative_to(out / sub) for sub in _WRITTEN_FOLDERS
        ):
            _fail(
                job,
                f"the input file {file} is where the pipeline writes its outputs in {out}: it "
                "would be overwritten or read back as input; move it, or choose another "
                "output.dir",
            )
    _check_not_read_back(job, out)
    if create:
        _check_writable(job, out)
    else:
        existing = next(parent for parent in (out, *out.parents) if parent.exists())
        if not os.access(existing, os.W_OK | os.X_OK):
            _fail(job, f"cannot write {existing}; fix its permissions or choose another dir")


def _check_not_read_back(job: JobSpec, out: Path) -> None:
    """The output folder must not be (or be inside) an input folder, nor match its glob."""
    pattern = job.input.path
    target = Path(pattern).expanduser()
    if not target.is_absolute():
        target = job.base_dir / target
    if any(char in pattern for char in "*?["):
        outputs = output_paths(out)
        absolute = os.path.normpath(target)  # "a/../b/*" as glob reads it
        hit = next((path for path in outputs if _glob_matches(absolute, path)), None)
        if hit is None:
            return
        problem = f"the input glob {pattern!r} would read the output {hit} back as input"
    elif target.is_dir() and out.is_relative_to(target.resolve()):
        problem = f"the output folder {out} is inside the input folder {target}"
    else:
        return
    _fail(job, f"{problem}; choose an output.dir outside the input")


def _glob_matches(pattern: str, path: Path) -> bool:
    """Whether ``glob.glob(pattern, recursive=True)`` would list ``path`` once it exists."""
    parts = Path(pattern).parts
    names = path.parts

    def one(name: str, part: str) -> bool:  # glob's wildcards skip hidden names
        return fnmatch.fnmatchcase(name, part) and (part[:1] == "." or name[:1] != ".")

    def match(i: int, j: int) -> bool:
        if i == len(parts):
            return j == len(names)
        if parts[i] == "**":
            hidden = next((k for k in range(j, len(names)) if names[k][:1] == "."), len(names))
            return any(match(i + 1, k) for k in range(j, hidden + 1))
        return j < len(names) and one(names[j], parts[i]) and match(i + 1, j + 1)

    return match(0, 0)


def _check_writable(job: JobSpec, out: Path) -> None:
    folder = temporary_folder(out)
    probe = folder / f"probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as exc:
        _fail(
            job,
            f"cannot write the output folder {out} ({exc.strerror or exc}); fix its "
            "permissions, free space, or choose another output.dir",
        )


def check_keep(job: JobSpec, kind: Kind, info: readers.InputInfo) -> None:
    """Every keep column can be copied into results and errors, by name and by type."""
    keep, key = job.input.keep, job.input.key
    taken = {name: f"a result column of {kind.name}" for name in kind.result_schema.names}
    taken |= {name: "a column of the errors file" for name in ERROR_SCHEMA.names}
    taken[key] = "the key, which results carry already"
    for index, column in enumerate(keep):
        if column in keep[:index]:
            _fail(job, f"names {column!r} twice; name each column once", "input.keep")
        if column in taken:
            _fail(
                job,
                f"names {column!r}, {taken[column]}; drop it from keep (or rename the input "
                "column)",
                "input.keep",
            )
    if keep:
        _probe_types(job, info)


def _probe_types(job: JobSpec, info: readers.InputInfo) -> None:
    keep = list(job.input.keep)
    batches = readers.iter_batches(info.files, keep, _SAMPLE_ROWS)
    try:
        sample = next(batches, None)
    except JobError as error:
        raise JobError(error.message, path=str(job.path), field=error.field) from None
    finally:
        del batches  # a generator: dropping it stops the read
    for column in keep:
        dtype = info.schema[column]
        reason = probe_keep(column, dtype, _first_value(sample, column, dtype), job.output.format)
        if reason is not None:
            _fail(
                job,
                f"keeps column {column!r} of type {dtype}, which the outputs cannot hold: "
                f"{reason}; cast it in the input (e.g. to a string) or drop it from keep",
                "input.keep",
            )


def _first_value(sample: pl.DataFrame | None, column: str, dtype: pl.DataType) -> pl.Series:
    """The column's first value that is not null (nor NaN), as a one-value Series."""
    if sample is None:
        return pl.Series(column, [None], dtype=dtype)
    values = sample.get_column(column).drop_nulls()
    if dtype.is_float():
        values = values.drop_nans()
    return values.head(1) if len(values) else sample.get_column(column).head(1)


def _fail(job: JobSpec, message: str, field: str = "output.dir") -> NoReturn:
    raise JobError(message, path=str(job.path), field=field)
