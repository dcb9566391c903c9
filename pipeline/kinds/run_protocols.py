"""How a run row is carried out: the assistants protocol (threads, runs, polling, cancel) and the
responses protocol (one POST /v1/responses built from the same job), with the same result columns.
Each is a flow (``steps.py``): a small state machine whose every step is a request, a note or a
pause, resumable from the ids it noted.

Assistants: ``POST /threads`` with the row's messages, then ``POST /threads/{id}/runs`` with the
CreateRunRequest (every field of it: the one-call thread-and-run request lacks
``additional_instructions``); each id is committed to the journal as soon as it is known, so a
row retried after a crash polls its first run (or adopts the run a crashed attempt started on its
thread) instead of starting a second. A run that needs tool outputs, or outlives
``[run] timeout_s``, is cancelled and becomes an error row.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import RejectedApiError
from pipeline.http import Answer
from pipeline.outcomes import Failure, Outcome, Success
from pipeline.rows import Row
from pipeline.steps import Flow, Note, Pause, Request, Step, one_request

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

Steps = Generator[Step, Any, dict[str, Any]]  # a part of a flow that ends with a run object


def _assistants(method: str, path: str, body: Any = None, tokens: int = 1) -> Request:
    return Request(method, path, body, tokens=tokens, headers=BETA)


def run_on_assistants(item: Row, settings: RunSettings) -> Flow:
    """Thread, run, polls, messages; each id noted as soon as it is known."""
    progress = dict(item.progress or {})
    try:
        if "thread_id" not in progress:
            messages = {"messages": item.payload["messages"]}
            thread: Answer = yield _assistants("POST", "/threads", messages, item.tokens)
            progress["thread_id"] = thread.data["id"]
            yield Note(item.key, dict(progress))
        thread_id = progress["thread_id"]
        if "run_id" in progress:
            run = yield from _get(thread_id, progress["run_id"])
        else:
            run = yield from _start(item, thread_id, resumed=item.progress is not None)
            progress["run_id"] = run["id"]
            yield Note(item.key, dict(progress))
    except RejectedApiError as error:
        return [Failure.from_api(error)]
    run = yield from _wait(run, settings)
    return [(yield from _outcome(run))]


def _start(item: Row, thread_id: str, *, resumed: bool) -> Steps:
    """Start the row's run, or adopt the one a crashed attempt started but did not record."""
    if resumed:
        listed = yield _assistants("GET", f"/threads/{thread_id}/runs?limit=1")
        if listed.data.get("data"):
            return dict(listed.data["data"][0])
    body = dict(item.payload["run"])
    body.pop("stream", None)  # answered whole: polling is what survives a crash
    answer = yield _assistants("POST", f"/threads/{thread_id}/runs", body)
    return dict(answer.data)


def _get(thread_id: str, run_id: str) -> Steps:
    answer = yield _assistants("GET", f"/threads/{thread_id}/runs/{run_id}")
    return dict(answer.data)


def _wait(run: dict[str, Any], settings: RunSettings) -> Steps:
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
            run = yield from _cancel(run)
            deadline = time.monotonic() + CANCEL_GRACE_S
            if run["status"] in TERMINAL:
                break
        elif reason is not None and time.monotonic() > deadline:
            break  # the server never finished cancelling: report what we saw
        yield Pause(interval)
        interval = min(interval * POLL_GROWTH, settings.poll_max_interval_s)
        run = yield from _get(run["thread_id"], run["id"])
    run["_stopped_because"] = reason
    return run


def _cancel(run: dict[str, Any]) -> Steps:
    path = f"/threads/{run['thread_id']}/runs/{run['id']}/cancel"
    try:
        answer = yield _assistants("POST", path)
    except RejectedApiError:  # it ended meanwhile: read what it became
        return (yield from _get(run["thread_id"], run["id"]))
    return dict(answer.data)


def _outcome(run: dict[str, Any]) -> Generator[Step, Any, Outcome]:
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
    answer = yield _assistants(
        "GET", f"/threads/{run['thread_id']}/messages?run_id={run['id']}&order=asc&limit=100"
    )
    texts = [
        part["text"]["value"]
        for message in answer.data.get("data", [])
        if message.get("role") == "assistant"
        for part in message.get("content", [])
        if part.get("type") == "text"
    ]
    usage = run.get("usage") or {}
    return _success(
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


def run_on_responses(item: Row, settings: RunSettings) -> Flow:
    """One POST /v1/responses."""
    run = item.payload["run"]
    body = responses_body(run, item.payload["messages"], settings.assistants[run["assistant_id"]])
    request = Request("POST", "/responses", body, tokens=item.tokens)
    return (yield from one_request(request, _response_outcome))


def _response_outcome(answer: Answer) -> Outcome:
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
    return _success(
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


USAGE_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")  # summed in summary.json


def _success(columns: dict[str, Any]) -> Success:
    return Success(columns, {name: columns.get(name) or 0 for name in USAGE_COUNTS})


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
