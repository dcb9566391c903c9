"""Durations given on the command line (``--max-runtime``, ``--stop-grace``); a bad one is
click's usage error (exit 2), naming the option."""

from __future__ import annotations

import re

import click


def duration(text: str, option: str = "--max-runtime") -> float:
    """ "90s", "50m", "1h30m" or plain seconds, in seconds."""
    parts = re.fullmatch(
        r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*"
        r"(?:(\d+(?:\.\d+)?)s?)?\s*",
        text,
    )
    if not text.strip() or parts is None or not any(parts.groups()):
        raise click.BadParameter(
            f"{text!r}: write a duration such as 90s, 50m or 1h30m", param_hint=option
        )
    hours, minutes, seconds = (float(g) if g else 0.0 for g in parts.groups())
    return hours * 3600 + minutes * 60 + seconds
