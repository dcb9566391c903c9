"""The pieces a report section is made of (figures, charts, tables) and the chart helpers every
section uses, so that all charts look alike: Altair (Vega-Lite) specs, rendered as SVG."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import altair as alt
import polars as pl

WIDTH = 520
HEIGHT = 220


@dataclass(frozen=True)
class Figures:
    """Key numbers, each shown with ``data-metric`` = its name (tests read them back)."""

    items: Sequence[tuple[str, str, Any]]  # (metric, label, value)


@dataclass(frozen=True)
class Chart:
    name: str
    title: str
    spec: dict[str, Any]
    note: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    frame: pl.DataFrame
    note: str = ""


@dataclass(frozen=True)
class Note:
    text: str


Block = Figures | Chart | Table | Note


@dataclass(frozen=True)
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


def spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """The chart's Vega-Lite spec with its data inline; no actions menu, SVG renderer set
    by the page."""
    return dict(chart.to_dict())


def bars(
    frame: pl.DataFrame,
    x: str,
    y: str,
    *,
    x_title: str,
    y_title: str,
    y_format: str = ",.0f",
    color: str | None = None,
    sort: str | list[str] = "-y",
) -> dict[str, Any]:
    """A horizontal bar chart of ``y`` (the measure) per ``x`` (the category)."""
    encoding: dict[str, Any] = {
        "y": alt.Y(f"{x}:N", title=x_title, sort=sort),
        # whole counts: no tick between two integers (it would read 0, 0, 1, 1)
        "x": alt.X(f"{y}:Q", title=y_title, axis=_axis(y_format)),
        "tooltip": [alt.Tooltip(f"{x}:N"), alt.Tooltip(f"{y}:Q", format=y_format)],
    }
    if color is not None:
        encoding["color"] = alt.Color(f"{color}:N")
        encoding["tooltip"].append(alt.Tooltip(f"{color}:N"))
    height = max(60, min(18 * max(frame.height, 1), 600))
    chart = alt.Chart(frame).mark_bar().encode(**encoding).properties(width=WIDTH, height=height)
    return spec(chart)


def _axis(number_format: str) -> alt.Axis:
    if number_format.endswith(".0f"):
        return alt.Axis(format=number_format, tickMinStep=1)
    return alt.Axis(format=number_format)


def histogram(
    frame: pl.DataFrame, start: str, end: str, count: str, *, x_title: str
) -> dict[str, Any]:
    """Bars over pre-binned ranges [start, end) with their counts (binned in polars: the data
    stays small whatever the row count)."""
    chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X(f"{start}:Q", title=x_title),
            x2=f"{end}:Q",
            y=alt.Y(f"{count}:Q", title="rows"),
            tooltip=[f"{start}:Q", f"{end}:Q", f"{count}:Q"],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )
    return spec(chart)


def lines(
    frame: pl.DataFrame, x: str, y: str, series: str, *, x_title: str, y_title: str
) -> dict[str, Any]:
    """One line per ``series`` value over ``x``."""
    chart = (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X(f"{x}:Q", title=x_title),
            y=alt.Y(f"{y}:Q", title=y_title),
            color=alt.Color(f"{series}:N", title=None),
            tooltip=[f"{x}:Q", f"{series}:N", f"{y}:Q"],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )
    return spec(chart)


def binned(
    frame: pl.LazyFrame, column: str, bins: int, low: float | None = None, high: float | None = None
) -> pl.DataFrame:
    """Counts of ``column`` in ``bins`` equal ranges between ``low`` and ``high`` (default: its
    min and max), aggregated lazily: columns ``start``, ``end``, ``rows``."""
    values = frame.select(pl.col(column).cast(pl.Float64)).drop_nulls()
    if low is None or high is None:
        bounds = values.select(
            pl.col(column).min().alias("low"), pl.col(column).max().alias("high")
        ).collect()
        low = bounds["low"][0] if low is None else low
        high = bounds["high"][0] if high is None else high
    if low is None or high is None:
        return pl.DataFrame(schema={"start": pl.Float64, "end": pl.Float64, "rows": pl.UInt32})
    width = (high - low) / bins if high > low else 1.0
    index = ((pl.col(column) - low) / width).floor().clip(0, bins - 1).cast(pl.Int64)
    counts = values.group_by(index.alias("bin")).agg(pl.len().alias("rows")).collect()
    return (
        counts.with_columns(
            (pl.col("bin") * width + low).alias("start"),
            ((pl.col("bin") + 1) * width + low).alias("end"),
        )
        .sort("bin")
        .select("start", "end", "rows")
    )
