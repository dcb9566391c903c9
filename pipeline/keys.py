"""The key contract: which key columns are accepted, their one canonical text form, what is refused.

A key column is text (String, Categorical, Enum), an integer (Int8..Int64, UInt8..UInt64) or a
Date; any other type is refused (exit 2) with the column, its type, an example and the fix. Every
key is stored in the journal as text: integers as their decimal digits (``7`` -> ``"7"``), text as
itself, dates as ``YYYY-MM-DD``; so the int 7 of a Parquet file and the "7" of a CSV are one key.
A key value that is empty, has leading or trailing whitespace, holds a control character or is
longer than ``MAX_KEY_CHARS`` is refused too. Between runs, a change of the key's type family is
accepted where the text says which row is meant, and refused where it does not (``"007"`` against
integer keys). Everything here works on whole polars columns, never row by row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

from pipeline.errors import JobError

__all__ = [
    "MAX_KEY_CHARS",
    "Family",
    "KeyProblem",
    "ambiguous_pattern",
    "canonical",
    "canonical_pattern",
    "family",
    "family_error",
    "problems",
    "refuse_drift",
    "restore",
]

Family = Literal["text", "integer", "date"]
MAX_KEY_CHARS = 512
_INTEGERS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)
_FIX = "cast it to text or integer in the input, or pick another key column"
# What a key of each family looks like as text; the integer form also fits in an Int64.
_CANONICAL: dict[Family, str] = {
    "integer": r"^(0|-?[1-9][0-9]{0,17})$",
    "date": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    "text": r"",
}
# Text that reads as a value of the family but not in its canonical form: ambiguous.
_AMBIGUOUS: dict[Family, str] = {
    "integer": r"^(\+[0-9]+|-?0[0-9]+|-0|-?[0-9]+\.0*|-?[0-9]+[eE]\+?[0-9]+)$",
    "date": r"^[0-9]{1,4}[-/.][0-9]{1,2}[-/.][0-9]{1,4}$",
}
_CHECKS: tuple[tuple[str, pl.Expr], ...] = (
    ("empty", pl.col("k").str.len_bytes() == 0),
    ("leading or trailing whitespace", pl.col("k").str.contains(r"^\s|\s$")),
    ("a control character", pl.col("k").str.contains(r"[\x00-\x1f\x7f]")),
    (f"longer than {MAX_KEY_CHARS} characters", pl.col("k").str.len_chars() > MAX_KEY_CHARS),
)


def family(column: str, dtype: pl.DataType, example: object = None) -> Family:
    """The key family of a column type; JobError (``input.key``) for a type keys cannot have."""
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Categorical | pl.Enum):
        return "text"
    if dtype in _INTEGERS:
        return "integer"
    if dtype == pl.Date:
        return "date"
    raise family_error(column, dtype, example)


def family_error(column: str, dtype: pl.DataType, example: object) -> JobError:
    """The error for a key column of a type keys cannot have, with an example value."""
    shown = "" if example is None else f", e.g. {example!r}"
    return JobError(
        f"the key column {column!r} is {dtype}{shown}: keys must be text, integers or dates "
        f"(a float, decimal, time, list or binary key cannot name a row exactly); {_FIX}",
        field="input.key",
    )


def canonical(keys: pl.Series) -> pl.Series:
    """The keys as the journal stores them: text, one form per key (see the module docstring)."""
    if keys.dtype == pl.Date:
        return keys.dt.strftime("%Y-%m-%d")
    return keys.cast(pl.String)


def restore(keys: pl.Series, dtype: pl.DataType) -> pl.Series:
    """Canonical text keys back in the input's column type (for the output files)."""
    if dtype == pl.Date:
        return keys.str.to_date("%Y-%m-%d")
    return keys.cast(dtype)


@dataclass(frozen=True)
class KeyProblem:
    """Keys of one kind of malformation: how many, and the first one's position."""

    what: str
    rows: int
    first_index: int
    example: str


def problems(keys: pl.Series) -> list[KeyProblem]:
    """The malformations among canonical ``keys`` (a null is none of them), in check order."""
    checks = (
        keys.rename("k")
        .to_frame()
        .select(check.fill_null(False).alias(what) for what, check in _CHECKS)
    )
    found = []
    for what in checks.columns:
        bad = checks.get_column(what)
        count = int(bad.sum())
        if count:
            index = int(bad.arg_true()[0])
            found.append(KeyProblem(what, count, index, str(keys[index])))
    return found


def canonical_pattern(of: Family) -> str:
    """A regular expression matched by the canonical text of every key of a family."""
    return _CANONICAL[of]


def ambiguous_pattern(of: Family) -> str | None:
    """A regular expression for text keys that would read as a key of ``of`` in another form."""
    return _AMBIGUOUS.get(of)


def refuse_drift(stored: Family, now: Family, example: str | None, where: str) -> JobError:
    """The error for a key type change whose meaning cannot be decided."""
    if example is None:
        detail = f"no {now} key can name the same row as a {stored} key"
    else:
        detail = f"{example!r} ({where}) could be a different key from the same value as {stored}"
    return JobError(
        f"the key column changed from {stored} keys (earlier runs) to {now} keys: {detail}; "
        "results would hold one row twice. Make the key column the type it was (e.g. cast it "
        "to integer, or write the keys as the earlier runs did), or use a new output folder",
        field="input.key",
    )
