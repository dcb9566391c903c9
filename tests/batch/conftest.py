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
        {
            "id": list(range(start, start + count)),
            "text": [f"comment {i}" for i in range(start, start + count)],
        }
    )


def batch_job(folder: Path, data: pl.DataFrame | None, **sections: Any) -> Path:
    api = {"concurrency": 4, "max_attempts": 6, "timeout_s": 10, **BATCH_API}
    api.update(sections.pop("api", {}))
    return write_job(folder, data, api=api, **sections)


def batches(stats: dict[str, Any]) -> dict[str, Any]:
    return dict(stats["batches"])


def input_lines(server_url: str, output: Path) -> list[dict[str, Any]]:
    """Every line of every input file the run uploaded, read back from the emulator."""
    import json
    import sqlite3
    import urllib.request

    db = sqlite3.connect(output / ".pipeline" / "journal.sqlite")
    try:
        ids = [
            fid
            for (fid,) in db.execute("SELECT file_id FROM batch_files WHERE file_id IS NOT NULL")
        ]
    finally:
        db.close()
    lines = []
    for fid in ids:
        request = urllib.request.Request(
            f"{server_url}/files/{fid}/content",
            headers={"Authorization": "Bearer sk-test"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            lines += [json.loads(line) for line in answer.read().splitlines() if line.strip()]
    return lines


def conserved(job: Path, expected: set[int]) -> tuple[set[int], set[int]]:
    """The keys of results and errors; each input key is in exactly one of them."""
    from tests.conftest import read_output

    results = read_output(job, "results")["id"].to_list()
    errors_path = job.parent / "out" / "errors.parquet"
    errors = pl.read_parquet(errors_path)["id"].to_list() if errors_path.exists() else []
    assert len(results) == len(set(results)), "a key twice in results"
    assert len(errors) == len(set(errors)), "a key twice in errors"
    assert set(results) | set(errors) == expected
    assert not set(results) & set(errors)
    return set(results), set(errors)


def batch_list(server_url: str) -> list[dict[str, Any]]:
    """Every batch the emulator holds (GET /v1/batches, one page)."""
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{server_url}/batches?limit=100", headers={"Authorization": "Bearer sk-test"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return list(json.loads(answer.read())["data"])
