"""One run of a job: the plan, the lock, journal recovery, feed -> pool -> journal, then the
output files and summary.json (``plan.py``, ``feed.py`` and ``summary.py`` own those steps)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipeline import audiobook, folder, keys, logs, timeline
from pipeline.engines import make_executor
from pipeline.errors import JobError, StorageError
from pipeline.executor import Executor
from pipeline.feed import Scope, count_unread, feed
from pipeline.http import Http
from pipeline.job import LOCAL, JobSource, resolve_api_key
from pipeline.journal import Journal, OutputLock
from pipeline.limits import RateLimiter, RetryPolicy
from pipeline.notify import post_summary
from pipeline.plan import Plan, make_plan
from pipeline.progress import Mode, report
from pipeline.ray import RayOptions
from pipeline.stats import RunStats
from pipeline.stopping import Bounds, Stopper
from pipeline.store import ResultsStore
from pipeline.summary import Outcome, build_summary
from pipeline.transport import Transport
from pipeline.writers import (
    OutputFiles,
    journal_error,
    out_of_storage,
    remove_stale_temporaries,
    write_json,
)

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # each drains and stops cleanly
RUN_GC_THRESHOLDS = (50_000, 20, 100)  # gc.set_threshold during a run (default 700, 10, 10)


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
    # given a thread-safe stop(reason) once the run goes: the Python API's run in a thread
    on_start: Callable[[Callable[[str], object]], None] | None = None
    ray: RayOptions | None = None  # --engine ray: where and on how many actors; None: local


@dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    output_dir: Path
    summary: dict[str, Any]


def run(job_path: JobSource, options: RunOptions) -> RunResult:
    """Run a job to the end (or until stopped); raises JobError, LockedError."""
    settled_too = options.retry_failed or options.redo_changed  # these read the whole input
    plan = make_plan(
        job_path,
        options.output,
        base_url=options.base_url,
        limit=None if settled_too else options.limit,
        for_run=True,
    )
    job = plan.job
    from pipeline.batch import check_mode

    check_mode(plan)  # batch mode takes this job; sync mode leaves no batch in flight behind
    logs.bind(job=job.name)
    base_url = plan.base_url
    for warning in plan.warnings:
        log.warning("%s", warning)
    api_key = resolve_api_key(base_url, job.path)
    lock = OutputLock(job.output.dir)
    lock.acquire()
    try:
        remove_stale_temporaries(job.output.dir)
        with ExitStack() as stack:
            if base_url == LOCAL:
                base_url = stack.enter_context(_local_emulator(plan.local_emulator))
            # What exists now (modules, the job, the embedded emulator) lives as long as the
            # run: out of the collector's sight, it is not scanned again (~10% less CPU).
            gc.collect()
            gc.freeze()
            thresholds = gc.get_threshold()
            # With requests in flight, their futures and answers outlive a tick and filled the
            # young generation every ~15 requests: 9% of the client's CPU in collections that
            # find next to nothing (bench/results/2026-12-04-profile.txt). Cycles are still
            # collected, about 70 times less often.
            gc.set_threshold(*RUN_GC_THRESHOLDS)
            try:
                return asyncio.run(_run(plan, base_url, api_key, options))
            finally:
                gc.set_threshold(*thresholds)
                gc.unfreeze()  # a caller in the same process (tests) collects as before
    finally:
        lock.release()


@contextmanager
def _local_emulator(settings: dict[str, Any]) -> Iterator[str]:
    from pipeline.emulator import EmulatorConfig, start_emulator
    from pipeline.emulator.errors import EmulatorError

    try:
        started = start_emulator(EmulatorConfig(**settings))
    except EmulatorError as error:  # the `local` extra is missing: exit 2, naming the fix
        raise JobError(error.message) from None
    with started as emulator:
        log.info("local emulator listening on %s", emulator.base_url)
        yield emulator.base_url


async def _run(plan: Plan, base_url: str, api_key: str | None, options: RunOptions) -> RunResult:
    journal, store, run_id, stats = _open(plan, options)
    started = time.time()
    pool, input_error, feeder_read_all = await _execute(
        plan, base_url, api_key, options, journal, store, stats
    )
    outcome, summary = _finish(
        plan, options, journal, store, pool, stats, run_id, started, feeder_read_all
    )
    failed = outcome != "completed" or input_error is not None  # exits non-zero
    await post_summary(plan.job.notify, summary, failed=failed, secret=api_key)
    if input_error is not None:
        raise JobError(
            f"{input_error.message}; the run stopped, the answers so far are kept (journal "
            "and outputs written): fix or restore the file, then rerun to resume",
            path=str(plan.job.path),
            field=input_error.field,
        )
    return RunResult(outcome, plan.job.output.dir, summary)


def _open(plan: Plan, options: RunOptions) -> tuple[Journal, ResultsStore, int, RunStats]:
    """The journal claimed, reconciled (keys, --rebuild-journal, result columns) and recovered
    (rows left in flight, outputs a crash left half-recorded), and the run's counters."""
    job, kind = plan.job, plan.kind
    rebuild = folder.check_journal_present(job.output.dir, options.rebuild_journal)
    try:
        journal = Journal(job.output.dir)
        folder.claim(journal, job)
        key_family = folder.check_key_family(journal, plan.input, job.input.key)
        if rebuild:
            adopted = folder.adopt_outputs(journal, job, kind.result_schema)
            log.warning("journal rebuilt from the output files: %d key(s) adopted", adopted)
        run_id, resent_requests, resent_rows = journal.start_run()
    except sqlite3.Error as exc:
        if not out_of_storage(exc):
            raise
        raise journal_error(job.output.dir, exc) from exc
    if moved := journal.use_result_columns(kind.result_schema.names):
        log.info("result columns changed since the last run: %d held row(s) moved", moved)
    store = _results_store(plan, journal, key_family)
    store.recover()
    if resent_requests:
        log.warning(
            "an earlier run stopped with %d request(s) (%d rows) in flight: sending them again",
            resent_requests,
            resent_rows,
        )
    counts = journal.counts()
    stats = RunStats(
        rows_total=plan.input.rows,
        rows_already=counts["done"] + counts["failed"],
        resent_requests=resent_requests,
        resent_rows=resent_rows,
    )
    logs.bind(counts=stats.snapshot)
    return journal, store, run_id, stats


