"""The one HTTP client: auth headers, JSON on the wire, and status -> exception classes.

aiohttp is used directly: httpx's own pool collapses under concurrency (see DESIGN.md), and the
aiohttp transport under httpx costs more than twice the CPU per request of aiohttp itself.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from pipeline import __version__
from pipeline.errors import (
    ApiError,
    FatalApiError,
    RejectedApiError,
    TransientApiError,
)

RETRIED_STATUSES = frozenset({408, 409, 429})  # and every 5xx
FATAL_STATUSES = frozenset({401, 403})


@dataclass(frozen=True)
class Answer:
    """A successful answer: parsed JSON (or raw bytes) and the headers that steer rate limits."""

    status: int
    headers: Mapping[str, str]
    data: Any


class Http:
    """One aiohttp session for the whole run; use as ``async with``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout_s: float,
        concurrency: int,
        observe: Callable[[Mapping[str, str]], None] | None = None,
    ) -> None:
        self._observe = observe  # sees every answer's headers (rate-limit feedback)
        self.base_url = base_url.rstrip("/")
        self._headers = {
            "User-Agent": f"pipeline/{__version__}",
            "Content-Type": "application/json",
        }
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        for env, header in (
            ("OPENAI_ORG_ID", "OpenAI-Organization"),
            ("OPENAI_PROJECT_ID", "OpenAI-Project"),
        ):
            if os.environ.get(env):
                self._headers[header] = os.environ[env]
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Http:
        connector = aiohttp.TCPConnector(
            limit=self._concurrency, limit_per_host=0, keepalive_timeout=30, ttl_dns_cache=300
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=self._timeout,
            auto_decompress=True,
            raise_for_status=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        expect: str = "json",
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send one request; return the answer or raise an ApiError subclass.

        ``expect`` is "json" or "bytes". Timeouts and connection errors are TransientApiError.
        """
        assert self._session is not None, "use Http as an async context manager"
        data = None if body is None else orjson.dumps(body)
        try:
            async with self._session.request(
                method, self.base_url + path, data=data, headers=headers
            ) as response:
                raw = await response.read()
                status = response.status
                answer_headers = response.headers
                if self._observe is not None:
                    self._observe(answer_headers)
        except TimeoutError:
            raise TransientApiError("the request timed out", error_type="timeout") from None
        except aiohttp.ClientError as exc:
            raise TransientApiError(
                f"connection failed: {type(exc).__name__}: {exc}", error_type="connection"
            ) from None
        except asyncio.CancelledError:
            raise
        if status >= 300:
            raise error_for(status, answer_headers, raw)
        if expect == "bytes":
            return Answer(status, answer_headers, raw)
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise TransientApiError(
                f"HTTP {status} with a body that is not JSON ({len(raw)} bytes)",
                http_status=status,
                error_type="malformed_response",
            ) from None
        return Answer(status, answer_headers, parsed)


def error_for(status: int, headers: Mapping[str, str], raw: bytes) -> ApiError:
    """The exception class for an error answer, by status and error code, never by message."""
    message, error_type, code, param = f"HTTP {status}", None, None, None
    try:
        error = orjson.loads(raw).get("error") or {}
        message = str(error.get("message") or message)
        error_type, code, param = error.get("type"), error.get("code"), error.get("param")
    except (orjson.JSONDecodeError, AttributeError):
        pass
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
