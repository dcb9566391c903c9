"""Error answers -> exception classes: by status, ``x-should-retry`` and error code, never by
message text; and the error body's fields as OpenAI and other OpenAI-compatible servers send
them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

from pipeline.errors import ApiError, FatalApiError, RejectedApiError, TransientApiError

RETRIED_STATUSES = frozenset({408, 409, 429})  # and every 5xx
FATAL_STATUSES = frozenset({401, 403})
PLAIN_ERROR_CHARS = 300  # of an error body that is not JSON (a proxy's HTML page), the message


def error_for(status: int, headers: Mapping[str, str], raw: bytes) -> ApiError:
    """The exception class for an error answer, by status and error code, never by message."""
    message, error_type, code, param = error_fields(raw)
    message = message or f"HTTP {status}"
    fields: dict[str, Any] = {
        "http_status": status,
        "error_type": error_type,
        "error_code": code,
        "param": param if isinstance(param, str) else None,
        "retry_after": retry_after(headers),
    }
    if (
        status in FATAL_STATUSES
        or code == "insufficient_quota"
        or error_type == "insufficient_quota"
    ):
        return FatalApiError(message, **fields)
    should_retry = headers.get("x-should-retry")
    if should_retry in ("true", "false"):
        retried = should_retry == "true"
    else:
        retried = status in RETRIED_STATUSES or status >= 500
    return (TransientApiError if retried else RejectedApiError)(message, **fields)


def error_fields(raw: bytes) -> tuple[str | None, Any, Any, Any]:
    """(message, type, code, param) of an error body: OpenAI's ``{"error": {...}}``, or what
    other OpenAI-compatible servers send: FastAPI's ``{"detail": ...}`` (text, an object with a
    message, or a list of validation errors), ``{"error": "text"}``, ``{"message": ...}``, or a
    short plain-text body."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = " ".join(raw[:PLAIN_ERROR_CHARS].decode("utf-8", "replace").split())
        return text or None, None, None, None
    if isinstance(body, dict) and "detail" in body and "error" not in body:
        body = {"error": body["detail"]}  # FastAPI (Kokoro-FastAPI, openedai-speech, vLLM)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, list):  # FastAPI's 422: [{"loc": [...], "msg": ...}, ...]
        found = [item for item in error if isinstance(item, dict) and item.get("msg")]
        where = [".".join(str(part) for part in item.get("loc") or ()) for item in found]
        text = "; ".join(
            f"{w}: {item['msg']}" if w else str(item["msg"])
            for w, item in zip(where, found, strict=True)
        )
        return text or None, None, None, None
    if isinstance(error, str):
        message = body.get("message") if isinstance(body, dict) else None
        return str(message or error), None, error if message else None, None
    if not isinstance(error, dict):
        error = body if isinstance(body, dict) else {}
    message = error.get("message") or error.get("msg")
    code = error.get("code") or (
        error.get("error") if isinstance(error.get("error"), str) else None
    )
    return (str(message) if message else None), error.get("type"), code, error.get("param")


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait: retry-after-ms, else Retry-After (seconds)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            continue  # an HTTP date; rare from OpenAI, fall back to backoff
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None
