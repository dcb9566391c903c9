"""The key column checked over the whole input: present, of an accepted type, never null,
well formed and unique, streamed so memory holds a 64-bit hash a row and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from pipeline import keys as key_contract
from pipeline.errors import JobError
from pipeline.readers.batches import common_schema, missing_column_message
from pipeline.readers.files import file_format
from pipeline.readers.parsing import READ_ERRORS, read_file, unreadable_error

_KEY_PASS_ROWS = 100_000
# what -> (rows, file, data row, example): the first malformed key of each kind, and a count
_MalformedTally = dict[str, tuple[int, Path, int, str]]


@dataclass(frozen=True)
class InputInfo:
    """What ``inspect`` learnt about an input: its files, columns and row count."""

    files: tuple[Path, ...]
    schema: dict[str, pl.DataType]
    rows: int
    key_family: key_contract.Family = "text"


def inspect(files: tuple[Path, ...], key: str, *, check_rows: int | None = None) -> InputInfo:
    """Read the schemas, count the rows and check that ``key`` names every row exactly once.

    Streams the key column only. Raises ``JobError``: an unreadable or empty file, files whose
    columns disagree (``input.path``), a missing key column, a key type or key value the key
    contract (``pipeline.keys``) refuses, null keys or duplicate keys (``input.key``). Keys are
    compared in their canonical text form. With ``check_rows`` only the keys of the first
    ``check_rows`` rows are checked (a run that reads no further need not read every key of a
    huge input), and Parquet rows are counted from the files' metadata.
    """
    schema = common_schema(files)
    if key not in schema:
        raise JobError(missing_column_message(key, schema), field="input.key")
    dtype = schema[key]
    family = _key_family(files, key, dtype)
    hashes: list[pl.Series] = []
    rows = nulls = 0
    first_null: tuple[Path, int] | None = None
    malformed: _MalformedTally = {}
    for file, start, keys in key_frames(files, key, dtype, check_rows):
        rows += len(keys)
        _tally_malformed(malformed, file, start, keys)
        if keys.null_count():
            nulls += keys.null_count()
            if first_null is None:
                first_null = (file, start + int(keys.is_null().arg_true()[0]) + 1)
            keys = keys.drop_nulls()
        hashes.append(keys.hash(seed=0))
    if first_null is not None:
        file, row = first_null
        raise JobError(
            f"the key column {key!r} is empty in {nulls} row(s), the first in data row {row} "
            f"of {file}; every row needs a key",
            field="input.key",
        )
    _refuse_malformed_keys(key, malformed)
    if hashes:
        repeated = _repeated_hashes(hashes)
        if len(repeated):
            _refuse_duplicate_keys(files, key, dtype, repeated, check_rows)
    if check_rows is not None:
        rows = sum(_count_rows(file, key, dtype) for file in files)
    return InputInfo(files=files, schema=schema, rows=rows, key_family=family)


def key_frames(
    files: tuple[Path, ...], key: str, dtype: pl.DataType, max_rows: int | None = None
) -> Iterator[tuple[Path, int, pl.Series]]:
    """(file, rows of that file before, canonical keys) over the first ``max_rows`` rows (all:
    None), streamed: the key column alone."""
    left = max_rows
    for file in files:
        start = 0
        for frame in read_file(file, {key: dtype}, _KEY_PASS_ROWS):
            if left is not None:
                if left <= 0:
                    return
                frame = frame.head(left)
                left -= frame.height
            yield file, start, key_contract.canonical(frame.get_column(key))
            start += frame.height


def _key_family(files: tuple[Path, ...], key: str, dtype: pl.DataType) -> key_contract.Family:
    """The key's family; a refused type is shown with its first value as an example."""
    try:
        return key_contract.family(key, dtype)
    except JobError:
        example = None
        for frame in read_file(files[0], {key: dtype}, 100):
            values = frame.get_column(key).drop_nulls()
            example = values.to_list()[0] if len(values) else None
            break
        raise key_contract.family_error(key, dtype, example) from None


def _tally_malformed(malformed: _MalformedTally, file: Path, start: int, keys: pl.Series) -> None:
    """Count this frame's malformed keys into ``malformed``, keeping each kind's first one."""
    for problem in key_contract.problems(keys):
        row = start + problem.first_index + 1
        count, at, line, example = malformed.get(problem.what, (0, file, row, problem.example))
        malformed[problem.what] = (count + problem.rows, at, line, example)


def _refuse_malformed_keys(key: str, malformed: _MalformedTally) -> None:
    if not malformed:
        return
    what, (count, file, row, example) = next(iter(malformed.items()))
    others = "; other malformed keys too" if len(malformed) > 1 else ""
    raise JobError(
        f"the key column {key!r} has {count} malformed key(s) ({what}), the first "
        f"{example[:80]!r} in data row {row} of {file}{others}; a key must be a plain value: "
        "fix or strip the keys "
        "(a CSV saved with Windows line ends and a key as its last column leaves '\\r' on it)",
        field="input.key",
    )


def _repeated_hashes(hashes: list[pl.Series]) -> pl.Series:
    """The key hashes seen more than once; ``hashes`` is emptied to free it while sorting."""
    ordered = pl.concat(hashes)
    hashes.clear()
    # Sorting finds repeats in place; is_duplicated's hash table costs ~70 bytes a row.
    ordered.sort(in_place=True)
    return ordered.filter((ordered == ordered.shift(1)).fill_null(False)).unique()


def _refuse_duplicate_keys(
    files: tuple[Path, ...],
    key: str,
    dtype: pl.DataType,
    repeated: pl.Series,
    max_rows: int | None,
) -> None:
    """Second pass over the key column, only for the keys whose hashes collided."""
    suspects: list[pl.Series] = []
    for _, _, keys in key_frames(files, key, dtype, max_rows):
        keys = keys.drop_nulls()
        suspects.append(keys.filter(keys.hash(seed=0).is_in(repeated.implode())))
    values = pl.concat(suspects)
    duplicated = values.filter(values.is_duplicated())
    if not len(duplicated):
        return  # distinct keys that merely share a hash
    distinct = duplicated.unique(maintain_order=True)
    quoted = key_contract.family(key, dtype) == "text"  # integers and dates show unquoted
    shown = ", ".join(repr(v) if quoted else v for v in distinct.head(3).to_list())
    raise JobError(
        f"the key column {key!r} has {len(distinct)} value(s) used by more than one row "
        f"({len(duplicated)} rows in all), e.g. {shown}; keys must be unique because results "
        "join back on them",
        field="input.key",
    )


def _count_rows(file: Path, key: str, dtype: pl.DataType) -> int:
    if file_format(file) == "parquet":
        try:
            return int(pq.ParquetFile(file).metadata.num_rows)
        except READ_ERRORS as exc:
            raise unreadable_error(file, "parquet", exc) from exc
    return sum(frame.height for frame in read_file(file, {key: dtype}, _KEY_PASS_ROWS))
