"""``pipeline report DIR``: ``DIR/report.html``, one self-contained page of charts and tables
about an output folder (``outputs.py`` reads it, ``common.py`` and ``kinds.py`` make the
sections, ``page.py`` the HTML, ``build.py`` puts them together)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from pipeline.errors import JobError, StorageError

log = logging.getLogger(__name__)

__all__ = ["REPORT_FILE", "report_after_run", "write_report"]
REPORT_FILE = "report.html"
NEEDS = ("altair", "vl_convert")  # the `report` extra: the charts and the bundle they render with


def write_report(output_dir: Path, by: str | None = None) -> Path:
    """Write ``output_dir/report.html`` and return its path. ``by``: a keep column to show the
    flagged rate over (moderation). Raises JobError (no run in the folder, a bad ``by``, the
    `report` extra missing), StorageError (the file cannot be written)."""
    missing = [name for name in NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        raise JobError(
            f"pipeline report needs {', '.join(missing)}: install the report extra "
            "(pip install -e '.[report]' in a clone)"
        )
    from pipeline.report.build import build_report

    return build_report(output_dir, by)


def report_after_run(output_dir: Path) -> Path | None:
    """``pipeline run --report``: the report's path, or None with a warning logged when it
    cannot be written (the run's outputs are, and its exit code stays the run's)."""
    try:
        return write_report(output_dir)
    except (JobError, StorageError) as error:
        log.warning("report not written: %s", error)
        return None
