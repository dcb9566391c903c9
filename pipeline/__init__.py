"""pipeline: datasets to OpenAI API requests, and the answers back to datasets."""

from __future__ import annotations

__version__ = "0.1.0"
