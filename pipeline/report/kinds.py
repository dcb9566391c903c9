"""The sections of each kind's report, found by the kind's name in ``SECTIONS``: moderation
(flag rates, score histograms, most flagged rows, rate by a keep column), speech (audio hours,
duration vs characters, failures), runs (tokens per row, run statuses)."""

from __future__ import annotations

from collections.abc import Callable

import altair as alt
import polars as pl

from pipeline.errors import JobError
from pipeline.report.blocks import (
    HEIGHT,
    WIDTH,
    Block,
    Chart,
    Note,
    Section,
    Table,
    bars,
    binned,
    histogram,
    spec,
)
from pipeline.report.outputs import Outputs

SCORE_BINS = 20
MOST_FLAGGED = 20
BY_VALUES = 30  # the --by values shown: the most frequent
SCATTER_POINTS = 2000  # a sample of the rows, whatever their number
TOKEN_BINS = 20


def moderation(outputs: Outputs, by: str | None) -> list[Section]:
    results = outputs.results
    names = results.collect_schema().names()
    categories = [name.removeprefix("flag_") for name in names if name.startswith("flag_")]
    rates = (
        results.select(pl.col(f"flag_{c}").cast(pl.Float64).mean().alias(c) for c in categories)
        .collect()
        .unpivot(variable_name="category", value_name="flagged_rate")
        .with_columns(pl.col("flagged_rate").fill_null(0).round(4))
    )
    flagged = results.select(
        pl.len().alias("rows"), pl.col("flagged").sum().alias("flagged")
    ).collect()
    blocks: list[Block] = [
        Note(f"{flagged['flagged'][0] or 0} of {flagged['rows'][0]} rows flagged."),
        Chart(
            "flagged_rate",
            "Flagged rate per category",
            bars(
                rates,
                "category",
                "flagged_rate",
                x_title="category",
                y_title="share of rows flagged",
                y_format=".1%",
            ),
        ),
        Chart(
            "score_histograms",
            "Scores per category (20 bins over 0-1)",
            _score_histograms(results, categories),
        ),
        Table(
            "most_flagged",
            f"Most flagged rows (top {MOST_FLAGGED} by highest score)",
            _most_flagged(outputs, categories),
        ),
    ]
    if by is not None:
        blocks.append(_rate_by(outputs, by))
    return [Section("Moderation", blocks)]


def _score_histograms(results: pl.LazyFrame, categories: list[str]) -> dict[str, object]:
    frames = [
        binned(results, f"score_{c}", SCORE_BINS, 0.0, 1.0).with_columns(
            pl.lit(c).alias("category")
        )
        for c in categories
    ]
    frame = (
        pl.concat(frames)
        if frames
        else pl.DataFrame(
            schema={
                "start": pl.Float64,
                "end": pl.Float64,
                "rows": pl.UInt32,
                "category": pl.String,
            }
        )
    )
    chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("start:Q", title="score", scale=alt.Scale(domain=[0, 1])),
            x2="end:Q",
            y=alt.Y("rows:Q", title="rows (log)", scale=alt.Scale(type="symlog")),
            y2=alt.datum(0),  # from the axis: a symlog scale sets no bar baseline
            tooltip=["category:N", "start:Q", "end:Q", "rows:Q"],
        )
        .properties(width=150, height=90)
        .facet(facet=alt.Facet("category:N", title=None), columns=4)
    )
    return spec(chart)


def _most_flagged(outputs: Outputs, categories: list[str]) -> pl.DataFrame:
    scores = [pl.col(f"score_{c}") for c in categories]
    top = pl.concat_list(scores).list.arg_max()
    return (
        outputs.results.filter(pl.col("flagged"))
        .with_columns(
            pl.max_horizontal(scores).round(4).alias("top_score"),
            top.replace_strict(dict(enumerate(categories)), return_dtype=pl.String).alias(
                "top_category"
            ),
        )
        .sort("top_score", descending=True)
        .head(MOST_FLAGGED)
        .select(outputs.key, *outputs.keep, "top_category", "top_score")
        .collect()
    )


