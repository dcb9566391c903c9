"""The request kinds: one module each, found by name; a module exports its class as ``KIND``."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from pipeline.job import JobSpec
from pipeline.kinds.base import Kind
from pipeline.outcomes import Failure, Outcome, Success

__all__ = ["Failure", "Kind", "Outcome", "Success", "kind_classes", "make_kind"]

_NOT_KINDS = frozenset({"base"})


@cache
def kind_classes() -> dict[str, type[Kind]]:
    """Every kind module in this package, by its ``name``."""
    found: dict[str, type[Kind]] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name in _NOT_KINDS or module.name.startswith("_"):
            continue
        kind: type[Kind] | None = getattr(
            importlib.import_module(f"{__name__}.{module.name}"), "KIND", None
        )
        if kind is not None:  # a helper module of a kind
            found[kind.name] = kind
    return found


def make_kind(job: JobSpec) -> Kind:
    """The kind object for a checked job; JobError when its own sections are wrong."""
    return kind_classes()[job.kind](job)  # type: ignore[call-arg]
