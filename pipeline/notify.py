"""Notifications: the job's ``[notify]`` table, checked, and the run's summary posted as JSON to
its webhook when the run ends (retried, bounded in time, never changing the exit code).

The body is summary.json as written: it holds no API key (and a body that would carry the key
is not sent), and nothing is sent with the API's Authorization header. A webhook URL often is a
secret itself (Slack's, Teams'), so a log line names only its scheme and host.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import orjson
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from pipeline.errors import JobError

log = logging.getLogger(__name__)
When = Literal["failure", "always"]
WHEN: tuple[When, ...] = ("failure", "always")
NOTIFY_BUDGET_S = 10.0  # the most a run's exit waits for its webhook, every attempt included
NOTIFY_ATTEMPTS = 3
RETRIED_STATUSES = frozenset({408, 409, 425, 429})  # and every 5xx


@dataclass(frozen=True)
class NotifySpec:
    """``[notify]``: where the summary goes, and on which runs (``failure``: a non-zero exit)."""

    webhook: str
    on: When = "failure"


def notify_spec(table: dict[str, Any], path: str) -> NotifySpec:
    """The job's ``[notify]`` table, checked; JobError naming the field."""
    for name in table:
        if name not in ("webhook", "on"):
            raise JobError("unknown key; known: webhook, on", path=path, field=f"notify.{name}")
    webhook, on = table.get("webhook"), table.get("on", "failure")
    if not isinstance(webhook, str):
        message = 'is required: add webhook = "https://..." (the URL the summary is posted to)'
        raise JobError(message, path=path, field="notify.webhook")
    parts = urlsplit(webhook)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise JobError(
            f"must be an http:// or https:// URL with a host, got {_where(webhook)!r}",
            path=path,
            field="notify.webhook",
        )
    if on not in WHEN:
        raise JobError(
            f"must be 'failure' (a run that exits non-zero) or 'always', got {on!r}",
            path=path,
            field="notify.on",
        )
    return NotifySpec(webhook, on)


class _Retryable(Exception):
    """The receiver answered 408/409/425/429/5xx: worth another attempt."""


class _Refused(Exception):
    """The receiver answered another 4xx (or a redirect loop): no attempt will do better."""


async def post_summary(
    spec: NotifySpec | None, summary: dict[str, Any], *, failed: bool, secret: str | None
) -> bool:
    """Post ``summary`` to the webhook if the job asks for it on this run (``failed``: its exit is
    non-zero); whether the receiver took it. A receiver that fails is one warning, never an
    error: the run's outcome is what it was. Takes at most ``NOTIFY_BUDGET_S``."""
    if spec is None or (spec.on == "failure" and not failed):
        return False
    body = orjson.dumps(summary)
    if secret and secret.encode() in body:  # the summary holds no key; if it ever did, keep it
        log.warning("notify: not sent, the summary would carry the API key")
        return False
    try:
        async with asyncio.timeout(NOTIFY_BUDGET_S):
            await _post_with_retries(spec.webhook, body)
    except (TimeoutError, aiohttp.ClientError, _Retryable, _Refused) as error:
        reason = "no answer in time" if isinstance(error, TimeoutError) else _reason(error)
        log.warning(
            "notify: %s did not take the summary (%s); the run's outcome is unchanged",
            _where(spec.webhook),
            reason,
        )
        return False
    log.info("notify: summary posted to %s", _where(spec.webhook))
    return True


async def _post_with_retries(url: str, body: bytes) -> None:
    timeout = aiohttp.ClientTimeout(total=NOTIFY_BUDGET_S / NOTIFY_ATTEMPTS)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(NOTIFY_ATTEMPTS),
            wait=wait_exponential(multiplier=0.25, max=2.0),
            retry=retry_if_exception_type((_Retryable, aiohttp.ClientError, TimeoutError)),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await _post(session, url, body)


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> None:
    headers = {"Content-Type": "application/json", "User-Agent": "pipeline-notify"}
    async with session.post(url, data=body, headers=headers) as answer:
        if answer.status >= 500 or answer.status in RETRIED_STATUSES:
            raise _Retryable(f"HTTP {answer.status}")
        if answer.status >= 300:
            raise _Refused(f"HTTP {answer.status}")


def _reason(error: BaseException) -> str:
    """The receiver's failure in a few words, without the URL (aiohttp's messages hold it)."""
    if isinstance(error, _Retryable | _Refused):
        return str(error)
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect: {error.os_error.strerror or type(error.os_error).__name__}"
    return type(error).__name__


def _where(url: str) -> str:
    """A webhook's scheme and host (its path may hold a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.netloc else url[:40]
