"""The answer engine of runs and responses: a deterministic local responder, or a delegate.

Locally, an answer is made from the last user message and the instructions, says that it is
local, and is the same for the same question every time. With ``chat_completions_url`` set,
``{model, messages}`` (and temperature / top_p when given) are POSTed to that chat-completions
endpoint and its first choice is the answer; any failure there (connection, status, shape)
becomes a failed answer with a RunObject ``last_error`` code. Either way the answer is cut at
the request's token limit (``facts.estimate_tokens``: four characters a token), and says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web

from pipeline.emulator.config import EmulatorConfig

MODEL: Final[str] = "local/responder"
_TIMEOUT_S: Final[float] = 120.0
_JSON_FORMATS: Final[frozenset[str]] = frozenset({"json_object", "json_schema"})


@dataclass(frozen=True)
class Prompt:
    """What an answer is made from: instructions, (role, text) messages, limits."""

    instructions: str
    messages: Sequence[tuple[str, str]]
    model: str = MODEL
    max_tokens: int | None = None
    response_format: str = "text"  # "text", "json_object" or "json_schema"
    sampling: dict[str, float] = field(default_factory=dict)  # temperature, top_p when given
    tool_outputs: Sequence[str] = ()

    @property
    def question(self) -> str:
        """The last user message (empty when there is none)."""
        return next((text for role, text in reversed(self.messages) if role == "user"), "")


@dataclass(frozen=True)
class Answer:
    """An answer (cut to the token limit: ``truncated``), or a failure (``error`` code, text)."""

    text: str = ""
    truncated: bool = False
    error: tuple[str, str] | None = None


def local_text(prompt: Prompt) -> str:
    """The local responder's full answer: deterministic, and labelled local."""
    question = prompt.question or "(no user message)"
    parts = [
        f'(local emulator) You asked: "{question}". A deterministic answer: this reply was '
        "made offline by the local responder, not by a model, and the same question always "
        "gets it."
    ]
    if prompt.instructions:
        parts.append(f'Instructions noted: "{prompt.instructions}".')
    if prompt.tool_outputs:
        parts.append(f"Tool outputs received: {'; '.join(prompt.tool_outputs)}.")
    text = " ".join(parts)
    if prompt.response_format in _JSON_FORMATS:
        return orjson.dumps({"local_emulator": True, "question": question, "answer": text}).decode()
    return text


def cut(text: str, max_tokens: int | None) -> Answer:
    """``text`` cut to ``max_tokens`` (about four characters a token)."""
    if max_tokens is None or len(text) <= max_tokens * 4:
        return Answer(text)
    return Answer(text[: max_tokens * 4], truncated=True)


class Responder:
    """Answers prompts, locally or through ``chat_completions_url`` (one shared HTTP session)."""

    def __init__(self, url: str | None = None, model: str | None = None) -> None:
        self.url = url
        self.model = model
        self._session: aiohttp.ClientSession | None = None

    @property
    def delegating(self) -> bool:
        return self.url is not None

    def local(self, prompt: Prompt) -> Answer:
        """The local answer, cut to the limit; never fails."""
        return cut(local_text(prompt), prompt.max_tokens)

    async def answer(self, prompt: Prompt) -> Answer:
        """The delegate's answer when delegating, else the local one."""
        if self.url is None:
            return self.local(prompt)
        try:
            return cut(await self._delegate(self.url, prompt), prompt.max_tokens)
        except _DelegateError as exc:
            return Answer(error=(exc.code, f"{exc} (local emulator: delegated answer)"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = f"the chat-completions server failed: {type(exc).__name__} {exc}".strip()
            return Answer(error=("server_error", f"{message} (local emulator: delegated answer)"))

    async def _delegate(self, url: str, prompt: Prompt) -> str:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_TIMEOUT_S))
        messages: list[dict[str, str]] = []
        system = prompt.instructions
        if prompt.tool_outputs:
            system = f"{system}\nTool outputs: {'; '.join(prompt.tool_outputs)}".strip()
        if system:
            messages.append({"role": "system", "content": system})
        messages += [
            {"role": "system" if role == "developer" else role, "content": text}
            for role, text in prompt.messages
        ]
        body: dict[str, Any] = {"model": self.model or prompt.model, "messages": messages}
        body.update(prompt.sampling)
        async with self._session.post(url, json=body) as response:
            raw = await response.read()
            if response.status >= 400:
                code = "rate_limit_exceeded" if response.status == 429 else "server_error"
                detail = raw[:200].decode("utf-8", "replace")
                raise _DelegateError(
                    code, f"the chat-completions server answered {response.status}: {detail}"
                )
        try:
            content = orjson.loads(raw)["choices"][0]["message"]["content"]
        except (orjson.JSONDecodeError, LookupError, TypeError):
            content = None
        if not isinstance(content, str):
            raise _DelegateError(
                "server_error", "the chat-completions server answered without a message content"
            )
        return content

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _DelegateError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


RESPONDER = web.AppKey("responder", Responder)


def register(app: web.Application, config: EmulatorConfig) -> None:
    """Put the app's Responder on it (threads and responses share it); no routes of its own."""
    responder = Responder(config.chat_completions_url, config.chat_completions_model)
    app[RESPONDER] = responder

    async def session(_: web.Application) -> AsyncIterator[None]:
        yield
        await responder.close()

    app.cleanup_ctx.append(session)
