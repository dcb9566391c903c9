"""A scripted ``/v1/realtime`` server for tests of what the pipeline does when a server lies: it
answers ``session.created``/``session.updated``, then each ``response.create`` with the events
``script(number, text)`` returns (``number`` counts the responses over every socket, from 0).
``POST /v1/audio/speech`` answers 200 with the ``speech`` (content type, body) given;
``session.updated`` carries ``session`` as given.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from tests.loopback import LoopbackServer

Script = Callable[[int, str], list[dict[str, Any]]]
TONE = b"".join(  # 0.5 s of a 440 Hz tone at 24 kHz: audio that is not silence
    struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 24000))) for i in range(12000)
)


def delta(response_id: str, pcm: bytes = TONE) -> dict[str, Any]:
    return {
        "type": "response.output_audio.delta",
        "response_id": response_id,
        "delta": base64.b64encode(pcm).decode(),
    }


def spoken(response_id: str, text: str, pcm: bytes = TONE) -> list[dict[str, Any]]:
    """The events of a response that says ``text`` with ``pcm``, as the API orders them."""
    return [
        {"type": "response.created", "response": {"id": response_id}},
        delta(response_id, pcm),
        {
            "type": "response.output_audio_transcript.done",
            "response_id": response_id,
            "transcript": text,
        },
        done(response_id),
    ]


def done(response_id: str, status: str = "completed", **details: Any) -> dict[str, Any]:
    response: dict[str, Any] = {"id": response_id, "status": status}
    if details:
        response["status_details"] = details
    return {"type": "response.done", "response": response}


class LyingRealtime(LoopbackServer):
    """``base_url`` serves ``script``; ``responses`` counts the ``response.create`` received."""

    def __init__(
        self,
        script: Script,
        speech: tuple[str, bytes] = ("audio/wav", b""),
        session: dict[str, Any] | None = None,
    ) -> None:
        self._script = script
        self._updated = orjson.dumps({"type": "session.updated", "session": session or {}})
        self._speech = speech
        self.responses = 0
        app = web.Application()
        app.router.add_get("/v1/realtime", self._session)
        app.router.add_post("/v1/audio/speech", self._speak)
        super().__init__(app)

    def __enter__(self) -> LyingRealtime:
        self.open()
        return self

    async def _speak(self, _: web.Request) -> web.Response:
        self.responses += 1
        content_type, body = self._speech
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _session(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(max_msg_size=0)
        await socket.prepare(request)
        await socket.send_str('{"type": "session.created", "session": {}}')
        async for message in socket:
            event = orjson.loads(message.data)
            if event["type"] == "session.update":
                await socket.send_str(self._updated.decode())
            elif event["type"] == "response.create":
                number, self.responses = self.responses, self.responses + 1
                text = event["response"]["input"][0]["content"][0]["text"]
                for answer in self._script(number, text):
                    await socket.send_str(orjson.dumps(answer).decode())
        return socket
