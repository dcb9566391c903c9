"""One run of a job: lock, journal recovery, reader -> pool -> journal, then the output files.

The reader first queues what an earlier run left pending, then streams the input and queues the
keys the journal has never seen; build failures become failed rows at once.
"""

from __future__ import annotations

import asyncio
import difflib
import gc
import itertools
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import polars as pl

from pipeline import folder, keys, logs, preflight, readers
from pipeline.api import Session
from pipeline.errors import JobError, RowError
from pipeline.http import Http
from pipeline.job import LOCAL, JobSpec, OutputSpec, resolve_api_key, resolve_base_url
from pipeline.journal import (
    ADOPTED,
    RESULT_COLUMNS,
    Journal,
    NewRow,
    OutputLock,
    request_hash,
    rows_held,
)
from pipeline.kinds import Item, Kind, load
from pipeline.limits import Bounds, RateLimiter, RetryPolicy, Stopper
from pipeline.pool import END, Pool
from pipeline.progress import Mode, report
from pipeline.stats import RunStats
from pipeline.writers import (
    OutputFiles,
    journal_error,
    out_of_storage,
    remove_stale_temporaries,
    write_json,
    write_outputs,
)

log = logging.getLogger(__name__)
Outcome = Literal["completed", "completed_with_errors", "stopped_fatal", "interrupted"]
READ_BATCH_ROWS = 10_000
YIELD_EVERY = 500  # rows compared between two yields to the pool (about 5 ms)
PENDING_CHUNK = 1_000
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # each drains and stops cleanly


@dataclass(frozen=True)
class RunOptions:
    limit: int | None = None
    base_url: str | None = None
    output: Path | None = None
    progress: Mode = "off"
    bounds: Bounds = field(default_factory=Bounds)
    retry_failed: bool = False  # send the keys in errors again
    redo_changed: bool = False  # send done keys whose request changed since, and replace them
    max_runtime_s: float | None = None  # then stop cleanly, resumable (exit 4)
    stop_grace_s: float = 30.0  # after a stop, how long requests in flight may take
    rebuild_journal: bool = False  # adopt the results/errors files of a folder without journal


@dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    output_dir: Path
    summary: dict[str, Any]


@dataclass(frozen=True)
class Prepared:
    """A job with its kind and its input, checked against each other."""

    job: JobSpec
    kind: Kind
    input: readers.InputInfo


