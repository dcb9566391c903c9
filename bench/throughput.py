"""throughput: 50,000 one-row moderation requests against an emulator with no latency, no limits.

For each concurrency (32, 64, 128) the pipeline runs the job from scratch (fresh output folder)
and then the bare aiohttp reference (bench/bare_client.py) posts the same 50,000 bodies at the
same concurrency to the same emulator. Both are subprocesses reaped with os.wait4, so their CPU
(user+sys, all threads) is measured the same way.

Net CPU per request = (CPU of the full run - CPU of a start-up run) / requests. The pipeline's
start-up run is the same job with ``--limit 0`` into a fresh folder: interpreter start, imports,
reading the job, inspecting the 50,000-row input, opening the journal and writing empty outputs.
It sends nothing. The bare client's start-up run is ``--limit 0`` too (imports, loading bodies).
Each start-up run is done twice and the lower CPU kept (the first may pay for a cold page cache).
The emulator's CPU per request comes from /proc/PID/stat before and after each run.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Emulator,
    EmulatorUsage,
    Measured,
    Table,
    figure_line,
    log,
    range_line,
    render_grid,
    run_bare,
    run_pipeline,
    run_python,
    write_job,
)

ROWS = 50_000
CONCURRENCIES = (32, 64, 128)
TARGET_CPU_MS = 0.5  # the brief: at most this much client CPU a request
TARGET_REQUESTS_PER_S = 1_500  # and at least this many requests a second
RUN_TIMEOUT_S = 300.0
REPEATS = 3  # each figure is the median over the repeats


@dataclass
class Case:
    concurrency: int
    pipeline: Measured
    summary: dict[str, Any]
    pipeline_emulator_cpu_s: float
    bare: Measured
    bare_result: dict[str, Any]
    bare_emulator_cpu_s: float


def _measure_bare(
    emulator: Emulator, bodies: Path, concurrency: int, tmp: Path, name: str, limit: int | None
) -> tuple[Measured, dict[str, Any], float]:
    before = emulator.cpu_s()
    extra = [] if limit is None else ["--limit", str(limit)]
    measured, result = run_bare(
        emulator.base_url,
        bodies,
        concurrency,
        *extra,
        timeout_s=RUN_TIMEOUT_S,
        log_dir=tmp,
        name=name,
    )
    return measured, result, emulator.cpu_s() - before


def _measure_pipeline(
    emulator: Emulator, job: Path, tmp: Path, name: str, extra: tuple[str, ...] = ()
) -> tuple[Measured, dict[str, Any], float]:
    before = emulator.cpu_s()
    measured, summary = run_pipeline(
        job, emulator.base_url, timeout_s=RUN_TIMEOUT_S, log_dir=tmp, name=name, extra=extra
    )
    return measured, summary, emulator.cpu_s() - before


def run(
    tmp: Path,
    table: Table,
    rows: int = ROWS,
    concurrencies: tuple[int, ...] = CONCURRENCIES,
) -> dict[str, Any]:
    log(f"throughput: generating {rows:,} short texts")
    data, bodies = tmp / "input.parquet", tmp / "bodies.jsonl"
    run_python(
        ["-m", "bench.datagen", str(data), str(rows), "--chars", "short", "--bodies", str(bodies)],
        timeout_s=120,
        log_dir=tmp,
        name="datagen",
    )
    with Emulator(log_dir=tmp) as emulator:
        log(f"throughput: emulator {emulator.base_url} (pid {emulator.pid})")
        # warm the emulator (first requests pay for lazy set-up) and the page cache
        _measure_bare(emulator, bodies, 64, tmp, "warmup-bare", 2000)
        start_job = write_job(
            tmp / "startup.toml", input_path=data.name, output_dir="unused", concurrency=64
        )
        startups = [
            _measure_pipeline(emulator, start_job, tmp, f"startup-{i}", ("--limit", "0"))[0]
            for i in range(2)
        ]
        pipeline_startup = min(startups, key=lambda m: m.cpu_s)
        bare_startup = min(
            (_measure_bare(emulator, bodies, 64, tmp, f"bare-startup-{i}", 0)[0] for i in range(2)),
            key=lambda m: m.cpu_s,
        )
        cases: list[Case] = []
        for rep in range(REPEATS):  # interleaved, so background noise spreads over all cases
            for concurrency in concurrencies:
                job = write_job(
                    tmp / f"job-c{concurrency}.toml",
                    input_path=data.name,
                    output_dir="unused",
                    concurrency=concurrency,
                    rows_per_request=1,
                )
                tag = f"c{concurrency}-r{rep + 1}"
                log(
                    f"throughput: pipeline then bare aiohttp, concurrency {concurrency}, "
                    f"repeat {rep + 1}/{REPEATS}"
                )
                measured, summary, emu_cpu = _measure_pipeline(
                    emulator, job, tmp, f"pipeline-{tag}"
                )
                bare, bare_result, bare_emu_cpu = _measure_bare(
                    emulator, bodies, concurrency, tmp, f"bare-{tag}", None
                )
                cases.append(
                    Case(concurrency, measured, summary, emu_cpu, bare, bare_result, bare_emu_cpu)
                )
        stats = emulator.stats()
    usage = emulator.usage
    assert usage is not None
    return _report(table, rows, cases, pipeline_startup, bare_startup, stats, usage)


def _report(
    table: Table,
    rows: int,
    cases: list[Case],
    pipeline_startup: Measured,
    bare_startup: Measured,
    stats: dict[str, Any],
    usage: EmulatorUsage,
) -> dict[str, Any]:
    per_case = [_case_figures(case, rows, pipeline_startup, bare_startup) for case in cases]
    derived = _medians(per_case)
    print(
        f"\nthroughput: {rows:,} rows, rows_per_request 1, no latency, no limits; "
        f"medians of {REPEATS} runs"
    )
    print(_grid(derived))
    print(
        f"pipeline start-up (--limit 0, best of 2): {pipeline_startup.cpu_s:.2f} s CPU, "
        f"{pipeline_startup.wall_s:.2f} s wall, peak RSS {pipeline_startup.maxrss_mb:.0f} MB; "
        f"bare client start-up: {bare_startup.cpu_s:.2f} s CPU"
    )
    print(
        f"emulator, whole life (incl. warm-up and start-up runs): {usage.cpu_s:.1f} s CPU for "
        f"{stats['requests']:,} requests, peak RSS {usage.maxrss_mb:.0f} MB"
    )
    _add_rows(table, derived, pipeline_startup, bare_startup)
    return {
        "rows": rows,
        "medians": derived,
        "runs": per_case,
        "pipeline_startup": {
            "cpu_s": pipeline_startup.cpu_s,
            "wall_s": pipeline_startup.wall_s,
            "maxrss_mb": pipeline_startup.maxrss_mb,
        },
        "bare_startup_cpu_s": bare_startup.cpu_s,
        "emulator": {"cpu_s": usage.cpu_s, "maxrss_mb": usage.maxrss_mb, "stats": stats},
    }


def _case_figures(
    case: Case, rows: int, pipeline_startup: Measured, bare_startup: Measured
) -> dict[str, Any]:
    """One repeat's figures; BenchError for a run that did not answer every request with 200."""
    s = case.summary
    requests = s["requests"]["sent"]
    ok = s["requests"]["by_status"].get("200", 0)
    done = s["rows"]["done_this_run"]
    if done != rows or ok != requests:
        raise BenchError(f"c={case.concurrency}: {done} rows done, statuses {s['requests']}")
    bare_requests = case.bare_result["requests"]
    if case.bare_result["statuses"].get("200") != bare_requests:
        raise BenchError(f"bare c={case.concurrency}: {case.bare_result['statuses']}")
    net_cpu = case.pipeline.cpu_s - pipeline_startup.cpu_s
    bare_net = case.bare.cpu_s - bare_startup.cpu_s
    return {
        "concurrency": case.concurrency,
        "rows_per_s": done / s["duration_s"],
        "requests_per_s": requests / s["duration_s"],
        "rows_per_s_wall": done / case.pipeline.wall_s,
        "wall_s": case.pipeline.wall_s,
        "duration_s": s["duration_s"],
        "cpu_s": case.pipeline.cpu_s,
        "cpu_ms_per_request_gross": 1000 * case.pipeline.cpu_s / requests,
        "cpu_ms_per_request": 1000 * net_cpu / requests,
        "maxrss_mb": case.pipeline.maxrss_mb,
        "bare_requests_per_s": bare_requests / case.bare_result["elapsed_s"],
        "bare_cpu_ms_per_request": 1000 * bare_net / bare_requests,
        "ratio": (net_cpu / requests) / (bare_net / bare_requests),
        "emulator_cpu_ms_per_request_pipeline": 1000 * case.pipeline_emulator_cpu_s / requests,
        "emulator_cpu_ms_per_request_bare": 1000 * case.bare_emulator_cpu_s / bare_requests,
        "requests": requests,
    }


