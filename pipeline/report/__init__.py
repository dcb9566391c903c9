"""``pipeline report DIR``: ``DIR/report.html``, one self-contained page of charts and tables
about an output folder (``outputs.py`` reads it, ``common.py`` and ``kinds.py`` make the
sections, ``page.py`` the HTML)."""

from __future__ import annotations

from pipeline.report.build import REPORT_FILE, write_report

__all__ = ["REPORT_FILE", "write_report"]
