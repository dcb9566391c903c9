"""The realtime session pool: WebSockets to ``{base_url}/realtime?model=...``, each carrying one
response at a time, kept open between responses for the same model, voice and speed.

A ``Speak`` takes an idle session opened for its key, or opens one (``session.created``, then
``session.update`` and its ``session.updated``, which must say it took the PCM format, voice
and speed asked for), sends one out-of-band ``response.create`` and
reads events until its ``response.done``. The PCM deltas are gathered under the step's cap; the
transcript comes from ``response.output_audio_transcript.done``. Every message that enters has
the key redacted before it is parsed (``Http.redact_message``, as for HTTP bodies).
``rate_limits.updated`` feeds the limiter as x-ratelimit-* headers would; ``error`` events
become the classes of ``realtime_events.error_from_event``. A session that failed in any way (an
error event, a dropped socket, a timeout, a cancelled attempt) is closed, never reused: the
retry reconnects.

One response per socket rather than many multiplexed on one: the pool's workers already give
the concurrency, a dropped socket then costs one chunk rather than every chunk it carried, and
no response's audio waits behind another's on the same socket (figures: README, bench).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from pipeline.errors import ApiError, RejectedApiError, TransientApiError
from pipeline.http import Http
from pipeline.realtime_events import (
    error_from_event,
    rate_limit_headers,
    response_create,
    response_failure,
    session_mismatch,
    session_update,
)
from pipeline.steps import Speak, Spoken

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 2**20  # one event; an audio delta is a few KiB
SessionKey = tuple[str, str, float]


class RealtimeSession:
    """One open WebSocket with its session configured for one model, voice and speed."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse, http: Http) -> None:
        self.socket = socket
        self._http = http

    async def event(self) -> dict[str, Any]:
        """The next server event, key redacted; TransientApiError when the socket ends."""
        message = await self.socket.receive()
        if message.type is aiohttp.WSMsgType.TEXT:
            try:
                event = orjson.loads(self._http.redact_message(message.data))
            except orjson.JSONDecodeError:
                event = None
            if isinstance(event, dict):
                return event
            raise TransientApiError(
                "the realtime session sent a message that is not a JSON event",
                error_type="malformed_response",
            )
        if message.type is aiohttp.WSMsgType.BINARY:
            raise TransientApiError(
                "the realtime session sent a binary message", error_type="malformed_response"
            )
        raise TransientApiError(
            "the realtime WebSocket closed before the response was done", error_type="connection"
        )

    async def send(self, event: Mapping[str, Any]) -> None:
        try:
            await self.socket.send_str(orjson.dumps(event).decode())  # JSON goes in text frames
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise TransientApiError(
                self._http.redact(f"the realtime WebSocket failed: {type(exc).__name__}: {exc}"),
                error_type="connection",
            ) from None

    async def configure(self, step: Speak) -> None:
        """Wait for ``session.created``, send ``session.update``, wait for ``session.updated``."""
        await self._until("session.created")
        await self.send(session_update(step))
        updated = await self._until("session.updated")
        mismatch = session_mismatch(updated, step)
        if mismatch is not None:  # its audio would be mislabelled (or misread as 24 kHz PCM)
            raise RejectedApiError(
                self._http.redact(f"the realtime session did not take {mismatch}"),
                error_type="session_mismatch",
            )

    async def _until(self, wanted: str) -> dict[str, Any]:
        while True:
            event = await self.event()
            kind = event.get("type")
            if kind == wanted:
                return event
            self._common(event)

    def _common(self, event: Mapping[str, Any]) -> None:
        """What any event outside a response's own may mean: an error, rate-limit feedback."""
        kind = event.get("type")
        if kind == "error":
            raise self._redacted(error_from_event(event))
        if kind == "rate_limits.updated":
            self._http.observe(rate_limit_headers(event))

    def _redacted(self, error: ApiError) -> ApiError:
        for name in ("message", "error_type", "error_code", "param"):
            value = getattr(error, name)
            if isinstance(value, str):  # a short key is left in bodies, never in errors
                setattr(error, name, self._http.redact(value))
        return error

    async def respond(self, step: Speak, event_id: str) -> Spoken:
        """Send ``step`` as one ``response.create`` and gather its audio until ``response.done``."""
        await self.send(response_create(step, event_id))
        pcm, size = bytearray(), 0
        response_id: str | None = None
        transcript: str | None = None
        while True:
            event = await self.event()
            kind = event.get("type")
            if kind == "response.created":
                response = event.get("response")
                if response_id is None and isinstance(response, Mapping):
                    response_id = str(response.get("id"))
            elif kind == "response.output_audio.delta" and _ours(event, response_id):
                size += _append(pcm, event.get("delta"))
                if size > step.max_bytes:
                    raise RejectedApiError(
                        f"the realtime answer went past {step.max_bytes:,} bytes of PCM, the most "
                        "this chunk's text can need; the rest was not read",
                        error_type="answer_too_large",
                    )
            elif kind == "response.output_audio_transcript.done" and _ours(event, response_id):
                transcript = str(event.get("transcript") or "")
            elif kind == "response.done":
                response = event.get("response")
                response = response if isinstance(response, Mapping) else {}
                if response_id is None or response.get("id") != response_id:
                    continue  # another response's end (a stale one on a reused socket)
                failure = response_failure(response)
                if failure is not None:
                    raise self._redacted(failure)
                return _finished(response, bytes(pcm), transcript)
            else:
                self._common(event)

    async def close(self) -> None:
        self._http.forget(self.socket)
        with contextlib.suppress(aiohttp.ClientError, ConnectionError, RuntimeError):
            await self.socket.close()


