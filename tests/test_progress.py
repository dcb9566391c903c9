"""The progress display: a log line printed while the bar is live goes above it, not onto it."""

from __future__ import annotations

import asyncio
import io
import logging
import re

from rich.console import Console

from pipeline.logs import setup_logging
from pipeline.progress import choose_mode, report
from pipeline.stats import RunStats

_TOKENS = re.compile(r"(\x1b\[[0-9;?]*[A-Za-z]|\r|\n)")


def screen(output: str) -> list[str]:
    """The lines a terminal shows after ``output`` (what rich's live display sends: text,
    carriage returns, newlines, erase-line, cursor up, cursor show/hide)."""
    lines: list[list[str]] = [[]]
    row = column = 0
    for token in _TOKENS.split(output):
        if token == "\n":
            row, column = row + 1, 0
            if row == len(lines):
                lines.append([])
        elif token == "\r":
            column = 0
        elif token == "\x1b[2K":
            lines[row] = []
        elif (up := re.fullmatch(r"\x1b\[(\d*)A", token)) is not None:
            row = max(0, row - int(up.group(1) or 1))
        elif token.startswith("\x1b["):
            continue  # cursor show/hide
        else:
            line = lines[row] + [" "] * max(0, column - len(lines[row]))
            line[column : column + len(token)] = token
            lines[row], column = line, column + len(token)
    return ["".join(line).rstrip() for line in lines]


async def test_a_log_line_goes_above_the_bar_on_a_line_of_its_own() -> None:
    setup_logging("text")
    captured = io.StringIO()
    console = Console(file=captured, force_terminal=True, width=120, color_system=None)
    stats = RunStats(rows_total=10)
    stop = asyncio.Event()
    shown = asyncio.create_task(report(stats, "bar", stop, console))
    await asyncio.sleep(0)  # one turn of the loop: the task has entered the live display
    logging.getLogger("pipeline.test").warning("a line from the log while the bar is live")
    stats.rows_done = 10
    stop.set()
    await shown

    lines = [line for line in screen(captured.getvalue()) if line]
    assert len(lines) == 2, lines
    logged = r"\d\d:\d\d:\d\d WARNING a line from the log while the bar is live"
    assert re.fullmatch(logged, lines[0]), "the log line, on a line of its own"
    assert re.fullmatch(r"running ━+ 100% 10/10 rows .*", lines[1]), "the bar, whole, below it"


def test_quiet_turns_off_the_progress_display_in_both_formats() -> None:
    assert choose_mode(True, "text") == choose_mode(True, "json") == "off"
    assert choose_mode(False, "json") == "lines"  # not a terminal: a progress log line now and then
