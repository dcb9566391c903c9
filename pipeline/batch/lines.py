"""Batch API files on disk: the JSONL request lines written (streamed, split at the API's limits),
the ``custom_id`` of a line, and the answer lines of a downloaded output or error file read back.

A line is ``{"custom_id", "method": "POST", "url", "body"}``. Its ``custom_id`` is the key of the
line's first row, percent-escaped (``urllib.parse.quote``, only ``A-Z a-z 0-9 - _ . ~`` left
as they are): safe in any JSON, URL or file name, reversible with ``unquote``, and unique in its
file because a row is in one line at a time. A packed line's other rows are listed in the
ledger (``ledger.py``), which maps every custom_id of a file back to its keys.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import orjson

from pipeline.writers import storage_error

MAX_LINES = 50_000  # the Batch API's limits for one input file
MAX_BYTES = 200 * 2**20
API_PREFIX = "/v1"  # a Request's path is under the base URL; a line's url names the API version


def custom_id(first_key: str) -> str:
    """The custom_id of a line whose first row has this key (reversible with ``key_of``)."""
    return quote(first_key, safe="-_.~")


def key_of(line_id: str) -> str:
    return unquote(line_id)


def body_digest(body: Any) -> bytes:
    """What a line asks, in 12 bytes: a flow rebuilt after a crash must ask the same."""
    return hashlib.blake2b(orjson.dumps(body, option=orjson.OPT_SORT_KEYS), digest_size=12).digest()


@dataclass
class FileWriter:
    """One input file being written: lines appended to disk as they come, never held."""

    path: Path
    url: str  # the endpoint every line of a file shares: "/v1/moderations"
    lines: int = 0
    size: int = 0
    # (key, custom_id, place in the line, digest) of every row written
    keys: list[tuple[str, str, int, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._out = self.path.open("wb")
        except OSError as exc:  # a full disk, a file in the way: the run stops, said so
            raise storage_error(self.path, exc) from None

    def fits(self, encoded: bytes) -> bool:
        """Whether one more line of this size keeps the file within the API's limits."""
        return self.lines < MAX_LINES and self.size + len(encoded) <= MAX_BYTES

    @staticmethod
    def encode(line_id: str, url: str, body: Any) -> bytes:
        line = {"custom_id": line_id, "method": "POST", "url": url, "body": body}
        return orjson.dumps(line) + b"\n"

    def add(self, encoded: bytes, line_id: str, keys: list[str], digest: bytes) -> None:
        try:
            self._out.write(encoded)
        except OSError as exc:
            raise storage_error(self.path, exc) from None
        self.lines += 1
        self.size += len(encoded)
        self.keys.extend((key, line_id, place, digest) for place, key in enumerate(keys))

    def seal(self) -> None:
        """Flush and fsync: the file is whole on disk before the ledger names it."""
        try:
            self._out.flush()
            os.fsync(self._out.fileno())
            self._out.close()
        except OSError as exc:
            raise storage_error(self.path, exc) from None

    def discard(self) -> None:
        with suppress(OSError):  # what did not fit on disk is dropped as well as it can be
            self._out.close()
            self.path.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class AnswerLine:
    """One line of an output or error file: the answer to one custom_id."""

    custom_id: str
    status: int | None  # the HTTP status of the answer, None when the line has only an error
    body: Any  # the answer's JSON body (an error body for a status >= 300)
    error: dict[str, Any] | None  # {"code", "message"} when the request got no answer


def read_answers(path: Path, redact: Any = None) -> Iterator[AnswerLine]:
    """The lines of a downloaded output or error file, one at a time (the file is not loaded);
    a line that is not an answer line is skipped (its custom_id unknown: its rows are resent).
    ``redact`` (bytes -> bytes) takes the API key out of each line before it is parsed."""
    with path.open("rb") as lines:
        for raw in lines:
            if not raw.strip():
                continue
            try:
                data = orjson.loads(redact(raw) if redact is not None else raw)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(data, dict) or not isinstance(data.get("custom_id"), str):
                continue
            response = data.get("response")
            error = data.get("error")
            status = response.get("status_code") if isinstance(response, dict) else None
            body = response.get("body") if isinstance(response, dict) else None
            yield AnswerLine(
                data["custom_id"],
                status if isinstance(status, int) else None,
                body,
                error if isinstance(error, dict) else None,
            )
