"""The Python API's DataFrame helpers: ``moderate`` and ``speak`` a polars or pandas frame.

A call is a real job: the frame is written as the Parquet input of an output folder the caller
names (``<output_dir>/.pipeline/input/frame.parquet``), the job runs with the journal and guarantees
of ``pipeline run`` (a rerun, or a frame with more rows, sends only what is new), and the
answers come back joined on the key, one row per row of the frame, in its order.

Error rows are kept: their result columns are null and the ``error_*`` columns (``error_type``,
``error_message``, ...: the errors file's, prefixed) say what happened; a done row has a null
``error_type``. A result column whose name the frame already uses gets the suffix ``_result``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from pipeline.errors import JobError, PipelineError
from pipeline.journal import OutputLock
from pipeline.preflight import FRAME_INPUTS
from pipeline.python_api import Summary, run

FRAME_FILE = "frame.parquet"  # the frame as the job's input, in the folder's FRAME_INPUTS
SUFFIX = "_result"


class RunStopped(PipelineError):
    """The run stopped before every row of the frame was answered (the API refused the key or
    the quota, or a bound such as ``max_requests``); ``summary`` says why. Call again to resume."""

    def __init__(self, summary: Summary) -> None:
        self.summary = summary
        fatal = summary.data.get("fatal_error") or {}
        why = fatal.get("message") or summary.data.get("stopped_by") or summary.outcome
        super().__init__(
            f"the run stopped before every row was answered ({why}); "
            f"{summary.rows['done']} done, {summary.rows['failed']} failed, "
            f"{summary.rows['pending'] + summary.rows['unread']} left: call again to resume"
        )


def moderate(
    df: Any,
    *,
    output_dir: str | os.PathLike[str],
    text: str = "text",
    key: str = "id",
    model: str = "omni-moderation-latest",
    rows_per_request: int = 1,
    base_url: str | None = None,
    **api: Any,
) -> pl.DataFrame:
    """Moderate column ``text`` of ``df`` (polars or pandas), one row per ``key``; the frame with
    the moderation columns (``flagged``, ``flag_*``, ``score_*``) and the ``error_*`` columns.

    ``api`` are ``[api]`` settings (``concurrency``, ``requests_per_minute``, ``max_attempts``,
    ``timeout_s``...); ``base_url="local"`` runs the embedded emulator. Raises JobError (a
    missing column, duplicate or null keys, a bad setting), RunStopped, LockedError."""
    job = {
        "kind": "moderation",
        "name": "dataframe-moderation",
        "request": {"model": model, "input": "{" + text + "}"},
        "moderation": {"rows_per_request": rows_per_request},
    }
    return _run_frame(df, job, output_dir, key, (text,), base_url, api)


def speak(
    df: Any,
    *,
    output_dir: str | os.PathLike[str],
    text: str = "text",
    key: str = "id",
    model: str = "gpt-4o-mini-tts",
    voice: str = "alloy",
    response_format: str = "mp3",
    base_url: str | None = None,
    request: Mapping[str, Any] | None = None,
    **api: Any,
) -> pl.DataFrame:
    """Narrate column ``text`` of ``df`` into ``<output_dir>/audio/``; the frame with the speech
    columns (``audio_path``, ``duration_s``, ...) and the ``error_*`` columns.

    ``voice`` (and any value of ``request``: ``instructions``, ``speed``) may name a column as
    ``"{column}"``. ``api`` as for ``moderate``; raises as ``moderate`` does."""
    body = {"model": model, "input": "{" + text + "}", "voice": voice}
    body |= {"response_format": response_format, **(request or {})}
    job = {"kind": "speech", "name": "dataframe-speech", "request": body}
    return _run_frame(df, job, output_dir, key, (text,), base_url, api)


def _run_frame(
    df: Any,
    job: dict[str, Any],
    output_dir: str | os.PathLike[str],
    key: str,
    needed: tuple[str, ...],
    base_url: str | None,
    api: Mapping[str, Any],
) -> pl.DataFrame:
    frame = as_polars(df, key)
    for name, column in (("key", key), *(("text", c) for c in needed)):
        if column not in frame.columns:
            raise JobError(
                f"the frame has no column {column!r}; its columns: {', '.join(frame.columns)}",
                field=name,
            )
    folder = Path(output_dir).resolve()
    source = _write_input(frame, folder)
    job = {
        **job,
        "input": {"path": str(source), "key": key},
        "output": {"dir": str(folder), "format": "parquet"},
        "api": dict(api),
    }
    summary = run(job, base_url=base_url)
    if summary.outcome not in ("completed", "completed_with_errors"):
        raise RunStopped(summary)
    return joined(frame, key, summary)


def as_polars(df: Any, key: str) -> pl.DataFrame:
    """A polars frame from a polars (lazy) frame, a pandas frame (through pyarrow, its index too
    when it is named ``key``), or what ``pl.DataFrame`` takes (a dict of columns)."""
    if isinstance(df, pl.DataFrame):
        return df
    if isinstance(df, pl.LazyFrame):
        return df.collect()
    if type(df).__module__.partition(".")[0] == "pandas":
        index_named_key = getattr(df.index, "name", None) == key and key not in df.columns
        try:
            return pl.from_pandas(df, include_index=index_named_key)
        except (pa.ArrowException, TypeError, ValueError) as error:  # an object column, say
            raise JobError(f"cannot read the pandas frame through pyarrow: {error}") from None
    try:
        return pl.DataFrame(df)
    except (TypeError, ValueError) as error:
        raise JobError(
            f"expected a polars or pandas DataFrame, got {type(df).__name__} ({error})"
        ) from None


def _write_input(frame: pl.DataFrame, folder: Path) -> Path:
    """The frame as the job's Parquet input, replaced whole (temp file + ``os.replace``);
    LockedError if a run holds the folder (its input must not change under it)."""
    state = folder / FRAME_INPUTS
    state.mkdir(parents=True, exist_ok=True)
    lock = OutputLock(folder)
    lock.acquire()  # released before the run takes it: one caller writes the input at a time
    try:
        target = state / FRAME_FILE
        partial = state / f"{FRAME_FILE}.{os.getpid()}.partial"
        try:
            frame.write_parquet(partial)
        except (pl.exceptions.PolarsError, OSError) as error:
            partial.unlink(missing_ok=True)
            message = f"cannot write the frame as Parquet: {error}"
            raise JobError(message, path=str(partial)) from None
        os.replace(partial, target)
    finally:
        lock.release()
    return target


def joined(frame: pl.DataFrame, key: str, summary: Summary) -> pl.DataFrame:
    """The frame, left-joined on ``key`` with its rows' results or errors (every key is in
    exactly one of them); the results of keys no longer in the frame are left out."""
    errors = _read(summary.errors)
    if errors is not None:
        errors = errors.rename({c: _error_name(c) for c in errors.columns if c != key})
    parts = [part for part in (_read(summary.results), errors) if part is not None]
    if not parts:
        return frame
    answers = pl.concat(parts, how="diagonal_relaxed")
    answers = answers.with_columns(pl.col(key).cast(frame.schema[key]))
    renamed = {c: f"{c}{SUFFIX}" for c in answers.columns if c != key and c in frame.columns}
    return frame.join(answers.rename(renamed), on=key, how="left", maintain_order="left")


def _error_name(column: str) -> str:
    return column if column.startswith("error_") else f"error_{column}"


def _read(path: Path) -> pl.DataFrame | None:
    """A results or errors output (a file, or a folder of parts); None when it holds nothing."""
    if path.is_dir():
        return pl.read_parquet(path) if any(path.glob("*.parquet")) else None
    return pl.read_parquet(path) if path.is_file() else None
