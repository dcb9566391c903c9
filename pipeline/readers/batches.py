"""An input's files as one table: the schema they share, and their columns streamed in batches."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from pathlib import Path

import polars as pl

from pipeline.errors import JobError
from pipeline.readers.parsing import file_schema, read_file

_CHECK_PASS_ROWS = 100_000


def iter_batches(
    files: tuple[Path, ...], columns: list[str], batch_size: int = 10_000
) -> Iterator[pl.DataFrame]:
    """Stream ``columns`` of all files, in file order, as frames of ``batch_size`` rows.

    Every batch but the last has exactly ``batch_size`` rows (batches span file boundaries);
    empty input yields nothing. Columns come in the order given. Raises ``JobError`` for a
    missing column, disagreeing files or a file that cannot be parsed.
    """
    if batch_size < 1 or not columns:
        raise ValueError(f"need a batch_size >= 1 and some columns: {batch_size}, {columns}")
    schema = common_schema(files)
    for column in columns:
        if column not in schema:
            raise JobError(missing_column_message(column, schema))
    wanted = {column: schema[column] for column in columns}  # a column named twice comes once
    frames = (frame for file in files for frame in read_file(file, wanted, batch_size))
    yield from _exact_batches(frames, batch_size)


def check_readable(files: tuple[Path, ...], columns: list[str]) -> None:
    """Read every value of ``columns`` once and drop it, so a file corrupt in the middle (a bad
    page, a broken line) is found before any request is paid for; ``JobError`` names the file.

    ``inspect`` reads only the key column; this reads the others the run will need.
    """
    schema = common_schema(files)
    wanted = {column: schema[column] for column in columns if column in schema}
    if wanted:
        for file in files:
            for _ in read_file(file, wanted, _CHECK_PASS_ROWS):
                pass


def common_schema(files: tuple[Path, ...]) -> dict[str, pl.DataType]:
    """The schema of the first file, after checking every other file has the same one."""
    if not files:
        raise JobError("the input has no file", field="input.path")
    first = files[0]
    schema = file_schema(first)
    for file in files[1:]:
        other = file_schema(file)
        if set(other) != set(schema):
            missing = ", ".join(c for c in schema if c not in other) or "none"
            extra = ", ".join(c for c in other if c not in schema) or "none"
            raise JobError(
                f"{file} does not have the columns of {first} (missing: {missing}; extra: "
                f"{extra}); all files of one input need the same columns",
                field="input.path",
            )
        for column, dtype in schema.items():
            if other[column] != dtype:
                raise JobError(
                    f"column {column!r} is {dtype} in {first} but {other[column]} in {file}; "
                    "all files of one input need the same column types",
                    field="input.path",
                )
    return schema


def missing_column_message(column: str, schema: dict[str, pl.DataType]) -> str:
    """Says which columns there are, and the closest name if one is close."""
    available = ", ".join(schema) or "(none)"
    close = difflib.get_close_matches(column, list(schema), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"the input has no column {column!r}; its columns are: {available}{hint}"


def _exact_batches(frames: Iterable[pl.DataFrame], size: int) -> Iterator[pl.DataFrame]:
    """``frames`` re-cut so every batch but the last has exactly ``size`` rows."""
    pending: list[pl.DataFrame] = []
    held = 0
    for frame in frames:
        while frame.height:
            take = min(size - held, frame.height)
            pending.append(frame.slice(0, take))
            held += take
            frame = frame.slice(take)
            if held == size:
                yield pl.concat(pending, rechunk=True)
                pending, held = [], 0
    if held:
        yield pl.concat(pending, rechunk=True)
