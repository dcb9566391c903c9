"""Which executor carries a run: the asyncio pool, the Batch API executor (``mode = "batch"``)
or, with ``--engine ray``, the Ray executor; the runner asks here and never which it got."""

from __future__ import annotations

from pipeline.errors import JobError
from pipeline.executor import Executor
from pipeline.job import resolve_api_key
from pipeline.journal import Journal
from pipeline.limits import RateLimiter, RetryPolicy
from pipeline.plan import Plan
from pipeline.pool import Pool
from pipeline.ray import RayOptions
from pipeline.stats import RunStats
from pipeline.stopping import Stopper
from pipeline.transport import Transport
from pipeline.writers import OutputFiles


def make_executor(
    plan: Plan,
    transport: Transport,
    journal: Journal,
    files: OutputFiles,
    stats: RunStats,
    stopper: Stopper,
    stop_grace_s: float,
    ray: RayOptions | None = None,
    max_requests: int | None = None,
) -> Executor:
    """The worker pool; in batch mode the Batch API executor (its calls retried apart from the
    job's rate limits: the Batch API's are its own); on Ray the Ray executor (the same rows,
    journal and files, the requests sent by its actors)."""
    api = plan.job.api
    if ray is not None:
        if api.mode != "sync":
            raise JobError('--engine ray sends at once: run a mode = "batch" job without it')
        from pipeline.ray.executor import RayExecutor

        key = resolve_api_key(plan.base_url, plan.job.path)  # as the run read it: for the actors
        return RayExecutor(
            ray, api, key, plan.kind, transport, journal, files, stats, stopper, stop_grace_s
        )
    if api.mode == "sync":
        return Pool(
            plan.kind, transport, journal, files, stats, stopper, api.concurrency, stop_grace_s
        )
    from pipeline.batch import BatchApi, BatchExecutor

    calls = RetryPolicy(api.max_attempts, RateLimiter(None, None, stopper), RunStats(), stopper)
    metadata = {"pipeline_job": plan.job.name, "pipeline_folder": str(files.output_dir)}
    return BatchExecutor(
        plan.kind,
        BatchApi(transport.http, calls, metadata),
        journal,
        files,
        stats,
        stopper,
        api.max_attempts,
        (api.batch_poll_interval_s, api.batch_poll_max_interval_s),
        max_requests,
    )
