"""summary.json: what one run did, built from its counters, the journal and its outputs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pipeline import cost
from pipeline.executor import Executor
from pipeline.job import JobSpec
from pipeline.journal import Journal
from pipeline.plan import Plan
from pipeline.stats import RunStats

Outcome = Literal["completed", "completed_with_errors", "stopped_fatal", "interrupted"]


def build_summary(
    plan: Plan,
    run_id: int,
    outcome: Outcome,
    started: float,
    stats: RunStats,
    counts: dict[str, int],
    unread: int,
    journal: Journal,
    paths: dict[str, Path],
    pool: Executor,
) -> dict[str, Any]:
    job = plan.job
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
            "input": plan.input.rows,
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
        "tokens_estimated": stats.tokens,  # every attempt's, as the TPM limit counted them
        **cost.summary_part(stats.cost, _mode(job), cost.job_prices(job.prices)),
        "characters_sent": stats.characters_sent,
        **{name: round(value, 3) for name, value in sorted(stats.totals.items())},
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


def _mode(job: JobSpec) -> cost.Mode:
    """The price list a job's ``[api] mode`` pays."""
    return "batch" if job.api.mode == "batch" else "sync"


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp))
