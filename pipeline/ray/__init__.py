"""Running a job on Ray (``pipeline run JOB --engine ray``): the options, and the check that the
``ray`` extra is installed. The executor (``executor.py``), its actors (``worker.py``), the one
rate limit (``limiter.py``) and starting or joining a cluster (``cluster.py``) live beside."""

from __future__ import annotations

import resource
from dataclasses import dataclass

from pipeline.errors import JobError

INSTALL_HINT = "pip install 'pipeline[ray]'"


@dataclass(frozen=True)
class RayOptions:
    """Where the run's Ray is and how many actors carry its rows."""

    address: str | None = None  # None: a local Ray started for the run (or the one running)
    actors: int | None = None  # None: one per CPU of the cluster


def check_installed() -> None:
    """Raise JobError (exit 2) when Ray is not installed, naming the fix."""
    try:
        import ray  # noqa: F401  (the run imports it next: this costs nothing more)
    except ImportError:
        raise JobError(f"--engine ray needs Ray, which is not installed: {INSTALL_HINT}") from None


def process_cpu_s() -> float:
    """CPU seconds this process has used (an actor's share of the client CPU per request)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
