"""memory: peak RSS under 400 MB, not growing with the input, for a full 1,000,000-row job and
a 10,000,000-row input run with ``--limit 100000``.

Input: key ``id`` + a ~100-character ``text`` (bench/datagen.py, 100,000-row row groups; the
files are prefixes of one another). Job: moderation, rows_per_request = 100, concurrency 32,
against an emulator with no latency and no limits (wordlist engine). Peak RSS is the pipeline
process's ru_maxrss from os.wait4 (KiB on Linux): everything it ever held at once, including
interpreter, imports, reading, the journal and writing results.parquet. Runs: the whole of a
100,000-row and of a 1,000,000-row input; the 10,000,000-row input with ``--limit 100000``
(the same 100,000 rows sent as the first run); and ``--limit 0`` on the 10M input, the floor
(imports, job, row count from the Parquet metadata; nothing read or sent). "Growth" compares
each with the 100,000-row run.
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

SIZES = (100_000, 1_000_000, 10_000_000)
LIMITED = 100_000  # --limit on the 10M input
ROWS_PER_REQUEST = 100
CONCURRENCY = 32
LIMIT_MB = 400
GROWTH_PCT = 10  # how much above the 100,000-row run's peak counts as growing
RUN_TIMEOUT_S = 600.0


def _size_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


# label -> (the run, its summary.json, emulator CPU s over it, results.parquet MB)
_Runs = dict[str, tuple[Measured, dict[str, Any], float, float]]


def run(tmp: Path, table: Table) -> dict[str, Any]:
    inputs = _write_inputs(tmp)
    with Emulator(log_dir=tmp) as emulator:
        log(f"memory: emulator {emulator.base_url} (pid {emulator.pid})")
        runs = _measure_runs(emulator, inputs, tmp)
    usage = emulator.usage
    assert usage is not None
    grid = _grid(runs)  # raises before anything is printed if a run missed its rows
    print(
        f"\nmemory: rows_per_request {ROWS_PER_REQUEST}, concurrency {CONCURRENCY}, "
        "no latency, no limits, ~100-char texts"
    )
    print(grid)
    print(f"emulator: {usage.cpu_s:.1f} s CPU, peak RSS {usage.maxrss_mb:.0f} MB")
    _add_rows(table, runs)
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


def _write_inputs(tmp: Path) -> dict[int, Path]:
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
    return inputs


def _measure_runs(emulator: Emulator, inputs: dict[int, Path], tmp: Path) -> _Runs:
    """The floor (--limit 0), each smaller input whole, then the largest under --limit."""
    runs: _Runs = {}
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
    plan += [(f"{rows:,} rows", jobs[rows], ()) for rows in SIZES if rows < largest]
    plan.append((f"{largest:,} rows --limit {LIMITED:,}", jobs[largest], ("--limit", str(LIMITED))))
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
        out = tmp / f"{name}.out"
        results = out / "results.parquet"
        summary["_journal_mb"] = _size_mb(out / ".pipeline")
        runs[label] = (
            measured,
            summary,
            emulator.cpu_s() - before,
            _size_mb(results) if results.exists() else 0.0,
        )
    return runs


def _grid(runs: _Runs) -> str:
    """One line a run; BenchError for a run that did not do exactly its rows."""
    largest = max(SIZES)
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
    grid: list[list[str]] = []
    for label, (m, s, emu_cpu, results_mb) in runs.items():
        done = s["rows"]["done_this_run"]
        expected = (
            0
            if label == "floor"
            else int(label.split()[-1 if "limit" in label else 0].replace(",", ""))
        )
        if done != expected or s["rows"]["failed_this_run"]:
            raise BenchError(f"{label}: {s['rows']}")
        grid.append(
            [
                label if label != "floor" else f"--limit 0 on {largest:,} rows",
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
    return render_grid(header, grid)


def _add_rows(table: Table, runs: _Runs) -> None:
    small = runs[f"{min(SIZES):,} rows"][0]
    for label, (m, _, _, _) in runs.items():
        if label == "floor":
            continue
        table.add(
            "memory",
            f"peak RSS, {label}",
            f"{m.maxrss_mb:.0f} MB",
            f"< {LIMIT_MB} MB",
            m.maxrss_mb < LIMIT_MB,
        )
        if m is not small:
            growth = 100 * (m.maxrss_mb / small.maxrss_mb - 1)
            table.add(
                "memory",
                f"peak RSS growth, {min(SIZES):,} rows -> {label}",
                f"{growth:+.1f}% ({m.maxrss_mb - small.maxrss_mb:+.0f} MB)",
                f"< +{GROWTH_PCT}%",
                growth < GROWTH_PCT,
            )
    table.add(
        "memory", "peak RSS floor (--limit 0: imports)", f"{runs['floor'][0].maxrss_mb:.0f} MB"
    )
    big, big_summary = runs[f"{SIZES[1]:,} rows"][:2]
    table.add(
        "memory", f"client CPU per row, {SIZES[1]:,} rows", f"{1e6 * big.cpu_s / SIZES[1]:.0f} µs"
    )
    table.add(
        "memory",
        f"journal on disk after {SIZES[1]:,} rows",
        f"{big_summary['_journal_mb']:,.0f} MB",
    )
