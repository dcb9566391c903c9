"""Feeding a run: what earlier runs left pending, then the input's new keys (and, when asked,
failed or changed ones) into the executor's queue, then END; then the count of done rows whose
request changed since. Build failures become failed rows at once.

Sending starts at once: done rows cost only a journal lookup until END is queued; building
their requests again to find changes comes after, while the executor works. An input batch unchanged
since it was last checked (``BatchDigests``) costs neither: a rerun of a grown input pays for its
new rows and one read of the input.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import platform
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import polars as pl

import pipeline
from pipeline import keys, readers
from pipeline.errors import RowError
from pipeline.executor import Executor
from pipeline.journal import ADOPTED, Journal, request_hash
from pipeline.kinds import Kind
from pipeline.outcomes import Failure
from pipeline.plan import Plan
from pipeline.rows import Row
from pipeline.stats import RunStats

log = logging.getLogger(__name__)
READ_BATCH_ROWS = 10_000
YIELD_EVERY = 500  # rows compared between two yields to the executor (about 5 ms)
PENDING_CHUNK = 1_000


@dataclass(frozen=True)
class Scope:
    """Which rows a run sends besides the new ones, and how many new ones at most."""

    limit: int | None = None  # --limit
    retry_failed: bool = False  # the keys in errors again
    redo_changed: bool = False  # the done keys whose request changed since


async def feed(
    plan: Plan, journal: Journal, executor: Executor, stats: RunStats, scope: Scope
) -> None:
    """Queue what earlier runs left pending, then the input's new keys (and, when asked, failed
    or changed ones), then END; then compare the done rows with the input to count the changed
    ones (unless --redo-changed queued them). Keys that left the input keep their results."""
    for name in ("rows_changed_since_done", "rows_redone", "rows_retried_failed"):
        stats.totals[name] += 0  # always in the summary, 0 when none
    log.info("feeding: the rows earlier runs left pending, then the input")
    after = pending = 0
    while rows := journal.pending(after, PENDING_CHUNK):
        for row in rows:
            await executor.submit(row)
        after = rows[-1].seq
        pending += len(rows)
    first_new = journal.next_seq  # rows added from here on are built from the input as it is
    read = await _feed_input(plan, journal, executor, stats, scope)
    await executor.finish()
    log.info(
        "input read: %d batch(es), %d unchanged since checked (skipped), %d new row(s); "
        "%d pending row(s) queued before",
        read.batches,
        read.skipped,
        journal.next_seq - first_new,
        pending,
    )
    if not scope.redo_changed:
        await _count_changed(plan, journal, stats, read, first_new)
        log.info("compared the rows done earlier with the input: %d batch(es)", len(read.to_check))


class BatchDigests:
    """Which input batches are, value for value, what the journal's requests were built from
    when they were last checked: such a batch holds no new key and no row whose request
    changed, so a run skips its journal lookups and its rebuilds (a rerun of a grown input
    costs its new rows). Batches are numbered by row offset from the input's start (every
    batch but the last has READ_BATCH_ROWS rows), so rows appended leave the earlier ones as
    they were. polars' row hash is stable only within one polars version: the version, the
    machine, this package's code and the job's request-building parts salt every digest, so
    any of them changing makes every batch compared again, never skipped by mistake."""

    def __init__(self, plan: Plan, columns: list[str], journal: Journal, *, usable: bool) -> None:
        self._salt = _digest_salt(plan, columns) if usable else None
        self._text = [name for name in columns if _hashed_as_text(plan.input.schema[name])]
        self._journal = journal
        self._stored = journal.batch_digests() if self._salt is not None else {}

    def of(self, batch: pl.DataFrame) -> str | None:
        """The batch's digest; None when this input's column types are not hashed here."""
        if self._salt is None:
            return None
        if self._text:  # floats: -0.0 and 0.0 hash alike but format apart
            batch = batch.with_columns(pl.col(name).cast(pl.String) for name in self._text)
        digest = hashlib.blake2b(self._salt, digest_size=16)
        digest.update(batch.hash_rows(seed=0).to_numpy().tobytes())
        return digest.hexdigest()

    def unchanged(self, index: int, digest: str | None) -> bool:
        return digest is not None and self._stored.get(index) == digest

    def forget(self, index: int) -> None:
        """Drop a stale digest before requests of its batch change (an edit undone later must
        not find its old digest matching)."""
        if self._stored.pop(index, None) is not None:
            self._journal.forget_batch_digest(index)

    def record(self, index: int, digest: str | None) -> None:
        if digest is not None:
            self._journal.record_batch_digest(index, digest)
            self._stored[index] = digest


def _digest_salt(plan: Plan, columns: list[str]) -> bytes | None:
    """What the requests built from a batch depend on besides its values; None when a column's
    type is not one hashed here (nested, decimal, object: such inputs are compared in full)."""
    schema = plan.input.schema
    if not all(_hashed_as_is(schema[name]) or _hashed_as_text(schema[name]) for name in columns):
        return None
    job = plan.job
    parts = {
        "job": [job.kind, job.input.key, job.input.keep, job.request, job.sections],
        "base_url": job.api.base_url,  # a kind's defaults follow it (the run protocol)
        "columns": [(name, str(schema[name])) for name in columns],
        "batch_rows": READ_BATCH_ROWS,
        "polars": pl.__version__,
        "machine": platform.machine(),
        "code": _code_digest(),
    }
    return orjson.dumps(parts, option=orjson.OPT_SORT_KEYS, default=str)


def _hashed_as_is(dtype: pl.DataType) -> bool:
    return (
        dtype.is_integer()
        or dtype in (pl.String, pl.Binary, pl.Boolean, pl.Date, pl.Time)
        or isinstance(dtype, pl.Datetime | pl.Duration)
    )


def _hashed_as_text(dtype: pl.DataType) -> bool:
    return dtype.is_float() or isinstance(dtype, pl.Categorical | pl.Enum)


@cache
def _code_digest() -> str:
    """This package's source: a release (or an edit) that builds requests otherwise changes it."""
    root = Path(pipeline.__file__).parent
    digest = hashlib.blake2b(pipeline.__version__.encode(), digest_size=16)  # if no source
    for path in sorted(root.rglob("*.py")):
        if "emulator" not in path.relative_to(root).parts:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@dataclass
