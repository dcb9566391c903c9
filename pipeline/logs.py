"""Log set-up: text or JSON lines on stderr; a filter keeps the API key out of every line.

Also where an unexpected error's traceback goes: a file, named in the one line the user sees.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import orjson

_STANDARD = frozenset(vars(logging.makeLogRecord({})))
_CONTEXT: dict[str, Any] = {}  # fields every JSON line carries: the job, the run's counts


def bind(**fields: Any) -> None:
    """Add fields to every JSON log line from now on; a callable is called for each line."""
    _CONTEXT.update(fields)


REDACTED = "[redacted]"  # what stands where the API key was


class SecretFilter(logging.Filter):
    """Replace the API key, wherever it appears in a message, by a mark."""

    def __init__(self, secret: str | None) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret and self.secret in message:
            record.msg, record.args = redact(message, self.secret), None
        return True


def redact(text: str, secret: str | None = None) -> str:
    """``text`` with ``secret`` (by default ``OPENAI_API_KEY``), wherever it appears, replaced
    by a mark; the one place the key is taken out of text."""
    secret = os.environ.get("OPENAI_API_KEY") if secret is None else secret
    return text.replace(secret, REDACTED) if secret and secret in text else text


def save_traceback(error: BaseException) -> Path | None:
    """Write ``error``'s traceback (key redacted) to a new file in the temporary folder.

    Returns its path, or None when even that cannot be written (then only the log has it)."""
    text = redact("".join(traceback.format_exception(error)))
    try:
        fd, name = tempfile.mkstemp(prefix="pipeline-internal-error-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError:
        return None
    return Path(name)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at each line: while rich's progress bar is live it
    redirects stderr, so a log line is printed above the bar instead of onto it."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, and any structured extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **{name: value() if callable(value) else value for name, value in _CONTEXT.items()},
        }
        line.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def setup_logging(log_format: str) -> None:
    """Log lines from INFO up on stderr (``--quiet`` hides the progress display, not these)."""
    handler = _StderrHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handler.addFilter(SecretFilter(os.environ.get("OPENAI_API_KEY")))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
