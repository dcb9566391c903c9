"""An aiohttp application served on 127.0.0.1 (a free port) from a thread of its own, for tests
that need a server other than the emulator: a scripted liar, a recording relay, a webhook."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

START_S = 30.0


class LoopbackServer:
    """Serves ``app`` while open; ``port`` and ``base_url`` (``.../v1``) say where. Use as a
    context manager, or ``open()`` / ``close()``."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def open(self) -> None:
        self._thread.start()
        self._runner = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(START_S)

    def close(self) -> None:
        assert self._runner is not None, "open() first"
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(START_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_S)
        self._loop.close()

    def __enter__(self) -> LoopbackServer:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _start(self) -> web.AppRunner:
        runner = web.AppRunner(self.app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.port = runner.addresses[0][1]
        return runner
