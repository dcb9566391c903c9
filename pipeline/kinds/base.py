"""What every request kind provides, and the record of a built row.

A kind builds one ``Item`` per input row (or raises RowError) and describes, for the items of
one request, the flow that carries them (``steps.py``): the requests as data, and one
``Outcome`` per item from the answers. It never sends anything itself: an executor does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import pyarrow as pa

from pipeline.steps import Flow


@dataclass(slots=True)  # one per row: frozen would cost ~1 us each
class Item:
    """One row, ready to send: its key, its part of a request (JSON-able), its token cost."""

    key: Any
    payload: Any
    tokens: int = 1
    requests: int = 1  # requests this row needs on its own (a long text split in chunks)
    characters: int = 0  # characters of text it sends
    progress: Any = None  # what an earlier attempt recorded with a Note step (a run's ids)


class Kind(Protocol):
    """A request kind: build and validate rows, describe their requests, shape the answers."""

    name: ClassVar[str]
    sections: ClassVar[tuple[str, ...]]  # the job file's top-level tables this kind owns
    result_schema: ClassVar[pa.Schema]  # the kind's result columns, after key and keep
    rows_per_request: int
    columns: frozenset[str]  # input columns the templates need

    def build(self, key: Any, row: Mapping[str, Any]) -> Item:
        """One row -> an Item; RowError says why the row cannot be a valid request."""
        ...

    def flow(self, items: Sequence[Item]) -> Flow:
        """The steps that carry these items (one request, or a workflow), returning one
        Outcome per item, in order (see ``steps.py``)."""
        ...

    def describe(self) -> str:
        """One line for `pipeline validate`: what each request looks like."""
        ...
