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
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Emulator,
    Measured,
    StatsPoller,
    Table,
    log,
    run_bare,
    run_pipeline,
    run_python,
    write_job,
)
from bench.latency_figures import (
    CONCURRENCIES,
    LATENCY_MS,
    ROUNDS,
    Run,
    report,
    shape,
)

EXTRA_CONCURRENCIES = (1024,)  # informative only
FD_MARGIN = 256  # files besides the sockets: interpreter, journal, logs, pipes
POLL_S = 0.05
RUN_TIMEOUT_S = 90.0


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


def _measure_pipeline(
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


def _measure_bare(
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
        _measure_bare(emulator, bodies, 256, tmp, "warmup-bare", 512)  # lazy set-up, caches
        jobs = {
            c: write_job(
                tmp / f"job-c{c}.toml", input_path=data.name, output_dir="unused", concurrency=c
            )
            for c in concurrencies
        }
        # start-up runs interleaved with the real ones (one before each concurrency), so that
        # background load at any moment weighs on both alike; the median is subtracted
        _measure_pipeline(emulator, jobs[CONCURRENCIES[0]], tmp, "startup-warmup", 0)  # page cache
        startups: list[Measured] = []
        bare_startups: list[Measured] = []
        for c in concurrencies:
            n = c * ROUNDS
            log(f"latency: pipeline then bare aiohttp, concurrency {c}, {n:,} requests")
            startups.append(_measure_pipeline(emulator, jobs[c], tmp, f"startup-c{c}", 0).measured)
            bare_startups.append(
                _measure_bare(emulator, bodies, c, tmp, f"bare-startup-c{c}", 0).measured
            )
            pipeline_runs[c] = _measure_pipeline(emulator, jobs[c], tmp, f"pipeline-c{c}", n)
            bare_runs[c] = _measure_bare(emulator, bodies, c, tmp, f"bare-c{c}", n)
    usage = emulator.usage
    assert usage is not None
    return report(
        table, pipeline_runs, bare_runs, startups, bare_startups, usage, files_note, files_limit
    )
