"""ratelimit: a moderation job against an emulator enforcing 1,200 requests/minute and a token
limit, with 50 ms latency; the target is the issue's: sustained throughput >= 97 % of the
binding limit and 429s under 1 % of requests, whether or not the server sends x-ratelimit-*
headers.

Data: rows whose ``text`` is ~100 characters (``bench.datagen --chars 100``: 100 characters and
a `` #N`` suffix, 103-106 in all), one row a request at concurrency 16. The client charges
``pipeline.tokens.estimate_tokens`` (ceil(len / 4)), the emulator its own copy of that rule:
26-27 tokens a request. The bench reads the request bodies the data gives (``--bodies``) and
takes their mean, m.

Every case gets a fresh emulator (its buckets full): ``pipeline serve --rpm 1200 --tpm T
--latency-ms 50``, with ``--burst-s 1`` (each bucket holds one second's allowance: the quantised,
per-second enforcement OpenAI warns of, so any burst over the rate is a 429) in the main cases.
Two families of limits:
  requests bind (900 rows, ~45 s): T = 2 x 1,200 x m, so the token bucket is enforced but
     1,200 rpm is the binding limit;
  tokens bind (600 rows, ~46 s): T = 0.65 x 1,200 x m (rounded to 10), so the binding limit is
     T / m ~ 780 requests/minute, 65 % of what 1,200 rpm allows.
The binding limit, in requests/minute, is min(1,200, T / m) for the rows the case sends.

  1a) requests bind: the job sets requests_per_minute and tokens_per_minute; headers sent;
  1b) requests bind: the job sets both; the emulator sends no x-ratelimit-* headers;
  1c) requests bind: the job sets no limit and must learn both from the headers;
  2a) tokens bind: the job sets both; headers sent;
  2b) tokens bind: the job sets both; no headers;
  d)  (extra) as 1c against per-minute buckets (``--burst-s 60``) that the bench first drains
      (posts until the first 429), so the server has no slack left; 600 rows;
  control) requests-bind limits with per-minute buckets, no limit in the job, no headers: a
      client that does not limit itself at all (what the emulator lets through: a minute's
      bucket holds 1,200 requests, so 900 requests never meet a 429).

Figures, each as % of the binding limit (requests/minute):
  sustained = the rate of admitted (non-429) requests from 5 s after the first request arrived
     to the last one, from the emulator's own counters: the bench polls GET /_emulator/stats
     every 0.2 s (not counted as a request) and interpolates the start and end between samples;
  overall = 200 answers / summary.json duration_s (the pipeline's run clock, from just before
     the first request to the summary, outputs written: start-up, imports and input inspection
     are excluded; the same over the process's wall time is printed as "% (wall)");
  429 rate = 429 answers / requests sent (summary.json), with the emulator's count by limit;
  first 1 s = requests (429s included) that arrived within 1 s of the first; peak 5 s = the
     highest admitted rate over any 5-second window.
Targets (1a-2b): sustained >= 97 %, overall >= 97 %, 429 rate < 1 %. Case d shows the same
targets for comparison only; it never counts as a miss. The control has none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Emulator,
    StatsPoller,
    Table,
    count_requests,
    log,
    run_bare,
    run_pipeline,
    run_python,
    write_job,
)
from bench.ratelimit_figures import (
    CONCURRENCY,
    LATENCY_MS,
    POLL_S,
    ROWS,
    ROWS_SHORT,
    RPM,
    TOKENS_SHARE,
    TPM_HEADROOM,
    CaseSpec,
    Limits,
    Result,
    admitted,
    report,
    shape,
)

RUN_TIMEOUT_S = 180.0


CASES = (
    CaseSpec("1a", "1a) requests bind, job limits, headers", "requests", True, True),
    CaseSpec("1b", "1b) requests bind, job limits, no headers", "requests", True, False),
    CaseSpec("1c", "1c) requests bind, no job limit, learn from headers", "requests", False, True),
    CaseSpec("2a", "2a) tokens bind, job limits, headers", "tokens", True, True, short=True),
    CaseSpec("2b", "2b) tokens bind, job limits, no headers", "tokens", True, False, short=True),
    CaseSpec(
        "d",
        "d) no job limit, per-minute buckets drained first",
        "requests",
        False,
        True,
        drain=True,
        burst_s=60.0,
        short=True,
    ),
    CaseSpec(
        "control",
        "control: no job limit, no headers",
        "requests",
        False,
        False,
        control=True,
        burst_s=60.0,
    ),
)


def mean_tokens(bodies: Path, rows: int) -> float:
    """Mean estimate_tokens of the first ``rows`` request bodies: what both sides charge."""
    from pipeline.tokens import estimate_tokens  # standard library only: the client's rule

    with open(bodies, "rb") as lines:
        tokens = [estimate_tokens(json.loads(line)["input"]) for line in lines][:rows]
    return sum(tokens) / len(tokens)


def token_limits(mean: float) -> dict[str, int]:
    """Each family's token limit (rounded to 10) for requests of ``mean`` tokens."""
    return {
        "requests": round(TPM_HEADROOM * RPM * mean / 10) * 10,
        "tokens": round(TOKENS_SHARE * RPM * mean / 10) * 10,
    }


