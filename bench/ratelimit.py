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

import itertools
import json
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
    run_bare,
    run_pipeline,
    run_python,
    write_job,
)

RPM = 1200
LATENCY_MS = 50
CONCURRENCY = 16
ROWS = 900  # requests bind: 45 s at 1,200 rpm
ROWS_SHORT = 600  # tokens bind (~46 s at ~780 rpm) and case d (30 s)
TPM_HEADROOM = 2.0  # requests bind: the token limit allows twice what 1,200 rpm needs
TOKENS_SHARE = 0.65  # tokens bind: the token limit allows 65 % of 1,200 rpm
RUN_TIMEOUT_S = 180.0
POLL_S = 0.2
STEADY_AFTER_S = 5.0
TARGET_SUSTAINED = 0.97
TARGET_OVERALL = 0.97
TARGET_429_RATE = 0.01


@dataclass(frozen=True)
class Limits:
    """One emulator's limits and the rows a case sends under them."""

    family: str  # "requests" or "tokens": which limit is meant to bind
    rpm: int
    tpm: int
    rows: int
    mean_tokens: float  # estimate_tokens per request, over the rows sent

    @property
    def tokens_rpm(self) -> float:
        """The request rate the token limit allows for these rows."""
        return self.tpm / self.mean_tokens

    @property
    def binding_rpm(self) -> float:
        return min(self.rpm, self.tokens_rpm)

    @property
    def binding(self) -> str:
        return "requests" if self.rpm <= self.tokens_rpm else "tokens"


@dataclass(frozen=True)
class CaseSpec:
    name: str
    label: str
    family: str
    job_limits: bool  # the job sets requests_per_minute and tokens_per_minute
    headers: bool
    control: bool = False
    drain: bool = False
    burst_s: float = 1.0
    short: bool = False  # sends ROWS_SHORT rows (tokens bind always does)


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


def admitted(stats: dict[str, Any]) -> int:
    """Requests that arrived and were not answered 429 (those still in flight included)."""
    return count_requests(stats) - int(stats["status"].get("429", 0))


def _at(points: list[tuple[float, int]], t: float) -> float:
    """A counter at time ``t``, interpolated linearly between samples."""
    if t <= points[0][0]:
        return float(points[0][1])
    for (ta, na), (tb, nb) in itertools.pairwise(points):
        if ta <= t <= tb:
            return na + (nb - na) * (t - ta) / (tb - ta) if tb > ta else float(nb)
    return float(points[-1][1])


def _reached(points: list[tuple[float, int]], total: int) -> float:
    """When the counter reached ``total``: midway between the samples either side."""
    index = next(i for i, (_, n) in enumerate(points) if n >= total)
    if index == 0:
        return points[0][0]
    return (points[index - 1][0] + points[index][0]) / 2


def shape(arrived: list[tuple[float, int]], admitted: list[tuple[float, int]]) -> dict[str, Any]:
    """The run's shape from the emulator's counters, [(t, count)] from the same samples (rates in
    requests/minute).

    first_1s: requests (429s included) within 1 s of the first; peak_rpm: the highest admitted
    rate over any 5-second window; steady_rpm: the admitted rate from STEADY_AFTER_S after the
    first request to the last admitted one; per_second: admitted requests in each second.
    """
    empty: dict[str, Any] = {"first_1s": 0, "peak_rpm": 0.0, "steady_rpm": 0.0, "per_second": []}
    if not arrived or arrived[-1][1] == 0:
        return empty
    t0 = _reached(arrived, 1)  # when the first request arrived
    first = round(_at(arrived, t0 + 1.0))
    total = admitted[-1][1]
    t_end = _reached(admitted, total)
    peak = 0.0
    for i, (ti, ni) in enumerate(admitted):
        for tj, nj in admitted[i + 1 :]:
            if tj - ti >= STEADY_AFTER_S:
                peak = max(peak, (nj - ni) / (tj - ti) * 60)
                break
    if peak == 0.0:  # the whole run was shorter than the window: its average rate
        peak = total / max(t_end - t0, POLL_S) * 60
    start = t0 + STEADY_AFTER_S
    steady = 0.0
    if t_end - start >= STEADY_AFTER_S:
        steady = (total - _at(admitted, start)) / (t_end - start) * 60
    seconds = int(t_end - t0) + 1
    marks = [_at(admitted, t0 + k) for k in range(seconds + 1)]
    per_second = [round(b - a, 1) for a, b in itertools.pairwise(marks)]
    return {"first_1s": first, "peak_rpm": peak, "steady_rpm": steady, "per_second": per_second}


