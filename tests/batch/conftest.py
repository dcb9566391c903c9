"""Helpers of the batch-mode tests: a moderation job in batch mode, fast batch phases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from tests.conftest import write_job

FAST_PHASES = {"validating": 0.05, "in_progress": 0.2, "finalizing": 0.05, "cancelling": 0.05}
BATCH_API = {"mode": "batch", "batch_poll_interval_s": 0.05, "batch_poll_max_interval_s": 0.2}


def comments(count: int, start: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {"id": list(range(start, start + count)), "text": [f"comment {i}" for i in range(start, start + count)]}
    )


def batch_job(folder: Path, data: pl.DataFrame | None, **sections: Any) -> Path:
    api = {"concurrency": 4, "max_attempts": 6, "timeout_s": 10, **BATCH_API}
    api.update(sections.pop("api", {}))
    return write_job(folder, data, api=api, **sections)


def batches(stats: dict[str, Any]) -> dict[str, Any]:
    return dict(stats["batches"])
