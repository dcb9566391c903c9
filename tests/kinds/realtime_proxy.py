"""A recording WebSocket relay for tests: the pipeline talks to it as to ``/v1/realtime``, it
relays every frame to the emulator and back, and keeps the JSON events of both directions, so a
test can validate what the pipeline really sent (the emulator does not record socket events).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from pipeline.emulator import RunningEmulator


class RecordingRelay:
    """``base_url`` leads to ``server`` through this relay; ``sent`` and ``received`` are the
    events of every socket, in arrival order. Use as a context manager."""

    def __init__(self, server: RunningEmulator) -> None:
        self._target = server.base_url.replace("http://", "ws://", 1)
        self.sent: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        self.sockets = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stop: asyncio.Event | None = None
        self.base_url = ""

    def __enter__(self) -> RecordingRelay:
        self._thread.start()
        assert self._ready.wait(30), "the relay started"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self._loop.close()

    def _serve(self) -> None:
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_get("/v1/realtime", self._relay)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        async with aiohttp.ClientSession() as session:
            self._session = session
            self._ready.set()
            await self._stop.wait()
        await runner.cleanup()

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
