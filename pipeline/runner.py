"""One run of a job: lock, journal recovery, reader -> pool -> journal, then the output files.

The reader first queues what an earlier run left pending, then streams the input and queues the
keys the journal has never seen; build failures become failed rows at once.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pipeline import logs, readers
from pipeline.api import Session
from pipeline.errors import JobError, RowError
from pipeline.http import Http
from pipeline.job import LOCAL, JobSpec, OutputSpec, resolve_api_key, resolve_base_url
from pipeline.journal import RESULT_COLUMNS, Journal, NewRow, OutputLock, request_hash
from pipeline.kinds import Item, Kind, load
from pipeline.limits import Bounds, RateLimiter, RetryPolicy, Stopper
from pipeline.pool import END, Pool
from pipeline.progress import Mode, report
from pipeline.stats import RunStats
from pipeline.writers import OutputFiles, remove_stale_temporaries, write_json, write_outputs

log = logging.getLogger(__name__)
Outcome = Literal["completed", "completed_with_errors", "stopped_fatal", "interrupted"]
READ_BATCH_ROWS = 10_000
PENDING_CHUNK = 1_000


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


def prepare(job_path: str, output: Path | None = None) -> Prepared:
    """Load the job and inspect its input; JobError for anything that makes it unusable."""
    job, kind = load(job_path)
    if output is not None:
        job = replace(job, output=OutputSpec(output.resolve(), job.output.format))
    try:
        files = readers.find_files(job.input.path, job.base_dir)
        info = readers.inspect(files, job.input.key)
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
    return Prepared(job, kind, info)


def run(job_path: str, options: RunOptions) -> RunResult:
    """Run a job to the end (or until stopped); raises JobError, LockedError."""
    prepared = prepare(job_path, options.output)
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
            return asyncio.run(_run(prepared, base_url, api_key, options))
    finally:
        lock.release()


@contextmanager
def _local_emulator() -> Iterator[str]:
    from pipeline.emulator import EmulatorConfig, start_emulator

    with start_emulator(EmulatorConfig()) as emulator:
        log.info("local emulator listening on %s", emulator.base_url)
        yield emulator.base_url


async def _run(
    prepared: Prepared, base_url: str, api_key: str | None, options: RunOptions
) -> RunResult:
    job, kind = prepared.job, prepared.kind
    journal = Journal(job.output.dir)
    run_id, resent_requests, resent_rows = journal.start_run()
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
        if not feeder.done():
            feeder.cancel()
        with suppress(asyncio.CancelledError):
            await feeder
        done_event.set()
        await progress
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)

    paths = write_outputs(
        journal,
        job.output.dir,
        job.output.format,
        job.input.key,
        prepared.input.schema,
        job.input.keep,
        kind.result_schema,
    )
    counts = journal.counts()
    outcome: Outcome
    if pool.fatal is not None:
        outcome = "stopped_fatal"
    elif stopper.stopped:  # a signal, or a bound of --max-requests/-runtime/-characters
        outcome = "interrupted"
    else:
        outcome = "completed_with_errors" if counts["failed"] else "completed"
    summary = _summary(prepared, run_id, outcome, started, stats, counts, journal, paths, pool)
    write_json(job.output.dir / "summary.json", summary)
    journal.finish_run(run_id, outcome, summary)
    journal.close()
    return RunResult(outcome, job.output.dir, summary)


def _stop_on_error(feeder: asyncio.Task[None], pool: Pool) -> None:
    """A reader that fails must not leave the workers waiting for END."""
    if not feeder.cancelled() and feeder.exception() is not None:
        pool.stop("input_error")


def _on_signals(pool: Pool) -> None:
    """SIGINT/SIGTERM: drain and stop cleanly; a second signal exits at once (the journal is
    consistent at any instant: every change is one SQLite transaction)."""
    loop = asyncio.get_running_loop()

    def handle(sig: signal.Signals) -> None:
        if pool.stopper.stopped and pool.stopper.reason == sig.name:
            log.warning("%s again: exiting now; rerun to resume", sig.name)
            os._exit(128 + sig.value)
        log.warning("%s received: finishing requests in flight, then stopping", sig.name)
        pool.stop(sig.name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handle, sig)


async def _feed(
    prepared: Prepared, journal: Journal, pool: Pool, stats: RunStats, options: RunOptions
) -> None:
    """Queue what earlier runs left pending, then the input's new keys (and, when asked, failed
    or changed ones); END when all is queued. Keys that left the input keep their results."""
    after = 0
    while rows := journal.pending(after, PENDING_CHUNK):
        for row in rows:
            await pool.queue.put(Item(row.key, row.payload, row.tokens, progress=row.progress))
        after = rows[-1].seq
    job, kind = prepared.job, prepared.kind
    key, keep = job.input.key, job.input.keep
    columns = list(dict.fromkeys([key, *keep, *sorted(kind.columns)]))
    new_rows = 0
    settled_too = options.retry_failed or options.redo_changed
    for batch in readers.iter_batches(prepared.input.files, columns, READ_BATCH_ROWS):
        if options.limit is not None and new_rows >= options.limit and not settled_too:
            break  # --limit: no need to read further
        known = journal.known(batch.get_column(key).to_list())
        fresh: list[NewRow] = []
        again: list[NewRow] = []
        for values in batch.iter_rows(named=True):
            seen = known.get(values[key])
            if seen is None:
                if options.limit is not None and new_rows >= options.limit:
                    continue
                new_rows += 1
                fresh.append(_build(kind, values, key, keep))
            elif seen[0] == "failed" and options.retry_failed:
                again.append(_build(kind, values, key, keep))
                stats.tally["rows_retried_failed"] += 1
            elif seen[0] == "done":
                built = _build(kind, values, key, keep)
                if request_hash(built.payload) != seen[1]:
                    stats.tally["rows_changed_since_done"] += 1
                    if options.redo_changed:
                        again.append(built)
                        stats.tally["rows_redone"] += 1
        journal.add(fresh)
        journal.requeue(again)
        for new in [*fresh, *again]:
            if new.error is None:
                await pool.queue.put(Item(new.key, new.payload, new.tokens))
            else:
                stats.rows_failed += 1
    await pool.queue.put(END)


def _build(kind: Kind, row: dict[str, Any], key: str, keep: tuple[str, ...]) -> NewRow:
    kept = {col: row[col] for col in keep}
    try:
        item = kind.build(row[key], row)
    except RowError as error:
        return NewRow(
            row[key],
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


def _summary(
    prepared: Prepared,
    run_id: int,
    outcome: Outcome,
    started: float,
    stats: RunStats,
    counts: dict[str, int],
    journal: Journal,
    paths: dict[str, Path],
    pool: Pool,
) -> dict[str, Any]:
    job = prepared.job
    snap = stats.snapshot()
    return {
        "job": job.name,
        "kind": job.kind,
        "run": run_id,
        "outcome": outcome,
        "stopped_by": pool.stopper.reason,
        "started_at": _iso(started),
        "finished_at": _iso(time.time()),
        "duration_s": snap["elapsed_s"],
        "rows": {
            "input": prepared.input.rows,
            "done": counts["done"],
            "failed": counts["failed"],
            "pending": counts["pending"] + counts["sent"],
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
