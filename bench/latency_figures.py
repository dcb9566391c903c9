"""latency: the figures of its runs (what the emulator saw, CPU net of start-up), the grid it
prints and its rows in the bench table; ``bench/latency.py``'s docstring defines each figure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.common import (
    BenchError,
    EmulatorUsage,
    Measured,
    StatsPoller,
    Table,
    count_answered,
    count_requests,
    figure_line,
    render_grid,
)

LATENCY_MS = 500
LATENCY_S = LATENCY_MS / 1000
ROUNDS = 16  # rows = concurrency * ROUNDS: ~8 s of sending at the ideal rate
CONCURRENCIES = (64, 128, 256, 512)  # each with the targets
TARGET_SHARE = 0.90  # requests/s after the first answer >= 90 % of c / 0.5 s
TARGET_CPU_GROWTH = 1.5  # net CPU ms/request at c=512 <= 1.5 x the one at c=64


@dataclass
class Shape:
    """What the emulator saw of one run (see the module docstring)."""

    first_arrival_s: float  # from the child's launch
    first_answer_s: float  # from the first arrival
    after_first_answer_rps: float
    peak_in_flight: int
    arrived: int


def shape(poller: StatsPoller, launched: float, total: int) -> Shape:
    """The run's shape from the emulator's arrived and answered counts (``launched``: monotonic)."""
    arrived, answered = poller.series(count_requests), poller.series(count_answered)
    if not arrived or arrived[-1][1] != total or answered[-1][1] != total:
        last = (arrived[-1], answered[-1][1]) if arrived else None
        raise BenchError(f"emulator saw {last} ((t, arrived), answered), expected {total}")
    t_arrival = next(t for t, a in arrived if a > 0)
    t_answer, at_answer = next((t, d) for t, d in answered if d > 0)
    t_end = next(t for t, d in answered if d >= total)
    rate = (total - at_answer) / (t_end - t_answer) if t_end > t_answer else 0.0
    return Shape(
        first_arrival_s=t_arrival - launched,
        first_answer_s=t_answer - t_arrival,
        after_first_answer_rps=rate,
        peak_in_flight=max(a - d for (_, a), (_, d) in zip(arrived, answered, strict=True)),
        arrived=arrived[-1][1],
    )


@dataclass
class Run:
    """One measured child: the pipeline (with its summary) or the bare client (its result)."""

    measured: Measured
    requests: int
    seconds: float  # summary duration_s, or the bare client's elapsed_s
    emulator_cpu_s: float
    shape: Shape | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def report(
    table: Table,
    pipeline_runs: dict[int, Run],
    bare_runs: dict[int, Run],
    startups: list[Measured],
    bare_startups: list[Measured],
    usage: EmulatorUsage,
    files_note: str,
    files_limit: int,
) -> dict[str, Any]:
    """Print the grid and the start-up lines, add the table rows; the figures as JSON."""
    cs = list(pipeline_runs)
    startup, bare_startup = _median_cpu_run(startups), _median_cpu_run(bare_startups)
    pipe = {c: _run_figures(pipeline_runs[c], startup, c) for c in cs}
    bare = {c: _run_figures(bare_runs[c], bare_startup, c) for c in cs}
    print(
        f"\nlatency: emulator --latency-ms {LATENCY_MS}, no limits; rows_per_request 1, "
        f"{ROUNDS} rounds of c requests each; {files_note}"
    )
    print(_grid(pipe, bare))
    print(
        f"pipeline start-up (--limit 0, median of {len(startups)}): {startup.cpu_s:.2f} s CPU "
        f"({_cpu_range(startups)}), {startup.wall_s:.2f} s wall, peak RSS "
        f"{startup.maxrss_mb:.0f} MB; bare client start-up: {bare_startup.cpu_s:.2f} s CPU "
        f"({_cpu_range(bare_startups)})"
    )
    print(f"emulator, whole life: {usage.cpu_s:.1f} s CPU, peak RSS {usage.maxrss_mb:.0f} MB")
    growth, bare_growth = _add_rows(table, pipe, bare)
    return {
        "latency_ms": LATENCY_MS,
        "rounds": ROUNDS,
        "open_files": {"note": files_note, "limit": files_limit},
        "pipeline": list(pipe.values()),
        "bare": list(bare.values()),
        "pipeline_startup": {
            "cpu_s": startup.cpu_s,
            "wall_s": startup.wall_s,
            "maxrss_mb": startup.maxrss_mb,
        },
        "pipeline_startup_cpu_s_all": [m.cpu_s for m in startups],
        "bare_startup_cpu_s": bare_startup.cpu_s,
        "bare_startup_cpu_s_all": [m.cpu_s for m in bare_startups],
        "cpu_growth": growth,
        "bare_cpu_growth": bare_growth,
        "emulator": {"cpu_s": usage.cpu_s, "maxrss_mb": usage.maxrss_mb},
    }


_Figures = dict[int, dict[str, Any]]  # concurrency -> the figures of its run


def _grid(pipe: _Figures, bare: _Figures) -> str:
    """One column a concurrency: the pipeline's figures, then the bare client's."""
    cs = list(pipe)
    header = ["figure", *(f"c={c}" + ("" if c in CONCURRENCIES else " (extra)") for c in cs)]
    grid: list[list[str]] = []

    def row(label: str, figures: _Figures, key: str, fmt: str) -> None:
        grid.append(figure_line(label, [figures[c] for c in cs], key, fmt))

    def pct(label: str, figures: _Figures, key: str) -> None:
        grid.append([label, *(f"{100 * figures[c][key]:.1f}%" for c in cs)])

    row("requests (= rows, 16 rounds of c)", pipe, "requests", ",")
    row("Little's ideal c / 0.5 s, requests/s", pipe, "ideal_requests_per_s", ",.0f")
    row("pipeline duration_s (summary.json)", pipe, "seconds", ".2f")
    row("pipeline requests/s (sent / duration_s)", pipe, "requests_per_s", ",.0f")
    pct("pipeline % of ideal", pipe, "share_of_ideal")
    row("  first request after launch, s", pipe, "first_arrival_s", ".2f")
    row("  first answer after first request, s", pipe, "first_answer_s", ".2f")
    row("  requests/s after the first answer", pipe, "after_first_answer_requests_per_s", ",.0f")
    pct("  % of ideal after the first answer", pipe, "after_first_answer_share")
    row("  peak in flight at the emulator", pipe, "peak_in_flight", ",")
    row("pipeline wall s", pipe, "wall_s", ".2f")
    row("pipeline CPU s (user+sys)", pipe, "cpu_s", ".2f")
    row("pipeline CPU ms/request, gross", pipe, "cpu_ms_per_request_gross", ".3f")
    row("pipeline CPU ms/request, net of start-up", pipe, "cpu_ms_per_request", ".3f")
    row("pipeline peak RSS MB", pipe, "maxrss_mb", ".0f")
    row("emulator CPU ms/request (pipeline run)", pipe, "emulator_cpu_ms_per_request", ".3f")
    row("bare aiohttp elapsed s", bare, "seconds", ".2f")
    row("bare aiohttp requests/s", bare, "requests_per_s", ",.0f")
    pct("bare aiohttp % of ideal", bare, "share_of_ideal")
    row("  peak in flight at the emulator", bare, "peak_in_flight", ",")
    row("bare aiohttp CPU ms/request, net", bare, "cpu_ms_per_request", ".3f")
    grid.append(
        [
            "ratio pipeline / bare CPU per request",
            *(f"{pipe[c]['cpu_ms_per_request'] / bare[c]['cpu_ms_per_request']:.2f}" for c in cs),
        ]
    )
    row("emulator CPU ms/request (bare run)", bare, "emulator_cpu_ms_per_request", ".3f")
    return render_grid(header, grid)


def _add_rows(table: Table, pipe: _Figures, bare: _Figures) -> tuple[float, float]:
    """The rows with targets; returns the CPU growth of the pipeline and of the bare client."""
    cs = list(pipe)

    def share(f: dict[str, Any], key: str = "share_of_ideal", rps: str = "requests_per_s") -> str:
        return f"{f[rps]:,.0f}/s ({100 * f[key]:.0f}%)"

    for c in cs:
        extra = c not in CONCURRENCIES
        table.add(
            "latency",
            f"requests/s after the first answer, c={c} (ideal {c / LATENCY_S:,.0f}/s)",
            share(pipe[c], "after_first_answer_share", "after_first_answer_requests_per_s"),
            f">= {100 * TARGET_SHARE:.0f}% of c/0.5s" + (" (extra)" if extra else ""),
            None if extra else pipe[c]["after_first_answer_share"] >= TARGET_SHARE,
            share(bare[c]),
        )
    table.add(
        "latency",
        "requests/s over the whole run (duration_s), c=" + "/".join(map(str, cs)),
        "/".join(f"{pipe[c]['requests_per_s']:,.0f}" for c in cs),
        "(first request alone)",
        None,
        "/".join(f"{bare[c]['requests_per_s']:,.0f}" for c in cs),
    )
    low, high = CONCURRENCIES[0], CONCURRENCIES[-1]
    growth = pipe[high]["cpu_ms_per_request"] / pipe[low]["cpu_ms_per_request"]
    bare_growth = bare[high]["cpu_ms_per_request"] / bare[low]["cpu_ms_per_request"]
    table.add(
        "latency",
        f"net CPU ms/request, c={high} vs c={low}",
        f"{pipe[high]['cpu_ms_per_request']:.3f} vs {pipe[low]['cpu_ms_per_request']:.3f} "
        f"({growth:.2f}x)",
        f"<= {TARGET_CPU_GROWTH}x c={low}",
        growth <= TARGET_CPU_GROWTH,
        f"{bare[high]['cpu_ms_per_request']:.3f} vs {bare[low]['cpu_ms_per_request']:.3f} "
        f"({bare_growth:.2f}x)",
    )
    return growth, bare_growth


def _median_cpu_run(runs: list[Measured]) -> Measured:
    """The run with the median CPU (an odd count: a real run, not an average)."""
    return sorted(runs, key=lambda m: m.cpu_s)[(len(runs) - 1) // 2]


def _cpu_range(runs: list[Measured]) -> str:
    cpus = [m.cpu_s for m in runs]
    return f"{min(cpus):.2f}-{max(cpus):.2f}"


def _run_figures(run: Run, startup: Measured, concurrency: int) -> dict[str, Any]:
    ideal = concurrency / LATENCY_S
    assert run.shape is not None
    net_cpu = run.measured.cpu_s - startup.cpu_s
    return {
        "concurrency": concurrency,
        "requests": run.requests,
        "seconds": run.seconds,
        "wall_s": run.measured.wall_s,
        "requests_per_s": run.rps,
        "ideal_requests_per_s": ideal,
        "share_of_ideal": run.rps / ideal,
        "after_first_answer_requests_per_s": run.shape.after_first_answer_rps,
        "after_first_answer_share": run.shape.after_first_answer_rps / ideal,
        "first_arrival_s": run.shape.first_arrival_s,
        "first_answer_s": run.shape.first_answer_s,
        "peak_in_flight": run.shape.peak_in_flight,
        "cpu_s": run.measured.cpu_s,
        "cpu_ms_per_request": 1000 * net_cpu / run.requests,
        "cpu_ms_per_request_gross": 1000 * run.measured.cpu_s / run.requests,
        "maxrss_mb": run.measured.maxrss_mb,
        "emulator_cpu_ms_per_request": 1000 * run.emulator_cpu_s / run.requests,
    }
