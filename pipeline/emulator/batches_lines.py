"""A batch input file checked line by line, streamed from disk, as the Batch API validates it.

Each line must be a JSON object ``{"custom_id", "method": "POST", "url", "body"}``: custom_id a
non-empty string unique in the file, url the batch's endpoint, body valid for that endpoint (the
same checks as its synchronous route). Blank lines are skipped. A file with no request, or more
than 50,000, fails as a whole. Every problem is an ``errors.data`` entry (code, message, param,
line; the first ``MAX_ERRORS`` of them); any problem fails the batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from pipeline.emulator.checks import NOTE
from pipeline.emulator.replies import ApiReply

MAX_LINES: Final[int] = 50_000
MAX_ERRORS: Final[int] = 1_000
_FIELDS: Final[tuple[str, ...]] = ("custom_id", "method", "url", "body")


@dataclass
class Checked:
    """What checking a file found: its problems, its request count, model and token estimate."""

    errors: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    model: str | None = None
    tokens: int = 0

    def problem(self, code: str, message: str, line: int | None, param: str | None = None) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(
                {"code": code, "message": f"{message} {NOTE}", "param": param, "line": line}
            )


def request_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, raw bytes) of every line of ``path`` that is not blank."""
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if raw.strip():
                yield number, raw


def digest(custom_id: str, body: Any) -> bytes:
    """What "the same request" means for the completions counter: its custom_id and body."""
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(custom_id.encode() + b"\0" + canonical, digest_size=16).digest()


def check_file(
    path: Path,
    endpoint: str,
    check_body: Callable[[dict[str, Any]], None],
    tokens: Callable[[dict[str, Any]], int],
) -> Checked:
    """Check every line of ``path`` (blocking: run it in a thread)."""
    checked = Checked()
    seen: set[str] = set()
    for number, raw in request_lines(path):
        checked.requests += 1
        if checked.requests > MAX_LINES:
            checked.problem(
                "too_many_requests",
                f"The file holds more than {MAX_LINES} requests, the most a batch takes.",
                number,
            )
            break
        body = _check_line(raw, number, endpoint, seen, checked)
        if body is None:
            continue
        try:
            check_body(body)
        except ApiReply as reply:
            error = reply.body["error"]
            param = error.get("param")
            checked.problem(
                "invalid_request", error["message"], number, f"body.{param}" if param else "body"
            )
            continue
        checked.tokens += tokens(body)
        if checked.model is None and isinstance(body.get("model"), str):
            checked.model = body["model"]
    if checked.requests == 0:
        checked.problem("empty_file", "The batch input file holds no request.", None)
    return checked


def _check_line(
    raw: bytes, number: int, endpoint: str, seen: set[str], checked: Checked
) -> dict[str, Any] | None:
    """The line's body when its envelope is valid (custom_id recorded), else None."""
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError:
        checked.problem("invalid_json_line", f"Line {number} is not valid JSON.", number)
        return None
    if not isinstance(line, dict):
        checked.problem("invalid_json_line", f"Line {number} is not a JSON object.", number)
        return None
    missing = [name for name in _FIELDS if name not in line]
    if missing:
        checked.problem(
            "missing_required_parameter",
            f"Line {number} lacks {', '.join(repr(m) for m in missing)}.",
            number,
            missing[0],
        )
        return None
    custom_id, method, url, body = (line[name] for name in _FIELDS)
    if not isinstance(custom_id, str) or not custom_id:
        checked.problem(
            "invalid_custom_id", "custom_id must be a non-empty string.", number, "custom_id"
        )
        return None
    if custom_id in seen:
        checked.problem(
            "duplicate_custom_id",
            f"The custom_id '{custom_id}' is used more than once in the file.",
            number,
            "custom_id",
        )
        return None
    seen.add(custom_id)
    if method != "POST":
        checked.problem("invalid_method", "method must be 'POST'.", number, "method")
        return None
    if url != endpoint:
        checked.problem(
            "invalid_url",
            f"The url {url!r} is not the batch's endpoint '{endpoint}'.",
            number,
            "url",
        )
        return None
    if not isinstance(body, dict):
        checked.problem("invalid_request", "body must be a JSON object.", number, "body")
        return None
    return body
