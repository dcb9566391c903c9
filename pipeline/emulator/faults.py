"""Fault injection: which faults exist, the seeded draw per request, and what each one does.

A request draws one number from a seeded RNG; the configured probabilities are laid end to end
(in the order of ``FAULT_NAMES``), so at most one fault hits a request and their sum must be <= 1.
Most faults replace the route (``inject``, before it runs); the ``BODY_FAULTS`` break the route's
own answer after it ran (``cut_body``): a moderation's JSON, a speech's audio.
The ``REALTIME_FAULT_NAMES`` are drawn the same way but per ``response.create`` on a realtime
WebSocket, from their own seeded RNG, and carried out by ``realtime_session``; their sum is
checked on its own (<= 1), as they never hit the same draw as an HTTP fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import Mapping
from typing import Final

from aiohttp import web

from pipeline.emulator.chance import WeightedDraw, check_probabilities
from pipeline.emulator.replies import ApiReply, error_body

FAULT_NAMES: Final[tuple[str, ...]] = (
    "429",  # rate-limit 429 with retry-after EmulatorConfig.fault_retry_after_ms (1 s)
    "quota",  # 429 insufficient_quota: fatal for a client
    "401",  # invalid_api_key
    "500",
    "502",
    "503",
    "drop",  # close the TCP connection without answering
    "drop_body",  # the answer's status, headers and half its body, chunked, then close
    "truncate",  # the answer with its full Content-Length but half its body, then close
    "slow",  # wait EmulatorConfig.slow_s, then answer normally
    "malformed",  # the answer's first half, sent as if complete (not JSON, not whole audio)
    "echo_key",  # a 400 whose message and param quote the request's Authorization value
    "echo_key_401",  # a 401 invalid_api_key quoting it, as some servers and proxies do
    "huge_body",  # a 200 announcing EmulatorConfig.huge_body_bytes of Content-Length, streamed
    "huge_chunked",  # the same body chunked, its length never announced
)
# drawn per realtime response.create (not per HTTP request); see realtime_session
REALTIME_FAULT_NAMES: Final[tuple[str, ...]] = (
    "realtime_reword",  # the audio and its transcript say the input with a few words changed
    "realtime_drop",  # the socket is closed mid-audio, after some of the response's deltas
    "realtime_error",  # an error event (server_error) instead of the response
    "realtime_rate_limit",  # an error event rate_limit_exceeded instead of the response
)
# faults carried out on the route's real answer, after it ran (rate limits and engines included)
BODY_FAULTS: Final[frozenset[str]] = frozenset({"drop_body", "truncate", "malformed"})

_INJECTED = "(local emulator: injected fault)"
HUGE_BLOCK = b" " * 2**20  # one block written again and again: the huge body is never built


def check_faults(faults: Mapping[str, float]) -> None:
    """Raise ValueError for an unknown fault name, a probability outside [0, 1] or a sum over 1
    (the HTTP faults' sum and the realtime faults' sum, each on its own)."""
    http = {name: p for name, p in faults.items() if name not in REALTIME_FAULT_NAMES}
    check_probabilities(http, FAULT_NAMES + REALTIME_FAULT_NAMES, "fault")
    realtime = {name: p for name, p in faults.items() if name in REALTIME_FAULT_NAMES}
    check_probabilities(realtime, REALTIME_FAULT_NAMES, "realtime fault")


class FaultInjector:
    """Draws at most one fault per request from a seeded RNG (one event loop: no lock needed).

    ``names`` are the faults it draws (the HTTP ones by default); others in ``faults`` are
    another injector's.
    """

    def __init__(
        self,
        faults: Mapping[str, float],
        seed: int | None,
        names: tuple[str, ...] = FAULT_NAMES,
    ) -> None:
        check_faults(faults)
        mine = {name: p for name, p in faults.items() if name in names}
        self._draw = WeightedDraw(mine, names, random.Random(seed), "fault")

    def draw(self) -> str | None:
        """The fault to inject into this request, or None."""
        return self._draw.draw()


async def inject(
    name: str,
    request: web.Request,
    *,
    slow_s: float,
    retry_after_ms: int,
    huge_body_bytes: int = 2**31,
) -> web.StreamResponse | None:
    """Carry out fault ``name`` in place of the route; None means "now run the route".

    Raises ApiReply for the faults that are an HTTP error answer. The slow fault waits and
    returns None; so do the BODY_FAULTS, which ``cut_body`` carries out on the route's answer.
    """
    if name == "slow":
        await asyncio.sleep(slow_s)
        return None
    if name in BODY_FAULTS:
        return None
    if name in ("huge_body", "huge_chunked"):
        return await _huge_answer(request, huge_body_bytes, chunked=name == "huge_chunked")
    if name in ("echo_key", "echo_key_401"):
        raise _echo_key(name, request.headers.get("Authorization", ""))
    reply = _error_reply(name, retry_after_ms)
    if reply is not None:
        raise reply
    if name != "drop":
        raise ValueError(f"unknown fault {name!r}")
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=200)  # never written: the connection is gone


def _error_reply(name: str, retry_after_ms: int) -> ApiReply | None:
    """The HTTP error answer fault ``name`` stands for; None for a fault that is not one."""
    if name == "429":
        seconds = math.ceil(retry_after_ms / 1000)
        return ApiReply(
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
        return ApiReply(
            429,
            error_body(
                "You exceeded your current quota, please check your plan and billing details. "
                + _INJECTED,
                "insufficient_quota",
                code="insufficient_quota",
            ),
        )
    if name == "401":
        return ApiReply(
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
        return ApiReply(int(name), error_body(f"{messages[name]} {_INJECTED}", "server_error"))
    return None


def _echo_key(name: str, authorization: str) -> ApiReply:
    if name == "echo_key_401":
        return ApiReply(
            401,
            error_body(
                f"Incorrect API key provided: {authorization} {_INJECTED}.",
                "invalid_request_error",
                code="invalid_api_key",
            ),
        )
    return ApiReply(
        400,
        error_body(
            f"Could not parse the request sent with Authorization: {authorization} {_INJECTED}.",
            "invalid_request_error",
            param=authorization,
            code="invalid_value",
        ),
    )


async def _huge_answer(request: web.Request, size: int, *, chunked: bool) -> web.StreamResponse:
    """A 200 of ``size`` spaces, written block by block until sent or the client hangs up."""
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    if chunked:
        response.enable_chunked_encoding()
    else:
        response.content_length = size
    with contextlib.suppress(ConnectionError):  # the client stopped reading: that is the point
        await response.prepare(request)
        sent = 0
        while sent < size:
            block = HUGE_BLOCK if size - sent >= len(HUGE_BLOCK) else HUGE_BLOCK[: size - sent]
            await response.write(block)
            sent += len(block)
    return response


async def cut_body(
    name: str, request: web.Request, answer: web.StreamResponse
) -> web.StreamResponse:
    """Carry out body fault ``name`` on the route's ``answer`` (its headers already complete).

    ``malformed`` returns the first half of the body as a complete answer; ``drop_body`` and
    ``truncate`` send the status, the headers and half the body, then close the connection:
    ``drop_body`` as a chunked stream that never ends, ``truncate`` under the full
    Content-Length. An answer that is not a ``web.Response`` with a bytes body (already
    streamed) is returned unchanged.
    """
    if name not in BODY_FAULTS:
        raise ValueError(f"{name!r} is not a body fault")
    body = answer.body if isinstance(answer, web.Response) else None
    if not isinstance(body, bytes) or answer.prepared:
        return answer
    half = body[: len(body) // 2]
    headers = {
        key: value
        for key, value in answer.headers.items()
        if key.lower() not in ("content-length", "transfer-encoding")
    }
    if name == "malformed":
        return web.Response(status=answer.status, body=half, headers=headers)
    cut = web.StreamResponse(status=answer.status, headers=headers)
    if name == "truncate":
        cut.content_length = len(body)
    else:
        cut.enable_chunked_encoding()
    with contextlib.suppress(ConnectionError):  # the client may be gone already
        await cut.prepare(request)
        await cut.write(half)
    if request.transport is not None:
        request.transport.close()  # close, not abort: the half body is flushed first
    return cut
