"""The report of one output folder: its sections gathered, the page written atomically."""

from __future__ import annotations

from pathlib import Path

from pipeline.report import common
from pipeline.report.blocks import Section
from pipeline.report.kinds import SECTIONS
from pipeline.report.outputs import read_outputs
from pipeline.report.page import render
from pipeline.writers import storing

REPORT_FILE = "report.html"


def write_report(output_dir: Path, by: str | None = None) -> Path:
    """Write ``output_dir/report.html`` and return its path. ``by``: a keep column to show the
    flagged rate over (moderation). Raises JobError (no run in the folder, a bad ``by``),
    StorageError (the file cannot be written)."""
    outputs = read_outputs(output_dir)
    sections: list[Section] = [
        common.overview(outputs),
        *SECTIONS[outputs.kind](outputs, by),
        common.over_time(outputs),
        common.latency_distribution(outputs),
        common.errors(outputs),
        common.cost(outputs),
    ]
    page = render(f"pipeline report: {outputs.summary.get('job')}", sections)
    path = output_dir / REPORT_FILE
    with storing(path, output_dir) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
