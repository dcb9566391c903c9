"""GET /v1/realtime?model=...: the Realtime API's WebSocket, speaking with the eSpeak engine.

The upgrade request goes through the app's middleware like any route, so a missing or wrong
key is a 401 before the upgrade (and HTTP faults can hit the handshake). A plain GET without
the upgrade is a 400. A model that is not a realtime one (``gpt-realtime...``) is not refused
before the upgrade: the socket opens and says so in an ``error`` event
(``invalid_request_error``, code ``model_not_found``), then closes with 1008, as a client
reading events gets a message it can show. ``realtime_session`` serves the socket;
``realtime_audio`` speaks, in this module's worker threads, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import orjson
from aiohttp import web

from pipeline.emulator import tts
from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.faults import REALTIME_FAULT_NAMES, FaultInjector
from pipeline.emulator.limits import LIMITER
from pipeline.emulator.realtime_audio import Audio, speak
from pipeline.emulator.realtime_events import error
from pipeline.emulator.realtime_requests import RealtimeRefusal, SessionConfig, check_model
from pipeline.emulator.realtime_session import RealtimeSession
from pipeline.emulator.replies import invalid_request
from pipeline.emulator.stats import STATS

PATH: Final[str] = "/v1/realtime"
_MAX_EVENT_BYTES: Final[int] = 16 * 1024 * 1024  # the API's own cap on a client event
log = logging.getLogger(__name__)


def register(app: web.Application, config: EmulatorConfig) -> None:
    """Add GET /v1/realtime to ``app``; EmulatorError if eSpeak NG (the extra) is missing."""
    tts.check_installed()
    stats = app[STATS]
    faults = FaultInjector(config.faults, config.seed, REALTIME_FAULT_NAMES)
    workers: list[ThreadPoolExecutor] = []
    open_sessions: set[RealtimeSession] = set()
    stats.add_gauge("realtime_sessions_open", lambda: len(open_sessions))

    async def pool(_: web.Application) -> AsyncIterator[None]:
        threads = min(8, os.cpu_count() or 1)  # eSpeak runs one at a time; resampling does not
        workers.append(ThreadPoolExecutor(threads, thread_name_prefix="emulator-realtime"))
        yield
        workers.pop().shutdown(wait=True, cancel_futures=True)

    async def render(text: str, voice: str, speed: float) -> Audio:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(workers[0], speak, text, voice, speed)

    async def connect(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=_MAX_EVENT_BYTES)
        if not ws.can_prepare(request).ok:
            raise invalid_request(
                f"{PATH} is the Realtime API's WebSocket: connect with 'Upgrade: websocket' "
                "(local emulator).",
            )
        await ws.prepare(request)
        try:
            model = check_model(request.query.get("model"))
        except RealtimeRefusal as refusal:
            refused = error(
                refusal.message, refusal.error_type, code=refusal.code, param=refusal.param
            )
            await ws.send_str(orjson.dumps(refused).decode())
            await ws.close(code=1008, message=b"not a realtime model")
            return ws
        session = RealtimeSession(
            ws,
            request,
            config=config,
            session=SessionConfig(model=model),
            render=render,
            faults=faults,
            limiter=app[LIMITER],
            stats=stats,
        )
        open_sessions.add(session)
        try:
            await session.run()
        except Exception:  # a bug here must not become an HTTP answer on an upgraded socket
            log.exception("emulator realtime session failed")
            await ws.close(code=1011, message=b"local emulator error")
        finally:
            open_sessions.discard(session)
        return ws

    app.cleanup_ctx.append(pool)
    app.router.add_get(PATH, connect)
