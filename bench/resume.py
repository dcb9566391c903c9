"""resume: restart a 1,000,000-row job that had finished 999,000 rows; it must send within 5 s.

Two ways a job gets there, each in its own output folder, against one emulator (no latency, no
limits, wordlist engine); moderation, rows_per_request = 100, concurrency 32, ~100-char texts:

  grown) the nightly case: the job ran to the end over a 999,000-row input; the input then grew
         to 1,000,000 rows (the same 999,000 first, bench/datagen.py is prefix-stable) and the
         job runs again into the same folder. The 1,000 new keys come last, so the run must get
         past 999,000 done keys before it has anything to send.
  stopped) the job ran over the 1,000,000-row input with ``--max-requests 9990`` (999,000 rows,
         exit 4, a clean stop that leaves the rows already read ahead pending in the journal),
         then runs again.

"First request" is measured from just before the second run's process is spawned (interpreter
start, imports, job, input inspection and journal recovery included) to the moment the
emulator's request counter (GET /_emulator/stats, polled every 20 ms from a thread; the route is
not itself counted) first grows. The first runs are measured too (their duration and peak RSS),
and the second run's whole wall time, since it ends only when the rows it sent are written and
the done rows have been compared with the input (``rows_changed_since_done``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Emulator,
    Measured,
    StatsPoller,
    Table,
    count_requests,
    log,
    render_grid,
    run_pipeline,
    run_python,
    write_job,
)

ROWS = 1_000_000
DONE = 999_000
ROWS_PER_REQUEST = 100
CONCURRENCY = 32
TARGET_FIRST_S = 5.0
RUN_TIMEOUT_S = 600.0
POLL_S = 0.02


@dataclass
class Case:
    label: str
    first: Measured
    first_summary: dict[str, Any]
    again: Measured
    again_summary: dict[str, Any]
    first_request_s: float | None


def _run(
    emulator: Emulator, job: Path, tmp: Path, name: str, extra: tuple[str, ...] = ()
) -> tuple[Measured, dict[str, Any]]:
    measured, summary = run_pipeline(
        job,
        emulator.base_url,
        timeout_s=RUN_TIMEOUT_S,
        log_dir=tmp,
        name=name,
        extra=extra,
        output=tmp / f"{name.split('-')[0]}.out",  # the restart uses the first run's folder
        ok_codes=(4,) if extra else (0,),  # --max-requests: a clean stop is exit 4
    )
    return measured, summary


def _again(
    emulator: Emulator, job: Path, tmp: Path, name: str
) -> tuple[Measured, dict[str, Any], float]:
    with StatsPoller(emulator, POLL_S, until=count_requests) as watch:
        launched = time.monotonic()
        measured, summary = _run(emulator, job, tmp, name)
    arrived = watch.first_growth(count_requests)
    if arrived is None:
        raise BenchError(f"{name}: the emulator saw no request")
    return measured, summary, arrived - launched


def run(tmp: Path, table: Table) -> dict[str, Any]:
    jobs = _write_jobs(tmp)
    cases: list[Case] = []
    with Emulator(log_dir=tmp) as emulator:
        log("resume: grown) a 999,000-row run, then the same job over 1,000,000 rows")
        first, first_summary = _run(emulator, jobs[DONE], tmp, "grown-first")
        again, again_summary, seconds = _again(emulator, jobs[ROWS], tmp, "grown-again")
        cases.append(
            Case(
                "grown: 999,000 done, 1,000 new",
                first,
                first_summary,
                again,
                again_summary,
                seconds,
            )
        )
        log("resume: stopped) --max-requests 9990 over 1,000,000 rows, then again")
        stop = ("--max-requests", str(DONE // ROWS_PER_REQUEST))
        first, first_summary = _run(emulator, jobs[ROWS], tmp, "stopped-first", stop)
        again, again_summary, seconds = _again(emulator, jobs[ROWS], tmp, "stopped-again")
        cases.append(
            Case("stopped: 999,000 done", first, first_summary, again, again_summary, seconds)
        )
    for case in cases:
        done = case.first_summary["rows"]["done"] + case.again_summary["rows"]["done_this_run"]
        if case.first_summary["rows"]["done"] != DONE or done != ROWS:
            raise BenchError(
                f"{case.label}: {case.first_summary['rows']} then {case.again_summary['rows']}"
            )

    print(
        f"\nresume: {ROWS:,}-row job with {DONE:,} done; rows_per_request {ROWS_PER_REQUEST}, "
        f"concurrency {CONCURRENCY}, no latency, no limits"
    )
    print(_grid(cases))
    for c in cases:
        assert c.first_request_s is not None
        table.add(
            "resume",
            f"{c.label}: first request after restart",
            f"{c.first_request_s:.2f} s",
            f"< {TARGET_FIRST_S:.0f} s",
            c.first_request_s < TARGET_FIRST_S,
        )
        table.add("resume", f"{c.label}: the restart's whole run (wall)", f"{c.again.wall_s:.1f} s")
    return {
        c.label: {
            "first_wall_s": c.first.wall_s,
            "first_maxrss_mb": c.first.maxrss_mb,
            "first_request_s": c.first_request_s,
            "again_wall_s": c.again.wall_s,
            "again_duration_s": c.again_summary["duration_s"],
            "again_cpu_s": c.again.cpu_s,
            "again_maxrss_mb": c.again.maxrss_mb,
            "again_rows": c.again_summary["rows"],
        }
        for c in cases
    }


def _write_jobs(tmp: Path) -> dict[int, Path]:
    """The DONE-row and ROWS-row inputs, and one job (one name, one output folder) over each."""
    inputs = {}
    for rows in (DONE, ROWS):
        log(f"resume: generating {rows:,} rows of ~100-char text")
        inputs[rows] = tmp / f"input-{rows}.parquet"
        run_python(
            ["-m", "bench.datagen", str(inputs[rows]), str(rows), "--chars", "100"],
            timeout_s=300,
            log_dir=tmp,
            name=f"datagen-{rows}",
        )
    jobs = {
        rows: write_job(
            tmp / f"job-{rows}.toml",
            input_path=inputs[rows].name,
            output_dir="unused",
            concurrency=CONCURRENCY,
            rows_per_request=ROWS_PER_REQUEST,
            name="resume",  # one job over a grown input: the output folder is its
        )
        for rows in (DONE, ROWS)
    }
    return jobs


def _grid(cases: list[Case]) -> str:
    header = [
        "case",
        "1st run rows",
        "1st run s",
        "1st peak RSS MB",
        "first request s",
        "rows sent again",
        "2nd run wall s",
        "2nd duration s",
        "2nd CPU s",
        "2nd peak RSS MB",
    ]
    grid = [
        [
            c.label,
            f"{c.first_summary['rows']['done']:,}",
            f"{c.first.wall_s:.1f}",
            f"{c.first.maxrss_mb:.0f}",
            f"{c.first_request_s:.2f}",
            f"{c.again_summary['rows']['done_this_run']:,}",
            f"{c.again.wall_s:.1f}",
            f"{c.again_summary['duration_s']:.1f}",
            f"{c.again.cpu_s:.1f}",
            f"{c.again.maxrss_mb:.0f}",
        ]
        for c in cases
    ]
    return render_grid(header, grid)
