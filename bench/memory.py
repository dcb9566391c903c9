"""memory: a 1,000,000-row Parquet input run end to end; peak RSS must stay under 500 MB.

Input: key ``id`` + a ~100-character ``text`` (bench/datagen.py, 100,000-row row groups).
Job: moderation, rows_per_request = 100, concurrency 32, against an emulator with no latency and
no limits (wordlist engine). Peak RSS is the pipeline process's ru_maxrss from os.wait4 (KiB on
Linux): everything it ever held at once, including interpreter, imports, reading, the journal
and writing results.parquet. The same job over the first 100,000 rows (its own file) shows
whether the peak grows with the input; a ``--limit 0`` run over the 1M-row input gives the floor
(imports + inspecting 1M keys, nothing sent).
"""

from __future__ import annotations

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

SIZES = (100_000, 1_000_000)
ROWS_PER_REQUEST = 100
CONCURRENCY = 32
LIMIT_MB = 500
RUN_TIMEOUT_S = 600.0


def _size_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def run(tmp: Path, table: Table) -> dict[str, Any]:
    inputs = {}
    for rows in SIZES:
        log(f"memory: generating {rows:,} rows of ~100-char text")
        path = tmp / f"input-{rows}.parquet"
        run_python(
            ["-m", "bench.datagen", str(path), str(rows), "--chars", "100"],
            timeout_s=300,
            log_dir=tmp,
            name=f"datagen-{rows}",
        )
        inputs[rows] = path
    runs: dict[str, tuple[Measured, dict[str, Any], float, float]] = {}
    with Emulator(log_dir=tmp) as emulator:
        log(f"memory: emulator {emulator.base_url} (pid {emulator.pid})")
        largest = max(SIZES)
        jobs = {
            rows: write_job(
                tmp / f"job-{rows}.toml",
                input_path=inputs[rows].name,
                output_dir="unused",
                concurrency=CONCURRENCY,
                rows_per_request=ROWS_PER_REQUEST,
            )
            for rows in SIZES
        }
        plan: list[tuple[str, Path, tuple[str, ...]]] = [("floor", jobs[largest], ("--limit", "0"))]
        plan += [(f"{rows:,} rows", jobs[rows], ()) for rows in SIZES]
        for label, job, extra in plan:
            name = "run-" + label.replace(",", "").replace(" ", "-")
            log(f"memory: pipeline {label}")
            before = emulator.cpu_s()
            measured, summary = run_pipeline(
                job,
                emulator.base_url,
                timeout_s=RUN_TIMEOUT_S,
                log_dir=tmp,
                name=name,
                extra=extra,
            )
            if summary is None:
                raise BenchError(f"{label}: no summary.json")
            out = tmp / f"{name}.out"
            results = out / "results.parquet"
            summary["_journal_mb"] = _size_mb(out / ".pipeline")
            runs[label] = (
                measured,
                summary,
                emulator.cpu_s() - before,
                _size_mb(results) if results.exists() else 0.0,
            )
    usage = emulator.usage
    assert usage is not None

    header = [
        "run",
        "rows done",
        "requests",
        "peak RSS MB",
        "wall s",
        "duration s",
        "rows/s",
        "CPU s",
        "CPU µs/row",
        "emulator CPU s",
        "results MB",
        "journal MB",
    ]
    grid = []
    for label, (m, s, emu_cpu, results_mb) in runs.items():
        done = s["rows"]["done_this_run"]
        expected = 0 if label == "floor" else int(label.split()[0].replace(",", ""))
        if done != expected or s["rows"]["failed_this_run"]:
            raise BenchError(f"{label}: {s['rows']}")
        grid.append(
            [
                label if label != "floor" else "--limit 0 on 1M input",
                f"{done:,}",
                f"{s['requests']['sent']:,}",
                f"{m.maxrss_mb:.0f}",
                f"{m.wall_s:.1f}",
                f"{s['duration_s']:.1f}",
                f"{done / s['duration_s']:,.0f}" if done else "-",
                f"{m.cpu_s:.1f}",
                f"{1e6 * m.cpu_s / done:.0f}" if done else "-",
                f"{emu_cpu:.1f}",
                f"{results_mb:.0f}",
                f"{s['_journal_mb']:.0f}",
            ]
        )
    print(
        f"\nmemory: rows_per_request {ROWS_PER_REQUEST}, concurrency {CONCURRENCY}, "
        "no latency, no limits, ~100-char texts"
    )
    print(render_grid(header, grid))
    print(f"emulator: {usage.cpu_s:.1f} s CPU, peak RSS {usage.maxrss_mb:.0f} MB")

    big = runs[f"{max(SIZES):,} rows"][0]
    small = runs[f"{min(SIZES):,} rows"][0]
    floor = runs["floor"][0]
    table.add(
        "memory",
        "peak RSS, 1,000,000 rows",
        f"{big.maxrss_mb:.0f} MB",
        f"< {LIMIT_MB} MB",
        big.maxrss_mb < LIMIT_MB,
    )
    table.add("memory", "duration, 1,000,000 rows (wall)", f"{big.wall_s:.1f} s")
    table.add(
        "memory",
        "peak RSS, 100,000 rows",
        f"{small.maxrss_mb:.0f} MB",
        f"< {LIMIT_MB} MB",
        small.maxrss_mb < LIMIT_MB,
    )
    table.add(
        "memory", "peak RSS growth 100k -> 1M rows", f"{big.maxrss_mb - small.maxrss_mb:+.0f} MB"
    )
    table.add("memory", "peak RSS floor (--limit 0, 1M input)", f"{floor.maxrss_mb:.0f} MB")
    big_summary = runs[f"{max(SIZES):,} rows"][1]
    table.add("memory", "client CPU per row, 1M rows", f"{1e6 * big.cpu_s / max(SIZES):.0f} µs")
    table.add("memory", "journal on disk after 1M rows", f"{big_summary['_journal_mb']:,.0f} MB")
    return {
        label: {
            "maxrss_mb": m.maxrss_mb,
            "wall_s": m.wall_s,
            "cpu_s": m.cpu_s,
            "duration_s": s["duration_s"],
            "rows_done": s["rows"]["done_this_run"],
            "requests": s["requests"]["sent"],
            "emulator_cpu_s": emu_cpu,
            "results_mb": results_mb,
            "journal_mb": s["_journal_mb"],
        }
        for label, (m, s, emu_cpu, results_mb) in runs.items()
    } | {"emulator": {"cpu_s": usage.cpu_s, "maxrss_mb": usage.maxrss_mb}}
