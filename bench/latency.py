"""latency: latency hiding, one-row moderation requests against an emulator answering in 500 ms.

One emulator (``--latency-ms 500``, no limits, wordlist engine) serves every run. For each
concurrency c (64, 128, 256, 512; 1024 as an extra with no target) the pipeline runs a one-row-
per-request job with ``concurrency = c`` over the first 16c rows of one 16,384-row input
(``--limit 16c``: about 16 rounds of c requests, ~8 s of sending) into a fresh output folder; then
the bare aiohttp reference (bench/bare_client.py) posts the same first 16c bodies at the same
concurrency. Both are subprocesses reaped with os.wait4. Every run must answer all 16c requests
with 200 (summary.json ``rows.done_this_run`` = 16c).

Little's law: with c requests always in flight and 0.5 s each, the ideal is c / 0.5 s requests/s.
Pipeline requests/s = requests sent / summary.json ``duration_s`` (the run's own clock, from
before it reads its first input batch to the summary, writing results.parquet included; process
start-up and imports excluded); bare aiohttp requests/s = requests / its elapsed_s (first request
to last answer). % of ideal = requests/s / (c / 0.5 s). The pipeline's first request of a run
goes alone (the others wait for its x-ratelimit-* headers, so a job with no configured limit
never opens with a blind burst; see pipeline/limits.py): one 0.5 s round on top of the 16, paid
once a run. The target is therefore on the rate after the first answer (below): >= 90 % of
c / 0.5 s for every c up to 512. The whole-run figures are printed beside it.

While each run goes, the bench polls GET /_emulator/stats every 0.05 s (not counted as a request)
for the emulator's counts of arrived and answered requests: "peak in flight" is the largest
arrived - answered seen; "after the first answer" is the rate from the first answer seen to the
last ((answers at the end - answers at the first answer) / the time between), i.e. without the
pipeline's lone first round, as % of the ideal; "first request after" is the time from the
child's launch to the first arrival seen (interpreter start, imports, inspecting the input).

Net CPU per request = (CPU of the run - CPU of a start-up run) / requests. The pipeline's
start-up run is the same job with ``--limit 0`` into a fresh folder (imports, reading the job,
inspecting the 16,384-row input, opening the journal, writing empty outputs; nothing sent); the
bare client's is ``--limit 0`` (imports, loading the bodies). One of each runs just before
each concurrency's pair of runs (interleaved, so background load weighs on both alike; a first
pipeline start-up run, discarded, warms the page cache) and the median CPU of the five is
subtracted: at c=64 the net CPU is ~0.2 s of a ~0.9 s run, so the start-up figure matters.
Target: the pipeline's net CPU per request at c=512 is no more than 1.5x the one at c=64 (the
CPU cost per request must not grow with the number in flight). Emulator CPU per request comes
from /proc/PID/stat before and after each run.

Open files: at c=1024 the pipeline holds 1,024 sockets and so does the emulator, each in its own
process. The bench reads ``ulimit -n`` in a subprocess and, if it is lower than the largest
concurrency + 256, raises its own soft RLIMIT_NOFILE (up to the hard limit) before it starts the
emulator, so every child inherits it; the grid's heading says what it found and did.

Reading the figures: the emulator's latency is exactly 500 ms, so a round's answers come back
together, c at once, and a client handles them one after another on its one event loop; each
round then lasts ~0.5 s + c x (client CPU per request) / 2 on average, and throughput is
~c / (0.5 s + c t / 2): it falls short of the ideal as c grows even when t stays flat.
"""

from __future__ import annotations

import resource
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Emulator,
    EmulatorUsage,
    Measured,
    StatsPoller,
    Table,
    count_answered,
    count_requests,
    log,
    render_grid,
    run_bare,
    run_pipeline,
    run_python,
    write_job,
)

