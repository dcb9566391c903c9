"""How a run row is carried out: the assistants protocol (threads, runs, polling, cancel) and the
responses protocol (one POST /v1/responses built from the same job), with the same result columns.

Assistants: ``POST /threads`` with the row's messages, then ``POST /threads/{id}/runs`` with the
CreateRunRequest (every field of it: the one-call thread-and-run request lacks
``additional_instructions``); each id is committed to the journal as soon as it is known, so a
row retried after a crash polls its first run (or adopts the run a crashed attempt started on its
thread) instead of starting a second. A run that needs tool outputs, or outlives
``[run] timeout_s``, is cancelled and becomes an error row.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.api import Call
from pipeline.errors import RejectedApiError
from pipeline.kinds.base import Item
from pipeline.outcomes import Failure, Outcome, Success

BETA = {"OpenAI-Beta": "assistants=v2"}
TERMINAL = frozenset({"completed", "failed", "cancelled", "expired", "incomplete"})
ASSISTANT_FIELDS = ("model", "instructions", "tools", "temperature", "top_p", "response_format")
CANCEL_GRACE_S = 60.0  # how long a cancelled run may take to settle
POLL_GROWTH = 1.5


@dataclass(frozen=True)
class RunSettings:
    protocol: str
    timeout_s: float
    poll_interval_s: float
    poll_max_interval_s: float
    assistants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


# -- assistants ---------------------------------------------------------------------------------


async def run_on_assistants(call: Call, item: Item, settings: RunSettings) -> Outcome:
    progress = dict(item.progress or {})
    try:
        if "thread_id" not in progress:
            thread = await call.request(
                "POST",
                "/threads",
                {"messages": item.payload["messages"]},
                tokens=item.tokens,
                headers=BETA,
            )
            progress["thread_id"] = thread.data["id"]
            await call.note(item.key, progress)
        thread_id = progress["thread_id"]
        if "run_id" in progress:
            run = await _get(call, thread_id, progress["run_id"])
        else:
            run = await _start(call, item, thread_id, resumed=item.progress is not None)
            progress["run_id"] = run["id"]
            await call.note(item.key, progress)
    except RejectedApiError as error:
        return Failure.from_api(error)
    run = await _wait(call, run, settings)
    return await _outcome(call, run)


async def _start(call: Call, item: Item, thread_id: str, *, resumed: bool) -> dict[str, Any]:
    """Start the row's run, or adopt the one a crashed attempt started but did not record."""
    if resumed:
        listed = await call.request("GET", f"/threads/{thread_id}/runs?limit=1", headers=BETA)
        if listed.data.get("data"):
            return dict(listed.data["data"][0])
    body = dict(item.payload["run"])
    body.pop("stream", None)  # answered whole: polling is what survives a crash
    answer = await call.request("POST", f"/threads/{thread_id}/runs", body, headers=BETA)
    return dict(answer.data)


async def _get(call: Call, thread_id: str, run_id: str) -> dict[str, Any]:
    answer = await call.request("GET", f"/threads/{thread_id}/runs/{run_id}", headers=BETA)
    return dict(answer.data)


async def _wait(call: Call, run: dict[str, Any], settings: RunSettings) -> dict[str, Any]:
    """Poll with growing intervals until the run ends; cancel it when it outlives the limit or
    needs tool outputs (which a pipeline cannot give).

    The limit runs on the local monotonic clock from when this attempt started waiting, never
    from the server's ``created_at``: a client clock ahead of the server's would time every run
    out at once (a run adopted after a crash gets a full ``timeout_s`` again)."""
    deadline = time.monotonic() + settings.timeout_s
    interval = settings.poll_interval_s
    reason = None
    while run["status"] not in TERMINAL:
        if reason is None and run["status"] == "requires_action":
            reason = "requires_action"
        elif reason is None and time.monotonic() > deadline:
            reason = "timeout"
        if reason is not None and run["status"] not in ("cancelling",):
            run = await _cancel(call, run)
            deadline = time.monotonic() + CANCEL_GRACE_S
            if run["status"] in TERMINAL:
                break
        elif reason is not None and time.monotonic() > deadline:
            break  # the server never finished cancelling: report what we saw
        await call.sleep(interval)
        interval = min(interval * POLL_GROWTH, settings.poll_max_interval_s)
        run = await _get(call, run["thread_id"], run["id"])
    run["_stopped_because"] = reason
    return run


async def _cancel(call: Call, run: dict[str, Any]) -> dict[str, Any]:
    path = f"/threads/{run['thread_id']}/runs/{run['id']}/cancel"
    try:
        answer = await call.request("POST", path, headers=BETA)
    except RejectedApiError:  # it ended meanwhile: read what it became
        return await _get(call, run["thread_id"], run["id"])
    return dict(answer.data)


