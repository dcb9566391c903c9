"""What became of one row: its result columns, or the one definition of an error row.

Every writer, the journal and ``--rebuild-journal`` take the errors file's columns from
``ERROR_SCHEMA``, which is derived from ``Failure``: a new field there is a new column everywhere.
Stages: ``build`` (the row could not become a request), ``request`` (the API refused it or
retries ran out), ``response`` (the answer was unusable), ``run`` (a run or response ended
otherwise than completed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import pyarrow as pa

from pipeline.errors import ApiError

Stage = Literal["build", "request", "response", "run"]


@dataclass(frozen=True)
class Success:
    """The kind's result columns for one row, and what it adds to the run's totals."""

    columns: Mapping[str, Any]
    counts: Mapping[str, float] = field(default_factory=dict)  # summary.json: audio_seconds


@dataclass(frozen=True)
class Failure:
    """Why one row failed, as the errors file shows it (fields in the file's column order)."""

    stage: Stage
    error_type: str
    http_status: int | None = field(default=None, kw_only=True)
    error_code: str | None = field(default=None, kw_only=True)
    message: str

    @classmethod
    def from_api(cls, error: ApiError, stage: Stage = "request") -> Failure:
        return cls(
            stage,
            error.error_type or type(error).__name__,
            error.message,
            http_status=error.http_status,
            error_code=error.error_code,
        )


Outcome = Success | Failure
ERROR_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Failure))
_ARROW = {
    "Stage": pa.string(),
    "str": pa.string(),
    "str | None": pa.string(),
    "int | None": pa.int64(),
}
ERROR_SCHEMA = pa.schema(
    [(f.name, _ARROW[str(f.type)]) for f in fields(Failure)] + [("attempts", pa.int64())]
)