class Pass:
    """What the first pass over the input read: batches, the ones skipped as unchanged, and
    the ones whose rows built earlier the second pass compares."""

    digests: BatchDigests
    batches: int = 0
    skipped: int = 0
    to_check: set[int] = field(default_factory=set)


def _input_columns(plan: Plan) -> list[str]:
    job = plan.job
    return list(dict.fromkeys([job.input.key, *job.input.keep, *sorted(plan.kind.columns)]))


async def _feed_input(
    plan: Plan, journal: Journal, executor: Executor, stats: RunStats, scope: Scope
) -> Pass:
    """Queue the keys the journal has never seen (at most --limit), the failed ones with
    --retry-failed and the changed done ones with --redo-changed; return what was read.

    A batch whose digest is the one recorded when it was last checked is skipped: all its keys
    are held and no request built from it changed (with --retry-failed none is skipped: its
    failed keys are wanted). A batch whose every key is new is recorded as it is added."""
    limit = scope.limit
    settled_too = scope.retry_failed or scope.redo_changed
    columns = _input_columns(plan)
    digests = BatchDigests(plan, columns, journal, usable=not scope.retry_failed)
    done = Pass(digests)
    new_rows = 0
    for index, batch in enumerate(readers.iter_batches(plan.input.files, columns, READ_BATCH_ROWS)):
        if limit is not None and new_rows >= limit and not settled_too:
            break  # --limit: no need to read further
        done.batches += 1
        digest = digests.of(batch)
        if digests.unchanged(index, digest):
            done.skipped += 1
            await asyncio.sleep(0)
            continue
        digests.forget(index)  # before any request of it changes: stale from here on
        room = None if limit is None else limit - new_rows
        fresh, requeued = _take(plan, journal, stats, scope, batch, room)
        new_rows += len(fresh)
        if len(fresh) == batch.height:  # every request of it was built from it just now
            digests.record(index, digest)
        else:
            done.to_check.add(index)
        for new in [*fresh, *requeued]:
            if new.outcome is None:
                await executor.submit(new)
            else:
                stats.rows_failed += 1
    return done


