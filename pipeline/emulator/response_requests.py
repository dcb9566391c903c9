"""CreateResponse (POST /v1/responses) as checks, and its input turned into (role, text) turns.

Every field of the spec's CreateResponse is known (any other is refused, as the API does).
Checked closely: ``model`` (required), ``input`` (a string, or messages - content a string or
``input_text`` / ``input_image`` / ``input_file`` / ``output_text`` / ``refusal`` parts - and
``function_call`` / ``function_call_output`` items), ``instructions``, ``temperature`` 0-2,
``top_p`` 0-1, ``max_output_tokens`` >= 16, ``reasoning``, ``text.format``, ``truncation``,
``tools`` (function tools in full, hosted tools by type), ``tool_choice``, ``metadata``,
``store``, ``background``, ``previous_response_id``, ``stream``, ``parallel_tool_calls``.
The rest (``include``, ``service_tier``, ``user``, caching options ...) is checked for type or
accepted as sent. What cannot be emulated is refused by the route, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pipeline.emulator import checks as c
from pipeline.emulator.checks import Check

_EFFORTS: Final[tuple[str, ...]] = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
_HOSTED_TOOLS: Final[tuple[str, ...]] = (
    "file_search",
    "computer",
    "computer_use_preview",
    "web_search",
    "web_search_2025_08_26",
    "mcp",
    "code_interpreter",
    "programmatic_tool_calling",
    "image_generation",
    "local_shell",
    "shell",
    "custom",
    "namespace",
    "tool_search",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "apply_patch",
)
_INCLUDE = c.choice(
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
)
_PART = c.tagged(
    {
        "input_text": c.obj({"text": c.string()}, required=("text",)),
        "input_image": c.obj(
            {
                "image_url": c.OPTIONAL_STRING,
                "file_id": c.OPTIONAL_STRING,
                "detail": c.choice("low", "high", "auto", "original"),
            }
        ),
        "input_file": c.obj(
            {
                "file_id": c.OPTIONAL_STRING,
                "filename": c.string(),
                "file_data": c.string(),
                "file_url": c.string(),
            }
        ),
        "output_text": c.obj(
            {"text": c.string(), "annotations": c.array(c.anything)}, required=("text",)
        ),
        "refusal": c.obj({"refusal": c.string()}, required=("refusal",)),
    }
)
_CONTENT = c.by_type(
    "a string or an array of content parts", string=c.string(), array=c.array(_PART)
)
_ITEMS: Final[Mapping[str, Check]] = {
    "message": c.obj(
        {"role": c.choice("user", "assistant", "system", "developer"), "content": _CONTENT},
        required=("role", "content"),
    ),
    "function_call": c.obj(
        {"call_id": c.string(), "name": c.string(), "arguments": c.string()},
        required=("call_id", "name", "arguments"),
    ),
    "function_call_output": c.obj(
        {"call_id": c.string(max_length=64), "output": _CONTENT}, required=("call_id", "output")
    ),
}


def _input_item(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise c.wrong_type(path, "an object", value)
    kind = value.get("type", "message")
    if not isinstance(kind, str):
        raise c.wrong_type(f"{path}.type", "a string", kind)
    check = _ITEMS.get(kind)
    if check is None:
        raise c.fail(
            f"{path}.type",
            f"Input items of type '{kind}' are not emulated; the local emulator takes "
            "'message', 'function_call' and 'function_call_output' items.",
            "unsupported_value",
        )
    check(value, path)


_FUNCTION_TOOL = c.obj(
    {
        "name": c.FUNCTION_NAME,
        "description": c.OPTIONAL_STRING,
        "parameters": c.nullable(c.obj({})),
        "strict": c.OPTIONAL_BOOLEAN,
    },
    required=("name",),
)
_TOOL_CHOICE = c.by_type(
    "a string or an object",
    string=c.choice("none", "auto", "required"),
    object=c.tagged(
        {
            "function": c.obj({"name": c.string()}, required=("name",)),
            "allowed_tools": c.obj(
                {"mode": c.choice("auto", "required"), "tools": c.array(c.obj({}))},
                required=("mode", "tools"),
            ),
            **dict.fromkeys(_HOSTED_TOOLS, c.anything),
        }
    ),
)
_FORMAT = c.tagged(
    {
        "text": c.anything,
        "json_object": c.anything,
        "json_schema": c.obj(
            {
                "name": c.FUNCTION_NAME,
                "schema": c.obj({}),
                "strict": c.OPTIONAL_BOOLEAN,
                "description": c.string(),
            },
            required=("name", "schema"),
        ),
    }
)
RESPONSE_FIELDS: Final[Mapping[str, Check]] = {
    "model": c.string(),
    "input": c.by_type(
        "a string or an array of input items", string=c.string(), array=c.array(_input_item)
    ),
    "instructions": c.OPTIONAL_STRING,
    "temperature": c.TEMPERATURE,
    "top_p": c.TOP_P,
    "max_output_tokens": c.nullable(c.number(minimum=16, integer=True)),
    "reasoning": c.nullable(
        c.obj(
            {
                "effort": c.nullable(c.choice(*_EFFORTS)),
                "summary": c.nullable(c.choice("auto", "concise", "detailed")),
                "generate_summary": c.nullable(c.choice("auto", "concise", "detailed")),
                "context": c.nullable(c.choice("auto", "current_turn", "all_turns")),
                "mode": c.string(),
            }
        )
    ),
    "text": c.obj({"format": _FORMAT, "verbosity": c.nullable(c.choice("low", "medium", "high"))}),
    "truncation": c.nullable(c.choice("auto", "disabled")),
    "tools": c.array(
        c.tagged({"function": _FUNCTION_TOOL, **dict.fromkeys(_HOSTED_TOOLS, c.anything)})
    ),
    "tool_choice": _TOOL_CHOICE,
    "metadata": c.metadata,
    "store": c.OPTIONAL_BOOLEAN,
    "background": c.OPTIONAL_BOOLEAN,
    "previous_response_id": c.OPTIONAL_STRING,
    "stream": c.OPTIONAL_BOOLEAN,
    "parallel_tool_calls": c.OPTIONAL_BOOLEAN,
    "max_tool_calls": c.nullable(c.number(integer=True)),
    "top_logprobs": c.nullable(c.number(minimum=0, maximum=20, integer=True)),
    "include": c.nullable(c.array(_INCLUDE)),
    "service_tier": c.nullable(
        c.choice("auto", "default", "flex", "scale", "priority", "fast", "ultrafast")
    ),
    "user": c.string(),
    "safety_identifier": c.nullable(c.string(max_length=64)),
    "prompt_cache_key": c.OPTIONAL_STRING,
    "prompt_cache_retention": c.nullable(c.choice("in_memory", "24h")),
    "prompt_cache_options": c.anything,
    "stream_options": c.anything,
    "moderation": c.anything,
    "context_management": c.anything,
    "prompt": c.anything,
    "conversation": c.anything,
}


def check_response(body: dict[str, Any]) -> None:
    c.body(body, RESPONSE_FIELDS, ("model",))


def input_turns(
    value: str | list[dict[str, Any]] | None,
) -> tuple[list[tuple[str, str]], list[str]]:
    """A checked ``input`` as (role, text) turns, and the function call outputs it carries."""
    if value is None:
        return [], []
    if isinstance(value, str):
        return [("user", value)], []
    turns: list[tuple[str, str]] = []
    outputs: list[str] = []
    for item in value:
        kind = item.get("type", "message")
        if kind == "message":
            turns.append((item["role"], _text(item["content"])))
        elif kind == "function_call_output":
            outputs.append(_text(item["output"]))
    return turns, outputs


def _text(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    texts = [part.get("text") or part.get("refusal") for part in content]
    return "\n".join(t for t in texts if isinstance(t, str))
