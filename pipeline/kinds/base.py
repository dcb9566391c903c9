"""What every request kind provides.

A kind builds one ``Row`` (``rows.py``) per input row, or raises RowError, and describes, for
the rows of one request, the flow that carries them (``steps.py``): the requests as data, and
one ``Outcome`` per row from the answers. It never sends anything itself: an executor does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

import pyarrow as pa

from pipeline.rows import Row
from pipeline.steps import Flow


class Kind(Protocol):
    """A request kind: build and validate rows, describe their requests, shape the answers."""

    name: ClassVar[str]
    sections: ClassVar[tuple[str, ...]]  # the job file's top-level tables this kind owns
    result_schema: ClassVar[pa.Schema]  # the kind's result columns, after key and keep
    rows_per_request: int
    columns: frozenset[str]  # input columns the templates need
    batchable: bool  # its requests can go through the Batch API (cost.py prices both modes)

    def build(self, key: Any, row: Mapping[str, Any]) -> Row:
        """One row -> an Row; RowError says why the row cannot be a valid request."""
        ...

    def flow(self, items: Sequence[Row]) -> Flow:
        """The steps that carry these items (one request, or a workflow), returning one
        Outcome per item, in order (see ``steps.py``)."""
        ...

    def model_of(self, row: Row) -> str | None:
        """The model a built row's requests name, for its price; None if the server decides."""
        ...

    def describe(self) -> str:
        """One line for `pipeline validate`: what each request looks like."""
        ...
