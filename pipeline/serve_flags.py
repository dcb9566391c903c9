"""The flags of ``pipeline serve`` that are parsed beyond click: NAME=NUMBER pairs, and the
emulator's Batch API flags (kept here so that ``cli.py`` stays one screenful per command)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def parse_pairs(pairs: tuple[str, ...], option: str = "--fault") -> dict[str, float]:
    """``("500=0.1", ...)`` as ``{"500": 0.1}``; click.BadParameter naming ``option`` otherwise."""
    parsed = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            parsed[name] = float(value)
        except ValueError:
            raise click.BadParameter(
                f"{pair!r}: write NAME=NUMBER, e.g. 500=0.1", param_hint=option
            ) from None
    return parsed


def batch_flags(command: F) -> F:
    """Add ``--batch-phase``, ``--batch-fault`` and ``--batch-queue-tokens`` to ``command``."""
    options = (
        click.option(
            "--batch-phase",
            "batch_phases",
            multiple=True,
            metavar="PHASE=S",
            help="Seconds a batch is validating, in_progress, finalizing or cancelling. "
            "Repeatable.",
        ),
        click.option(
            "--batch-fault",
            "batch_faults",
            multiple=True,
            metavar="NAME=P",
            help="Batch faults: line_expired line_500 line_dropped (per line), batch_failed "
            "batch_all_failed batch_lies (per batch). Repeatable.",
        ),
        click.option(
            "--batch-queue-tokens", type=click.IntRange(min=1), help="Enqueued-token limit."
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command


def batch_settings(flags: dict[str, Any]) -> dict[str, Any]:
    """The EmulatorConfig fields of the batch flags ``batch_flags`` added."""
    return {
        "batch_phase_s": parse_pairs(flags["batch_phases"], "--batch-phase"),
        "batch_faults": parse_pairs(flags["batch_faults"], "--batch-fault"),
        "batch_queue_tokens": flags["batch_queue_tokens"],
    }
