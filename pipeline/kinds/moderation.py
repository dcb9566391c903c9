"""Moderation: rows -> POST /v1/moderations (CreateModerationRequest), packed, split on 400.

A row's input is a string, or a list of multimodal parts ({type: text} / {type: image_url}).
``[moderation] rows_per_request`` packs string rows into one array input; ``results[i]`` maps back
to the i-th row. A packed request the server rejects is halved until the bad row stands alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pyarrow as pa

from pipeline.errors import JobError, RowError
from pipeline.http import Answer
from pipeline.job import JobSpec
from pipeline.outcomes import Failure, Outcome, Success
from pipeline.rows import Row
from pipeline.steps import Flow, Request, packed
from pipeline.templates import as_text, compile_template
from pipeline.tokens import estimate_tokens

CATEGORIES = (
    "hate",
    "hate/threatening",
    "harassment",
    "harassment/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
MAX_ROWS_PER_REQUEST = 1000
# a result is ~1.5 KB (13 flags, 13 scores, applied input types); 64 KiB a row is generous
ANSWER_BYTES_PER_ROW = 64 * 2**10
ANSWER_BYTES_BASE = 64 * 2**10


def column_name(category: str) -> str:
    return category.replace("/", "_").replace("-", "_")


_COLUMNS = [(c, f"flag_{column_name(c)}", f"score_{column_name(c)}") for c in CATEGORIES]


class Moderation:
    name: ClassVar[str] = "moderation"
    sections: ClassVar[tuple[str, ...]] = ("moderation",)
    result_schema: ClassVar[pa.Schema] = pa.schema(
        [("flagged", pa.bool_())]
        + [(f"flag_{column_name(c)}", pa.bool_()) for c in CATEGORIES]
        + [(f"score_{column_name(c)}", pa.float64()) for c in CATEGORIES]
        + [("model", pa.string())]
    )

    def __init__(self, job: JobSpec) -> None:
        where = str(job.path)
        unknown = sorted(set(job.request) - {"input", "model"})
        if unknown:
            raise JobError(
                f"unknown field '{unknown[0]}': a moderation request has only input and model",
                path=where,
                field=f"request.{unknown[0]}",
            )
        if "input" not in job.request:
            raise JobError(
                'is required: add input = "{your_text_column}"', path=where, field="request.input"
            )
        model = job.request.get("model", "omni-moderation-latest")
        if not isinstance(model, str) or "{" in model:
            raise JobError(
                "must be a fixed model name (rows are packed into shared requests)",
                path=where,
                field="request.model",
            )
        self.model = model
        try:
            self.template = compile_template(job.request["input"], "input")
        except ValueError as exc:
            raise JobError(str(exc), path=where, field="request.input") from None
        self.columns = self.template.columns
        if not self.columns:  # the same input for every row: check it once, here
            try:
                self.build(None, {})
            except RowError as error:
                raise JobError(error.message, path=where, field="request.input") from None
        options = dict(job.sections.get("moderation", {}))
        rows = options.pop("rows_per_request", 1)
        if options:
            raise JobError(
                "unknown key; known: rows_per_request",
                path=where,
                field=f"moderation.{next(iter(options))}",
            )
        if (
            isinstance(rows, bool)
            or not isinstance(rows, int)
            or not 1 <= rows <= MAX_ROWS_PER_REQUEST
        ):
            raise JobError(
                f"must be a whole number from 1 to {MAX_ROWS_PER_REQUEST}, got {rows!r}",
                path=where,
                field="moderation.rows_per_request",
            )
        if rows > 1 and isinstance(job.request["input"], list):
            raise JobError(
                "multimodal inputs get one result per request and cannot be packed; "
                "set rows_per_request = 1",
                path=where,
                field="moderation.rows_per_request",
            )
        self.rows_per_request = rows
        self.batchable = True

    def build(self, key: Any, row: Mapping[str, Any]) -> Row:
        value = self.template.render(row)
        text = as_text(value)
        if text is not None:  # a number is sent as its text, as a CSV cell "5" is
            _nonblank(text, "input")
            return Row(key, text, estimate_tokens(text), characters=len(text))
        if isinstance(value, list) and value:
            texts = [_part_text(part, i) for i, part in enumerate(value)]
            tokens = sum(estimate_tokens(text) for text in texts if text)
            return Row(key, value, max(tokens, 1), characters=sum(map(len, texts)))
        raise RowError(f"input must be text, got {_describe(value)}", field="input")

    def flow(self, items: Sequence[Row]) -> Flow:
        if len(items) > 1 and not all(isinstance(item.payload, str) for item in items):
            outcomes: list[Outcome] = []  # a multimodal row gets its own request
            for item in items:
                outcomes += yield from packed([item], self.request, _outcomes)
            return outcomes
        return (yield from packed(items, self.request, _outcomes))

    def request(self, items: Sequence[Row]) -> Request:
        """One CreateModerationRequest for these rows (an array input when packing)."""
        array = len(items) > 1 or self.rows_per_request > 1
        return Request(
            "POST",
            "/moderations",
            {
                "model": self.model,
                "input": [item.payload for item in items] if array else items[0].payload,
            },
            tokens=sum(item.tokens for item in items),
            max_bytes=ANSWER_BYTES_BASE + ANSWER_BYTES_PER_ROW * len(items),
        )

    def model_of(self, row: Row) -> str | None:  # noqa: ARG002 - one model for every row
        return self.model

    def describe(self) -> str:
        return (
            f"POST /v1/moderations, model {self.model}, "
            f"up to {self.rows_per_request} row(s) per request"
        )


def _outcomes(items: Sequence[Row], answer: Answer) -> list[Outcome]:
    return _shape(answer.data, len(items))


def _shape(data: Any, expected: int) -> list[Outcome]:
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list) or len(results) != expected:
        got = len(results) if isinstance(results, list) else "no"
        failure = Failure("response", "bad_response", f"expected {expected} results, got {got}")
        return [failure] * expected
    model = str(data.get("model", ""))
    return [_columns(result, model) for result in results]


def _columns(result: Any, model: str) -> Outcome:
    """One result's columns; a result that is not what the API promises (a flag that is not a
    boolean, a score that is not a finite number) is a bad_response, never a guess."""
    flags = result.get("categories", {}) if isinstance(result, dict) else None
    scores = result.get("category_scores", {}) if isinstance(result, dict) else None
    if not isinstance(flags, dict) or not isinstance(scores, dict):
        return Failure("response", "bad_response", "a result is not a moderation object")
    flagged = result.get("flagged")
    flag_values = list(map(flags.get, CATEGORIES))
    score_values = list(map(scores.get, CATEGORIES))
    score_types = set(map(type, score_values))
    all_floats = score_types == _ALL_FLOATS  # the usual answer: every score given, as a float
    given: list[Any] = score_values if all_floats else [s for s in score_values if s is not None]
    honest = (  # checked in bulk (sets, map): every answer takes this path
        type(flagged) in _FLAG_TYPES
        and _FLAG_TYPES.issuperset(map(type, flag_values))
        and score_types <= _SCORE_OR_MISSING
        and all(map(math.isfinite, given))
    )
    if not honest:
        return _bad_value(flagged, flag_values, score_values)
    if not all_floats:  # an int score is stored as a float; a missing one stays None
        score_values = [None if s is None else float(s) for s in score_values]
    values = [bool(flagged), *flag_values, *score_values, model]
    return Success(dict(zip(_RESULT_COLUMNS, values, strict=True)))


_FLAG_TYPES = frozenset({bool, type(None)})
_SCORE_TYPES = frozenset({float, int})
_ALL_FLOATS = {float}
_SCORE_OR_MISSING = _SCORE_TYPES | {type(None)}
_FLAG_COLUMNS = [flag for _, flag, _ in _COLUMNS]
_SCORE_COLUMNS = [score for _, _, score in _COLUMNS]
_RESULT_COLUMNS = ["flagged", *_FLAG_COLUMNS, *_SCORE_COLUMNS, "model"]


def _bad_value(flagged: Any, flags: list[Any], scores: list[Any]) -> Failure:
    """The first value that is not what it should be, as a bad_response."""
    named = [("flagged", flagged), *zip(_FLAG_COLUMNS, flags, strict=True)]
    for name, value in named:
        if type(value) not in _FLAG_TYPES:
            return Failure(
                "response", "bad_response", f"the answer's {name} is {value!r}, not a boolean"
            )
    for name, value in zip(_SCORE_COLUMNS, scores, strict=True):
        if value is not None and (type(value) not in _SCORE_TYPES or not math.isfinite(value)):
            message = f"the answer's {name} is {value!r}, not a finite number"
            return Failure("response", "bad_response", message)
    return Failure("response", "bad_response", "the scores add up to more than a float holds")


def _nonblank(text: str, field: str) -> str:
    if not text.strip():
        raise RowError(
            f"{field} is empty" if not text else f"{field} is only whitespace", field=field
        )
    return text


def _part_text(part: Any, index: int) -> str:
    field = f"input[{index}]"
    kind = part.get("type") if isinstance(part, dict) else None
    text = as_text(part.get("text")) if kind == "text" else None
    if text is not None:
        part["text"] = text  # a fresh dict from the template: a number becomes its text
        return _nonblank(text, f"{field}.text")
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else None
        if isinstance(url, str) and url.strip():
            return ""
        raise RowError(
            f"{field}.image_url.url must be a URL or a data: URL, got {_describe(url)}", field=field
        )
    raise RowError(
        f"{field} must be {{type: text, text}} or {{type: image_url, image_url: {{url}}}}"
        f", got {_describe(part)}",
        field=field,
    )


def _describe(value: Any) -> str:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"{type(value).__name__} {shown}"


KIND = Moderation