@dataclass
class Result:
    spec: CaseSpec
    limits: Limits
    measured: Measured
    summary: dict[str, Any]
    emulator_stats: dict[str, Any]
    shape: dict[str, Any]

    @property
    def sent(self) -> int:
        return int(self.summary["requests"]["sent"])

    @property
    def ok(self) -> int:
        return int(self.summary["requests"]["by_status"].get("200", 0))

    @property
    def rejected(self) -> int:
        return int(self.summary["requests"]["rate_limited"])

    @property
    def overall(self) -> float:
        return self.ok / float(self.summary["duration_s"]) * 60 / self.limits.binding_rpm

    @property
    def overall_wall(self) -> float:
        return self.ok / self.measured.wall_s * 60 / self.limits.binding_rpm

    @property
    def sustained(self) -> float:
        return float(self.shape["steady_rpm"]) / self.limits.binding_rpm

    @property
    def peak(self) -> float:
        return float(self.shape["peak_rpm"]) / self.limits.binding_rpm

    @property
    def rate_429(self) -> float:
        return self.rejected / max(self.sent, 1)

    @property
    def rejected_by_limit(self) -> str:
        by = self.emulator_stats["rate_limited_this_run"]
        return f"{by.get('requests', 0)} / {by.get('tokens', 0)}"

    @property
    def meets(self) -> bool:
        return (
            self.sustained >= TARGET_SUSTAINED
            and self.overall >= TARGET_OVERALL
            and self.rate_429 < TARGET_429_RATE
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

    header = [
        "case",
        "rows",
        "binding rpm",
        "duration s",
        "wall s",
        "sent",
        "200",
        "429",
        "429 r/t",
        "retries",
        "sustained %",
        "overall %",
        "% (wall)",
        "429 rate",
        "first 1 s",
        "peak 5 s %",
    ]
    grid = [
        [
            r.spec.label,
            str(r.limits.rows),
            f"{r.limits.binding_rpm:.0f} {r.limits.binding[0]}",
            f"{r.summary['duration_s']:.1f}",
            f"{r.measured.wall_s:.1f}",
            str(r.sent),
            str(r.ok),
            str(r.rejected),
            r.rejected_by_limit,
            str(r.summary["requests"]["retries"]),
            f"{100 * r.sustained:.1f}" if r.shape["steady_rpm"] else "-",
            f"{100 * r.overall:.1f}",
            f"{100 * r.overall_wall:.1f}",
            f"{100 * r.rate_429:.2f}%",
            str(int(r.shape["first_1s"])),
            f"{100 * r.peak:.0f}",
        ]
        for r in results
    ]
    fam_r = Limits("requests", RPM, tpm["requests"], ROWS, means[ROWS])
    fam_t = Limits("tokens", RPM, tpm["tokens"], ROWS_SHORT, means[ROWS_SHORT])
    print(
        f"\nratelimit: rows_per_request 1 (~100-character texts), concurrency {CONCURRENCY}, "
        f"emulator --rpm {RPM} --latency-ms {LATENCY_MS}, --burst-s 1 in 1a-2b, 60 in d and the "
        "control\n"
        f"  requests bind: --tpm {fam_r.tpm} ({TPM_HEADROOM:g}x 1,200 rpm of "
        f"{fam_r.mean_tokens:.2f} tokens a request); binding limit {fam_r.binding_rpm:.0f} rpm "
        f"(requests; tokens would allow {fam_r.tokens_rpm:.0f})\n"
        f"  tokens bind:   --tpm {fam_t.tpm} / {fam_t.mean_tokens:.2f} tokens a request = "
        f"binding limit {fam_t.binding_rpm:.1f} rpm ({100 * fam_t.binding_rpm / RPM:.0f}% of "
        f"{RPM} rpm)\n"
        "  sustained: admitted rate from 5 s after the first request to the last (emulator "
        "counters); overall: 200s / duration_s; 429 r/t: the emulator's 429s by limit "
        "(requests / tokens)"
    )
    print(render_grid(header, grid))

    for r in results:
        binding = f"{r.limits.binding_rpm:.0f} rpm ({r.limits.binding})"
        if r.spec.control:
            table.add(
                "ratelimit",
                f"{r.spec.label}: overall % of {binding}",
                f"{100 * r.overall:.0f}%",
                "(control)",
            )
            table.add(
                "ratelimit", f"{r.spec.label}: 429 rate", f"{100 * r.rate_429:.2f}%", "(control)"
            )
            continue
        # d is beyond the brief: its targets are shown for comparison, never counted as a miss
        extra = " (extra)" if r.spec.drain else ""
        sustained = f"{100 * r.sustained:.1f}%" if r.shape["steady_rpm"] else "-"
        table.add(
            "ratelimit",
            f"{r.spec.label}: sustained / overall, % of {binding}",
            f"{sustained} / {100 * r.overall:.1f}%",
            f">= {100 * TARGET_SUSTAINED:.0f}% / >= {100 * TARGET_OVERALL:.0f}%" + extra,
            None if extra else (r.sustained >= TARGET_SUSTAINED and r.overall >= TARGET_OVERALL),
        )
        table.add(
            "ratelimit",
            f"{r.spec.label}: 429 rate ({r.rejected} of {r.sent})",
            f"{100 * r.rate_429:.2f}%",
            f"< {100 * TARGET_429_RATE:.0f}%" + extra,
            None if extra else r.rate_429 < TARGET_429_RATE,
        )
        if r.spec.drain and r.rejected:
            table.notes.append(
                f"ratelimit d: {r.rejected} 429s: the requests sent before the first answer "
                "told the client the limit (up to the concurrency) meet an empty bucket"
            )
        if r.overall > 1.05:
            table.notes.append(
                f"ratelimit {r.spec.name}: {100 * r.overall:.0f}% of the binding limit on "
                "average: over it, possible only because the emulator's buckets start full"
            )
    return {
        "rpm": RPM,
        "latency_ms": LATENCY_MS,
        "concurrency": CONCURRENCY,
        "cases": [
            {
                "case": r.spec.name,
                "family": r.limits.family,
                "rows": r.limits.rows,
                "rpm": r.limits.rpm,
                "tpm": r.limits.tpm,
                "burst_s": r.spec.burst_s,
                "mean_tokens": r.limits.mean_tokens,
                "binding": r.limits.binding,
                "binding_rpm": r.limits.binding_rpm,
                "duration_s": r.summary["duration_s"],
                "wall_s": r.measured.wall_s,
                "sent": r.sent,
                "ok": r.ok,
                "rate_limited": r.rejected,
                "retries": r.summary["requests"]["retries"],
                "sustained_pct": 100 * r.sustained,
                "overall_pct": 100 * r.overall,
                "overall_wall_pct": 100 * r.overall_wall,
                "rate_429": r.rate_429,
                "first_1s": r.shape["first_1s"],
                "peak_5s_pct": 100 * r.peak,
                "per_second": r.shape["per_second"],
                "meets_targets": None if r.spec.control or r.spec.drain else r.meets,
                "emulator_stats": r.emulator_stats,
            }
            for r in results
        ],
    }
