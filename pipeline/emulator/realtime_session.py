"""One realtime WebSocket session: reads the client's events, answers each, and runs every
``response.create`` as its own task, so several responses are in flight on one socket (their
events carry their ``response_id`` and may interleave).

A response: the realtime faults are drawn, the rate limiter charged, then ``response.created``,
the audio as ``response.output_audio.delta`` events of ``DELTA_MS`` each (base64 PCM16, 24 kHz
mono), ``response.output_audio.done``, ``response.output_audio_transcript.done``,
``response.done`` (with ``usage``) and ``rate_limits.updated``. A refused client event, a rate
limit and an injected error are ``error`` events carrying the client event's ``event_id``; the
socket stays open. Only the ``realtime_drop`` fault closes it, mid-audio.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from aiohttp import WSMsgType, web

from pipeline.emulator import realtime_events as events
from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.facts import SPEECH_SAMPLE_RATE, estimate_tokens
from pipeline.emulator.faults import FaultInjector
from pipeline.emulator.limits import RateLimiter, format_duration
from pipeline.emulator.realtime_requests import (
    RealtimeRefusal,
    ResponseRequest,
    SessionConfig,
    apply_session_update,
    parse_response_create,
)
from pipeline.emulator.realtime_reword import reword
from pipeline.emulator.replies import ApiReply
from pipeline.emulator.stats import Stats

# (text, voice, speed) -> s16le mono PCM at 24 kHz, synthesised off the event loop
Render = Callable[[str, str, float], Awaitable[bytes]]
DELTA_MS: Final[int] = 200  # audio per delta: several deltas for even a short sentence
DELTA_BYTES: Final[int] = SPEECH_SAMPLE_RATE * 2 * DELTA_MS // 1000
_INJECTED: Final[str] = "(local emulator: injected fault)"
_EVENTS: Final[str] = "session.update, response.create and response.cancel"
log = logging.getLogger(__name__)


class RealtimeSession:
    """The state of one socket: its session config and its responses in flight."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        *,
        config: EmulatorConfig,
        session: SessionConfig,
        render: Render,
        faults: FaultInjector,
        limiter: RateLimiter,
        stats: Stats,
    ) -> None:
        self._ws = ws
        self._request = request
        self._config = config
        self._session = session
        self._render = render
        self._faults = faults
        self._limiter = limiter
        self._stats = stats
        self._id = events.new_id("sess")
        self._tasks: set[asyncio.Task[None]] = set()
        self._responses: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[str] = set()
        self._send_lock = asyncio.Lock()

    async def run(self) -> None:
        """Serve the socket until the client closes it (or a fault drops it)."""
        self._stats.add("realtime_sessions")
        try:
            await self._send_session("session.created")
            async for message in self._ws:
                if message.type == WSMsgType.TEXT:
                    await self._handle(message.data)
                elif message.type == WSMsgType.BINARY:
                    await self._refuse(
                        RealtimeRefusal(
                            "The Realtime API takes JSON events in text frames, not binary "
                            "(local emulator).",
                            code="invalid_json",
                        ),
                        None,
                    )
        except ConnectionError:
            pass  # the client went away mid-send: nothing to answer
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, data: str) -> None:
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            body = None
        client_id = body.get("event_id") if isinstance(body, dict) else None
        client_id = client_id if isinstance(client_id, str) else None
        try:
            if not isinstance(body, dict):
                raise RealtimeRefusal(
                    "We could not parse the JSON of your event: the Realtime API takes one "
                    "JSON object per message (local emulator).",
                    code="invalid_json",
                )
            kind = body.get("type")
            if kind == "session.update":
                if "session" not in body:
                    raise RealtimeRefusal(
                        "Missing required parameter: 'session' (local emulator).",
                        param="session",
                        code="missing_required_parameter",
                    )
                self._session = apply_session_update(body["session"], self._session)
                await self._send_session("session.updated")
            elif kind == "response.create":
                request = parse_response_create(body.get("response"), self._session)
                task = asyncio.create_task(self._respond(request, client_id))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif kind == "response.cancel":
                self._cancel(body.get("response_id"))
            else:
                raise RealtimeRefusal(
                    f"Invalid value: {kind!r}: the local emulator takes {_EVENTS} events.",
                    param="type",
                    code="invalid_value",
                )
        except RealtimeRefusal as refusal:
            await self._refuse(refusal, client_id)

    def _cancel(self, response_id: Any) -> None:
        """response.cancel: the named response (else every one in flight) ends ``cancelled``;
        RealtimeRefusal when there is none in flight, as the API answers."""
        ids = [response_id] if isinstance(response_id, str) else list(self._responses)
        active = [rid for rid in ids if rid in self._responses]
        if not active:
            raise RealtimeRefusal(
                "Cancellation failed: no active response found (local emulator).",
                param="response_id" if isinstance(response_id, str) else None,
                code="response_cancel_not_active",
            )
        for rid in active:
            self._cancelled.add(rid)
            self._responses[rid].cancel()

    async def _respond(self, request: ResponseRequest, client_id: str | None) -> None:
        with contextlib.suppress(ConnectionError):  # the client closed the socket
            fault = self._faults.draw()
            if fault is not None:
                self._stats.fault(fault)
            if fault == "realtime_error":
                await self._send(
                    events.error(
                        f"The server had an error while processing your request. {_INJECTED}",
                        "server_error",
                        client_event_id=client_id,
                    )
                )
            elif fault == "realtime_rate_limit":
                wait = format_duration(self._config.fault_retry_after_ms / 1000)
                await self._send_rate_limited(
                    f"Rate limit reached for requests {_INJECTED}. Please try again in {wait}.",
                    client_id,
                )
            else:
                refused = self._charge(request)
                if refused is not None:
                    await self._send_rate_limited(refused, client_id)
                    return
                text = request.text
                if fault == "realtime_reword":
                    text = reword(text, self._config.seed)
                await self._speak(request, text, drop=fault == "realtime_drop")

    def _charge(self, request: ResponseRequest) -> str | None:
        """Charge ``request`` to the rate limiter: None, or the limiter's refusal message."""
        try:
            self._limiter.admit(estimate_tokens(request.text))
        except ApiReply as reply:
            self._stats.rate_limited(reply.body["error"]["type"])
            return str(reply.body["error"]["message"])
        return None

    async def _send_rate_limited(self, message: str, client_id: str | None) -> None:
        await self._send(
            events.error(
                message,
                "rate_limit_exceeded",
                code="rate_limit_exceeded",
                client_event_id=client_id,
            )
        )

    async def _speak(self, request: ResponseRequest, text: str, *, drop: bool) -> None:
        """One response, from ``response.created`` to ``rate_limits.updated``."""
        response_id, item_id = events.new_id("resp"), events.new_id("item")
        task = asyncio.current_task()
        assert task is not None
        self._responses[response_id] = task
        try:
            created = events.response_object(response_id, request)
            await self._send(events.event("response.created", response=created))
            self._stats.add("realtime_responses")
            pcm = await self._render(text, request.voice, request.speed)
            await self._stream(response_id, item_id, pcm, drop=drop)
            if drop:
                return
            await self._finish(response_id, item_id, request, text, len(pcm))
        except asyncio.CancelledError:
            if response_id not in self._cancelled:
                raise  # the socket is closing
            await self._finish(response_id, item_id, request, text, 0, status="cancelled")
        finally:
            self._responses.pop(response_id, None)
            self._cancelled.discard(response_id)

    async def _stream(self, response_id: str, item_id: str, pcm: bytes, *, drop: bool) -> None:
        """The audio deltas; with ``drop``, the socket is closed after half of them."""
        deltas = [pcm[i : i + DELTA_BYTES] for i in range(0, len(pcm), DELTA_BYTES)]
        cut = max(1, len(deltas) // 2) if drop else len(deltas)
        for delta in deltas[:cut]:
            await self._send(
                events.event(
                    "response.output_audio.delta",
                    response_id=response_id,
                    item_id=item_id,
                    output_index=0,
                    content_index=0,
                    delta=base64.b64encode(delta).decode("ascii"),
                )
            )
            await asyncio.sleep(0)  # a turn for the other responses: their deltas interleave
        if drop:
            await self._drop()

    async def _finish(
        self,
        response_id: str,
        item_id: str,
        request: ResponseRequest,
        transcript: str,
        pcm_bytes: int,
        status: str = "completed",
    ) -> None:
        where: dict[str, Any] = {"response_id": response_id, "item_id": item_id}
        where |= {"output_index": 0, "content_index": 0}
        await self._send(events.event("response.output_audio.done", **where))
        await self._send(
            events.event("response.output_audio_transcript.done", transcript=transcript, **where)
        )
        audio_s = pcm_bytes / 2 / SPEECH_SAMPLE_RATE
        item_status = "completed" if status == "completed" else "incomplete"
        body = events.response_object(
            response_id,
            request,
            status=status,
            output=[events.audio_item(item_id, transcript, item_status)],
            usage=events.usage(request, transcript, audio_s),
        )
        await self._send(events.event("response.done", response=body))
        await self._send(events.rate_limits(self._limiter, self._config.limits_clock()))
        if status == "completed":
            self._stats.add("realtime_responses_done")
            self._stats.add("realtime_audio_ms", round(audio_s * 1000))

    async def _drop(self) -> None:
        """The realtime_drop fault: the connection closed under the client, no close frame."""
        transport = self._request.transport
        if transport is not None:
            transport.close()  # close, not abort: the deltas already written reach the client
        else:
            await self._ws.close(code=1011)

    async def _refuse(self, refusal: RealtimeRefusal, client_id: str | None) -> None:
        await self._send(
            events.error(
                refusal.message,
                refusal.error_type,
                code=refusal.code,
                param=refusal.param,
                client_event_id=client_id,
            )
        )

    async def _send_session(self, kind: str) -> None:
        session = events.session_object(self._id, self._session, self._config.runs_clock())
        await self._send(events.event(kind, session=session))

    async def _send(self, body: dict[str, Any]) -> None:
        async with self._send_lock:  # one frame at a time, whole, in the order written
            await self._ws.send_str(orjson.dumps(body).decode())