class RealtimeSessions:
    """Open sessions by key, each carrying one response at a time; at most ``capacity`` kept."""

    def __init__(self, http: Http, capacity: int) -> None:
        self._http = http
        self._capacity = max(1, capacity)
        self._idle: defaultdict[SessionKey, list[RealtimeSession]] = defaultdict(list)
        self._events = itertools.count(1)
        self.opened = 0  # sessions opened over the run (a retry after a failure opens one)

    async def speak(self, step: Speak) -> Spoken:
        """``step`` spoken over an idle session for its key, or a new one; raises ApiError
        classes as HTTP does. The whole response is bounded by the client's timeout."""
        key = step.session_key()
        session = await self._idle_session(key)
        reusable = False
        try:
            async with asyncio.timeout(self._http.timeout_s):
                if session is None:
                    session = await self._open(step)
                spoken = await session.respond(step, f"speak_{next(self._events)}")
            reusable = True
            return spoken
        except TimeoutError:
            raise TransientApiError(
                "the realtime response timed out", error_type="timeout"
            ) from None
        finally:
            if session is not None:
                if reusable:
                    await self._keep(key, session)
                else:
                    await session.close()

    async def _idle_session(self, key: SessionKey) -> RealtimeSession | None:
        """The newest idle session for ``key`` still open (the server may close an idle one)."""
        idle = self._idle[key]
        while idle:
            session = idle.pop()
            if not session.socket.closed:
                return session
            await session.close()
        return None

    async def _open(self, step: Speak) -> RealtimeSession:
        socket = await self._http.websocket("/realtime", {"model": step.model}, MAX_MESSAGE_BYTES)
        self.opened += 1
        session = RealtimeSession(socket, self._http)
        try:
            await session.configure(step)
        except BaseException:
            await session.close()
            raise
        log.debug("realtime session opened model=%s", step.model)
        return session

    async def _keep(self, key: SessionKey, session: RealtimeSession) -> None:
        """Back to the idle sessions; the oldest of another key goes when over capacity."""
        self._idle[key].append(session)
        if sum(len(sessions) for sessions in self._idle.values()) <= self._capacity:
            return
        for other, sessions in self._idle.items():
            if sessions and (other != key or len(sessions) > 1):
                await sessions.pop(0).close()
                return


def _ours(event: Mapping[str, Any], response_id: str | None) -> bool:
    """Only once ``response.created`` named this response: what comes before is another's."""
    return response_id is not None and event.get("response_id") == response_id


def _append(pcm: bytearray, delta: Any) -> int:
    if not isinstance(delta, str):
        raise TransientApiError(
            "an audio delta without base64 audio", error_type="malformed_response"
        )
    try:
        chunk = base64.b64decode(delta, validate=True)
    except (binascii.Error, ValueError):
        raise TransientApiError(
            "an audio delta that is not base64", error_type="malformed_response"
        ) from None
    pcm += chunk
    return len(chunk)


def _finished(response: Mapping[str, Any], pcm: bytes, transcript: str | None) -> Spoken:
    if not pcm or len(pcm) % 2:
        raise TransientApiError(
            f"the realtime response ended with {len(pcm)} bytes of PCM16 audio",
            error_type="bad_audio",
        )
    if transcript is None:
        raise TransientApiError(
            "the realtime response ended without the transcript of its audio: it cannot be "
            "checked word for word",
            error_type="no_transcript",
        )
    usage = response.get("usage")
    return Spoken(
        pcm, transcript, str(response.get("id") or ""), usage if isinstance(usage, dict) else None
    )