async def _execute(
    plan: Plan,
    base_url: str,
    api_key: str | None,
    options: RunOptions,
    journal: Journal,
    store: ResultsStore,
    stats: RunStats,
) -> tuple[Executor, JobError | None, bool]:
    """Feed the executor and let it carry every row (or until the run stops); returns it, the
    input's error if reading failed mid-run, and whether the feeder read the whole input."""
    job = plan.job
    stopper = Stopper()
    limiter = RateLimiter(job.api.requests_per_minute, job.api.tokens_per_minute, stopper)
    policy = RetryPolicy(job.api.max_attempts, limiter, stats, stopper, options.bounds)
    async with Http(
        base_url, api_key, job.api.timeout_s, job.api.concurrency, observe=limiter.observe
    ) as http:
        files = OutputFiles(job.output.dir, journal)
        transport = Transport(http, policy, job.api.concurrency)
        grace, ray = options.stop_grace_s, options.ray
        pool = make_executor(
            plan, transport, journal, files, stats, stopper, grace, ray, options.bounds.max_requests
        )
        _on_signals(pool)
        if options.on_start is not None:
            loop = asyncio.get_running_loop()
            stop = pool.stop
            options.on_start(lambda reason: loop.call_soon_threadsafe(stop, reason))
        flush_failed = _watch_backlog(journal, store, pool)
        if options.max_runtime_s is not None:
            asyncio.get_running_loop().call_later(options.max_runtime_s, pool.stop, "max_runtime")
        done_event = asyncio.Event()
        progress = asyncio.create_task(report(stats, options.progress, done_event))
        recorder = asyncio.create_task(timeline.record(job.output.dir, stats, done_event))
        scope = Scope(options.limit, options.retry_failed, options.redo_changed)
        feeder = asyncio.create_task(feed(plan, journal, pool, stats, scope))
        feeder.add_done_callback(lambda task: _stop_on_error(task, pool))
        await pool.run()
        if not feeder.done() and (stopper.stopped or pool.fatal is not None):
            feeder.cancel()  # else it is counting changed rows: the summary needs the count
        input_error = await _feeder_error(feeder, job.output.dir)
        done_event.set()
        await asyncio.gather(progress, recorder)
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.remove_signal_handler(sig)
    for error in (pool.storage_error, *flush_failed):
        if error is not None:
            journal.close()  # every committed answer not written yet is in it
            raise error
    return pool, input_error, not feeder.cancelled()


