"""The records a row is in on its way through the journal: new (built from the input), pending
(read back to send), settled (an answer: done with its values, or failed with its error)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import orjson

State = Literal["pending", "sent", "done", "failed"]


def request_hash(payload: Any) -> str:
    return hashlib.blake2b(
        orjson.dumps(payload, option=orjson.OPT_SORT_KEYS), digest_size=12
    ).hexdigest()


@dataclass(frozen=True)
class NewRow:
    key: Any
    payload: Any  # None for a row that failed to build
    tokens: int
    keep: dict[str, Any]
    error: dict[str, Any] | None = None


def built(row: NewRow) -> tuple[State, bytes | None, int, bytes, bytes, bytes | None]:
    """A row as the journal stores what was built from it: state, payload, tokens,
    request_hash, keep, error (pending with its request, or failed with its error)."""
    failed = row.error is not None
    return (
        "failed" if failed else "pending",
        None if failed else orjson.dumps(row.payload),
        row.tokens,
        bytes.fromhex(request_hash(row.payload)),
        orjson.dumps(row.keep),
        orjson.dumps(row.error) if failed else None,
    )


@dataclass(frozen=True)
class PendingRow:
    seq: int
    key: Any
    payload: Any
    tokens: int
    progress: Any = None


@dataclass(frozen=True)
class Settled:
    key: Any
    attempts: int
    result: list[Any] | None = None  # done when set: values in result_columns order
    error: dict[str, Any] | None = None  # failed when set
