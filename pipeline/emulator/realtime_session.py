"""One realtime WebSocket session: reads the client's events, answers each, and runs every
``response.create`` as its own task, so several responses are in flight on one socket (their
events carry their ``response_id`` and may interleave).

A response: the realtime faults are drawn, the rate limiter charged, then ``response.created``,
the audio as ``response.output_audio.delta`` events of ``DELTA_MS`` each (base64 PCM16, 24 kHz
mono), ``response.output_audio.done``, ``response.output_audio_transcript.done``,
``response.done`` (with ``usage``) and ``rate_limits.updated``. A refused client event, a rate
limit and an injected error are ``error`` events carrying the client event's ``event_id``; the
socket stays open. Only the ``realtime_drop`` fault closes it (mid-audio, without a close
frame) and the session's end (``realtime_session_s``: ``session_expired``, then close 1001).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

import orjson
from aiohttp import WSMsgType, web

from pipeline.emulator import realtime_events as events
from pipeline.emulator.config import EmulatorConfig, skewed_clock
from pipeline.emulator.facts import SPEECH_SAMPLE_RATE, estimate_tokens
from pipeline.emulator.faults import FaultInjector
from pipeline.emulator.limits import RateLimiter, format_duration
from pipeline.emulator.realtime_audio import Render
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

_INJECTED: Final[str] = "(local emulator: injected fault)"
_EVENTS: Final[str] = "session.update, response.create and response.cancel"
_EVENT_KEYS: Final[dict[str, frozenset[str]]] = {
    "session.update": frozenset({"type", "event_id", "session"}),
    "response.create": frozenset({"type", "event_id", "response"}),
    "response.cancel": frozenset({"type", "event_id", "response_id"}),
}


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
        self._expires_at = int(skewed_clock(config)() + config.realtime_session_s)
        self._tasks: set[asyncio.Task[None]] = set()
        self._responses: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[str] = set()
        self._conversation_busy: str | None = None  # the in-conversation response in flight
        self._send_lock = asyncio.Lock()

    async def run(self) -> None:
        """Serve the socket until the client closes it, a fault drops it or it expires."""
        self._stats.add("realtime_sessions")
        expiry = asyncio.create_task(self._expire(self._config.realtime_session_s))
        try:
            await self._send_session("session.created")
            async for message in self._ws:
                if message.type == WSMsgType.TEXT:
                    await self._handle(message.data)
                elif message.type == WSMsgType.BINARY:
                    await self._refuse(_refusal("a binary frame"), None)
        except ConnectionError:
            pass  # the client went away mid-send: nothing to answer
        finally:
            expiry.cancel()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(expiry, *self._tasks, return_exceptions=True)

    async def _expire(self, after_s: float) -> None:
        """End the session ``after_s`` seconds after it began, as the API does at 60 minutes."""
        await asyncio.sleep(after_s)
        span = f"{after_s / 60:g} minutes" if after_s % 60 == 0 else f"{after_s:g} seconds"
        message = f"Your session hit the maximum duration of {span}."
        with contextlib.suppress(ConnectionError):
            await self._send(events.error(message, "invalid_request_error", code="session_expired"))
            await self._ws.close(code=1001, message=message.encode())

    async def _handle(self, data: str) -> None:
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            body = None
        client_id = body.get("event_id") if isinstance(body, dict) else None
        client_id = client_id if isinstance(client_id, str) else None
        try:
            if not isinstance(body, dict):
                raise _refusal("text that is not a JSON object")
            kind = body.get("type")
            if kind not in _EVENT_KEYS:
                raise RealtimeRefusal(
                    f"Invalid value: {kind!r}: the local emulator takes {_EVENTS} events.",
                    param="type",
                    code="invalid_value",
                )
            unknown = sorted(set(body) - _EVENT_KEYS[kind])
            if unknown:
                raise RealtimeRefusal(
                    f"Unknown parameter: '{unknown[0]}' (local emulator).",
                    param=unknown[0],
                    code="unknown_parameter",
                )
            if kind == "session.update":
                await self._update(body)
            elif kind == "response.create":
                self._create(body, client_id)
            else:
                self._cancel(body.get("response_id"))
        except RealtimeRefusal as refusal:
            await self._refuse(refusal, client_id)

    async def _update(self, body: dict[str, Any]) -> None:
        if "session" not in body:
            raise RealtimeRefusal(
                "Missing required parameter: 'session' (local emulator).",
                param="session",
                code="missing_required_parameter",
            )
        self._session = apply_session_update(body["session"], self._session)
        await self._send_session("session.updated")

    def _create(self, body: dict[str, Any], client_id: str | None) -> None:
        """response.create: checked now, answered by a task of its own."""
        request = parse_response_create(body.get("response"), self._session)
        response_id = events.new_id("resp")
        if request.in_conversation:
            if self._conversation_busy is not None:  # out-of-band responses may overlap
                raise RealtimeRefusal(
                    "Conversation already has an active response in progress: "
                    f"{self._conversation_busy}. Wait until the response is finished before "
                    "creating a new one, or create it with conversation 'none' "
                    "(local emulator).",
                    code="conversation_already_has_active_response",
                )
            self._conversation_busy = response_id
        task = asyncio.create_task(self._respond(response_id, request, client_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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

    async def _respond(
        self, response_id: str, request: ResponseRequest, client_id: str | None
    ) -> None:
        try:
            await self._answer(response_id, request, client_id)
        except ConnectionError:
            pass  # the client closed the socket
        finally:
            if self._conversation_busy == response_id:
                self._conversation_busy = None

    async def _answer(
        self, response_id: str, request: ResponseRequest, client_id: str | None
    ) -> None:
        """The realtime fault drawn, the limiter charged, then the response or an error."""
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
            await self._speak(response_id, request, text, drop=fault == "realtime_drop")

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

    async def _speak(
        self, response_id: str, request: ResponseRequest, text: str, *, drop: bool
    ) -> None:
        """One response, from ``response.created`` to ``rate_limits.updated``."""
        item_id = events.new_id("item")
        task = asyncio.current_task()
        assert task is not None
        created = events.response_object(response_id, request)
        await self._send(events.event("response.created", response=created))
        self._stats.add("realtime_responses")
        self._responses[response_id] = task  # cancellable from now until its audio is sent
        try:
            audio = await self._render(text, request.voice, request.speed)
            await self._stream(response_id, item_id, audio.deltas, drop=drop)
        except asyncio.CancelledError:
            if response_id not in self._cancelled:
                raise  # the socket is closing
            del self._responses[response_id]
            await self._finish(response_id, item_id, request, text, 0, status="cancelled")
            return
        finally:
            self._responses.pop(response_id, None)
            self._cancelled.discard(response_id)
        if not drop:
            await self._finish(response_id, item_id, request, text, audio.pcm_bytes)

    async def _stream(
        self, response_id: str, item_id: str, deltas: tuple[str, ...], *, drop: bool
    ) -> None:
        """The audio deltas; with ``drop``, the socket is closed after half of them."""
        cut = max(1, len(deltas) // 2) if drop else len(deltas)
        # the JSON written by hand: ids and base64 need no escaping, and this is the hot loop
        head = (
            f'{{"type":"response.output_audio.delta","response_id":"{response_id}",'
            f'"item_id":"{item_id}","output_index":0,"content_index":0,"event_id":"'
        )
        for delta in deltas[:cut]:
            async with self._send_lock:
                await self._ws.send_str(f'{head}{events.new_id("event")}","delta":"{delta}"}}')
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
        session = events.session_object(self._id, self._session, self._expires_at)
        await self._send(events.event(kind, session=session))

    async def _send(self, body: dict[str, Any]) -> None:
        async with self._send_lock:  # one frame at a time, whole, in the order written
            await self._ws.send_str(orjson.dumps(body).decode())


def _refusal(what: str) -> RealtimeRefusal:
    return RealtimeRefusal(
        f"We could not parse your event ({what}): the Realtime API takes one JSON object per "
        "text frame (local emulator).",
        code="invalid_json",
    )
