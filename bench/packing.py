"""packing: rows per request against a requests-per-minute limit; rows/s must rise ~32x.

The emulator enforces ``--rpm 600 --burst-s 1`` (its bucket holds 10 requests: any burst over
the rate is a 429) with ``--latency-ms 50``; a fresh emulator for each case, so each starts with
a full bucket. One 6,400-row input (short texts, bench/datagen.py); moderation jobs with
``requests_per_minute = 600`` and concurrency 16, each into a fresh output folder:
  A) rows_per_request = 1 over the first 200 rows (``--limit 200``): 200 requests, ~20 s;
  B) rows_per_request = 32 over all 6,400 rows: the same 200 requests, each of 32 inputs.
Every run must finish all its rows (summary.json ``rows.done_this_run``) in exactly 200 requests
answered 200 (429s are counted apart: a 429 is sent again and adds a request).

rows/s = rows done / summary.json ``duration_s`` (the run's own clock: from before it reads its
first input batch to the summary, writing results.parquet included; process start-up excluded);
requests/s = requests sent / duration_s; 429s = summary.json ``rate_limited``. The ratio B/A of
rows/s is the figure; target >= 30x.

Why 30 and not 32: both cases send the same 200 requests at the same 600 rpm, so their request
schedules (the client's one-second bucket, the lone first request of a run) are the same and the
ratio is 32 x duration_A / duration_B. B's run does more of everything per request that the rate
limit does not pace: it reads, journals and writes 32x the rows (6,400 rows into
results.parquet inside duration_s), builds and parses 32-input bodies, and the emulator scores
32 texts per answer. 30x leaves B 6.7 % (~1.3 s on a ~20 s run) for that; "close to 32x" with
less slack would make the target a test of the machine's noise rather than of packing.
Wall time, CPU (os.wait4) and emulator CPU (/proc/PID/stat) are printed for each case too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Emulator,
    Measured,
    Table,
    log,
    render_grid,
    run_pipeline,
    run_python,
    write_job,
)

RPM = 600
BURST_S = 1
LATENCY_MS = 50
CONCURRENCY = 16
REQUESTS = 200  # ~20 s at 600 rpm
PACKED = 32
TARGET_RATIO = 30.0
RUN_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class CaseSpec:
    name: str
    label: str
    rows_per_request: int

    @property
    def rows(self) -> int:
        return REQUESTS * self.rows_per_request


CASES = (
    CaseSpec("a", "A) rows_per_request = 1", 1),
    CaseSpec("b", f"B) rows_per_request = {PACKED}", PACKED),
)


@dataclass
class Result:
    spec: CaseSpec
    measured: Measured
    summary: dict[str, Any]
    emulator_cpu_s: float
    emulator_stats: dict[str, Any]

    @property
    def duration_s(self) -> float:
        return float(self.summary["duration_s"])

    @property
    def rows(self) -> int:
        return int(self.summary["rows"]["done_this_run"])

    @property
    def sent(self) -> int:
        return int(self.summary["requests"]["sent"])

    @property
    def rejected(self) -> int:
        return int(self.summary["requests"]["rate_limited"])

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.duration_s

    @property
    def requests_per_s(self) -> float:
        return self.sent / self.duration_s


def run_case(spec: CaseSpec, data: Path, tmp: Path) -> Result:
    job = write_job(
        tmp / f"job-{spec.name}.toml",
        input_path=data.name,
        output_dir="unused",
        concurrency=CONCURRENCY,
        rows_per_request=spec.rows_per_request,
        requests_per_minute=RPM,
    )
    options = ["--rpm", str(RPM), "--burst-s", str(BURST_S), "--latency-ms", str(LATENCY_MS)]
    with Emulator(options, log_dir=tmp) as emulator:
        log(f"packing: case {spec.label}, {spec.rows:,} rows ({emulator.base_url})")
        before = emulator.cpu_s()
        measured, summary = run_pipeline(
            job,
            emulator.base_url,
            timeout_s=RUN_TIMEOUT_S,
            log_dir=tmp,
            name=f"case-{spec.name}",
            extra=("--limit", str(spec.rows)),
        )
        emulator_cpu = emulator.cpu_s() - before
        stats = emulator.stats()
    result = Result(spec, measured, summary, emulator_cpu, stats)
    ok = int(summary["requests"]["by_status"].get("200", 0))
    if result.rows != spec.rows or summary["rows"]["failed_this_run"] or ok != REQUESTS:
        raise BenchError(
            f"case {spec.name}: {spec.rows} rows in {REQUESTS} requests wanted; "
            f"rows {summary['rows']}, requests {summary['requests']}"
        )
    return result


def run(tmp: Path, table: Table) -> dict[str, Any]:
    rows = max(spec.rows for spec in CASES)
    log(f"packing: generating {rows:,} short texts")
    data = tmp / "input.parquet"
    run_python(
        ["-m", "bench.datagen", str(data), str(rows), "--chars", "short"],
        timeout_s=120,
        log_dir=tmp,
        name="datagen",
    )
    results = [run_case(spec, data, tmp) for spec in CASES]
    a, b = results
    ratio = b.rows_per_s / a.rows_per_s

    print(
        f"\npacking: emulator --rpm {RPM} --burst-s {BURST_S} --latency-ms {LATENCY_MS} (fresh "
        f"for each case); job requests_per_minute {RPM}, concurrency {CONCURRENCY}, "
        f"{REQUESTS} requests per case"
    )
    print(_grid(results))
    print(
        f"ratio B/A: rows/s {ratio:.2f}x (ideal {PACKED}x), requests/s "
        f"{b.requests_per_s / a.requests_per_s:.3f}x, duration_s "
        f"{b.duration_s / a.duration_s:.3f}x"
    )

    _add_rows(table, results, ratio)
    return {
        "rpm": RPM,
        "requests": REQUESTS,
        "ratio": ratio,
        "cases": [
            {
                "case": r.spec.name,
                "rows_per_request": r.spec.rows_per_request,
                "rows": r.rows,
                "sent": r.sent,
                "rate_limited": r.rejected,
                "retries": r.summary["requests"]["retries"],
                "duration_s": r.duration_s,
                "wall_s": r.measured.wall_s,
                "rows_per_s": r.rows_per_s,
                "requests_per_s": r.requests_per_s,
                "cpu_s": r.measured.cpu_s,
                "maxrss_mb": r.measured.maxrss_mb,
                "emulator_cpu_s": r.emulator_cpu_s,
                "emulator_stats": r.emulator_stats,
            }
            for r in results
        ],
    }


def _grid(results: list[Result]) -> str:
    header = [
        "case",
        "rows",
        "sent",
        "200",
        "429",
        "duration s",
        "wall s",
        "rows/s",
        "requests/s",
        "% of limit",
        "CPU s",
        "peak RSS MB",
        "emulator CPU s",
    ]
    grid = [
        [
            r.spec.label,
            f"{r.rows:,}",
            str(r.sent),
            str(r.summary["requests"]["by_status"].get("200", 0)),
            str(r.rejected),
            f"{r.duration_s:.2f}",
            f"{r.measured.wall_s:.2f}",
            f"{r.rows_per_s:,.1f}",
            f"{r.requests_per_s:.2f}",
            f"{100 * r.requests_per_s * 60 / RPM:.1f}",
            f"{r.measured.cpu_s:.2f}",
            f"{r.measured.maxrss_mb:.0f}",
            f"{r.emulator_cpu_s:.2f}",
        ]
        for r in results
    ]
    return render_grid(header, grid)


def _add_rows(table: Table, results: list[Result], ratio: float) -> None:
    for r in results:
        table.add(
            "packing",
            f"{r.spec.label}: rows/s, requests/s, 429s",
            f"{r.rows_per_s:,.1f}, {r.requests_per_s:.2f}, {r.rejected}",
        )
    table.add(
        "packing",
        f"rows/s B/A (ideal {PACKED}x)",
        f"{ratio:.2f}x",
        f">= {TARGET_RATIO:.0f}x",
        ratio >= TARGET_RATIO,
    )
