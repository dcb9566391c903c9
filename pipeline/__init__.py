"""pipeline: datasets to OpenAI API requests, and the answers back to datasets.

The Python API, everything in ``__all__`` (the rest is private and may change)::

    import pipeline
    summary = pipeline.run("jobs/moderate_comments.toml")       # -> pipeline.Summary
    found = pipeline.validate("jobs/moderate_comments.toml")    # -> pipeline.Validation
    frame = pipeline.moderate(df, text="text", key="id", output_dir="out/mod")

The names load on first use: ``import pipeline.emulator`` pulls in no client module.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.api_frames import RunStopped, moderate, speak
    from pipeline.errors import JobError, LockedError, PipelineError, StorageError
    from pipeline.python_api import Summary, Validation, run, validate

__version__ = "0.1.0"
__all__ = [
    "JobError",
    "LockedError",
    "PipelineError",
    "RunStopped",
    "StorageError",
    "Summary",
    "Validation",
    "moderate",
    "run",
    "speak",
    "validate",
]
_HOMES = {
    "JobError": "pipeline.errors",
    "LockedError": "pipeline.errors",
    "PipelineError": "pipeline.errors",
    "RunStopped": "pipeline.api_frames",
    "StorageError": "pipeline.errors",
    "Summary": "pipeline.python_api",
    "Validation": "pipeline.python_api",
    "moderate": "pipeline.api_frames",
    "run": "pipeline.python_api",
    "speak": "pipeline.api_frames",
    "validate": "pipeline.python_api",
}


def __getattr__(name: str) -> Any:
    """A public name, imported from its private module when first asked for."""
    if name not in _HOMES:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