def _finish(
    plan: Plan,
    options: RunOptions,
    journal: Journal,
    store: ResultsStore,
    pool: Executor,
    stats: RunStats,
    run_id: int,
    started: float,
    feeder_read_all: bool,
) -> tuple[Outcome, dict[str, Any]]:
    """The outputs flushed, the outcome decided, summary.json written, the run recorded."""
    job = plan.job
    with _gc_paused():  # millions of short-lived, acyclic values: collecting finds nothing
        paths = store.flush(final=True)
    stopped = pool.stopper.stopped or pool.fatal is not None
    books = audiobook.assemble(plan, journal, stopped=stopped)  # from the results just written
    counts = journal.counts()
    read_all = options.limit is None and feeder_read_all
    unread = 0 if read_all else count_unread(plan, journal, sum(counts.values()))
    limited = options.limit is not None and unread > 0
    outcome: Outcome
    if pool.fatal is not None:
        outcome = "stopped_fatal"
    elif pool.stopper.stopped or limited:  # a signal, a --max-* bound, or --limit: rows left
        outcome = "interrupted"
    else:
        outcome = "completed_with_errors" if counts["failed"] else "completed"
    summary = build_summary(
        plan, run_id, outcome, started, stats, counts, unread, journal, paths, pool
    )
    if books is not None:
        summary["books"] = books
    write_json(job.output.dir, "summary.json", summary)
    try:
        journal.finish_run(run_id, outcome, summary)
    except sqlite3.Error as exc:
        raise journal_error(job.output.dir, exc) from exc
    journal.close()
    return outcome, summary


def _results_store(plan: Plan, journal: Journal, key_family: keys.Family) -> ResultsStore:
    job = plan.job
    key, keep = job.input.key, job.input.keep

    def front() -> dict[str, pl.DataType]:
        key_dtype = folder.key_dtype(journal, plan.input, key, key_family)
        return {key: key_dtype, **{col: plan.input.schema[col] for col in keep}}

    columns = (key, keep, plan.kind.result_schema)
    return ResultsStore(journal, job.output.dir, job.output.format, columns, front)


def _watch_backlog(journal: Journal, store: ResultsStore, pool: Executor) -> list[StorageError]:
    """Flush the results whenever the journal holds too many (on the loop, between commits);
    a flush that cannot write stops the run, and the error is returned in the list."""
    failed: list[StorageError] = []

    def flush() -> None:
        if failed:
            return
        try:
            with _gc_paused():
                store.flush()
        except StorageError as error:
            failed.append(error)
            pool.stop("storage_error")

    journal.watch_backlog(flush)
    return failed


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


def _stop_on_error(feeder: asyncio.Task[None], pool: Executor) -> None:
    """A reader that fails must not leave the workers waiting for END."""
    if not feeder.cancelled() and feeder.exception() is not None:
        pool.stop("input_error")


def _on_signals(pool: Executor) -> None:
    """SIGINT/SIGTERM/SIGHUP: drain and stop cleanly; a second signal exits at once (the journal
    is consistent at any instant: every change is one SQLite transaction). SIGHUP is a closed
    terminal or a killed tmux session: the run still writes its outputs and summary."""
    if threading.current_thread() is not threading.main_thread():
        return  # the Python API in a thread (beside a notebook's loop): signals are the caller's
    loop = asyncio.get_running_loop()

    def handle(sig: signal.Signals) -> None:
        if pool.stopper.stopped and pool.stopper.reason == sig.name:
            log.warning("%s again: exiting now; rerun to resume", sig.name)
            os._exit(128 + sig.value)
        log.warning("%s received: finishing requests in flight, then stopping", sig.name)
        pool.stop(sig.name)

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, handle, sig)
