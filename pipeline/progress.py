"""Human progress: a rich bar on a terminal, a plain line every few seconds otherwise (cron)."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Literal

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from pipeline.stats import RunStats

log = logging.getLogger("pipeline.progress")
LINE_EVERY_S = 5.0
BAR_EVERY_S = 0.25
Mode = Literal["bar", "lines", "off"]


def choose_mode(quiet: bool, log_format: str) -> Mode:
    if quiet:
        return "off"
    if log_format == "text" and sys.stderr.isatty():
        return "bar"
    return "lines"


async def report(
    stats: RunStats, mode: Mode, stop: asyncio.Event, console: Console | None = None
) -> None:
    """Show progress until ``stop`` is set; the bar draws on ``console`` (default: stderr).

    While the bar is live, rich redirects ``sys.stderr`` through it, and the log handler writes
    to ``sys.stderr`` as it is at each line (``logs``): a log line goes above the bar."""
    if mode == "off":
        await stop.wait()
        return
    if mode == "lines":
        while not await _wait(stop, LINE_EVERY_S):
            log.info("progress %s", _line(stats), extra={"counts": stats.snapshot()})
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed:,.0f}/{task.fields[total_text]} rows"),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=False,
    )
    with progress:
        task = progress.add_task("running", total=None, total_text="?", rate="")
        while True:
            finished = await _wait(stop, BAR_EVERY_S)
            total = stats.rows_total
            progress.update(
                task,
                completed=stats.rows_already + stats.rows_done + stats.rows_failed,
                total=total,
                total_text=f"{total:,}" if total is not None else "?",
                rate=(
                    f"{stats.snapshot()['requests_per_s']:.0f} req/s  "
                    f"failed {stats.rows_failed}  retries {stats.retries}  "
                    f"429s {stats.rate_limited}"
                ),
            )
            if finished:
                return


def _line(stats: RunStats) -> str:
    snap = stats.snapshot()
    done = stats.rows_already + stats.rows_done + stats.rows_failed
    total = "?" if stats.rows_total is None else f"{stats.rows_total}"
    return (
        f"rows={done}/{total} failed_this_run={stats.rows_failed} "
        f"requests={snap['requests']} req/s={snap['requests_per_s']} "
        f"retries={stats.retries} 429s={stats.rate_limited}"
    )


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """True once the event is set; False when ``seconds`` passed first."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True
