"""The one HTTP client: auth headers, JSON on the wire, and status -> exception classes.

aiohttp is used directly: httpx's own pool collapses under concurrency (see DESIGN.md), and the
aiohttp transport under httpx costs more than twice the CPU per request of aiohttp itself.

This is the one boundary where server text enters the program, so two rules hold here for every
answer: the API key is redacted from every body (error or not) and from every exception text
built from the connection, before anything parses or stores it; and a body is read with a cap
(the caller's, by kind), checked against Content-Length first and then while streaming, so an
oversize answer costs at most the cap in memory and becomes an ``answer_too_large`` row error.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from pipeline import __version__
from pipeline.errors import (
    RejectedApiError,
    TransientApiError,
)
from pipeline.http_errors import error_for
from pipeline.logs import REDACTED, redact

DEFAULT_MAX_ANSWER_BYTES = 8 * 2**20  # runs, responses, threads: a few MiB is plenty
MAX_ERROR_BODY_BYTES = 2**20  # an error message longer than this is cut, not buffered
READ_CHUNK_BYTES = 2**16
_REDACTED_BYTES = REDACTED.encode()
MIN_REDACTED_IN_BODY = 8  # a shorter key would match inside ordinary JSON; its echoes are
# redacted in the error fields only


@dataclass(slots=True)  # one per answer: frozen would cost ~1 us each
class Answer:
    """A successful answer: parsed JSON (or raw bytes) and the headers that steer rate limits."""

    status: int
    headers: Mapping[str, str]
    data: Any


class Http:
    """One aiohttp session for the whole run; use as ``async with``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout_s: float,
        concurrency: int,
        observe: Callable[[Mapping[str, str]], None] | None = None,
    ) -> None:
        self._observe = observe  # sees every answer's headers (rate-limit feedback)
        self.base_url = base_url.rstrip("/")
        self._headers = {
            "User-Agent": f"pipeline/{__version__}",
            "Content-Type": "application/json",
        }
        self._secret = api_key or None
        # the key as it would appear in a body; a short one would match ordinary JSON
        self._secret_in_body = (
            api_key.encode() if api_key and len(api_key) >= MIN_REDACTED_IN_BODY else None
        )
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        for env, header in (
            ("OPENAI_ORG_ID", "OpenAI-Organization"),
            ("OPENAI_PROJECT_ID", "OpenAI-Project"),
        ):
            if os.environ.get(env):
                self._headers[header] = os.environ[env]
        self.timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        # a file of 200 MB takes what it takes: only a stall of timeout_s is a timeout
        self._streamed = aiohttp.ClientTimeout(total=None, sock_read=timeout_s)
        self._concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None
        self._sockets: set[aiohttp.ClientWebSocketResponse] = set()  # closed with the session

    async def __aenter__(self) -> Http:
        connector = aiohttp.TCPConnector(
            limit=self._concurrency, limit_per_host=0, keepalive_timeout=30, ttl_dns_cache=300
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=self._timeout,
            auto_decompress=True,
            raise_for_status=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        for socket in list(self._sockets):
            with contextlib.suppress(Exception):
                await socket.close()
        if self._session is not None:
            await self._session.close()

    async def websocket(
        self, path: str, params: Mapping[str, str], max_message_bytes: int
    ) -> aiohttp.ClientWebSocketResponse:
        """A WebSocket to ``path`` under the base URL (http -> ws, https -> wss), with this
        client's headers (the key in ``Authorization``). A refused handshake raises the class
        its status has over HTTP (401: FatalApiError, 429/5xx: TransientApiError); timeouts
        and connection errors are TransientApiError, their text without the key. The socket
        is closed with this client, if its user has not closed it before."""
        assert self._session is not None, "use Http as an async context manager"
        url = re.sub(r"^http", "ws", self.base_url + path, count=1)
        with self._connection_errors("the WebSocket"):
            try:
                socket = await self._session.ws_connect(
                    url, params=params, max_msg_size=max_message_bytes, autoping=True
                )
            except aiohttp.WSServerHandshakeError as exc:
                error = error_for(exc.status, exc.headers or {}, b"")
                error.message = f"the realtime WebSocket was refused: HTTP {exc.status}"
                raise error from None
        self._sockets.add(socket)
        return socket

    def forget(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        """``socket`` was closed by its user."""
        self._sockets.discard(socket)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Rate-limit feedback that came other than as an answer's headers (a realtime event)."""
        if self._observe is not None:
            self._observe(headers)

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        expect: str = "json",
        headers: Mapping[str, str] | None = None,
        max_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> Answer:
        """Send one request; return the answer or raise an ApiError subclass.

        ``expect`` is "json" or "bytes"; ``max_bytes`` caps the answer body (an answer over it
        is a RejectedApiError ``answer_too_large``). Timeouts and connection errors are
        TransientApiError. No text of the answer or of the error carries the API key.
        """
        assert self._session is not None, "use Http as an async context manager"
        data = None if body is None else orjson.dumps(body)
        with self._connection_errors("the request"):
            async with self._session.request(
                method, self.base_url + path, data=data, headers=headers
            ) as response:
                status = response.status
                answer_headers = response.headers
                if self._observe is not None:
                    self._observe(answer_headers)
                cap = max_bytes if status < 300 else MAX_ERROR_BODY_BYTES
                raw = await _read_capped(response, cap)
        if raw is None and status < 300:
            raise _too_large(status, answer_headers, max_bytes)
        return self._answer(status, answer_headers, raw or b"", expect)

    async def upload(
        self, path: str, fields: Mapping[str, str], file: Path, filename: str | None = None
    ) -> Answer:
        """POST ``file`` as multipart form data (streamed from disk, never loaded) with these
        form fields; the JSON answer, or an ApiError subclass as ``request`` raises."""
        assert self._session is not None, "use Http as an async context manager"
        with file.open("rb") as content:
            form = aiohttp.FormData()
            for name, value in fields.items():
                form.add_field(name, value)
            name = filename or file.name
            form.add_field("file", content, filename=name, content_type="application/jsonl")
            payload = form()  # the session's JSON content type must not hide the boundary
            headers = {"Content-Type": payload.content_type}
            return await self._exchange("POST", path, payload, headers, None)

    async def download(self, path: str, into: Path) -> int:
        """GET ``path`` streamed into the file ``into`` (whatever its size: memory holds one
        chunk); its byte count. An error answer raises as ``request`` does."""
        answer = await self._exchange("GET", path, None, None, into)
        return int(answer.data)

    async def _exchange(
        self,
        method: str,
        path: str,
        data: Any,
        headers: Mapping[str, str] | None,
        into: Path | None,
    ) -> Answer:
        assert self._session is not None, "use Http as an async context manager"
        with self._connection_errors("the request"):
            async with self._session.request(
                method, self.base_url + path, data=data, headers=headers, timeout=self._streamed
            ) as response:
                status, answer_headers = response.status, response.headers
                if status < 300 and into is not None:
                    size = 0
                    with into.open("wb") as out:
                        async for chunk in response.content.iter_chunked(READ_CHUNK_BYTES):
                            out.write(chunk)
                            size += len(chunk)
                    return Answer(status, answer_headers, size)
                raw = await _read_capped(response, MAX_ERROR_BODY_BYTES) or b""
        return self._answer(status, answer_headers, raw, "json")

    def _answer(self, status: int, headers: Mapping[str, str], raw: bytes, expect: str) -> Answer:
        """A read answer, redacted: its error class, its bytes or its parsed JSON."""
        raw = self._redact_body(raw)
        if status >= 300:
            error = error_for(status, headers, raw)
            for name in ("message", "error_type", "error_code", "param"):
                value = getattr(error, name)
                if isinstance(value, str):
                    setattr(error, name, self.redact(value))
            raise error
        if expect == "bytes":
            return Answer(status, headers, raw)
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise TransientApiError(
                f"HTTP {status} with a body that is not JSON ({len(raw)} bytes)",
                http_status=status,
                error_type="malformed_response",
            ) from None
        return Answer(status, headers, parsed)

    @contextlib.contextmanager
    def _connection_errors(self, what: str) -> Iterator[None]:
        """A timeout or a connection error as a TransientApiError whose text has no key."""
        try:
            yield
        except TimeoutError:
            raise TransientApiError(f"{what} timed out", error_type="timeout") from None
        except aiohttp.ClientError as exc:
            raise TransientApiError(
                self.redact(f"connection failed: {type(exc).__name__}: {exc}"),
                error_type="connection",
            ) from None

    def redact_bytes(self, raw: bytes) -> bytes:
        """``raw`` (a line of a downloaded file) with this client's API key replaced."""
        return self._redact_body(raw)

    def redact(self, text: str) -> str:
        """``text`` with this client's API key replaced by a mark."""
        return redact(text, self._secret or "")

    def redact_message(self, text: str) -> str:
        """A socket's message, redacted as a body is: not for a key too short to tell from
        ordinary JSON (base64 audio holds any short string); its error fields are redacted
        whole with ``redact``."""
        if self._secret_in_body is None:
            return text
        return redact(text, self._secret)

    def _redact_body(self, raw: bytes) -> bytes:
        encoded = self._secret_in_body
        if encoded is None or encoded not in raw:
            return raw
        return raw.replace(encoded, _REDACTED_BYTES)


async def _read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes | None:
    """The body, or None once it proves longer than ``cap`` (the connection is then closed).

    A declared Content-Length over the cap is refused before reading; a compressed or chunked
    body is streamed and stops at the cap, so memory never holds more than ``cap`` bytes.
    """
    declared = response.content_length
    if declared is not None and declared > cap:
        response.close()
        return None
    if declared is not None and not response.headers.get("Content-Encoding"):
        return await response.read()  # the fast path: exactly the declared bytes
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(READ_CHUNK_BYTES):
        size += len(chunk)
        if size > cap:
            response.close()
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(status: int, headers: Mapping[str, str], cap: int) -> RejectedApiError:
    declared = headers.get("Content-Length", "")
    size = f"is {int(declared):,} bytes, over" if declared.isdigit() else "went past"
    return RejectedApiError(
        f"the answer body {size} this request's cap of {cap:,} bytes (the most its kind and "
        "input can need); the rest was not read",
        http_status=status,
        error_type="answer_too_large",
    )