def run_case(spec: CaseSpec, limits: Limits, data: Path, bodies: Path, tmp: Path) -> Result:
    options = [
        "--rpm",
        str(limits.rpm),
        "--tpm",
        str(limits.tpm),
        "--latency-ms",
        str(LATENCY_MS),
        "--burst-s",
        str(spec.burst_s),
    ]
    if not spec.headers:
        options.append("--no-ratelimit-headers")
    job = write_job(
        tmp / f"job-{spec.name}.toml",
        input_path=data.name,
        output_dir="unused",
        concurrency=CONCURRENCY,
        rows_per_request=1,
        requests_per_minute=limits.rpm if spec.job_limits else None,
        tokens_per_minute=limits.tpm if spec.job_limits else None,
    )
    with Emulator(options, log_dir=tmp) as emulator:
        log(f"ratelimit: case {spec.label} ({emulator.base_url}, {' '.join(options)})")
        drained = None
        if spec.drain:
            drained = _drain(emulator, bodies, tmp)
        before = emulator.stats()["rate_limited"]  # after the drain: its 429s left out
        with StatsPoller(emulator, POLL_S, final=True) as poller:  # final: after the last answer
            measured, summary = run_pipeline(
                job,
                emulator.base_url,
                timeout_s=RUN_TIMEOUT_S,
                log_dir=tmp,
                name=f"case-{spec.name}",
            )
        stats = emulator.stats()
    if summary["rows"]["done_this_run"] != limits.rows:
        raise BenchError(f"case {spec.name}: {summary['rows']} / {summary['requests']}")
    stats["drained_with"] = drained
    stats["rate_limited_this_run"] = {
        name: count - before.get(name, 0) for name, count in stats["rate_limited"].items()
    }
    run_shape = shape(poller.series(count_requests), poller.series(admitted))
    return Result(spec, limits, measured, summary, stats, run_shape)


def _drain(emulator: Emulator, bodies: Path, tmp: Path) -> dict[str, Any]:
    """Post (outside the pipeline) until the emulator's bucket is empty: the first 429."""
    _, result = run_bare(
        emulator.base_url,
        bodies,
        CONCURRENCY,
        "--until-429",
        timeout_s=60,
        log_dir=tmp,
        name="drain",
    )
    if not result["statuses"].get("429"):
        raise BenchError(f"could not drain the emulator's bucket: {result}")
    return result


def _write_data(tmp: Path, rows: int) -> tuple[Path, Path]:
    data, bodies = tmp / f"input-{rows}.parquet", tmp / f"bodies-{rows}.jsonl"
    run_python(
        ["-m", "bench.datagen", str(data), str(rows), "--chars", "100", "--bodies", str(bodies)],
        timeout_s=120,
        log_dir=tmp,
        name=f"datagen-{rows}",
    )
    return data, bodies


def run(tmp: Path, table: Table) -> dict[str, Any]:
    files = {rows: _write_data(tmp, rows) for rows in (ROWS, ROWS_SHORT)}
    drain_bodies = files[ROWS][1]
    # one token limit per family, from the full data (the 600-row file is a prefix of it)
    tpm = token_limits(mean_tokens(drain_bodies, ROWS))
    means = {rows: mean_tokens(bodies, rows) for rows, (_, bodies) in files.items()}
    results = []
    for spec in CASES:
        rows = ROWS_SHORT if spec.short or spec.family == "tokens" else ROWS
        limits = Limits(spec.family, RPM, tpm[spec.family], rows, means[rows])
        results.append(run_case(spec, limits, files[rows][0], drain_bodies, tmp))

    return report(table, results, tpm, means)
