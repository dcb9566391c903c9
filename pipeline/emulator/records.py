"""The records behind the Assistants routes: threads, runs, message objects, prompt fitting.

``Thread`` and ``Run`` are what ``runs.RunStore`` keeps; a run's status is never stored but
computed by its ``Lifecycle``. Helpers here turn request bodies into MessageObject content and
fit a thread into a run's ``max_prompt_tokens``.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from pipeline.emulator.checks import NOTE
from pipeline.emulator.facts import estimate_tokens
from pipeline.emulator.lifecycle import Lifecycle
from pipeline.emulator.replies import ApiReply, error_body
from pipeline.emulator.responder import Answer, Prompt
from pipeline.emulator.stores import apply_answer

RUN_DEFAULTS: Final[dict[str, Any]] = {
    "temperature": 1.0,
    "top_p": 1.0,
    "max_prompt_tokens": None,
    "max_completion_tokens": None,
    "truncation_strategy": {"type": "auto", "last_messages": None},
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "response_format": "auto",
}


def object_id(prefix: str) -> str:
    """An OpenAI-looking id such as ``thread_5f0c...``."""
    return f"{prefix}_{os.urandom(12).hex()}"


def not_found(kind: str, object_id: str) -> ApiReply:
    message = f"No {kind} found with id '{object_id}'. {NOTE}"
    return ApiReply(404, error_body(message, "invalid_request_error"))


def text_content(value: str) -> dict[str, Any]:
    return {"type": "text", "text": {"value": value, "annotations": []}}


def message_text(message: dict[str, Any]) -> str:
    """The text parts of a MessageObject, joined by newlines."""
    return "\n".join(p["text"]["value"] for p in message["content"] if p["type"] == "text")


def content_parts(value: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A CreateMessageRequest ``content`` as MessageObject content (image detail "auto")."""
    if isinstance(value, str):
        return [text_content(value)]
    parts: list[dict[str, Any]] = []
    for part in value:
        kind = part["type"]
        if kind == "text":
            parts.append(text_content(part["text"]))
        else:
            parts.append({"type": kind, kind: {"detail": "auto", **part[kind]}})
    return parts


@dataclass(eq=False)
class Thread:
    id: str
    created_at: int
    metadata: dict[str, str]
    tool_resources: dict[str, Any] | None
    messages: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[str, Run] = field(default_factory=dict)
    open: list[Run] = field(default_factory=list)  # runs not settled yet

    def object(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "thread",
            "created_at": self.created_at,
            "tool_resources": self.tool_resources,
            "metadata": self.metadata,
        }


@dataclass(eq=False)
class Run:
    id: str
    thread: Thread
    assistant_id: str
    model: str
    instructions: str
    tools: list[dict[str, Any]]
    metadata: dict[str, str]
    settings: dict[str, Any]
    life: Lifecycle
    prompt: Prompt
    prompt_tokens: int
    created_at: int
    answer: Answer | None = None
    incomplete: str | None = None  # incomplete_details.reason
    error: tuple[str, str] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    message: dict[str, Any] | None = None  # the assistant's answer, once settled
    task: asyncio.Task[None] | None = None

    def take(self, answer: Answer) -> None:
        apply_answer(self, answer)
        if answer.error is None and self.life.outcome == "incomplete":  # the answer was cut
            self.incomplete = "max_completion_tokens"

    def usage(self) -> dict[str, int] | None:
        if self.answer is None and self.incomplete != "max_prompt_tokens":
            return None
        completion = estimate_tokens(self.answer.text) if self.answer else 0
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }


def fit_prompt(
    instructions: str, messages: list[tuple[str, str]], settings: dict[str, Any]
) -> tuple[list[tuple[str, str]], int, bool]:
    """The messages a run sees (truncation_strategy, then the oldest dropped to fit
    max_prompt_tokens), their token count, and whether they fit."""
    strategy = settings["truncation_strategy"] or {}
    if strategy.get("type") == "last_messages" and strategy.get("last_messages"):
        messages = messages[-strategy["last_messages"] :]
    limit = settings["max_prompt_tokens"]

    def cost(kept: list[tuple[str, str]]) -> int:
        return estimate_tokens("\n".join([instructions, *(text for _, text in kept)]))

    tokens = cost(messages)
    while limit is not None and tokens > limit and len(messages) > 1:
        messages = messages[1:]
        tokens = cost(messages)
    return messages, tokens, limit is None or tokens <= limit


def tool_call(tools: list[dict[str, Any]], question: str) -> dict[str, Any]:
    """The function call a requires_action run asks for (a made-up one without function tools)."""
    names = [tool["function"]["name"] for tool in tools if tool.get("type") == "function"]
    return {
        "id": object_id("call"),
        "type": "function",
        "function": {
            "name": names[0] if names else "local_emulator_tool",
            "arguments": orjson.dumps({"question": question}).decode(),
        },
    }
