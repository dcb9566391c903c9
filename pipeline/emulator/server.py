"""Running the emulator: in a daemon thread for tests and ``base_url = "local"``, or blocking
for ``pipeline serve``; both bind loopback unless told otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import sys
import threading
from types import TracebackType
from typing import Any, Final

from aiohttp import web

from pipeline.emulator.app import create_app
from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.errors import EmulatorError
from pipeline.emulator.stats import STATS

_SHUTDOWN_TIMEOUT_S: Final[float] = 0.5  # in-flight answers get this long, then are cancelled
_DEFAULT_CONFIG: Final[EmulatorConfig] = EmulatorConfig()


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_host(host: str, allow_remote: bool) -> None:
    if not allow_remote and not is_loopback(host):
        raise EmulatorError(
            f"the emulator binds loopback only (127.0.0.1, ::1, localhost), not {host!r}; "
            "add --allow-remote (pipeline serve --allow-remote) if you mean to serve other machines"
        )


def _url(host: str, port: int) -> str:
    bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{bracketed}:{port}/v1"


async def _start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_TIMEOUT_S
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host.strip("[]"), port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])


class RunningEmulator:
    """An emulator serving in a daemon thread with its own event loop; close() stops it."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._app = app
        self._host = host
        self._requested_port = port
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._closed = False
        self.port = 0
        self.base_url = ""
        self._thread = threading.Thread(target=self._main, name="pipeline-emulator", daemon=True)

    def _start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._closed = True
            raise self._error
        self.base_url = _url(self._host, self.port)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        try:
            runner, self.port = await _start_site(self._app, self._host, self._requested_port)
        except Exception as exc:  # handed to the thread that called start_emulator
            self._error = exc
            self._ready.set()
            return
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def stats(self) -> dict[str, Any]:
        """Counts so far: requests, by status code, faults by name, inputs scored (a snapshot)."""
        return self._app[STATS].snapshot()

    def wait_for_requests(self, count: int, timeout: float | None = None) -> bool:
        """Block until ``count`` requests have arrived (any route but stats); False on timeout."""
        return self._app[STATS].wait_for_requests(count, timeout)

    def recorded_requests(self) -> list[tuple[str, dict[str, Any]]]:
        """(path, parsed JSON body) of every request received, when record_requests is set."""
        return self._app[STATS].recorded()

    def close(self) -> None:
        """Stop serving and join the thread; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RunningEmulator {self.base_url or 'not started'}>"


def start_emulator(
    config: EmulatorConfig = _DEFAULT_CONFIG, host: str = "127.0.0.1", port: int = 0
) -> RunningEmulator:
    """Start an emulator in a daemon thread; returns once it accepts connections.

    Port 0 picks a free port (see ``base_url``). Raises EmulatorError when the engine's extra is
    not installed or ``host`` is not loopback, OSError when the port cannot be bound.
    """
    _check_host(host, allow_remote=False)
    emulator = RunningEmulator(create_app(config), host, port)
    emulator._start()
    return emulator


def serve(
    config: EmulatorConfig, host: str = "127.0.0.1", port: int = 8000, allow_remote: bool = False
) -> None:
    """Serve until SIGINT or SIGTERM, for ``pipeline serve``; blocks.

    Prints ``pipeline emulator listening on http://HOST:PORT/v1`` to stdout once listening.
    Raises EmulatorError for a host that is not loopback unless ``allow_remote``, or when the
    engine's extra is not installed.
    """
    _check_host(host, allow_remote)
    asyncio.run(_serve_until_signal(create_app(config), host, port))


async def _serve_until_signal(app: web.Application, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    runner, bound = await _start_site(app, host, port)
    try:
        sys.stdout.write(f"pipeline emulator listening on {_url(host, bound)}\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await runner.cleanup()
        for signum in handled:
            loop.remove_signal_handler(signum)
