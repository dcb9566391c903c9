"""Runs: for each row, a new thread with the row's messages and an assistant run on it.

Messages are CreateMessageRequest bodies (``[[messages]]``), the run a CreateRunRequest
(``[request]``); both are rendered per row and validated against OpenAI's published schemas
(shipped in ``schemas/``) plus the metadata limits the spec states only in prose. The run is
carried out on the ``assistants`` protocol (threads and runs) or the ``responses`` protocol
(``POST /v1/responses`` with assistant definitions from the job file): see
``run_protocols.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import suppress
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pyarrow as pa

from pipeline.errors import JobError, RowError
from pipeline.job import DEFAULT_BASE_URL, JobSpec, resolve_base_url
from pipeline.kinds.run_protocols import (
    ASSISTANT_FIELDS,
    RunSettings,
    run_on_assistants,
    run_on_responses,
    unmapped_fields,
)
from pipeline.rows import Row
from pipeline.steps import Flow
from pipeline.templates import Template, as_text, compile_template
from pipeline.tokens import estimate_tokens

PROTOCOLS = ("assistants", "responses")
RUN_OPTIONS = ("protocol", "timeout_s", "poll_interval_s", "poll_max_interval_s")
MIN_POLL_S = 0.01  # polling faster only loads the server: a run is never that quick
METADATA_PAIRS, METADATA_KEY_CHARS, METADATA_VALUE_CHARS = 16, 64, 512
NUMBERS = {
    "temperature": float,
    "top_p": float,
    "max_prompt_tokens": int,
    "max_completion_tokens": int,
}
TEXT_FIELDS = ("instructions", "additional_instructions")  # a number there is sent as its text
_SCHEMAS = Path(__file__).with_name("schemas")


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((_SCHEMAS / f"{name}.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


class Run:
    name: ClassVar[str] = "run"
    sections: ClassVar[tuple[str, ...]] = ("messages", "run", "assistants")
    result_schema: ClassVar[pa.Schema] = pa.schema(
        [
            ("thread_id", pa.string()),
            ("run_id", pa.string()),
            ("status", pa.string()),
            ("output_text", pa.string()),
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
            ("total_tokens", pa.int64()),
            ("incomplete_reason", pa.string()),
            ("model", pa.string()),
        ]
    )
    rows_per_request = 1

    def __init__(self, job: JobSpec) -> None:
        where = str(job.path)
        messages = _checked_messages(job, where)
        self.settings = _settings(job, where)
        protocol = self.settings.protocol
        try:
            self.messages: list[Template] = [
                compile_template(m, f"messages[{i}]") for i, m in enumerate(messages)
            ]
            self.request = compile_template(job.request)
        except ValueError as exc:
            raise JobError(str(exc), path=where, field="messages / request") from None
        for index, template in enumerate(self.messages):  # once, not once a row
            _check_constant(template, "CreateMessageRequest", f"messages[{index}]", where)
        _check_constant(self.request, "CreateRunRequest", "request", where)
        self.columns = frozenset().union(self.request.columns, *(m.columns for m in self.messages))
        assistant = job.request["assistant_id"]
        if (
            protocol == "responses"
            and "{" not in str(assistant)
            and assistant not in self.settings.assistants
        ):
            raise JobError(
                f"the responses protocol needs [assistants.{assistant}] with at least a model",
                path=where,
                field=f"assistants.{assistant}",
            )
        self.unmapped = unmapped_fields(job.request, messages) if protocol == "responses" else []
        self.batchable = protocol == "responses"  # the Batch API has no Assistants API

    def build(self, key: Any, row: Mapping[str, Any]) -> Row:
        messages = [
            _numbers_as_text(template.render(row), ("content",)) for template in self.messages
        ]
        run = _coerce(_numbers_as_text(self.request.render(row), TEXT_FIELDS))
        for index, message in enumerate(messages):
            _check(message, "CreateMessageRequest", f"messages[{index}]")
        _check(run, "CreateRunRequest", "request")
        if (
            self.settings.protocol == "responses"
            and run["assistant_id"] not in self.settings.assistants
        ):
            raise RowError(
                f"assistant {run['assistant_id']!r} has no [assistants."
                f"{run['assistant_id']}] table for the responses protocol",
                field="request.assistant_id",
            )
        texts = [_text(m.get("content")) for m in [*messages, *run.get("additional_messages", [])]]
        text = "\n".join(texts)
        requests = 1 if self.settings.protocol == "responses" else 3  # create, poll, read
        payload = {"messages": messages, "run": run}
        return Row(key, payload, estimate_tokens(text), requests=requests, characters=len(text))

    def flow(self, items: Sequence[Row]) -> Flow:
        (item,) = items
        if self.settings.protocol == "responses":
            return run_on_responses(item, self.settings)
        return run_on_assistants(item, self.settings)

    def model_of(self, row: Row) -> str | None:
        """The run request's model; on the responses protocol else its assistant table's (on
        the assistants protocol that table is not sent: the assistant's own model runs)."""
        run = row.payload["run"]
        model = run.get("model")
        if not model and self.settings.protocol == "responses":
            model = self.settings.assistants[run["assistant_id"]].get("model")
        return str(model) if model else None

    def describe(self) -> str:
        if self.settings.protocol == "responses":
            line = "responses protocol: one POST /v1/responses per row"
        else:
            line = (
                "assistants protocol: a thread and a run per row, "
                f"cancelled after {self.settings.timeout_s:g} s"
            )
        if self.unmapped:
            line += "\n  not sent on the responses protocol (no equivalent): " + ", ".join(
                self.unmapped
            )
        return line


def _checked_messages(job: JobSpec, where: str) -> list[dict[str, Any]]:
    """The [[messages]] tables and [request], with no field their schemas do not name."""
    messages = job.sections.get("messages", [])
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise JobError("must be [[messages]] tables (role, content)", path=where, field="messages")
    if not messages and "additional_messages" not in job.request:
        raise JobError(
            "add at least one [[messages]] table with role and content",
            path=where,
            field="messages",
        )
    for index, message in enumerate(messages):
        _known_fields(message, "CreateMessageRequest", f"messages[{index}]", where)
    _known_fields(job.request, "CreateRunRequest", "request", where)
    if "assistant_id" not in job.request:
        raise JobError(
            'is required: add assistant_id = "asst_..." to [request]',
            path=where,
            field="request.assistant_id",
        )
    return messages


def _settings(job: JobSpec, where: str) -> RunSettings:
    """[run] and [assistants]: the protocol (by default the one the base URL speaks), polling."""
    options = dict(job.sections.get("run", {}))
    unknown = sorted(set(options) - set(RUN_OPTIONS))
    if unknown:
        raise JobError(
            f"unknown key; known: {', '.join(RUN_OPTIONS)}", path=where, field=f"run.{unknown[0]}"
        )
    default = "responses" if resolve_base_url(job, None) == DEFAULT_BASE_URL else "assistants"
    protocol = options.get("protocol", default)
    if protocol not in PROTOCOLS:
        raise JobError(
            f"must be one of {', '.join(PROTOCOLS)}, got {protocol!r}",
            path=where,
            field="run.protocol",
        )
    return RunSettings(
        protocol=protocol,
        timeout_s=_positive(options, "timeout_s", 600.0, where),
        poll_interval_s=_positive(options, "poll_interval_s", 0.5, where, MIN_POLL_S),
        poll_max_interval_s=_positive(options, "poll_max_interval_s", 5.0, where, MIN_POLL_S),
        assistants=_assistants(job.sections.get("assistants", {}), where),
    )


def _known_fields(body: Mapping[str, Any], schema: str, field: str, where: str) -> None:
    """The schemas forbid fields they do not name: say so before any row is read."""
    known = _validator(schema).schema["properties"]
    for name in body:
        if name not in known:
            raise JobError(
                f"unknown field '{name}'; {schema} has: {', '.join(known)}",
                path=where,
                field=f"{field}.{name}",
            )


def _positive(
    options: Mapping[str, Any], name: str, default: float, where: str, low: float = 0.0
) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > low:
        raise JobError(
            f"must be a number of seconds above {low:g}, got {value!r}",
            path=where,
            field=f"run.{name}",
        )
    return float(value)


def _assistants(tables: Any, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(tables, dict):
        raise JobError("must be [assistants.<assistant_id>] tables", path=where, field="assistants")
    for name, table in tables.items():
        field = f"assistants.{name}"
        if not isinstance(table, dict) or "model" not in table:
            raise JobError("needs at least model = ...", path=where, field=field)
        unknown = sorted(set(table) - set(ASSISTANT_FIELDS))
        if unknown:
            raise JobError(
                f"unknown key '{unknown[0]}'; known: {', '.join(ASSISTANT_FIELDS)}",
                path=where,
                field=field,
            )
    return {name: dict(table) for name, table in tables.items()}


def _coerce(run: dict[str, Any]) -> dict[str, Any]:
    """Numbers that came from text columns ("0.7") become numbers; anything else stays."""
    for name, kind in NUMBERS.items():
        value = run.get(name)
        if isinstance(value, str):
            with suppress(ValueError):
                run[name] = kind(value)
    return run


def _numbers_as_text(body: Any, fields: Sequence[str]) -> Any:
    """The rule of ``templates.as_text``: a number where the API wants text is its text."""
    for name in fields:
        value = body.get(name) if isinstance(body, dict) else None
        if value is not None and not isinstance(value, str | list | dict):
            text = as_text(value)
            if text is not None:
                body[name] = text
    return body


def _check_constant(template: Template, schema: str, field: str, where: str) -> None:
    """Check once, at job load, the fields every row gets alike (those naming no column): a bad
    one is exit 2 naming it, not one error row per row. Fields still to fill are not required."""
    body = _coerce(template.constant_fields())
    found = [
        error
        for error in _validator(schema).iter_errors(body)
        if not (error.validator == "required" and not error.absolute_path)
    ]
    error = jsonschema.exceptions.best_match(found)
    if error is not None:
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise JobError(_short(error.message), path=where, field=f"{field}{path}")
    try:
        for place, metadata in _metadata(body, field):
            _check_metadata(metadata, place)
    except RowError as bad:
        raise JobError(bad.message, path=where, field=bad.field) from None


def _check(body: Any, schema: str, where: str) -> None:
    error = jsonschema.exceptions.best_match(_validator(schema).iter_errors(body))
    if error is not None:
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise RowError(f"{where}{path}: {_short(error.message)}", field=f"{where}{path}")
    for path, metadata in _metadata(body, where):
        _check_metadata(metadata, path)


def _metadata(body: Any, where: str) -> list[tuple[str, Any]]:
    found = []
    if isinstance(body, dict):
        if isinstance(body.get("metadata"), dict):
            found.append((f"{where}.metadata", body["metadata"]))
        for index, message in enumerate(body.get("additional_messages") or []):
            found += _metadata(message, f"{where}.additional_messages[{index}]")
    return found


def _check_metadata(metadata: Mapping[str, Any], where: str) -> None:
    if len(metadata) > METADATA_PAIRS:
        raise RowError(f"{where}: {len(metadata)} pairs; at most {METADATA_PAIRS}", field=where)
    for key, value in metadata.items():
        if len(key) > METADATA_KEY_CHARS:
            raise RowError(
                f"{where}: key {key[:20]!r}... has {len(key)} characters; at most "
                f"{METADATA_KEY_CHARS}",
                field=where,
            )
        if isinstance(value, str) and len(value) > METADATA_VALUE_CHARS:
            raise RowError(
                f"{where}.{key}: value has {len(value)} characters; at most {METADATA_VALUE_CHARS}",
                field=where,
            )


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:197] + "..."


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


KIND = Run
