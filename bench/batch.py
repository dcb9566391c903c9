"""batch: a 1,000,000-row moderation job in batch mode (``[api] mode = "batch"``): its Batch
API files built and uploaded with peak RSS under 400 MB, and the client's time per row for
building, uploading and collecting.

Input: key ``id`` + a ~100-character ``text`` (bench/datagen.py). Job: moderation,
rows_per_request = 1, so 1,000,000 lines in 20 files of 50,000 (the Batch API's limit), against
an emulator (``pipeline serve``, wordlist engine, its default batch phases) in its own process.
One ``pipeline run`` does it all: build, upload and create every batch, poll, download and
collect. Its peak RSS (``ru_maxrss`` from wait4) covers every stage; the JSON log's timestamps
split the wall time at the last batch submitted (build + upload) and the end (poll + collect).
CPU per row is the client's user + system time over the whole run, divided by the rows.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import BenchError, Emulator, Table, log, run_pipeline, run_python

ROWS = 1_000_000
LIMIT_MB = 400
RUN_TIMEOUT_S = 1800.0
JOB = """kind = "moderation"
name = "batch-bench"
[input]
path = "{input}"
key = "id"
[request]
model = "omni-moderation-latest"
input = "{{text}}"
[output]
dir = "unused"
format = "parquet"
[api]
mode = "batch"
max_attempts = 6
timeout_s = 120
batch_poll_interval_s = 0.5
batch_poll_max_interval_s = 2.0
"""


def run(tmp: Path, table: Table) -> dict[str, Any]:
    data = tmp / "input.parquet"
    log(f"batch: generating {ROWS:,} rows of ~100-char text")
    run_python(
        ["-m", "bench.datagen", str(data), str(ROWS), "--chars", "100"],
        timeout_s=600,
        log_dir=tmp,
        name="datagen",
    )
    job = tmp / "job.toml"
    job.write_text(JOB.format(input=data.name))
    with Emulator(log_dir=tmp) as emulator:
        log(f"batch: pipeline run of {ROWS:,} rows in batch mode against {emulator.base_url}")
        measured, summary = run_pipeline(
            job,
            emulator.base_url,
            timeout_s=RUN_TIMEOUT_S,
            log_dir=tmp,
            name="run",
            extra=("--log-format", "json"),
        )
        batches = emulator.stats()["batches"]
    done = summary["rows"]["done_this_run"]
    if done != ROWS or summary["rows"]["failed_this_run"]:
        raise BenchError(f"batch: {summary['rows']}")
    if batches["completed_twice"] or batches["distinct_completions"] != ROWS:
        raise BenchError(f"batch: the emulator saw {batches}")
    submitted, first, last = _timeline((tmp / "run.stderr").read_text())
    figures = {
        "rows": ROWS,
        "batches": batches["created"],
        "maxrss_mb": measured.maxrss_mb,
        "wall_s": measured.wall_s,
        "cpu_s": measured.cpu_s,
        "cpu_us_per_row": 1e6 * measured.cpu_s / ROWS,
        "build_upload_s": submitted - first,
        "poll_collect_s": last - submitted,
    }
    _report(figures, table)
    return figures


def _report(figures: dict[str, Any], table: Table) -> None:
    """The scenario's line, and its rows of the summary table."""
    maxrss_mb, wall_s, cpu_s = figures["maxrss_mb"], figures["wall_s"], figures["cpu_s"]
    print(
        f"\nbatch: {ROWS:,} rows, rows_per_request 1, {figures['batches']} batches; "
        f"peak RSS {maxrss_mb:.0f} MB; wall {wall_s:.1f} s "
        f"(build+upload {figures['build_upload_s']:.1f} s, then poll+collect "
        f"{figures['poll_collect_s']:.1f} s); client CPU {cpu_s:.1f} s = "
        f"{figures['cpu_us_per_row']:.1f} µs a row"
    )
    table.add(
        "batch",
        f"peak RSS, {ROWS:,} rows built, uploaded, collected",
        f"{maxrss_mb:.0f} MB",
        f"< {LIMIT_MB} MB",
        maxrss_mb < LIMIT_MB,
    )
    table.add(
        "batch", "client CPU per row (build+upload+collect)", f"{figures['cpu_us_per_row']:.1f} µs"
    )
    table.add(
        "batch",
        "client wall per row (build+upload / poll+collect)",
        f"{1e6 * figures['build_upload_s'] / ROWS:.1f} / "
        f"{1e6 * figures['poll_collect_s'] / ROWS:.1f} µs",
    )


def _timeline(log_text: str) -> tuple[float, float, float]:
    """When the last batch was submitted, the first and the last log line (epoch seconds)."""
    times, submitted = [], None
    for line in log_text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        at = _epoch(record)
        if at is None:
            continue
        times.append(at)
        if " submitted: file " in str(record.get("event", "")):
            submitted = at
    if not times or submitted is None:
        raise BenchError("batch: no timestamps, or no batch submitted, in the run's log")
    return submitted, times[0], times[-1]


def _epoch(record: dict[str, Any]) -> float | None:
    stamp = record.get("ts")
    if not isinstance(stamp, str):
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
