"""Feeding a run: what earlier runs left pending, then the input's new keys (and, when asked,
failed or changed ones) into the executor's queue, then END; then the count of done rows whose
request changed since. Build failures become failed rows at once.

Sending starts at once: done rows cost only a journal lookup until END is queued; building
their requests again to find changes comes after, while the pool works.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from pipeline import keys, readers
from pipeline.errors import RowError
from pipeline.executor import Executor
from pipeline.journal import ADOPTED, Journal, NewRow, request_hash
from pipeline.kinds import Item, Kind
from pipeline.outcomes import Failure
from pipeline.plan import Plan
from pipeline.stats import RunStats

log = logging.getLogger(__name__)
READ_BATCH_ROWS = 10_000
YIELD_EVERY = 500  # rows compared between two yields to the pool (about 5 ms)
PENDING_CHUNK = 1_000


@dataclass(frozen=True)
class Scope:
    """Which rows a run sends besides the new ones, and how many new ones at most."""

    limit: int | None = None  # --limit
    retry_failed: bool = False  # the keys in errors again
    redo_changed: bool = False  # the done keys whose request changed since


async def feed(plan: Plan, journal: Journal, pool: Executor, stats: RunStats, scope: Scope) -> None:
    """Queue what earlier runs left pending, then the input's new keys (and, when asked, failed
    or changed ones), then END; then compare the done rows with the input to count the changed
    ones (unless --redo-changed queued them). Keys that left the input keep their results."""
    for name in ("rows_changed_since_done", "rows_redone", "rows_retried_failed"):
        stats.tally[name] += 0  # always in the summary, 0 when none
    after = 0
    while rows := journal.pending(after, PENDING_CHUNK):
        for row in rows:
            await pool.submit(Item(row.key, row.payload, row.tokens, progress=row.progress))
        after = rows[-1].seq
    first_new = journal.next_seq  # rows added from here on are built from the input as it is
    batches_read = await _feed_input(plan, journal, pool, stats, scope)
    await pool.finish()
    if not scope.redo_changed:
        await _count_changed(plan, journal, stats, batches_read, first_new)


def _input_columns(plan: Plan) -> list[str]:
    job = plan.job
    return list(dict.fromkeys([job.input.key, *job.input.keep, *sorted(plan.kind.columns)]))


async def _feed_input(
    plan: Plan, journal: Journal, pool: Executor, stats: RunStats, scope: Scope
) -> int:
    """Queue the keys the journal has never seen (at most --limit), the failed ones with
    --retry-failed and the changed done ones with --redo-changed; return the batches read."""
    job, kind = plan.job, plan.kind
    key, keep, limit = job.input.key, job.input.keep, scope.limit
    settled_too = scope.retry_failed or scope.redo_changed
    new_rows = batches = 0
    for batch in readers.iter_batches(plan.input.files, _input_columns(plan), READ_BATCH_ROWS):
        if limit is not None and new_rows >= limit and not settled_too:
            break  # --limit: no need to read further
        batches += 1
        names = keys.canonical(batch.get_column(key)).to_list()
        known = journal.known(names)
        fresh: list[int] = []
        again: list[int] = []
        adopted: list[tuple[str, Any]] = []
        for index, value in enumerate(names):
            seen = known.get(value)
            if seen is None:
                if limit is None or new_rows < limit:
                    fresh.append(index)
                    new_rows += 1
            elif (seen[0] == "failed" and scope.retry_failed) or (
                seen[0] == "done" and scope.redo_changed
            ):
                again.append(index)
        fresh_rows = [_build(kind, row, names[i], keep) for i, row in _rows(batch, fresh)]
        requeued: list[NewRow] = []
        for i, row in _rows(batch, again):
            built = _build(kind, row, names[i], keep)
            state, digest = known[names[i]]
            if state == "failed":
                stats.tally["rows_retried_failed"] += 1
                requeued.append(built)
            elif digest == ADOPTED:  # adopted from the outputs: taken as built from this input
                adopted.append((request_hash(built.payload), built.key))
            elif request_hash(built.payload) != digest:
                stats.tally["rows_redone"] += 1  # redone, so no longer changed since done
                requeued.append(built)
        journal.add(fresh_rows)
        journal.requeue(requeued)
        journal.record_hashes(adopted)
        for new in [*fresh_rows, *requeued]:
            if new.error is None:
                await pool.submit(Item(new.key, new.payload, new.tokens))
            else:
                stats.rows_failed += 1
    return batches


async def _count_changed(
    plan: Plan, journal: Journal, stats: RunStats, batches: int, first_new: int
) -> None:
    """Count the done rows whose request was built by an earlier run (journal position below
    ``first_new``) and, built from the input as it is now, would differ (in the batches the
    first pass read). Yields to the pool between small groups of rows."""
    if first_new == 1:
        return  # the journal was empty: every request was built from this input
    log.info("comparing the rows done earlier with the input (rows_changed_since_done)")
    job, kind = plan.job, plan.kind
    key, keep = job.input.key, job.input.keep
    read = readers.iter_batches(plan.input.files, _input_columns(plan), READ_BATCH_ROWS)
    for batch in itertools.islice(read, batches):
        names = keys.canonical(batch.get_column(key)).to_list()
        digests = journal.done_among_earlier(names, first_new)
        done = [i for i, value in enumerate(names) if value in digests]
        adopted: list[tuple[str, Any]] = []
        for count, (i, row) in enumerate(_rows(batch, done), 1):
            built = _build(kind, row, names[i], keep)
            digest = request_hash(built.payload)
            if digests[names[i]] == ADOPTED:  # adopted from the outputs: built from this input
                adopted.append((digest, names[i]))
            elif digest != digests[names[i]]:
                stats.tally["rows_changed_since_done"] += 1
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        journal.record_hashes(adopted)
        await asyncio.sleep(0)


def _rows(batch: pl.DataFrame, indices: list[int]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index in the batch, row) for these indices."""
    if not indices:
        return iter(())
    if len(indices) == batch.height:
        return enumerate(batch.iter_rows(named=True))
    return zip(indices, batch[indices].iter_rows(named=True), strict=True)


def _build(kind: Kind, row: dict[str, Any], key: str, keep: tuple[str, ...]) -> NewRow:
    """The row's request under its canonical ``key`` (the journal's form, see pipeline.keys)."""
    kept = {col: row[col] for col in keep}
    try:
        item = kind.build(key, row)
    except RowError as error:
        failure = Failure("build", "invalid_row", error.message)
        return NewRow(key, None, 0, kept, error=asdict(failure))
    return NewRow(item.key, item.payload, item.tokens, kept)


def count_unread(plan: Plan, journal: Journal, held: int) -> int:
    """Input rows whose key the journal (holding ``held`` keys) does not hold: left by --limit,
    or by a stop that came before the reader got to them. Never 0 while there are some.

    More input rows than held keys: the difference, at once (exact while every held key is
    still in the input, as usual); else one pass over the key column counts them."""
    if plan.input.rows > held:
        return plan.input.rows - held
    key = plan.job.input.key
    unread = 0
    for _, _, frame in readers.key_frames(plan.input.files, key, plan.input.schema[key]):
        names = frame.to_list()
        known = journal.known(names)
        unread += sum(1 for name in names if name not in known)
    return unread
