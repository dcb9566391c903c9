"""Option groups and value parsers that ``cli.py`` uses: the engine group of ``pipeline run``
(``--engine``, ``--ray-address``, ``--ray-actors``) and ``--fault NAME=P`` values."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from pipeline.ray import RayOptions


def engine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the engine options to ``command``, which gets them as one ``ray`` argument: None
    for the local executor, a RayOptions for ``--engine ray``."""

    @wraps(command)
    def chosen(*args: Any, engine: str, ray_address: str | None, **kwargs: Any) -> Any:
        actors = kwargs.pop("ray_actors")
        ray = RayOptions(ray_address, actors) if engine == "ray" else None
        return command(*args, ray=ray, **kwargs)

    options = (
        click.option(
            "--engine",
            type=click.Choice(["local", "ray"]),
            default="local",
            show_default=True,
            help="ray: carry the rows on a Ray cluster (the `ray` extra).",
        ),
        click.option("--ray-address", envvar="RAY_ADDRESS", help="Ray cluster (default: local)."),
        click.option(
            "--ray-actors", type=click.IntRange(min=1), help="Ray actors (default: 1 per CPU)."
        ),
    )
    for option in reversed(options):
        chosen = option(chosen)
    return chosen


def parse_faults(faults: tuple[str, ...]) -> dict[str, float]:
    parsed = {}
    for fault in faults:
        name, _, value = fault.partition("=")
        try:
            parsed[name] = float(value)
        except ValueError:
            raise click.BadParameter(
                f"{fault!r}: write NAME=PROBABILITY, e.g. 500=0.1", param_hint="--fault"
            ) from None
    return parsed