def prepare(
    job_path: str, output: Path | None = None, *, limit: int | None = None, for_run: bool = False
) -> Prepared:
    """Load the job and inspect its input; JobError for anything that makes it unusable.

    With ``limit`` (--limit N) the keys are checked only as far as the run can read: N rows
    more than the journal holds, since the reader stops once it has N new ones. ``for_run``:
    the pre-flight probes the output folder by writing to it (validate only looks)."""
    job, kind = load(job_path)
    if output is not None:
        job = replace(job, output=OutputSpec(output.resolve(), job.output.format))
    check_rows = None if limit is None else limit + rows_held(job.output.dir)
    try:
        files = readers.find_files(job.input.path, job.base_dir)
        info = readers.inspect(files, job.input.key, check_rows=check_rows)
    except JobError as error:
        if error.path is not None and error.path != str(job.path):
            raise JobError(
                f"{error.path}: {error.message}", path=str(job.path), field=error.field
            ) from None
        raise JobError(error.message, path=str(job.path), field=error.field) from None
    available = list(info.schema)
    wanted = [(col, "input.keep") for col in job.input.keep]
    wanted += [(col, "request") for col in sorted(kind.columns)]
    for column, where in wanted:
        if column not in info.schema:
            close = difflib.get_close_matches(column, available, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"columns: {', '.join(available)}"
            raise JobError(
                f"names column '{column}', which the input does not have; {hint}",
                path=str(job.path),
                field=where,
            )
    preflight.check(job, kind, info, create=for_run, full=limit is None)
    return Prepared(job, kind, info)


def run(job_path: str, options: RunOptions) -> RunResult:
    """Run a job to the end (or until stopped); raises JobError, LockedError."""
    settled_too = options.retry_failed or options.redo_changed  # these read the whole input
    prepared = prepare(
        job_path, options.output, limit=None if settled_too else options.limit, for_run=True
    )
    job = prepared.job
    logs.bind(job=job.name)
    base_url = resolve_base_url(job, options.base_url)
    api_key = resolve_api_key(base_url, job.path)
    lock = OutputLock(job.output.dir)
    lock.acquire()
    try:
        remove_stale_temporaries(job.output.dir)
        with ExitStack() as stack:
            if base_url == LOCAL:
                base_url = stack.enter_context(_local_emulator())
            # What exists now (modules, the job, the embedded emulator) lives as long as the
            # run: out of the collector's sight, it is not scanned again (~10% less CPU).
            gc.collect()
            gc.freeze()
            try:
                return asyncio.run(_run(prepared, base_url, api_key, options))
            finally:
                gc.unfreeze()  # a caller in the same process (tests) collects as before
    finally:
        lock.release()


@contextmanager
def _local_emulator() -> Iterator[str]:
    from pipeline.emulator import EmulatorConfig, start_emulator
    from pipeline.emulator.errors import EmulatorError

    try:
        started = start_emulator(EmulatorConfig())
    except EmulatorError as error:  # the `local` extra is missing: exit 2, naming the fix
        raise JobError(error.message) from None
    with started as emulator:
        log.info("local emulator listening on %s", emulator.base_url)
        yield emulator.base_url


async def _run(
    prepared: Prepared, base_url: str, api_key: str | None, options: RunOptions
) -> RunResult:
    job, kind = prepared.job, prepared.kind
    rebuild = folder.check_journal_present(job.output.dir, options.rebuild_journal)
    try:
        journal = Journal(job.output.dir)
        folder.claim(journal, job)
        key_family = folder.check_key_family(journal, prepared.input, job.input.key)
        if rebuild:
            adopted = folder.adopt_outputs(journal, job, kind.result_schema)
            log.warning("journal rebuilt from the output files: %d key(s) adopted", adopted)
        run_id, resent_requests, resent_rows = journal.start_run()
    except sqlite3.Error as exc:
        if not out_of_storage(exc):
            raise
        raise journal_error(job.output.dir, exc) from exc
    if journal.meta(RESULT_COLUMNS) is None:
        journal.set_meta(RESULT_COLUMNS, kind.result_schema.names)
    if resent_requests:
        log.warning(
            "an earlier run stopped with %d request(s) (%d rows) in flight: sending them again",
            resent_requests,
            resent_rows,
        )
    counts = journal.counts()
    stats = RunStats(
        rows_total=prepared.input.rows,
        rows_already=counts["done"] + counts["failed"],
        resent_requests=resent_requests,
        resent_rows=resent_rows,
    )
    logs.bind(counts=stats.snapshot)
    stopper = Stopper()
    limiter = RateLimiter(job.api.requests_per_minute, job.api.tokens_per_minute, stopper)
    policy = RetryPolicy(job.api.max_attempts, limiter, stats, stopper, options.bounds)
    started = time.time()
    async with Http(
        base_url, api_key, job.api.timeout_s, job.api.concurrency, observe=limiter.observe
    ) as http:
        files = OutputFiles(job.output.dir, journal)
        session = Session(http, policy, files, stats.tally, journal)
        pool = Pool(
            kind, session, journal, stats, stopper, job.api.concurrency, options.stop_grace_s
        )
        _on_signals(pool)
        if options.max_runtime_s is not None:
            asyncio.get_running_loop().call_later(options.max_runtime_s, pool.stop, "max_runtime")
        done_event = asyncio.Event()
        progress = asyncio.create_task(report(stats, options.progress, done_event))
        feeder = asyncio.create_task(_feed(prepared, journal, pool, stats, options))
        feeder.add_done_callback(lambda task: _stop_on_error(task, pool))
        await pool.run()
        if not feeder.done() and (stopper.stopped or pool.fatal is not None):
            feeder.cancel()  # else it is counting changed rows: the summary needs the count
        input_error = await _feeder_error(feeder, job.output.dir)
        done_event.set()
        await progress
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.remove_signal_handler(sig)

    if pool.storage_error is not None:
        journal.close()  # every committed answer is in it; the rerun writes the outputs
        raise pool.storage_error
    with _gc_paused():  # millions of short-lived, acyclic values: collecting finds nothing
        paths = write_outputs(
            journal,
            job.output.dir,
            job.output.format,
            job.input.key,
            {
                **prepared.input.schema,
                job.input.key: folder.key_dtype(journal, prepared.input, job.input.key, key_family),
            },
            job.input.keep,
            kind.result_schema,
        )
    counts = journal.counts()
    read_all = options.limit is None and not feeder.cancelled()
    unread = 0 if read_all else _unread(prepared, journal, sum(counts.values()))
    limited = options.limit is not None and unread > 0
    outcome: Outcome
    if pool.fatal is not None:
        outcome = "stopped_fatal"
    elif stopper.stopped or limited:  # a signal, a --max-* bound, or --limit left rows unread
        outcome = "interrupted"
    else:
        outcome = "completed_with_errors" if counts["failed"] else "completed"
    summary = _summary(
        prepared, run_id, outcome, started, stats, counts, unread, journal, paths, pool
    )
    write_json(job.output.dir, "summary.json", summary)
    try:
        journal.finish_run(run_id, outcome, summary)
    except sqlite3.Error as exc:
        raise journal_error(job.output.dir, exc) from exc
    journal.close()
    if input_error is not None:
        raise JobError(
            f"{input_error.message}; the run stopped, the answers so far are kept (journal "
            "and outputs written): fix or restore the file, then rerun to resume",
            path=str(job.path),
            field=input_error.field,
        )
    return RunResult(outcome, job.output.dir, summary)


async def _feeder_error(feeder: asyncio.Task[None], output_dir: Path) -> JobError | None:
    """Wait for the reader; an input that failed mid-run is returned (the outputs of what is
    done are written first), a journal that cannot be written is a StorageError."""
    try:
        await feeder
    except asyncio.CancelledError:
        pass
    except JobError as error:
        log.error("stopping: %s", error)
        return error
    except sqlite3.Error as exc:
        raise journal_error(output_dir, exc) from exc
    return None


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _stop_on_error(feeder: asyncio.Task[None], pool: Pool) -> None:
    """A reader that fails must not leave the workers waiting for END."""
    if not feeder.cancelled() and feeder.exception() is not None:
        pool.stop("input_error")


def _on_signals(pool: Pool) -> None:
    """SIGINT/SIGTERM/SIGHUP: drain and stop cleanly; a second signal exits at once (the journal
    is consistent at any instant: every change is one SQLite transaction). SIGHUP is a closed
    terminal or a killed tmux session: the run still writes its outputs and summary."""
    loop = asyncio.get_running_loop()

    def handle(sig: signal.Signals) -> None:
        if pool.stopper.stopped and pool.stopper.reason == sig.name:
            log.warning("%s again: exiting now; rerun to resume", sig.name)
            os._exit(128 + sig.value)
        log.warning("%s received: finishing requests in flight, then stopping", sig.name)
        pool.stop(sig.name)

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, handle, sig)


