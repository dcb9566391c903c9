"""What every request kind provides, and the records that flow between reader, pool and journal.

A kind builds one ``Item`` per input row (or raises RowError), sends a list of items as one
request or workflow, and returns one ``Outcome`` per item, in order. The pool never looks inside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import pyarrow as pa

from pipeline.api import Call
from pipeline.outcomes import Outcome


@dataclass(frozen=True)
class Item:
    """One row, ready to send: its key, its part of a request (JSON-able), its token cost."""

    key: Any
    payload: Any
    tokens: int = 1
    requests: int = 1  # requests this row needs on its own (a long text split in chunks)
    characters: int = 0  # characters of text it sends
    progress: Any = None  # what an earlier attempt recorded with Call.note (a run's ids)


class Kind(Protocol):
    """A request kind: build, validate, send and shape one kind of request."""

    name: ClassVar[str]
    sections: ClassVar[tuple[str, ...]]  # the job file's top-level tables this kind owns
    result_schema: ClassVar[pa.Schema]  # the kind's result columns, after key and keep
    rows_per_request: int
    columns: frozenset[str]  # input columns the templates need

    def build(self, key: Any, row: Mapping[str, Any]) -> Item:
        """One row -> an Item; RowError says why the row cannot be a valid request."""
        ...

    async def send(self, call: Call, items: Sequence[Item]) -> list[Outcome]:
        """Send the items (one request or a workflow); one Outcome per item, in order.

        Raises FatalApiError (the job stops) or Stopped; anything per row is a Failure.
        """
        ...

    def describe(self) -> str:
        """One line for `pipeline validate`: what each request looks like."""
        ...