def _take(
    plan: Plan,
    journal: Journal,
    stats: RunStats,
    scope: Scope,
    batch: pl.DataFrame,
    room: int | None,
) -> tuple[list[Row], list[Row]]:
    """Add the batch's new keys (at most ``room``) to the journal and requeue the failed
    (--retry-failed) and changed done (--redo-changed) ones; returns (new rows, requeued)."""
    kind, keep = plan.kind, plan.job.input.keep
    names = keys.canonical(batch.get_column(plan.job.input.key)).to_list()
    known = journal.known(names)
    fresh: list[int] = []
    again: list[int] = []
    for i, value in enumerate(names):
        seen = known.get(value)
        if seen is None:
            if room is None or len(fresh) < room:
                fresh.append(i)
        elif (seen[0] == "failed" and scope.retry_failed) or (
            seen[0] == "done" and scope.redo_changed
        ):
            again.append(i)
    fresh_rows = [_build(kind, row, names[i], keep) for i, row in _rows(batch, fresh)]
    requeued: list[Row] = []
    adopted: list[tuple[str, Any]] = []
    for i, row in _rows(batch, again):
        built = _build(kind, row, names[i], keep)
        state, request = known[names[i]]
        if state == "failed":
            stats.totals["rows_retried_failed"] += 1
            requeued.append(built)
        elif request == ADOPTED:  # adopted from the outputs: taken as built from this input
            adopted.append((request_hash(built.payload), built.key))
        elif request_hash(built.payload) != request:
            stats.totals["rows_redone"] += 1  # redone, so no longer changed since done
            requeued.append(built)
    journal.add(fresh_rows)
    journal.requeue(requeued)
    journal.record_hashes(adopted)
    return fresh_rows, requeued


async def _count_changed(
    plan: Plan, journal: Journal, stats: RunStats, read: Pass, first_new: int
) -> None:
    """Count the done rows whose request was built by an earlier run (journal position below
    ``first_new``) and, built from the input as it is now, would differ, in the batches the
    first pass read and did not skip. A batch where no request built earlier differs and every
    key is held gets its digest recorded: the next run skips it. Yields to the executor between
    small groups of rows."""
    if not read.to_check:
        return  # every batch unchanged or new: nothing built earlier to compare
    log.info("comparing the rows done earlier with the input (rows_changed_since_done)")
    job, kind = plan.job, plan.kind
    key, keep = job.input.key, job.input.keep
    batches = readers.iter_batches(plan.input.files, _input_columns(plan), READ_BATCH_ROWS)
    for index, batch in enumerate(itertools.islice(batches, max(read.to_check) + 1)):
        if index not in read.to_check:
            continue
        digest = read.digests.of(batch)  # of what is compared: the file may have changed
        names = keys.canonical(batch.get_column(key)).to_list()
        held = journal.held_among(names)
        # Failed rows are left out: their request is never compared, only sent again on
        # --retry-failed, which reads every batch.
        earlier = [
            i
            for i, value in enumerate(names)
            if value in held and held[value][1] < first_new and held[value][0] != "failed"
        ]
        adopted: list[tuple[str, Any]] = []
        differ = 0
        for count, (i, row) in enumerate(_rows(batch, earlier), 1):
            built = request_hash(_build(kind, row, names[i], keep).payload)
            state, _, request = held[names[i]]
            if request == ADOPTED:  # adopted from the outputs (done): built from this input
                adopted.append((built, names[i]))
            elif built != request:
                differ += 1
                stats.totals["rows_changed_since_done"] += state == "done"
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        journal.record_hashes(adopted)
        if not differ and len(held) == len(names):
            read.digests.record(index, digest)
        await asyncio.sleep(0)


def _rows(batch: pl.DataFrame, indices: list[int]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index in the batch, row) for these indices."""
    if not indices:
        return iter(())
    if len(indices) == batch.height:
        return enumerate(batch.iter_rows(named=True))
    return zip(indices, batch[indices].iter_rows(named=True), strict=True)


def _build(kind: Kind, values: dict[str, Any], key: str, keep: tuple[str, ...]) -> Row:
    """The row's request under its canonical ``key`` (the journal's form, see pipeline.keys),
    or the row failed at build, with its keep columns."""
    kept = {col: values[col] for col in keep}
    try:
        row = kind.build(key, values)
    except RowError as error:
        return Row(key, tokens=0, keep=kept, outcome=Failure("build", "invalid_row", error.message))
    row.keep = kept
    return row


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