def _rate_by(outputs: Outputs, by: str) -> Chart:
    if by not in outputs.keep:
        shown = ", ".join(outputs.keep) or "none"
        raise JobError(
            f"--by {by}: not a keep column of this job's results (keep columns: {shown})"
        )
    frame = (
        outputs.results.group_by(pl.col(by).cast(pl.String))
        .agg(
            pl.len().alias("rows"),
            pl.col("flagged").cast(pl.Float64).mean().round(4).alias("flagged_rate"),
        )
        .sort("rows", by, descending=[True, False])
        .head(BY_VALUES)
        .collect()
    )
    title = f"Flagged rate by {by} (the {BY_VALUES} most frequent values)"
    return Chart(
        "flagged_rate_by",
        title,
        bars(
            frame, by, "flagged_rate", x_title=by, y_title="share of rows flagged", y_format=".1%"
        ),
    )


def speech(outputs: Outputs, by: str | None) -> list[Section]:
    _no_by(by)
    results = outputs.results
    hours = (
        results.group_by("voice", "format")
        .agg((pl.col("duration_s").sum() / 3600).round(4).alias("audio_hours"))
        .sort("voice", "format")
        .collect()
    )
    failed = _failed_by_reason(outputs.errors)
    total = results.select(pl.col("duration_s").sum()).collect().item() or 0.0
    blocks: list[Block] = [
        Note(f"{total / 3600:.2f} hours of audio in the results."),
        Chart(
            "audio_hours",
            "Audio hours per voice and format",
            bars(
                hours,
                "voice",
                "audio_hours",
                x_title="voice",
                y_title="hours",
                y_format=",.3f",
                color="format",
                sort="ascending",
            ),
        ),
        Chart(
            "duration_vs_chars",
            f"Duration vs characters (up to {SCATTER_POINTS} rows)",
            _duration_scatter(results),
        ),
    ]
    if failed.is_empty():
        blocks.append(Note("No failed rows."))
    else:
        blocks.append(
            Chart(
                "failed_by_reason",
                "Failed rows by reason",
                bars(failed, "reason", "rows", x_title="reason", y_title="rows"),
            )
        )
    return [Section("Speech", blocks)]


def _duration_scatter(results: pl.LazyFrame) -> dict[str, object]:
    points = results.select("chars", "duration_s", "voice").head(SCATTER_POINTS).collect()
    scatter = (
        alt.Chart(points)
        .mark_circle(size=30, opacity=0.7)
        .encode(
            x=alt.X("chars:Q", title="characters"),
            y=alt.Y("duration_s:Q", title="audio seconds"),
            color="voice:N",
            tooltip=["chars:Q", "duration_s:Q", "voice:N"],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )
    return spec(scatter)


def _failed_by_reason(errors: pl.LazyFrame) -> pl.DataFrame:
    """Error rows counted by type and the start of their message (30 reasons at most)."""
    reason = pl.concat_str(pl.col("error_type"), pl.lit(": "), pl.col("message").str.slice(0, 80))
    return (
        errors.group_by(reason.alias("reason"))
        .agg(pl.len().alias("rows"))
        .sort("rows", "reason", descending=[True, False])
        .head(30)
        .collect()
    )


def run(outputs: Outputs, by: str | None) -> list[Section]:
    _no_by(by)
    tokens = binned(outputs.results, "total_tokens", TOKEN_BINS)
    done = (
        outputs.results.group_by(pl.col("status").fill_null("completed"))
        .agg(pl.len().alias("rows"))
        .collect()
    )
    ended = (
        outputs.errors.filter(pl.col("stage") == "run")
        .group_by(pl.col("error_type").alias("status"))
        .agg(pl.len().alias("rows"))
        .collect()
    )
    statuses = (
        pl.concat([done, ended.cast(done.schema)])
        .group_by("status")
        .agg(pl.col("rows").sum())
        .sort("status")
    )
    blocks: list[Block] = [
        Chart(
            "tokens_per_row",
            "Tokens per row (total_tokens)",
            histogram(tokens, "start", "end", "rows", x_title="total tokens"),
        )
        if not tokens.is_empty()
        else Note("No token counts in the results."),
        Chart(
            "run_status",
            "Run status counts",
            bars(statuses, "status", "rows", x_title="status", y_title="rows"),
        ),
    ]
    return [Section("Runs", blocks)]


def _no_by(by: str | None) -> None:
    if by is not None:
        raise JobError("--by is for moderation reports (flagged rate over a keep column)")


SECTIONS: dict[str, Callable[[Outputs, str | None], list[Section]]] = {
    "moderation": moderation,
    "speech": speech,
    "run": run,
}