async def _outcome(call: Call, run: dict[str, Any]) -> Outcome:
    status, reason = run["status"], run.get("_stopped_because")
    where = f"run {run['id']} on thread {run['thread_id']}"
    if reason == "requires_action":
        return Failure(
            "run",
            "requires_action",
            f"{where} required action (function tool "
            f"outputs), which a pipeline cannot give; it was cancelled ({status})",
        )
    if reason == "timeout":
        return Failure(
            "run", "timeout", f"{where} outlived [run] timeout_s and was cancelled ({status})"
        )
    if status != "completed":
        error = run.get("last_error") or {}
        details = run.get("incomplete_details") or {}
        message = error.get("message") or details.get("reason") or status
        return Failure(
            "run",
            status,
            f"{where} ended {status}: {message}",
            error_code=error.get("code") or details.get("reason"),
        )
    answer = await call.request(
        "GET",
        f"/threads/{run['thread_id']}/messages?run_id={run['id']}&order=asc&limit=100",
        headers=BETA,
    )
    texts = [
        part["text"]["value"]
        for message in answer.data.get("data", [])
        if message.get("role") == "assistant"
        for part in message.get("content", [])
        if part.get("type") == "text"
    ]
    usage = run.get("usage") or {}
    return Success(
        {
            "thread_id": run["thread_id"],
            "run_id": run["id"],
            "status": status,
            "output_text": "\n\n".join(texts),
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
            "total_tokens": usage.get("total_tokens"),
            "incomplete_reason": None,
            "model": run.get("model"),
        }
    )


# -- responses ----------------------------------------------------------------------------------


def unmapped_fields(request: Mapping[str, Any], messages: list[dict[str, Any]]) -> list[str]:
    """Fields of the job that the responses protocol has no equivalent for."""
    found = [name for name in ("max_prompt_tokens",) if name in request]
    strategy = request.get("truncation_strategy")
    if isinstance(strategy, dict) and strategy.get("type") == "last_messages":
        found.append("truncation_strategy.last_messages")
    if any("attachments" in message for message in messages):
        found.append("messages[].attachments")
    if any("metadata" in message for message in messages):
        found.append("messages[].metadata")
    return found


async def run_on_responses(call: Call, item: Item, settings: RunSettings) -> Outcome:
    run = item.payload["run"]
    body = responses_body(run, item.payload["messages"], settings.assistants[run["assistant_id"]])
    try:
        answer = await call.post("/responses", body, tokens=item.tokens)
    except RejectedApiError as error:
        return Failure.from_api(error)
    response = answer.data
    status = response.get("status")
    if status != "completed":
        failure = response.get("error") or {}
        details = response.get("incomplete_details") or {}
        message = failure.get("message") or details.get("reason") or str(status)
        return Failure(
            "run",
            str(status),
            f"response {response.get('id')} ended {status}: {message}",
            error_code=failure.get("code") or details.get("reason"),
        )
    texts = [
        part.get("text", "")
        for output in response.get("output", [])
        if output.get("type") == "message"
        for part in output.get("content", [])
        if part.get("type") == "output_text"
    ]
    usage = response.get("usage") or {}
    return Success(
        {
            "thread_id": None,
            "run_id": response.get("id"),
            "status": status,
            "output_text": "\n\n".join(texts),
            "prompt_tokens": usage.get("input_tokens"),
            "completion_tokens": usage.get("output_tokens"),
            "total_tokens": usage.get("total_tokens"),
            "incomplete_reason": None,
            "model": response.get("model"),
        }
    )


def responses_body(
    run: Mapping[str, Any], messages: list[dict[str, Any]], assistant: Mapping[str, Any]
) -> dict[str, Any]:
    """A CreateRunRequest (and its thread's messages) as a Responses API request."""
    instructions = run.get("instructions", assistant.get("instructions"))
    if run.get("additional_instructions"):
        instructions = "\n\n".join(filter(None, [instructions, run["additional_instructions"]]))
    items = [*messages, *(run.get("additional_messages") or [])]
    body: dict[str, Any] = {
        "model": run.get("model") or assistant["model"],
        "input": [{"role": m["role"], "content": _content(m["content"])} for m in items],
        "store": False,
    }
    if instructions:
        body["instructions"] = instructions
    for name in ("temperature", "top_p"):
        value = run.get(name, assistant.get(name))
        if value is not None:
            body[name] = value
    tools = run.get("tools", assistant.get("tools"))
    if tools:
        body["tools"] = [_tool(tool) for tool in tools]
    if run.get("max_completion_tokens") is not None:
        body["max_output_tokens"] = run["max_completion_tokens"]
    if run.get("reasoning_effort") is not None:
        body["reasoning"] = {"effort": run["reasoning_effort"]}
    response_format = run.get("response_format", assistant.get("response_format"))
    if isinstance(response_format, dict):
        body["text"] = {"format": _text_format(response_format)}
    strategy = run.get("truncation_strategy")
    if isinstance(strategy, dict) and strategy.get("type") == "auto":
        body["truncation"] = "auto"
    for name in ("metadata", "parallel_tool_calls"):
        if run.get(name) is not None:
            body[name] = run[name]
    choice = run.get("tool_choice")
    if isinstance(choice, str):
        body["tool_choice"] = choice
    elif isinstance(choice, dict) and choice.get("type") == "function":
        body["tool_choice"] = {"type": "function", "name": choice["function"]["name"]}
    return body


def _content(content: Any) -> Any:
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if part.get("type") == "text":
            parts.append({"type": "input_text", "text": part["text"]})
        elif part.get("type") == "image_url":
            parts.append({"type": "input_image", "image_url": part["image_url"]["url"]})
        elif part.get("type") == "image_file":
            parts.append({"type": "input_image", "file_id": part["image_file"]["file_id"]})
    return parts


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    if tool.get("type") == "function":
        return {"type": "function", **tool["function"]}
    return dict(tool)


def _text_format(response_format: Mapping[str, Any]) -> dict[str, Any]:
    if response_format.get("type") == "json_schema":
        return {"type": "json_schema", **response_format.get("json_schema", {})}
    return dict(response_format)
