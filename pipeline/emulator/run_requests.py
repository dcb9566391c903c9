"""The Assistants request bodies as checks: CreateThreadRequest, CreateMessageRequest,
CreateRunRequest, CreateThreadAndRunRequest and SubmitToolOutputsRunRequest.

Each mirrors its schema in ``shared/openai-spec`` (no unknown top-level fields, types, enums,
ranges, ``tools`` <= 20, ``max_*_tokens`` >= 256, a file_search resource naming exactly one of
its two lists) plus the prose limits on metadata and function names; see ``checks``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pipeline.emulator import checks as c
from pipeline.emulator.checks import Check

_DETAIL = c.choice("auto", "low", "high")
_CONTENT_PART = c.tagged(
    {
        "text": c.obj({"text": c.string()}, required=("text",)),
        "image_url": c.obj(
            {"image_url": c.obj({"url": c.string(), "detail": _DETAIL}, required=("url",))},
            required=("image_url",),
        ),
        "image_file": c.obj(
            {
                "image_file": c.obj(
                    {"file_id": c.string(), "detail": _DETAIL}, required=("file_id",)
                )
            },
            required=("image_file",),
        ),
    }
)
_ATTACHMENT = c.obj(
    {
        "file_id": c.string(),
        "tools": c.array(c.tagged({"code_interpreter": c.anything, "file_search": c.anything})),
    }
)
MESSAGE_FIELDS: Final[Mapping[str, Check]] = {
    "role": c.choice("user", "assistant"),
    "content": c.by_type(
        "a string or an array of content parts",
        string=c.string(),
        array=c.array(_CONTENT_PART, min_items=1),
    ),
    "attachments": c.nullable(c.array(_ATTACHMENT)),
    "metadata": c.metadata,
}
MESSAGE_REQUIRED: Final[tuple[str, ...]] = ("role", "content")
_MESSAGE = c.obj(MESSAGE_FIELDS, required=MESSAGE_REQUIRED, closed=True)

_FUNCTION = c.obj(
    {
        "name": c.FUNCTION_NAME,
        "description": c.string(),
        "parameters": c.obj({}),
        "strict": c.OPTIONAL_BOOLEAN,
    },
    required=("name",),
)
_FILE_SEARCH = c.obj(
    {
        "max_num_results": c.number(minimum=1, maximum=50, integer=True),
        "ranking_options": c.obj(
            {
                "ranker": c.choice("auto", "default_2024_08_21"),
                "score_threshold": c.number(minimum=0, maximum=1),
            },
            required=("score_threshold",),
        ),
    }
)
_TOOLS = c.nullable(
    c.array(
        c.tagged(
            {
                "code_interpreter": c.anything,
                "file_search": c.obj({"file_search": _FILE_SEARCH}),
                "function": c.obj({"function": _FUNCTION}, required=("function",)),
            }
        ),
        max_items=20,
    )
)
_TOOL_CHOICE = c.nullable(
    c.by_type(
        "a string or an object",
        string=c.choice("none", "auto", "required"),
        object=c.obj(
            {
                "type": c.choice("function", "code_interpreter", "file_search"),
                "function": c.obj({"name": c.string()}, required=("name",)),
            },
            required=("type",),
        ),
    )
)
_JSON_SCHEMA = c.obj(
    {
        "name": c.FUNCTION_NAME,
        "description": c.string(),
        "schema": c.obj({}),
        "strict": c.OPTIONAL_BOOLEAN,
    },
    required=("name",),
)
_RESPONSE_FORMAT = c.nullable(
    c.by_type(
        "'auto' or an object",
        string=c.choice("auto"),
        object=c.tagged(
            {
                "text": c.anything,
                "json_object": c.anything,
                "json_schema": c.obj({"json_schema": _JSON_SCHEMA}, required=("json_schema",)),
            }
        ),
    )
)
_TRUNCATION = c.nullable(
    c.obj(
        {
            "type": c.choice("auto", "last_messages"),
            "last_messages": c.nullable(c.number(minimum=1, integer=True)),
        },
        required=("type",),
    )
)
_TOKENS = c.nullable(c.number(minimum=256, integer=True))
_FILE_IDS = c.array(c.string(), max_items=20)
_CHUNKING = c.tagged(
    {
        "auto": c.obj({"type": c.anything}, closed=True),
        "static": c.obj(
            {
                "type": c.anything,
                "static": c.obj(
                    {
                        "max_chunk_size_tokens": c.number(minimum=100, maximum=4096, integer=True),
                        "chunk_overlap_tokens": c.number(integer=True),
                    },
                    required=("max_chunk_size_tokens", "chunk_overlap_tokens"),
                    closed=True,
                ),
            },
            required=("static",),
            closed=True,
        ),
    }
)
_VECTOR_STORE = c.obj(
    {
        "file_ids": c.array(c.string()),
        "chunking_strategy": _CHUNKING,
        "metadata": c.metadata,
    }
)
_THREAD_FILE_SEARCH = c.obj(
    {
        "vector_store_ids": c.array(c.string(), max_items=1),
        "vector_stores": c.array(_VECTOR_STORE, max_items=1),
    }
)


def _thread_file_search(value: Any, path: str) -> None:
    _THREAD_FILE_SEARCH(value, path)
    if ("vector_store_ids" in value) == ("vector_stores" in value):
        raise c.fail(
            path,
            f"Invalid '{path}': give exactly one of 'vector_store_ids' and 'vector_stores'.",
            "invalid_value",
        )


THREAD_FIELDS: Final[Mapping[str, Check]] = {
    "messages": c.array(_MESSAGE),
    "tool_resources": c.nullable(
        c.obj(
            {"code_interpreter": c.obj({"file_ids": _FILE_IDS}), "file_search": _thread_file_search}
        )
    ),
    "metadata": c.metadata,
}
_COMMON_RUN_FIELDS: Final[Mapping[str, Check]] = {
    "assistant_id": c.string(),
    "model": c.OPTIONAL_STRING,
    "instructions": c.OPTIONAL_STRING,
    "tools": _TOOLS,
    "metadata": c.metadata,
    "temperature": c.TEMPERATURE,
    "top_p": c.TOP_P,
    "stream": c.OPTIONAL_BOOLEAN,
    "max_prompt_tokens": _TOKENS,
    "max_completion_tokens": _TOKENS,
    "truncation_strategy": _TRUNCATION,
    "tool_choice": _TOOL_CHOICE,
    "parallel_tool_calls": c.boolean,
    "response_format": _RESPONSE_FORMAT,
}
RUN_FIELDS: Final[Mapping[str, Check]] = {
    **_COMMON_RUN_FIELDS,
    "reasoning_effort": c.nullable(
        c.choice("none", "minimal", "low", "medium", "high", "xhigh", "max")
    ),
    "additional_instructions": c.OPTIONAL_STRING,
    "additional_messages": c.nullable(c.array(_MESSAGE)),
}
THREAD_AND_RUN_FIELDS: Final[Mapping[str, Check]] = {
    **_COMMON_RUN_FIELDS,
    "thread": c.obj(THREAD_FIELDS, closed=True),
    "tool_resources": c.nullable(
        c.obj(
            {
                "code_interpreter": c.obj({"file_ids": _FILE_IDS}),
                "file_search": c.obj({"vector_store_ids": c.array(c.string(), max_items=1)}),
            }
        )
    ),
}
RUN_REQUIRED: Final[tuple[str, ...]] = ("assistant_id",)
TOOL_OUTPUTS_FIELDS: Final[Mapping[str, Check]] = {
    "tool_outputs": c.array(c.obj({"tool_call_id": c.string(), "output": c.string()})),
    "stream": c.OPTIONAL_BOOLEAN,
}


def check_thread(body: dict[str, Any]) -> None:
    c.body(body, THREAD_FIELDS, ())


def check_message(body: dict[str, Any]) -> None:
    c.body(body, MESSAGE_FIELDS, MESSAGE_REQUIRED)


def check_run(body: dict[str, Any]) -> None:
    c.body(body, RUN_FIELDS, RUN_REQUIRED)


def check_thread_and_run(body: dict[str, Any]) -> None:
    c.body(body, THREAD_AND_RUN_FIELDS, RUN_REQUIRED)


def check_tool_outputs(body: dict[str, Any]) -> None:
    c.body(body, TOOL_OUTPUTS_FIELDS, ("tool_outputs",))
