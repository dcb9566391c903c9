"""`pipeline status`: what an output folder holds, read from the journal without taking the lock.

The journal is opened read-only (as immutable on read-only media); a corrupt or missing one is a
JobError saying how to recover."""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.errors import JobError
from pipeline.folder import output_files
from pipeline.journal import JOURNAL_FILE, STATE_DIR, Journal


def read_status(output_dir: Path) -> str:
    """A few lines: rows by state, duplicates after crashes, the last run's summary."""
    if not (output_dir / STATE_DIR / JOURNAL_FILE).is_file():
        found = output_files(output_dir)
        if found:  # the journal was deleted: say how to get it back
            raise JobError(
                f"{', '.join(p.name for p in found)} but no journal ({STATE_DIR}/ was deleted?): "
                "`pipeline run JOB --rebuild-journal` adopts them",
                path=str(output_dir),
            )
        raise JobError(
            "no journal here: this is not a pipeline output folder (or nothing ran yet)",
            path=str(output_dir),
        )
    journal = Journal(output_dir, readonly=True)
    try:
        counts = journal.counts()
        again = journal.duplicates()
        last = journal.last_summary()
    finally:
        journal.close()
    batches = batch_lines(output_dir)
    lines = [
        f"{output_dir}",
        f"  done {counts['done']}, failed {counts['failed']}, "
        f"pending {counts['pending']}, in flight {counts['sent']}",
        f"  sent again after a crash: {again['requests']} request(s), {again['rows']} row(s)",
    ]
    if last is None:
        lines.append("  no finished run yet")
    else:
        requests = last["requests"]
        lines.append(
            f"  last run #{last['run']} {last['outcome']} at {last['finished_at']}: "
            f"{last['rows']['done_this_run']} done, {last['rows']['failed_this_run']} failed, "
            f"{requests['sent']} requests, {requests['retries']} retries, "
            f"{requests['rate_limited']} x 429 in {last['duration_s']} s"
        )
        unread = last["rows"].get("unread", 0)
        if unread:
            lines.append(f"  {unread} input row(s) not read yet: rerun to go on")
        changed = last.get("rows_changed_since_done", 0)
        if changed:
            lines.append(
                f"  {changed:g} done row(s) changed in the input since: "
                "`pipeline run --redo-changed` sends them again"
            )
    return "\n".join(lines + batches)


def batch_lines(output_dir: Path, now: float | None = None) -> list[str]:
    """A line for each Batch API batch of the folder (batch mode): id, status, request counts,
    age; none when the folder never ran in batch mode."""
    from pipeline.batch import Ledger

    ledger = Ledger(output_dir, readonly=True)
    try:
        files = ledger.files() if ledger.exists() else []
    finally:
        ledger.close()
    now = time.time() if now is None else now
    lines = [f"  batches: {len(files)}"] if files else []
    for file in files:
        counts = file.counts or {}
        lines.append(
            f"    {file.batch_id or '(no batch: file ' + str(file.id) + ')'} "
            f"{file.status or file.state} ({file.state}): "
            f"{counts.get('completed', 0)}/{counts.get('total', file.lines)} done, "
            f"{counts.get('failed', 0)} failed, {_age(now - file.created_at)} old"
        )
    return lines


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