async def _feed(
    prepared: Prepared, journal: Journal, pool: Pool, stats: RunStats, options: RunOptions
) -> None:
    """Queue what earlier runs left pending, then the input's new keys (and, when asked, failed
    or changed ones), then END; then compare the done rows with the input to count the changed
    ones. Keys that left the input keep their results.

    Sending starts at once: done rows cost only a journal lookup until END is queued; building
    their requests again to find changes comes after, while the pool works (unless
    --redo-changed needs them queued)."""
    for name in ("rows_changed_since_done", "rows_redone", "rows_retried_failed"):
        stats.tally[name] += 0  # always in the summary, 0 when none
    after = 0
    while rows := journal.pending(after, PENDING_CHUNK):
        for row in rows:
            await pool.queue.put(Item(row.key, row.payload, row.tokens, progress=row.progress))
        after = rows[-1].seq
    first_new = journal.next_seq  # rows added from here on are built from the input as it is
    batches_read = await _feed_input(prepared, journal, pool, stats, options)
    await pool.queue.put(END)
    if not options.redo_changed:
        await _count_changed(prepared, journal, stats, batches_read, first_new)


def _input_columns(prepared: Prepared) -> list[str]:
    job = prepared.job
    return list(dict.fromkeys([job.input.key, *job.input.keep, *sorted(prepared.kind.columns)]))


