"""OpenAI's published shutdowns (``data/shutdowns.toml``) and the warning a job gets for one.

A job sent to api.openai.com that names a model or an API within ``WARN_DAYS`` of its shutdown
date, or past it, gets one line naming it, the date, the replacement and the change to the job
file; a field that is one input column (``model = "{model}"``) names what its rows name.
Past the date it is still a warning, not a refusal: the server decides what it serves.
Other base URLs (a provider, the emulator) get none. Today's date is ``PIPELINE_TODAY``
(YYYY-MM-DD) when set, so a test or a planner can ask what a job will meet on a given day.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from pipeline.errors import JobError
from pipeline.job import JobSpec, is_openai_url

WARN_DAYS = 30
_COLUMN = re.compile(r"\{(\w+)\}")  # a field that is one input column, as templates write it
TODAY_VARIABLE = "PIPELINE_TODAY"


@dataclass(frozen=True)
class Shutdown:
    """One entry of the table: where a job names it, when it goes, and what replaces it."""

    kind: str
    field: str  # "request.model": [request] model; "run.protocol": [run] protocol
    value: str
    name: str
    date: dt.date
    replacement: str
    switch: str


@cache
def table() -> tuple[Shutdown, ...]:
    """The packaged table, read once."""
    text = resources.files("pipeline").joinpath("data", "shutdowns.toml").read_text("utf-8")
    return tuple(Shutdown(**entry) for entry in tomllib.loads(text)["shutdown"])


def today() -> dt.date:
    """``PIPELINE_TODAY`` when set, else the local date."""
    value = os.environ.get(TODAY_VARIABLE)
    if not value:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise JobError(
            f"{TODAY_VARIABLE}={value!r} is not a date: write it as YYYY-MM-DD"
        ) from None


def warnings(
    job: JobSpec,
    base_url: str,
    on: dt.date | None = None,
    column_values: Callable[[str], set[str]] | None = None,
) -> list[str]:
    """One line per shutdown this job meets on api.openai.com on the date ``on`` (today). A
    field that is one column (``model = "{model}"``) meets it when ``column_values`` of that
    column (the input's distinct values) holds the value."""
    if not is_openai_url(base_url):
        return []
    on = on or today()  # read only for OpenAI: a bad PIPELINE_TODAY never stops a local job
    lines = []
    for entry in table():
        if entry.kind != job.kind or (entry.date - on).days > WARN_DAYS:
            continue
        named = _named(job, entry.field)
        column = _COLUMN.fullmatch(named) if isinstance(named, str) else None
        if named == entry.value:
            lines.append(_line(entry, on))
        elif column and column_values and entry.value in column_values(column.group(1)):
            lines.append(f"{_line(entry, on)} (in the rows whose {column.group(1)} names it)")
    return lines


def _named(job: JobSpec, field: str) -> Any:
    """What the job file says at ``field`` ("request.model", "run.protocol"); None if nothing."""
    section, _, name = field.partition(".")
    values = job.request if section == "request" else job.sections.get(section, {})
    return values.get(name) if isinstance(values, Mapping) else None


def _line(entry: Shutdown, on: dt.date) -> str:
    days = (entry.date - on).days
    if days > 0:
        when = f"shuts down on OpenAI on {entry.date} (in {days} day{'s' * (days != 1)})"
    elif days == 0:
        when = f"shuts down on OpenAI today, {entry.date}"
    else:
        ago = -days
        when = (
            f"was shut down on OpenAI on {entry.date} ({ago} day{'s' * (ago != 1)} ago; "
            "requests to it are expected to fail)"
        )
    return f"{entry.name} {when}; its replacement is {entry.replacement}: set {entry.switch}"
