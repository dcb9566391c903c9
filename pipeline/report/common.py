"""The sections every kind's report has: the run in numbers, requests/s, 429s, retries and
latency over time (from the timeline), the latency distribution, errors by type, cost."""

from __future__ import annotations

from typing import Any

import polars as pl

from pipeline.report.blocks import Chart, Figures, Note, Section, Table, bars, lines
from pipeline.report.outputs import Outputs
from pipeline.timeline import LATENCY_EDGES_MS

EXAMPLES_PER_TYPE = 3
MESSAGE_CHARS = 200


def overview(outputs: Outputs) -> Section:
    summary = outputs.summary
    rows, requests = summary.get("rows", {}), summary.get("requests", {})
    cost = summary.get("cost_usd", {})
    done = outputs.results.select(pl.len()).collect().item()
    failed = outputs.errors.select(pl.len()).collect().item()
    items = [
        ("outcome", "outcome", summary.get("outcome")),
        ("rows_done", "rows in results", done),
        ("rows_failed", "rows in errors", failed),
        ("rows_pending", "rows pending", rows.get("pending")),
        ("requests", "requests this run", requests.get("sent")),
        ("retries", "retries", requests.get("retries")),
        ("rate_limited", "429 answers", requests.get("rate_limited")),
        ("requests_per_s", "requests/s", requests.get("requests_per_s")),
        ("duration_s", "duration (s)", summary.get("duration_s")),
        ("cost_usd", f"cost (USD, {cost.get('mode', 'sync')})", _cost(cost)),
    ]
    when = f"run {summary.get('run')}: {summary.get('started_at')} to {summary.get('finished_at')}"
    return Section(f"{summary.get('job')} ({outputs.kind})", [Note(when), Figures(items)])


def _cost(cost: dict[str, Any]) -> Any:
    actual = cost.get("actual")
    return cost.get("estimated") if actual is None else actual


def over_time(outputs: Outputs) -> Section:
    samples = outputs.samples
    if not samples:
        return Section(
            "Over time", [Note("This folder has no timeline (a run before it was recorded).")]
        )
    frame = pl.DataFrame(
        {name: [sample[name] for sample in samples] for name in ("t", "s", *RATES)}
    )
    per_second = frame.select(
        "t", *((pl.col(name) / pl.col("s").clip(lower_bound=1e-3)).round(2) for name in RATES)
    ).rename(RATES)
    rates = per_second.select("t", "requests/s").unpivot(index="t", variable_name="series")
    trouble = per_second.select("t", "429s/s", "retries/s").unpivot(
        index="t", variable_name="series"
    )
    interval = samples[0]["s"] if len(samples) > 1 else 1.0
    return Section(
        "Over time",
        [
            Note(f"One sample every {interval:g} s of the last run ({len(samples)} samples)."),
            Chart("requests_per_s", "Requests per second", _lines(rates, "requests/s")),
            Chart("rate_limited_retries", "429 answers and retries", _lines(trouble, "per second")),
            Chart(
                "latency_over_time",
                "Request latency (upper bucket edge, ms)",
                _lines(_latency_percentiles(outputs), "ms"),
            ),
        ],
    )


RATES = {"requests": "requests/s", "rate_limited": "429s/s", "retries": "retries/s"}


def _lines(frame: pl.DataFrame, y_title: str) -> dict[str, Any]:
    return lines(frame, "t", "value", "series", x_title="seconds since start", y_title=y_title)


def _latency_percentiles(outputs: Outputs) -> pl.DataFrame:
    """p50 and p95 of each sample that had answers."""
    edges = outputs.timeline_header.get("latency_edges_ms", list(LATENCY_EDGES_MS))
    return pl.DataFrame(
        [
            {"t": sample["t"], "series": name, "value": _percentile(sample["latency"], edges, q)}
            for sample in outputs.samples
            for name, q in (("p50", 0.5), ("p95", 0.95))
            if sum(sample["latency"])
        ],
        schema={"t": pl.Float64, "series": pl.String, "value": pl.Float64},
    )


def _percentile(counts: list[int], edges: list[float], q: float) -> float:
    """The upper edge of the latency bucket holding the q-th answer (the last edge for the
    open last bucket)."""
    target, seen = q * sum(counts), 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= target and count:
            return float(edges[min(index, len(edges) - 1)])
    return float(edges[-1])


def latency_distribution(outputs: Outputs) -> Section:
    edges = outputs.timeline_header.get("latency_edges_ms", list(LATENCY_EDGES_MS))
    totals = [0] * (len(edges) + 1)
    for sample in outputs.samples:
        totals = [a + b for a, b in zip(totals, sample["latency"], strict=False)]
    labels = [f"< {edge:,} ms" for edge in edges] + [f">= {edges[-1]:,} ms"]
    frame = pl.DataFrame({"latency": labels, "requests": totals}).filter(pl.col("requests") > 0)
    if frame.is_empty():
        return Section("Latency", [Note("No answered request in the timeline.")])
    order = [label for label in labels if label in set(frame["latency"])]
    chart = bars(
        frame, "latency", "requests", x_title="answered in", y_title="requests", sort=order
    )
    return Section(
        "Latency", [Chart("latency_distribution", "Request latency distribution", chart)]
    )


def errors(outputs: Outputs) -> Section:
    by_type = (
        outputs.errors.group_by("error_type")
        .agg(pl.len().alias("rows"))
        .sort("rows", "error_type", descending=[True, False])
        .collect()
    )
    if by_type.is_empty():
        return Section("Errors", [Note("No error rows.")])
    front = [outputs.key, *outputs.keep]
    examples = (
        outputs.errors.with_columns(pl.col("error_type").cum_count().over("error_type").alias("_n"))
        .filter(pl.col("_n") <= EXAMPLES_PER_TYPE)
        .select(
            *front,
            "error_type",
            "stage",
            "http_status",
            pl.col("message").str.slice(0, MESSAGE_CHARS),
        )
        .sort("error_type")
        .collect()
    )
    chart = bars(by_type, "error_type", "rows", x_title="error_type", y_title="rows")
    return Section(
        "Errors",
        [
            Chart("errors_by_type", "Error rows by error_type", chart),
            Table("error_examples", f"Examples (up to {EXAMPLES_PER_TYPE} per type)", examples),
        ],
    )


def cost(outputs: Outputs) -> Section:
    summary = outputs.summary
    cost_part = summary.get("cost_usd") or {}
    by_model = cost_part.get("by_model") or {}
    frame = pl.DataFrame(
        [
            {
                "model": model,
                "rows": part.get("rows"),
                "estimated_usd": part.get("estimated"),
                "actual_usd": part.get("actual"),
            }
            for model, part in by_model.items()
        ],
        schema={
            "model": pl.String,
            "rows": pl.Int64,
            "estimated_usd": pl.Float64,
            "actual_usd": pl.Float64,
        },
    )
    tokens = summary.get("tokens") or {}
    actual = tokens.get("actual") or {}
    items = [
        ("cost_estimated", "estimated (USD)", cost_part.get("estimated")),
        ("cost_actual", "from usage (USD)", cost_part.get("actual")),
        (
            "tokens_estimated",
            "input tokens estimated",
            (tokens.get("estimated") or {}).get("input"),
        ),
        ("tokens_input", "input tokens reported", actual.get("input")),
        ("tokens_output", "output tokens reported", actual.get("output")),
    ]
    blocks: list[Any] = [
        Figures(items),
        Table("cost_by_model", "Cost per model (rows done this run)", frame),
    ]
    if cost_part.get("prices"):
        blocks.append(Note(f"Prices: {cost_part['prices']}."))
    return Section("Cost", blocks)
