"""The report of one output folder: its sections gathered, the page written atomically."""

from __future__ import annotations

from pathlib import Path

from pipeline.report import REPORT_FILE, common
from pipeline.report.blocks import Section
from pipeline.report.kinds import SECTIONS
from pipeline.report.outputs import read_outputs
from pipeline.report.page import render
from pipeline.writers import storing


def build_report(output_dir: Path, by: str | None) -> Path:
    """``pipeline.report.write_report`` once its libraries are known to be there."""
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
