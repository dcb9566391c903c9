"""The emulator's aiohttp application: shared state, the middleware every route goes through.

The middleware owns what all routes share, in the order a real API applies it: latency,
recording the body, the API key, fault injection, then the route; it turns ``ApiReply`` and
aiohttp's own HTTP errors into OpenAI error bodies, adds ``x-request-id`` and the
``x-ratelimit-*`` headers, and lets a body fault break the finished answer (multipart uploads
are never recorded: they are streamed). It counts requests by route. A route module
(``moderation.py``, ``speech.py``, ``threads.py``, ``responses.py``, ``realtime.py``,
``files.py``, ``batches.py``) exposes ``register(app, config)`` and is listed in ``ROUTES``:
adding an endpoint is one module.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from pipeline.emulator import (
    batches,
    files,
    moderation,
    realtime,
    responder,
    responses,
    speech,
    threads,
)
from pipeline.emulator.config import CONFIG, EmulatorConfig
from pipeline.emulator.faults import BODY_FAULTS, FaultInjector, cut_body, inject
from pipeline.emulator.limits import LIMITER, RateLimiter
from pipeline.emulator.replies import ApiReply, error_body, json_response, read_json
from pipeline.emulator.stats import STATS, Stats

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# each adds its routes (and any background task) to the app
ROUTES: Final[tuple[Callable[[web.Application, EmulatorConfig], None], ...]] = (
    moderation.register,
    speech.register,
    responder.register,  # the answer engine threads and responses share; no routes
    threads.register,
    responses.register,
    realtime.register,
    files.register,
    batches.register,  # after files, moderation and responses: it answers with their engines
)
STATS_PATH: Final[str] = "/v1/_emulator/stats"
_INTERNAL_PREFIX: Final[str] = "/v1/_emulator/"
_MAX_BODY_BYTES: Final[int] = 64 * 1024 * 1024
FAULTS = web.AppKey("faults", FaultInjector)
log = logging.getLogger(__name__)


def create_app(config: EmulatorConfig) -> web.Application:
    """The emulator as an aiohttp application; EmulatorError if an engine is not installed."""
    app = web.Application(middlewares=[_openai_middleware], client_max_size=_MAX_BODY_BYTES)
    app[CONFIG] = config
    app[STATS] = Stats()
    app[LIMITER] = RateLimiter(
        config.requests_per_minute,
        config.tokens_per_minute,
        clock=config.limits_clock,
        burst_s=config.burst_s,
    )
    app[FAULTS] = FaultInjector(config.faults, config.seed)
    app.router.add_get(STATS_PATH, _stats)
    for register in ROUTES:
        register(app, config)
    return app


async def _stats(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[STATS].snapshot())


@web.middleware
async def _openai_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(_INTERNAL_PREFIX):
        return await handler(request)
    app = request.app
    config = app[CONFIG]
    stats = app[STATS]
    stats.request()
    resource = request.match_info.route.resource
    stats.route(f"{request.method} {resource.canonical if resource else request.path}")
    headers = {"x-request-id": f"req_{os.urandom(16).hex()}"}
    fault: str | None = None
    try:
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        if config.record_requests and request.body_exists and not _multipart(request):
            await _record(request, stats)
        _check_api_key(request, config.api_key)
        fault = app[FAULTS].draw()
        response: web.StreamResponse | None = None
        if fault is not None:
            stats.fault(fault)
            response = await inject(
                fault,
                request,
                slow_s=config.slow_s,
                retry_after_ms=config.fault_retry_after_ms,
                huge_body_bytes=config.huge_body_bytes,
            )
        if response is None:
            response = await handler(request)
    except ApiReply as reply:
        response = json_response(reply.body, status=reply.status, headers=reply.headers)
        error = reply.body.get("error")  # a provider's refusal has no OpenAI "error" object
        code = error.get("code") if isinstance(error, dict) else None
        if fault != "429" and code == "rate_limit_exceeded":  # the limiter's, not injected
            stats.rate_limited(reply.body["error"]["type"])
    except web.HTTPException as exc:
        response = _http_error(request, exc)
    except Exception:  # a bug here must still answer like the API: a JSON 500
        log.exception("emulator route failed path=%s", request.path)
        response = json_response(
            error_body("The local emulator failed on this request.", "server_error"), status=500
        )
    if fault == "drop":
        return response
    if not response.prepared:
        response.headers.update(headers)
        if config.ratelimit_headers:
            response.headers.update(app[LIMITER].headers())
        if fault in BODY_FAULTS:
            response = await cut_body(fault, request, response)
    stats.status(response.status)
    return response


def _multipart(request: web.Request) -> bool:
    """An upload: streamed by its route, never read whole here."""
    return request.content_type.startswith("multipart/")


async def _record(request: web.Request, stats: Stats) -> None:
    try:
        body = await read_json(request)
    except ApiReply:
        return  # not JSON: the route answers 400; there is no body to keep
    if isinstance(body, dict):
        stats.record(request.path, body)


def _check_api_key(request: web.Request, api_key: str | None) -> None:
    if api_key is None:
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(token.strip(), api_key):
        return
    # never echo the key that was sent
    message = (
        "Incorrect API key provided (local emulator)."
        if token
        else "You didn't provide an API key: send it as 'Authorization: Bearer KEY' "
        "(local emulator)."
    )
    raise ApiReply(401, error_body(message, "invalid_request_error", code="invalid_api_key"))


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own errors (unknown URL, wrong method, body too large) as OpenAI error bodies."""
    if exc.status == 404:
        message = f"Invalid URL ({request.method} {request.path}) (local emulator)"
    elif exc.status == 405:
        message = f"Method {request.method} is not allowed on {request.path} (local emulator)"
    else:
        message = f"{exc.reason} (local emulator)"
    return json_response(
        error_body(message, "invalid_request_error"),
        status=exc.status,
        headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
    )
