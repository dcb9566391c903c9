"""A recording WebSocket relay for tests: the pipeline talks to it as to ``/v1/realtime``, it
relays every frame to the emulator and back, and keeps the JSON events of both directions, so a
test can validate what the pipeline really sent (the emulator does not record socket events).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from pipeline.emulator import RunningEmulator
from tests.loopback import LoopbackServer


class RecordingRelay(LoopbackServer):
    """``base_url`` leads to ``server`` through this relay; ``sent`` and ``received`` are the
    events of every socket, in arrival order. Use as a context manager."""

    def __init__(self, server: RunningEmulator) -> None:
        self._target = server.base_url.replace("http://", "ws://", 1)
        self.sent: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        self.sockets = 0
        app = web.Application()
        app.router.add_get("/v1/realtime", self._relay)
        app.cleanup_ctx.append(self._client)
        super().__init__(app)

    def __enter__(self) -> RecordingRelay:
        self.open()
        return self

    async def _client(self, _: web.Application) -> AsyncIterator[None]:
        """The session the relay's upstream sockets use, for as long as the app runs."""
        async with aiohttp.ClientSession() as session:
            self._session = session
            yield

    async def _relay(self, request: web.Request) -> web.WebSocketResponse:
        client = web.WebSocketResponse(max_msg_size=0)
        await client.prepare(request)
        self.sockets += 1
        headers = {"Authorization": request.headers.get("Authorization", "")}
        async with self._session.ws_connect(
            self._target + "/realtime", params=request.query, headers=headers, max_msg_size=0
        ) as upstream:

            async def down() -> None:
                async for message in upstream:
                    if message.type is aiohttp.WSMsgType.TEXT:
                        self.received.append(orjson.loads(message.data))
                        await client.send_str(message.data)
                await client.close()

            relay_down = asyncio.create_task(down())
            async for message in client:
                if message.type is aiohttp.WSMsgType.TEXT:
                    self.sent.append(orjson.loads(message.data))
                    await upstream.send_str(message.data)
            await upstream.close()
            await relay_down
        return client
