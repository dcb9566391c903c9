"""ratelimit: what a case is, how its run is read from the emulator's counters, the grid it
prints and its rows in the bench table; ``bench/ratelimit.py``'s docstring defines each figure."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from bench.common import Measured, Table, count_requests, render_grid

RPM = 1200
LATENCY_MS = 50
CONCURRENCY = 16
ROWS = 900  # requests bind: 45 s at 1,200 rpm
ROWS_SHORT = 600  # tokens bind (~46 s at ~780 rpm) and case d (30 s)
TPM_HEADROOM = 2.0  # requests bind: the token limit allows twice what 1,200 rpm needs
TOKENS_SHARE = 0.65  # tokens bind: the token limit allows 65 % of 1,200 rpm
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


def admitted(stats: dict[str, Any]) -> int:
    """Requests that arrived and were not answered 429 (those still in flight included)."""
    return count_requests(stats) - int(stats["status"].get("429", 0))


def _value_at(points: list[tuple[float, int]], t: float) -> float:
    """A counter at time ``t``, interpolated linearly between samples."""
    if t <= points[0][0]:
        return float(points[0][1])
    for (ta, na), (tb, nb) in itertools.pairwise(points):
        if ta <= t <= tb:
            return na + (nb - na) * (t - ta) / (tb - ta) if tb > ta else float(nb)
    return float(points[-1][1])


def _time_reached(points: list[tuple[float, int]], total: int) -> float:
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
    t0 = _time_reached(arrived, 1)  # when the first request arrived
    first = round(_value_at(arrived, t0 + 1.0))
    total = admitted[-1][1]
    t_end = _time_reached(admitted, total)
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
        steady = (total - _value_at(admitted, start)) / (t_end - start) * 60
    seconds = int(t_end - t0) + 1
    marks = [_value_at(admitted, t0 + k) for k in range(seconds + 1)]
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


def report(
    table: Table, results: list[Result], tpm: dict[str, int], means: dict[int, float]
) -> dict[str, Any]:
    """Print the grid, add the table rows; the figures as JSON.

    ``tpm``: each family's token limit; ``means``: the mean tokens a request, by rows sent.
    """
    _print_grid(results, tpm, means)
    _add_rows(table, results)
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


def _print_grid(results: list[Result], tpm: dict[str, int], means: dict[int, float]) -> None:
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


def _add_rows(table: Table, results: list[Result]) -> None:
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