LATENCY_MS = 500
LATENCY_S = LATENCY_MS / 1000
ROUNDS = 16  # rows = concurrency * ROUNDS: ~8 s of sending at the ideal rate
CONCURRENCIES = (64, 128, 256, 512)  # each with the targets
EXTRA_CONCURRENCIES = (1024,)  # informative only
TARGET_SHARE = 0.90  # requests/s after the first answer >= 90 % of c / 0.5 s
TARGET_CPU_GROWTH = 1.5  # net CPU ms/request at c=512 <= 1.5 x the one at c=64
FD_MARGIN = 256  # files besides the sockets: interpreter, journal, logs, pipes
POLL_S = 0.05
RUN_TIMEOUT_S = 90.0


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


def open_files_limit(needed: int) -> tuple[str, int]:
    """``ulimit -n`` as a child sees it; raise this process's soft limit if below ``needed``."""
    seen = int(subprocess.run(["sh", "-c", "ulimit -n"], capture_output=True, check=True).stdout)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if seen >= needed:
        return f"ulimit -n {seen} in a child (>= {needed} needed): left as is", seen
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise BenchError(
            f"open files: ulimit -n is {seen} and the hard limit {hard}, below the {needed} "
            "needed for the largest concurrency; raise it (ulimit -Hn) or drop 1024"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return f"ulimit -n {seen} in a child: soft limit raised to {needed} for the children", needed


def _pipeline(
    emulator: Emulator,
    job: Path,
    tmp: Path,
    name: str,
    limit: int,
) -> Run:
    before = emulator.cpu_s()
    with StatsPoller(emulator, POLL_S, final=True) as poller:  # final: after the child's exit
        launched = time.monotonic()
        measured, summary = run_pipeline(
            job,
            emulator.base_url,
            timeout_s=RUN_TIMEOUT_S,
            log_dir=tmp,
            name=name,
            extra=("--limit", str(limit)),
        )
    emulator_cpu = emulator.cpu_s() - before
    sent = int(summary["requests"]["sent"])
    done = int(summary["rows"]["done_this_run"])
    ok = int(summary["requests"]["by_status"].get("200", 0))
    if done != limit or sent != limit or ok != limit:
        raise BenchError(
            f"{name}: {limit} rows wanted; rows {summary['rows']}, {summary['requests']}"
        )
    return Run(
        measured,
        sent,
        float(summary["duration_s"]),
        emulator_cpu,
        shape(poller, launched, sent) if sent else None,
        summary,
    )


def _bare(
    emulator: Emulator,
    bodies: Path,
    concurrency: int,
    tmp: Path,
    name: str,
    limit: int,
) -> Run:
    before = emulator.cpu_s()
    with StatsPoller(emulator, POLL_S, final=True) as poller:  # final: after the child's exit
        launched = time.monotonic()
        measured, result = run_bare(
            emulator.base_url,
            bodies,
            concurrency,
            "--limit",
            str(limit),
            timeout_s=RUN_TIMEOUT_S,
            log_dir=tmp,
            name=name,
        )
    emulator_cpu = emulator.cpu_s() - before
    if result["requests"] != limit or result["statuses"].get("200", 0) != limit:
        raise BenchError(f"{name}: {limit} requests wanted; {result}")
    return Run(
        measured,
        limit,
        float(result["elapsed_s"]) if limit else 1.0,
        emulator_cpu,
        shape(poller, launched, limit) if limit else None,
    )


def run(tmp: Path, table: Table) -> dict[str, Any]:
    concurrencies = (*CONCURRENCIES, *EXTRA_CONCURRENCIES)
    largest = max(concurrencies)
    files_note, files_limit = open_files_limit(largest + FD_MARGIN)
    log(f"latency: {files_note}")
    rows = largest * ROUNDS
    log(f"latency: generating {rows:,} short texts")
    data, bodies = tmp / "input.parquet", tmp / "bodies.jsonl"
    run_python(
        ["-m", "bench.datagen", str(data), str(rows), "--chars", "short", "--bodies", str(bodies)],
        timeout_s=120,
        log_dir=tmp,
        name="datagen",
    )
    pipeline_runs: dict[int, Run] = {}
    bare_runs: dict[int, Run] = {}
    with Emulator(["--latency-ms", str(LATENCY_MS)], log_dir=tmp) as emulator:
        log(f"latency: emulator {emulator.base_url} (pid {emulator.pid}), latency {LATENCY_MS} ms")
        _bare(emulator, bodies, 256, tmp, "warmup-bare", 512)  # lazy set-up, caches
        jobs = {
            c: write_job(
                tmp / f"job-c{c}.toml", input_path=data.name, output_dir="unused", concurrency=c
            )
            for c in concurrencies
        }
        # start-up runs interleaved with the real ones (one before each concurrency), so that
        # background load at any moment weighs on both alike; the median is subtracted
        _pipeline(emulator, jobs[CONCURRENCIES[0]], tmp, "startup-warmup", 0)  # page cache
        startups: list[Measured] = []
        bare_startups: list[Measured] = []
        for c in concurrencies:
            n = c * ROUNDS
            log(f"latency: pipeline then bare aiohttp, concurrency {c}, {n:,} requests")
            startups.append(_pipeline(emulator, jobs[c], tmp, f"startup-c{c}", 0).measured)
            bare_startups.append(_bare(emulator, bodies, c, tmp, f"bare-startup-c{c}", 0).measured)
            pipeline_runs[c] = _pipeline(emulator, jobs[c], tmp, f"pipeline-c{c}", n)
            bare_runs[c] = _bare(emulator, bodies, c, tmp, f"bare-c{c}", n)
    usage = emulator.usage
    assert usage is not None
    return _report(
        table, pipeline_runs, bare_runs, startups, bare_startups, usage, files_note, files_limit
    )


def _median(runs: list[Measured]) -> Measured:
    """The run with the median CPU (an odd count: a real run, not an average)."""
    return sorted(runs, key=lambda m: m.cpu_s)[(len(runs) - 1) // 2]


def _range(runs: list[Measured]) -> str:
    cpus = [m.cpu_s for m in runs]
    return f"{min(cpus):.2f}-{max(cpus):.2f}"


def _figures(run: Run, startup: Measured, concurrency: int) -> dict[str, Any]:
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


def _report(
    table: Table,
    pipeline_runs: dict[int, Run],
    bare_runs: dict[int, Run],
    startups: list[Measured],
    bare_startups: list[Measured],
    usage: EmulatorUsage,
    files_note: str,
    files_limit: int,
) -> dict[str, Any]:
    cs = list(pipeline_runs)
    startup, bare_startup = _median(startups), _median(bare_startups)
    pipe = {c: _figures(pipeline_runs[c], startup, c) for c in cs}
    bare = {c: _figures(bare_runs[c], bare_startup, c) for c in cs}
    header = ["figure", *(f"c={c}" + ("" if c in CONCURRENCIES else " (extra)") for c in cs)]
    grid: list[list[str]] = []

    def row(label: str, figures: dict[int, dict[str, Any]], key: str, fmt: str) -> None:
        grid.append([label, *(format(figures[c][key], fmt) for c in cs)])

    def pct(label: str, figures: dict[int, dict[str, Any]], key: str) -> None:
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
    print(
        f"\nlatency: emulator --latency-ms {LATENCY_MS}, no limits; rows_per_request 1, "
        f"{ROUNDS} rounds of c requests each; {files_note}"
    )
    print(render_grid(header, grid))
    print(
        f"pipeline start-up (--limit 0, median of {len(startups)}): {startup.cpu_s:.2f} s CPU "
        f"({_range(startups)}), {startup.wall_s:.2f} s wall, peak RSS "
        f"{startup.maxrss_mb:.0f} MB; bare client start-up: {bare_startup.cpu_s:.2f} s CPU "
        f"({_range(bare_startups)})"
    )
    print(f"emulator, whole life: {usage.cpu_s:.1f} s CPU, peak RSS {usage.maxrss_mb:.0f} MB")

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
