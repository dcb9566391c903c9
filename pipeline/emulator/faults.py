"""Fault injection: which faults exist, the seeded draw per request, and what each one does.

A request draws one number from a seeded RNG; the configured probabilities are laid end to end
(in the order of ``FAULT_NAMES``), so at most one fault hits a request and their sum must be <= 1.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Mapping
from typing import Final

import orjson
from aiohttp import web

from pipeline.emulator.replies import ApiReply, error_body, new_id

FAULT_NAMES: Final[tuple[str, ...]] = (
    "429",  # rate-limit 429 with retry-after EmulatorConfig.fault_retry_after_ms (1 s)
    "quota",  # 429 insufficient_quota: fatal for a client
    "401",  # invalid_api_key
    "500",
    "502",
    "503",
    "drop",  # close the TCP connection without answering
    "drop_body",  # send status, headers and half the body, then close
    "slow",  # wait EmulatorConfig.slow_s, then answer normally
    "malformed",  # 200 with a body that is not valid JSON
)

_INJECTED = "(local emulator: injected fault)"


def check_faults(faults: Mapping[str, float]) -> None:
    """Raise ValueError for an unknown fault name, a probability outside [0, 1] or a sum over 1."""
    unknown = sorted(set(faults) - set(FAULT_NAMES))
    if unknown:
        raise ValueError(
            f"unknown emulator fault(s) {', '.join(map(repr, unknown))}; "
            f"known faults: {', '.join(FAULT_NAMES)}"
        )
    for name, probability in faults.items():
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"fault {name!r}: probability {probability} is not within [0, 1]")
    if sum(faults.values()) > 1.0 + 1e-9:
        raise ValueError("fault probabilities add up to more than 1 (at most one fault a request)")


class FaultInjector:
    """Draws at most one fault per request from a seeded RNG (one event loop: no lock needed)."""

    def __init__(self, faults: Mapping[str, float], seed: int | None) -> None:
        check_faults(faults)
        self._rng = random.Random(seed)
        self._table = [(name, faults[name]) for name in FAULT_NAMES if faults.get(name, 0.0) > 0]

    def draw(self) -> str | None:
        """The fault to inject into this request, or None."""
        if not self._table:
            return None
        point = self._rng.random()
        for name, probability in self._table:
            if point < probability:
                return name
            point -= probability
        return None


async def inject(
    name: str,
    request: web.Request,
    headers: Mapping[str, str],
    *,
    slow_s: float,
    retry_after_ms: int,
) -> web.StreamResponse | None:
    """Carry out fault ``name``; None means "now answer normally" (the slow fault).

    Raises ApiReply for the faults that are an HTTP error answer. ``headers`` go on an answer
    that is sent before the connection breaks (drop_body), since they cannot be added later.
    """
    if name == "slow":
        await asyncio.sleep(slow_s)
        return None
    if name == "429":
        seconds = math.ceil(retry_after_ms / 1000)
        raise ApiReply(
            429,
            error_body(
                f"Rate limit reached for requests {_INJECTED}. "
                f"Please try again in {retry_after_ms}ms.",
                "requests",
                code="rate_limit_exceeded",
            ),
            {"retry-after": str(seconds), "retry-after-ms": str(retry_after_ms)},
        )
    if name == "quota":
        raise ApiReply(
            429,
            error_body(
                "You exceeded your current quota, please check your plan and billing details. "
                + _INJECTED,
                "insufficient_quota",
                code="insufficient_quota",
            ),
        )
    if name == "401":
        raise ApiReply(
            401,
            error_body(
                f"Incorrect API key provided {_INJECTED}.",
                "invalid_request_error",
                code="invalid_api_key",
            ),
        )
    if name in ("500", "502", "503"):
        messages = {
            "500": "The server had an error while processing your request.",
            "502": "Bad gateway.",
            "503": "The server is overloaded or not ready yet.",
        }
        raise ApiReply(int(name), error_body(f"{messages[name]} {_INJECTED}", "server_error"))
    transport = request.transport
    if name == "drop":
        if transport is not None:
            transport.close()
        return web.Response(status=200)  # never written: the connection is gone
    # drop_body and malformed: a plausible start of a moderation answer
    body = orjson.dumps({"id": new_id("modr"), "model": "local/emulator", "results": []})
    if name == "malformed":
        return web.Response(body=body[: len(body) // 2], content_type="application/json")
    response = web.StreamResponse(status=200, headers={**headers, "content-length": str(len(body))})
    response.content_type = "application/json"
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    if transport is not None:
        transport.close()  # close, not abort: the half body is flushed first
    return response
