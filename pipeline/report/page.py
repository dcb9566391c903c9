"""The report's one HTML file: styles and the Vega / Vega-Lite / vega-embed bundle inlined (from
vl-convert-python, which ships them), so it opens offline and attaches to a ticket whole."""

from __future__ import annotations

import html
import json
import os
import re
from contextlib import suppress
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.report.blocks import Block, Chart, Figures, Note, Section, Table

MAX_CELL_CHARS = 300
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1180px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.figures { display: flex; flex-wrap: wrap; gap: 10px; }
.figure { border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; min-width: 110px; }
.figure .label { color: #666; font-size: 12px; } .figure .value { font-size: 20px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } .note { color: #555; }
.chart { margin: 6px 0 14px; }
"""


@cache
def vega_bundle() -> str:
    """vega, vega-lite and vega-embed as one script (defines ``window.vegaEmbed``). Bundling
    takes seconds, so the script is kept in the user's cache folder, per vl-convert version."""
    import vl_convert

    version = getattr(vl_convert, "__version__", "unknown")
    cached = _cache_dir() / f"vega-embed-bundle-{version}.js"
    with suppress(OSError):
        return cached.read_text(encoding="utf-8")
    # the stub marks the snippet required; without one the bundle sets the window globals
    bundle = str(vl_convert.javascript_bundle())  # type: ignore[call-arg]
    with suppress(OSError):  # no cache folder: the next report bundles again
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        partial.write_text(bundle, encoding="utf-8")
        os.replace(partial, cached)
    return bundle


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pipeline"


def render(title: str, sections: list[Section]) -> str:
    """The whole page. Charts render as SVG; once all have, ``body[data-charts-rendered]``
    holds their count (a reader of the DOM knows the page is complete)."""
    charts: list[tuple[str, dict[str, Any]]] = []
    body = [f"<h1>{_text(title)}</h1>"]
    for section in sections:
        body.append(f"<section><h2>{_text(section.title)}</h2>")
        body.extend(_block(block, charts) for block in section.blocks)
        body.append("</section>")
    specs = _script_json({name: chart for name, chart in charts})
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{_text(title)}</title>",
            f"<style>{STYLE}</style>",
            f"<script>{_script_text(vega_bundle())}</script>",
            "</head><body>",
            *body,
            "<script>",
            f"const specs = {specs};",
            "const options = {renderer: 'svg', actions: false};",
            "Promise.all(Object.entries(specs).map(([name, spec]) =>",
            "  vegaEmbed(document.getElementById('chart-' + name), spec, options)))",
            "  .then(views => { document.body.dataset.chartsRendered = String(views.length); })",
            "  .catch(error => { document.body.dataset.chartsError = String(error); });",
            "</script>",
            "</body></html>",
        ]
    )


def _block(block: Block, charts: list[tuple[str, dict[str, Any]]]) -> str:
    if isinstance(block, Note):
        return f'<p class="note">{_text(block.text)}</p>'
    if isinstance(block, Figures):
        cells = [
            f'<div class="figure"><div class="label">{_text(label)}</div>'
            f'<div class="value" data-metric="{_text(metric)}">{_text(_shown(value))}</div></div>'
            for metric, label, value in block.items
        ]
        return f'<div class="figures">{"".join(cells)}</div>'
    if isinstance(block, Chart):
        charts.append((block.name, block.spec))
        note = f'<p class="note">{_text(block.note)}</p>' if block.note else ""
        return (
            f"<h3>{_text(block.title)}</h3>{note}"
            f'<div class="chart" id="chart-{_text(block.name)}" '
            f'data-chart="{_text(block.name)}"></div>'
        )
    return _table(block)


def _table(table: Table) -> str:
    frame = table.frame
    head = "".join(f"<th>{_text(name)}</th>" for name in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_text(_shown(value))}</td>" for value in row) + "</tr>"
        for row in frame.iter_rows()
    )
    empty = "" if frame.height else '<p class="note">none</p>'
    return (
        f"<h3>{_text(table.title)}</h3>"
        f'<table data-table="{_text(table.name)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table>{empty}"
    )


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.6g}" if abs(value) < 1e15 else str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, pl.Series | list | dict):
        value = json.dumps(
            value if not isinstance(value, pl.Series) else value.to_list(), default=str
        )
    text = str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def _text(value: str) -> str:
    return html.escape(value, quote=True)


def _script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element (no ``</script>`` from the data)."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text.replace("</", "<\\/").replace("<!--", "<\\u0021--")


def _script_text(code: str) -> str:
    """Code kept as it is but for a literal ``</script`` (none in the bundle today)."""
    return re.sub(r"</(script)", r"<\\/\1", code, flags=re.IGNORECASE)