def _medians(per_case: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict a concurrency: the median of each figure over its repeats, with two ranges."""
    derived = []
    for concurrency in dict.fromkeys(d["concurrency"] for d in per_case):
        reps = [d for d in per_case if d["concurrency"] == concurrency]
        median = {k: statistics.median(d[k] for d in reps) for k in reps[0]}
        median["rows_per_s_range"] = (
            min(d["rows_per_s"] for d in reps),
            max(d["rows_per_s"] for d in reps),
        )
        median["cpu_ms_range"] = (
            min(d["cpu_ms_per_request"] for d in reps),
            max(d["cpu_ms_per_request"] for d in reps),
        )
        median["repeats"] = len(reps)
        derived.append(median)
    return derived


def _grid(derived: list[dict[str, Any]]) -> str:
    grid: list[list[str]] = []
    header = ["figure", *(f"c={d['concurrency']}" for d in derived)]

    def row(label: str, key: str, fmt: str) -> None:
        grid.append(figure_line(label, derived, key, fmt))

    row("pipeline rows/s (summary duration_s)", "rows_per_s", ",.0f")
    grid.append(range_line("  min-max over repeats", derived, "rows_per_s_range", ",.0f"))
    row("pipeline requests/s", "requests_per_s", ",.0f")
    row("pipeline rows/s incl. process start (wall)", "rows_per_s_wall", ",.0f")
    row("pipeline wall s", "wall_s", ".2f")
    row("pipeline CPU s (user+sys)", "cpu_s", ".2f")
    row("pipeline CPU ms/request, gross", "cpu_ms_per_request_gross", ".3f")
    row("pipeline CPU ms/request, net of start-up", "cpu_ms_per_request", ".3f")
    grid.append(range_line("  min-max over repeats", derived, "cpu_ms_range", ".3f"))
    row("pipeline peak RSS MB", "maxrss_mb", ".0f")
    row("bare aiohttp requests/s", "bare_requests_per_s", ",.0f")
    row("bare aiohttp CPU ms/request, net", "bare_cpu_ms_per_request", ".3f")
    row("ratio pipeline / bare CPU per request", "ratio", ".2f")
    row("emulator CPU ms/request (pipeline run)", "emulator_cpu_ms_per_request_pipeline", ".3f")
    row("emulator CPU ms/request (bare run)", "emulator_cpu_ms_per_request_bare", ".3f")
    return render_grid(header, grid)


def _add_rows(
    table: Table, derived: list[dict[str, Any]], pipeline_startup: Measured, bare_startup: Measured
) -> None:
    best = max(derived, key=lambda d: d["rows_per_s"])
    c = best["concurrency"]
    table.add(
        "throughput",
        f"requests/s = rows/s (best: c={c})",
        f"{best['requests_per_s']:,.0f}",
        f">= {TARGET_REQUESTS_PER_S:,}",
        best["requests_per_s"] >= TARGET_REQUESTS_PER_S,
        f"{best['bare_requests_per_s']:,.0f}",
    )
    table.add(
        "throughput",
        f"client CPU ms/request, net of start-up (c={c})",
        f"{best['cpu_ms_per_request']:.3f}",
        f"<= {TARGET_CPU_MS}",
        best["cpu_ms_per_request"] <= TARGET_CPU_MS,
        f"{best['bare_cpu_ms_per_request']:.3f}",
    )
    table.add(
        "throughput", f"pipeline / bare aiohttp CPU per request (c={c})", f"{best['ratio']:.2f}x"
    )
    table.add(
        "throughput",
        "client start-up CPU s (--limit 0)",
        f"{pipeline_startup.cpu_s:.2f}",
        reference=f"{bare_startup.cpu_s:.2f}",
    )
    table.add(
        "throughput",
        f"emulator CPU ms/request (c={c})",
        f"{best['emulator_cpu_ms_per_request_pipeline']:.3f}",
        reference=f"{best['emulator_cpu_ms_per_request_bare']:.3f}",
    )
