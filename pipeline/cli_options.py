"""Option groups of ``cli.py``: the engine of ``pipeline run`` (``--engine``, ``--ray-address``,
``--ray-actors``), handed to the command as one argument."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from pipeline.ray import RayOptions, check_installed


def engine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the engine options to ``command``, which gets them as one ``ray`` argument: None
    for the local executor, a RayOptions for ``--engine ray``."""

    @wraps(command)
    def chosen(*args: Any, engine: str, ray_address: str | None, **kwargs: Any) -> Any:
        actors = kwargs.pop("ray_actors")
        if engine != "ray":
            return command(*args, ray=None, **kwargs)
        check_installed()  # JobError (exit 2) naming the extra: applied inside cli._exits
        return command(*args, ray=RayOptions(ray_address, actors), **kwargs)

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