async def _feed_input(
    prepared: Prepared, journal: Journal, pool: Pool, stats: RunStats, options: RunOptions
) -> int:
    """Queue the keys the journal has never seen (at most --limit), the failed ones with
    --retry-failed and the changed done ones with --redo-changed; return the batches read."""
    job, kind = prepared.job, prepared.kind
    key, keep, limit = job.input.key, job.input.keep, options.limit
    settled_too = options.retry_failed or options.redo_changed
    new_rows = batches = 0
    for batch in readers.iter_batches(
        prepared.input.files, _input_columns(prepared), READ_BATCH_ROWS
    ):
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
            elif (seen[0] == "failed" and options.retry_failed) or (
                seen[0] == "done" and options.redo_changed
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
                await pool.queue.put(Item(new.key, new.payload, new.tokens))
            else:
                stats.rows_failed += 1
    return batches


async def _count_changed(
    prepared: Prepared, journal: Journal, stats: RunStats, batches: int, first_new: int
) -> None:
    """Count the done rows whose request was built by an earlier run (journal position below
    ``first_new``) and, built from the input as it is now, would differ (in the batches the
    first pass read). Yields to the pool between small groups of rows."""
    if first_new == 1:
        return  # the journal was empty: every request was built from this input
    log.info("comparing the rows done earlier with the input (rows_changed_since_done)")
    job, kind = prepared.job, prepared.kind
    key, keep = job.input.key, job.input.keep
    read = readers.iter_batches(prepared.input.files, _input_columns(prepared), READ_BATCH_ROWS)
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
        return NewRow(
            key,
            None,
            0,
            kept,
            error={
                "stage": "build",
                "error_type": "invalid_row",
                "http_status": None,
                "error_code": None,
                "message": error.message,
            },
        )
    return NewRow(item.key, item.payload, item.tokens, kept)


def _unread(prepared: Prepared, journal: Journal, held: int) -> int:
    """Input rows whose key the journal (holding ``held`` keys) does not hold: left by --limit,
    or by a stop that came before the reader got to them. Never 0 while there are some.

    More input rows than held keys: the difference, at once (exact while every held key is
    still in the input, as usual); else one pass over the key column counts them."""
    if prepared.input.rows > held:
        return prepared.input.rows - held
    key = prepared.job.input.key
    unread = 0
    for batch in readers.iter_batches(prepared.input.files, [key], READ_BATCH_ROWS):
        names = keys.canonical(batch.get_column(key)).to_list()
        known = journal.known(names)
        unread += sum(1 for name in names if name not in known)
    return unread


def _summary(
    prepared: Prepared,
    run_id: int,
    outcome: Outcome,
    started: float,
    stats: RunStats,
    counts: dict[str, int],
    unread: int,
    journal: Journal,
    paths: dict[str, Path],
    pool: Pool,
) -> dict[str, Any]:
    job = prepared.job
    snap = stats.snapshot()
    # interrupted with no stop: --limit left input rows unread
    stopped_by = pool.stopper.reason or ("limit" if outcome == "interrupted" else None)
    return {
        "job": job.name,
        "kind": job.kind,
        "run": run_id,
        "outcome": outcome,
        "stopped_by": stopped_by,
        "started_at": _iso(started),
        "finished_at": _iso(time.time()),
        "duration_s": snap["elapsed_s"],
        "rows": {
            "input": prepared.input.rows,
            "done": counts["done"],
            "failed": counts["failed"],
            "pending": counts["pending"] + counts["sent"],
            "unread": unread,  # input rows the journal does not hold: --limit, or a stop
            "done_this_run": stats.rows_done,
            "failed_this_run": stats.rows_failed,
        },
        "requests": {
            "sent": stats.requests,
            "retries": stats.retries,
            "rate_limited": stats.rate_limited,
            "by_status": snap["statuses"],
            "requests_per_s": snap["requests_per_s"],
            "rows_per_s": snap["rows_per_s"],
        },
        "tokens_estimated": stats.tokens,
        **{name: round(value, 3) for name, value in sorted(stats.tally.items())},
        "sent_again_after_crash": {
            "this_run": {"requests": stats.resent_requests, "rows": stats.resent_rows},
            "all_runs": journal.duplicates(),
        },
        "fatal_error": None
        if pool.fatal is None
        else {
            "http_status": pool.fatal.http_status,
            "error_code": pool.fatal.error_code,
            "message": pool.fatal.message,
        },
        "outputs": {name: path.name for name, path in paths.items()},
    }


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp))
