"""A test client for the emulator's /v1/realtime: aiohttp's ws_connect, every event checked.

Every client event it sends validates against the GA client-event schemas before it is sent,
and every server event it receives against the server-event schema of its type (an event type
without a vendored schema fails the test), so the tests built on it check the contract.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator

from pipeline.emulator import RunningEmulator
from tests.emulator.helpers import load_validator

MODEL = "gpt-realtime-2.1-mini"
SERVER_SCHEMAS = {
    "session.created": "RealtimeServerEventSessionCreated",
    "session.updated": "RealtimeServerEventSessionUpdated",
    "response.created": "RealtimeServerEventResponseCreated",
    "response.output_audio.delta": "RealtimeServerEventResponseAudioDelta",
    "response.output_audio.done": "RealtimeServerEventResponseAudioDone",
    "response.output_audio_transcript.done": "RealtimeServerEventResponseAudioTranscriptDone",
    "response.done": "RealtimeServerEventResponseDone",
    "rate_limits.updated": "RealtimeServerEventRateLimitsUpdated",
    "error": "RealtimeServerEventError",
}
CLIENT_SCHEMAS = {
    "session.update": "RealtimeClientEventSessionUpdate",
    "response.create": "RealtimeClientEventResponseCreate",
}
_VALIDATORS: dict[str, Draft202012Validator] = {}


def validator(name: str) -> Draft202012Validator:
    if name not in _VALIDATORS:
        _VALIDATORS[name] = load_validator(name)
    return _VALIDATORS[name]


def ws_url(emulator: RunningEmulator, model: str | None = MODEL) -> str:
    url = emulator.base_url.replace("http://", "ws://", 1) + "/realtime"
    return url if model is None else f"{url}?model={model}"


def session_update(voice: str = "coral", **audio_output: Any) -> dict[str, Any]:
    return {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "output_modalities": ["audio"],
            "audio": {
                "output": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "voice": voice,
                    **audio_output,
                }
            },
        },
    }


def response_create(text: str, event_id: str | None = None, **response: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "response.create",
        "response": {
            "conversation": "none",
            "output_modalities": ["audio"],
            "instructions": "Read the user's text aloud, word for word.",
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": text}],
                }
            ],
            **response,
        },
    }
    if event_id is not None:
        body["event_id"] = event_id
    return body


@dataclass
class Spoken:
    """One response's events as the client saw them."""

    created: dict[str, Any]
    deltas: list[bytes] = field(default_factory=list)
    transcript: str | None = None
    done: dict[str, Any] | None = None
    audio_done: bool = False

    @property
    def pcm(self) -> bytes:
        return b"".join(self.deltas)


class Realtime:
    """One open socket; ``send`` validates, ``receive`` validates and returns the event."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []  # the error events ``responses`` passed by

    async def send(self, event: dict[str, Any]) -> None:
        validator(CLIENT_SCHEMAS[event["type"]]).validate(event)
        await self.ws.send_json(event)

    async def receive(self) -> dict[str, Any] | None:
        """The next server event (validated), or None once the socket is closed."""
        message = await self.ws.receive()
        if message.type != aiohttp.WSMsgType.TEXT:
            return None
        event: dict[str, Any] = message.json()
        assert event["type"] in SERVER_SCHEMAS, f"an event without a schema: {event['type']}"
        validator(SERVER_SCHEMAS[event["type"]]).validate(event)
        self.seen.append(event)
        return event

    async def next_of(self, kind: str) -> dict[str, Any]:
        event = await self.receive()
        assert event is not None and event["type"] == kind, event
        return event

    async def responses(
        self, count: int, received: tuple[dict[str, Any], ...] = ()
    ) -> dict[str, Spoken]:
        """Events until ``count`` responses ended with ``rate_limits.updated`` after their
        ``response.done``, by response id; stops early if the socket closes. Error events on
        the way are kept in ``errors``; ``received`` are events already read, taken first."""
        spoken: dict[str, Spoken] = {}
        finished = 0
        pending_limits: defaultdict[str, int] = defaultdict(int)
        backlog = list(received)
        while finished < count:
            event = backlog.pop(0) if backlog else await self.receive()
            if event is None:
                break
            kind = event["type"]
            if kind == "response.created":
                spoken[event["response"]["id"]] = Spoken(created=event)
            elif kind == "response.output_audio.delta":
                spoken[event["response_id"]].deltas.append(base64.b64decode(event["delta"]))
            elif kind == "response.output_audio.done":
                spoken[event["response_id"]].audio_done = True
            elif kind == "response.output_audio_transcript.done":
                spoken[event["response_id"]].transcript = event["transcript"]
            elif kind == "response.done":
                spoken[event["response"]["id"]].done = event
                pending_limits["done"] += 1
            elif kind == "rate_limits.updated" and pending_limits["done"]:
                pending_limits["done"] -= 1
                finished += 1
            elif kind == "error":
                self.errors.append(event)
            else:
                raise AssertionError(f"unexpected event {event}")
        return spoken


async def connect(
    http: aiohttp.ClientSession,
    emulator: RunningEmulator,
    key: str | None = None,
    voice: str = "coral",
) -> Realtime:
    """An open socket past ``session.created`` and the ``session.updated`` that sets ``voice``."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    ws = await http.ws_connect(ws_url(emulator), headers=headers)
    client = Realtime(ws)
    created = await client.next_of("session.created")
    assert created["session"]["model"] == MODEL
    await client.send(session_update(voice))
    updated = await client.next_of("session.updated")
    assert updated["session"]["audio"]["output"]["voice"] == voice
    assert updated["session"]["id"] == created["session"]["id"]
    return client
