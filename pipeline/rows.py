"""The one record of a row, from build to settle.

A kind builds a ``Row`` from an input row (its part of a request, tokens, requests, characters);
the feed gives it its keep columns (or its build ``Failure`` as outcome); the journal stores it
(``add``, ``requeue``) and reads it back (``pending``, with a workflow's progress); an executor
carries it and sets its ``outcome`` and ``attempts``; the journal settles it by that outcome,
its result columns by name. No other record of a row exists.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import orjson

from pipeline.outcomes import Failure, Outcome

State = Literal["pending", "sent", "done", "failed"]


def request_hash(payload: Any) -> str:
    return _digest(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hex()


def _digest(encoded: bytes) -> bytes:
    return hashlib.blake2b(encoded, digest_size=12).digest()


@dataclass(slots=True)  # one per row: not frozen, which would cost ~1 us each
class Row:
    key: Any  # canonical text (pipeline.keys), as the journal holds it
    payload: Any = None  # its part of a request (JSON-able); None when it failed to build
    tokens: int = 1  # estimated, for the tokens-per-minute limit
    requests: int = 1  # requests it needs on its own (a long text split in chunks)
    characters: int = 0  # characters of text it sends
    keep: dict[str, Any] = field(default_factory=dict)  # the job's keep columns
    progress: Any = None  # what a workflow noted (a run's thread and run ids)
    seq: int = 0  # its input position, once the journal holds it
    outcome: Outcome | None = None  # once settled; a build Failure from the start
    attempts: int = 0  # HTTP attempts made for it in this run

    @property
    def failure(self) -> Failure | None:
        return self.outcome if isinstance(self.outcome, Failure) else None


def error_fields(failure: Failure) -> bytes:
    """A failure as the journal stores it (the errors file's fields, by name)."""
    return orjson.dumps(asdict(failure))


def built(row: Row) -> tuple[State, bytes | None, int, bytes, bytes, bytes | None]:
    """A row as the journal stores what was built from it: state, payload, tokens,
    request_hash, keep, error (pending with its request, or failed with its error)."""
    failure = row.failure
    # one encoding for both: the payload is stored as it is hashed (keys sorted; same JSON)
    encoded = orjson.dumps(row.payload, option=orjson.OPT_SORT_KEYS)
    return (
        "pending" if failure is None else "failed",
        None if failure is not None else encoded,
        row.tokens,
        _digest(encoded),
        orjson.dumps(row.keep),
        None if failure is None else error_fields(failure),
    )
