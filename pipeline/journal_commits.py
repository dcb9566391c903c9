"""The journal's writes while an executor carries rows: ``sent`` marks, outcomes, workflow notes
and rows given back, all through group commit.

Every write joins the next group commit: one transaction per event-loop tick, run in the order
the writes came, each statement once for all of its rows (``executemany``). A caller that must
not go on before its write is durable awaits it (``mark_sent``, ``note``, ``unsend``); ``settle``
returns the commit's future instead, since the next ``sent`` mark of the same worker is in the
same commit or a later one.
"""

from __future__ import annotations

import asyncio
import operator
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from pipeline.journal_results import Transaction
from pipeline.outcomes import Failure
from pipeline.rows import Row, error_fields

BACKLOG_ROWS = 100_000  # done rows held before the results are flushed mid-run
Ops = list[tuple[str, list[tuple[Any, ...]]]]


class GroupCommits:
    """Mixed into Journal: the statements the executor's workers make, committed in groups."""

    _db: sqlite3.Connection
    _ops: Ops
    _waiters: list[asyncio.Future[None]]
    _on_backlog: Callable[[], None] | None
    _pick: tuple[list[str], Callable[[Mapping[str, Any]], Any]] | None  # names, their getter
    held: int
    errors_changed: int
    result_names: list[str]

    def _transaction(self) -> Transaction:
        return Transaction(self._db)

    def mark_sent(self, keys: Sequence[Any], request_id: int) -> asyncio.Future[None]:
        """Record that a request carrying these keys is about to leave; the caller awaits the
        commit's future before sending (a future, not a coroutine: one less frame a request)."""
        return self._enqueue(
            (
                "UPDATE rows SET state = 'sent', sends = sends + 1, inflight = ? WHERE key = ?",
                [(request_id, key) for key in keys],
            )
        )

    def settle(self, rows: Sequence[Row]) -> asyncio.Future[None]:
        """Record the rows' outcomes (done with its result columns, by name; or failed with its
        error) and attempts in the next group commit; returns the commit's future. A worker
        need not wait for it before its next request: commits are in order, so the commit of
        that request's ``sent`` mark holds this outcome too (or follows it)."""
        names = self.result_names
        states: list[tuple[bytes | None, int, Any]] = []
        results: list[tuple[bytes | None, Any]] = []
        for row in rows:
            outcome = row.outcome
            if isinstance(outcome, Failure):
                states.append((error_fields(outcome), row.attempts, row.key))
                results.append((None, row.key))
            else:
                assert outcome is not None and names, "settle after use_result_columns"
                states.append((None, row.attempts, row.key))
                results.append((orjson.dumps(self._values(outcome.columns)), row.key))
        failed = sum(result is None for result, _ in results)
        self.held += len(rows) - failed
        self.errors_changed += failed
        return self._enqueue(
            (
                "UPDATE rows SET state = CASE WHEN ?1 IS NULL THEN 'done' ELSE 'failed' END, "
                "error = ?1, attempts = attempts + ?2, inflight = NULL WHERE key = ?3",
                states,
            ),
            ("UPDATE held SET payload = NULL, result = ? WHERE key = ?", results),
        )

    def _values(self, columns: Mapping[str, Any]) -> Sequence[Any]:
        """A result's values in ``result_names`` order; a column the kind left out is null."""
        names = self.result_names
        if self._pick is None or self._pick[0] is not names:
            self._pick = (names, operator.itemgetter(*names))
        try:
            values = self._pick[1](columns)  # every column there, the usual case: in C
        except KeyError:
            return [columns.get(name) for name in names]
        return values if len(names) > 1 else (values,)  # one name: not a tuple

    async def note(self, key: Any, progress: Any) -> None:
        """Record a workflow's progress (ids to find its work again); waits for the commit."""
        await self._submit(
            ("UPDATE rows SET progress = ? WHERE key = ?", [(orjson.dumps(progress), key)])
        )

    async def unsend(self, keys: Sequence[Any], attempts: int) -> None:
        """Put rows back to pending: the run stopped before they got an answer."""
        await self._submit(
            (
                "UPDATE rows SET state = 'pending', inflight = NULL, attempts = attempts + ? "
                "WHERE key = ? AND state IN ('pending', 'sent')",
                [(attempts, key) for key in keys],
            )
        )

    async def _submit(self, *ops: tuple[str, list[tuple[Any, ...]]]) -> None:
        """Run the statements in the next group commit (all in one transaction); wait for it."""
        await self._enqueue(*ops)

    def _enqueue(self, *ops: tuple[str, list[tuple[Any, ...]]]) -> asyncio.Future[None]:
        """The statements go in the next group commit; the future is done once it is."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        if not self._waiters:
            loop.call_soon(self._commit)
        self._ops.extend(ops)
        self._waiters.append(waiter)
        return waiter

    def _commit(self) -> None:
        ops, waiters = self._ops, self._waiters
        self._ops, self._waiters = [], []
        # one executemany per statement: a key has one event a commit (its caller waits for
        # the commit before the next), so only the order within a statement matters
        merged: dict[str, list[tuple[Any, ...]]] = {}
        for sql, params in ops:
            merged.setdefault(sql, []).extend(params)
        try:
            with self._transaction():
                for sql, params in merged.items():
                    self._db.executemany(sql, params)
        except sqlite3.Error as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._on_backlog is not None and self.held > BACKLOG_ROWS:
            self.held = 0  # counted again by the flush: scheduled once
            asyncio.get_running_loop().call_soon(self._on_backlog)
