"""The Python API's job functions: ``run`` and ``validate`` on a job file, a dict of its tables
or a JobSpec, returning records instead of exit codes and printed lines.

The same run as ``pipeline run`` (plan, lock, journal, outputs, summary.json): a rerun resumes.
Errors are exceptions from ``errors.py`` (JobError for what ``run`` would exit 2 on, LockedError,
StorageError); nothing is printed. Inside a running event loop (a notebook) the run goes on in
a worker thread, and the call returns when it ends.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path, PurePath
from typing import Any, TypeVar

from pipeline import cost
from pipeline.cli import OUTCOME_EXIT  # cli.py owns the exit codes
from pipeline.errors import JobError
from pipeline.job import DICT_JOB, JobSource
from pipeline.plan import make_plan
from pipeline.preview import preview
from pipeline.runner import RunOptions
from pipeline.runner import run as run_job
from pipeline.stopping import Bounds

T = TypeVar("T")
JOIN_WAIT_S = 0.2  # how soon a caller's interrupt reaches a run going on in a worker thread


@dataclass(frozen=True)
class Summary:
    """What a run did: summary.json (``data``) with its outcome and the exit code the command
    line would have ended with (0 completed, 1 rows failed, 3 stopped by the API, 4 interrupted:
    rerun to resume)."""

    outcome: str
    exit_code: int
    output_dir: Path
    results: Path
    errors: Path
    data: Mapping[str, Any]

    @property
    def ok(self) -> bool:
        """Whether every row is done (exit code 0)."""
        return self.exit_code == 0

    @property
    def rows(self) -> Mapping[str, int]:
        """summary.json's ``rows``: input, done, failed, pending, unread, ..._this_run."""
        rows: Mapping[str, int] = self.data["rows"]
        return rows

    @property
    def cost_usd(self) -> float | None:
        """The dollars of this run's answers at the price table's prices (None: no price)."""
        spent: float | None = self.data["cost_usd"]["actual"]
        return spent


@dataclass(frozen=True)
class Validation:
    """What ``validate`` found, sending nothing: the rows, the requests they make, the first
    few error rows as (key, message), and the estimated cost (dollars; None: no price known)."""

    job: str
    kind: str
    rows: int
    valid: int
    invalid: int
    requests: int
    tokens: int
    characters: int
    problems: tuple[tuple[Any, str], ...]
    warnings: tuple[str, ...]
    cost_sync_usd: float | None
    cost_batch_usd: float | None
    cost_lines: tuple[str, ...]  # what `pipeline validate` prints about cost
    output_dir: Path


def run(
    job: JobSource,
    *,
    output_dir: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    limit: int | None = None,
    max_requests: int | None = None,
    max_characters: int | None = None,
    max_runtime_s: float | None = None,
    retry_failed: bool = False,
    redo_changed: bool = False,
) -> Summary:
    """Run a job to its end, as ``pipeline run`` does; the keywords are its options.

    ``job`` is a job file's path, a dict of its TOML tables (relative paths from the current
    folder) or a JobSpec. Raises JobError (unusable job or input), LockedError (another run
    holds the output folder), StorageError (the output folder cannot be written)."""
    options = RunOptions(
        limit=limit,
        base_url=base_url,
        output=None if output_dir is None else Path(output_dir),
        bounds=Bounds(max_requests=max_requests, max_characters=max_characters),
        max_runtime_s=max_runtime_s,
        retry_failed=retry_failed,
        redo_changed=redo_changed,
    )
    with _named_for(job):
        result = outside_a_loop(partial(run_job, plain(job)), options)
    outputs = result.summary["outputs"]
    return Summary(
        outcome=result.outcome,
        exit_code=OUTCOME_EXIT[result.outcome],
        output_dir=result.output_dir,
        results=result.output_dir / outputs["results"],
        errors=result.output_dir / outputs["errors"],
        data=result.summary,
    )


def validate(
    job: JobSource,
    *,
    output_dir: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
) -> Validation:
    """Read the job and every row and build every request, as ``pipeline validate``; nothing is
    sent or written. Raises JobError for an unusable job or input."""
    output = None if output_dir is None else Path(output_dir)
    with _named_for(job):
        plan = make_plan(plain(job), output, base_url=base_url)
        found = preview(plan)
    table = cost.job_prices(plan.job.prices)
    return Validation(
        job=plan.job.name,
        kind=plan.job.kind,
        rows=found.rows,
        valid=found.valid,
        invalid=found.invalid,
        requests=found.requests,
        tokens=found.tokens,
        characters=found.characters,
        problems=tuple(found.problems),
        warnings=plan.warnings,
        cost_sync_usd=cost.total(found.cost.estimated, "sync", table),
        cost_batch_usd=cost.total(found.cost.estimated, "batch", table)
        if plan.kind.batchable
        else None,
        cost_lines=tuple(cost.validate_lines(found.cost, plan.kind.batchable, table)),
        output_dir=plan.job.output.dir,
    )


@contextmanager
def _named_for(job: JobSource) -> Iterator[None]:
    """A dict job's JobError without the stand-in file name (``<job dict>``): the field is
    what the caller wrote."""
    try:
        yield
    except JobError as error:
        if not isinstance(job, Mapping) or error.path != str(Path.cwd() / DICT_JOB):
            raise
        raise JobError(error.message, field=error.field) from None


def plain(job: JobSource) -> JobSource:
    """A dict job with its paths (``Path`` values) as the strings TOML would hold."""
    if isinstance(job, Mapping):
        return {key: _plain_value(value) for key, value in job.items()}
    return job


def _plain_value(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {key: _plain_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_value(item) for item in value]
    return value


def outside_a_loop(function: Callable[[RunOptions], T], options: RunOptions) -> T:
    """``function(options)`` here, or in a worker thread when this thread runs an event loop (a
    notebook's): the run starts its own loop, which cannot nest in a running one. There, an
    interrupt (KeyboardInterrupt) stops the run as SIGINT does, waits for it to drain (its
    folder resumable), and is raised again; a second one leaves it to finish in the thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return function(options)  # the main thread's signals stop it: the runner's handlers
    stops: list[Callable[[str], object]] = []
    outcome: list[T] = []
    failure: list[BaseException] = []
    ended = threading.Event()  # not Thread.join: on 3.11 an interrupted join returns early

    def work() -> None:
        try:
            outcome.append(function(replace(options, on_start=stops.append)))
        except BaseException as error:  # handed to the caller's thread, raised there
            failure.append(error)
        finally:
            ended.set()

    thread = threading.Thread(target=work, name="pipeline-run", daemon=True)
    thread.start()
    try:
        while not ended.wait(JOIN_WAIT_S):  # short waits: an interrupt is raised between them
            pass
    except KeyboardInterrupt:
        for stop in stops:
            with suppress(RuntimeError):  # the run's loop closed: it had ended already
                stop("SIGINT")
        ended.wait()
        raise
    if failure:
        raise failure[0]
    return outcome[0]
