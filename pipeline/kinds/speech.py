"""Speech: rows -> POST /v1/audio/speech (CreateSpeechRequest) -> one audio file per row.

Texts over the API's 4,096 characters are split at sentence, then clause, then word boundaries
(``[speech] split_long_input``), sent in order, and joined into one file of the requested format;
a chunk that fails fails (or retries) the whole row, so a file never has a hole. An answer that
does not decode as complete audio is retried like a dropped connection.

``[speech] protocol = "realtime"`` (the default for ``gpt-realtime-*`` models) speaks each chunk
over the Realtime API instead, checked word for word (``realtime_speech.py``); the job file,
the manifest's columns and the files are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import suppress
from functools import partial
from typing import Any, ClassVar

import pyarrow as pa

from pipeline import audio, realtime_speech
from pipeline.audiobook_options import parse_assemble
from pipeline.errors import JobError, RejectedApiError, RowError, TransientApiError
from pipeline.http import Answer
from pipeline.job import JobSpec
from pipeline.kinds import speech_providers as providers
from pipeline.outcomes import Failure, Success
from pipeline.rows import Row
from pipeline.steps import Flow, Request, Save, Step
from pipeline.templates import Template, as_text, compile_template
from pipeline.textsplit import SPEECH_INPUT_LIMIT, split_text
from pipeline.tokens import estimate_tokens

MAX_INPUT_CHARS = SPEECH_INPUT_LIMIT
VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "onyx",
    "nova",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
FIELDS = ("model", "input", "voice", "instructions", "response_format", "speed", "stream_format")
SPEED_RANGE = (0.25, 4.0)
AUDIO_FOLDER = "audio"
# the longest answer a chunk can need: spoken at 3 characters a second at speed 1 (speech runs
# ~15; digits read out as words run slower), plus slack, at a generous bitrate per format
SLOWEST_CHARS_PER_S = 3.0
ANSWER_SLACK_S = 30.0
BYTES_PER_S = {"wav": 96_000, "pcm": 96_000, "flac": 96_000}  # 16-bit 48 kHz mono, uncompressed
COMPRESSED_BYTES_PER_S = 40_000  # 320 kbit/s
KEY_PLACEHOLDER = "key"  # in file_name, {key} is the row's key
NOT_AUDIO = ("application/json", "text/")  # an answer of 200 with these is an error's body


class Speech:
    name: ClassVar[str] = "speech"
    sections: ClassVar[tuple[str, ...]] = ("speech",)
    result_schema: ClassVar[pa.Schema] = pa.schema(
        [
            ("audio_path", pa.string()),
            ("format", pa.string()),
            ("bytes", pa.int64()),
            ("duration_s", pa.float64()),
            ("chars", pa.int64()),
            ("chunks", pa.int64()),
            ("voice", pa.string()),
            ("model", pa.string()),
            ("word_error_rate", pa.float64()),  # worst chunk's; null without a transcript
        ]
    )
    rows_per_request = 1
    batchable = False  # the Batch API does not take /v1/audio/speech

    def __init__(self, job: JobSpec) -> None:
        where = str(job.path)
        _check_request_fields(job.request, where)
        options = dict(job.sections.get("speech", {}))
        self.split_long_input = options.pop("split_long_input", True)
        file_name = options.pop("file_name", "{key}")
        self.provider = providers.pop_provider(options, job)
        self.assemble = parse_assemble(options.pop("assemble", None), where)  # audiobook.py
        self.protocol = realtime_speech.take_options(options, where)
        if options:
            raise JobError(
                "unknown key; known: split_long_input, file_name, provider, protocol, "
                "max_word_error_rate, assemble",
                path=where,
                field=f"speech.{next(iter(options))}",
            )
        if not isinstance(self.split_long_input, bool):
            raise JobError("must be true or false", path=where, field="speech.split_long_input")
        self.local_emulator = {"speech_voices": self.provider}  # for base_url = "local"
        openai = self.provider == "openai"
        if not isinstance(file_name, str) or not file_name.strip():
            raise JobError(
                'must be a file-name template such as "{key}"', path=where, field="speech.file_name"
            )
        self.template = _compile(job.request, where, "request")
        self.file_name = _compile(file_name, where, "speech.file_name")
        self.columns = (self.template.columns | self.file_name.columns) - {KEY_PLACEHOLDER}
        self.key_column = job.input.key
        self._checks: dict[str, Callable[[Any], Any]] = {
            "input": self._input,
            "model": lambda value: _text(value, "model"),
            "voice": _voice if openai else providers.any_voice,
            "response_format": _format,
            "speed": _speed,
            "instructions": _instructions if openai else providers.any_instructions,
        }
        for name, value in self.template.constant_fields().items():  # once, not once a row
            check = self._checks.get(name)  # stream_format was checked above
            try:
                if check is not None:
                    check(value)
            except RowError as error:
                raise JobError(error.message, path=where, field=f"request.{name}") from None
        self._check_realtime_constants(where)

    def _check_realtime_constants(self, where: str) -> None:
        """A constant voice or speed the Realtime API lacks fails the job, not every row."""
        constants = self.template.constant_fields()
        model = constants.get("model")
        if isinstance(model, str) and self.protocol.for_model(model) == "realtime":
            try:
                realtime_speech.check_realtime_row(constants)
            except RowError as error:
                raise JobError(error.message, path=where, field=f"request.{error.field}") from None

    @property
    def section_columns(self) -> list[tuple[str, str]]:
        """(column, field) of the input columns [speech.assemble] names, checked by the plan."""
        return self.assemble.named_columns() if self.assemble else []

    def _input(self, value: Any) -> str:
        text = as_text(value)  # a number is spoken as its text, as a CSV cell "5" is
        if text is None:
            raise RowError(f"input must be text, got {type(value).__name__}", field="input")
        if not text.strip():
            raise RowError(
                "input is empty" if not text else "input is only whitespace", field="input"
            )
        if len(text) > MAX_INPUT_CHARS and not self.split_long_input:
            raise RowError(
                f"input has {len(text):,} characters; the API takes at most "
                f"{MAX_INPUT_CHARS:,} (set [speech] split_long_input = true)",
                field="input",
            )
        return text

    def build(self, key: Any, row: Mapping[str, Any]) -> Row:
        body = self.template.render(row)
        body.setdefault("response_format", "mp3")
        for name, check in self._checks.items():
            if name in body:
                body[name] = check(body[name])
        text = body["input"]
        payload: dict[str, Any] = {"body": body, "stem": ""}
        if self.protocol.for_model(body["model"]) == "realtime":
            realtime_speech.check_realtime_row(body)
            payload["protocol"] = "realtime"  # only then: a speech row's hash is as it was
        chunks = len(_chunks(text)) if len(text) > MAX_INPUT_CHARS else 1
        name_row = {**row, KEY_PLACEHOLDER: key}
        payload["stem"] = str(self.file_name.render(name_row))
        return Row(
            key,
            payload,
            estimate_tokens(text),
            requests=chunks,
            characters=len(text),
        )

    def flow(self, items: Sequence[Row]) -> Flow:
        """One request per chunk, in order; the pieces joined and saved as the row's file."""
        (item,) = items
        body, fmt = item.payload["body"], item.payload["body"]["response_format"]
        text: str = body["input"]
        chunks = _chunks(text)
        word_error_rate: float | None = None  # the speech protocol has no transcript
        try:
            if item.payload.get("protocol") == "realtime":
                data, duration, word_error_rate = yield from realtime_speech.speak_chunks(
                    body, chunks, self.protocol.max_word_error_rate
                )
            else:
                data, duration = yield from _speech_chunks(body, chunks)
        except RejectedApiError as error:
            return [Failure.from_api(error)]
        relative = yield Save(AUDIO_FOLDER, item.payload["stem"], f".{fmt}", item.key, data)
        voice = body["voice"]
        columns = {
            "audio_path": relative,
            "format": fmt,
            "bytes": len(data),
            "duration_s": round(duration, 3),
            "chars": len(text),
            "chunks": len(chunks),
            "voice": voice["id"] if isinstance(voice, dict) else voice,
            "model": body["model"],
            "word_error_rate": word_error_rate,
        }
        return [Success(columns, counts={"audio_seconds": duration})]

    def model_of(self, row: Row) -> str | None:
        return str(row.payload["body"]["model"])

    def describe(self) -> str:
        protocol, model = self.protocol.protocol, self.template.constant_fields().get("model")
        if protocol is None and isinstance(model, str):
            protocol = self.protocol.for_model(model)
        speech = f"POST /v1/audio/speech ({providers.describe(self.provider)})"
        where = {
            "realtime": "the Realtime API (/v1/realtime), checked word for word",
            "speech": speech,
            None: f"{speech}; gpt-realtime-* models: the Realtime API",
        }[protocol]
        return f"{where}, one audio file per row" + (
            ", long texts split and joined" if self.split_long_input else ""
        )


def _speech_chunks(
    body: Mapping[str, Any], chunks: Sequence[str]
) -> Generator[Step, Any, tuple[bytes, float]]:
    """One POST /audio/speech per chunk, in order; the pieces joined, and their duration."""
    fmt, pieces = body["response_format"], []
    for chunk in chunks:
        answer = yield Request(
            "POST",
            "/audio/speech",
            {**body, "input": chunk},
            tokens=estimate_tokens(chunk),
            characters=len(chunk),
            expect="bytes",
            max_bytes=answer_cap(chunk, fmt, body.get("speed", 1.0)),
            check=partial(check_complete_audio, fmt),
        )
        pieces.append(answer.data)
    data = audio.join(pieces, fmt) if len(pieces) > 1 else pieces[0]
    return data, audio.duration_s(data, fmt)


def _check_request_fields(request: Mapping[str, Any], where: str) -> None:
    """The [request] table names only CreateSpeechRequest fields, with the required ones."""
    unknown = sorted(set(request) - set(FIELDS))
    if unknown:
        raise JobError(
            f"unknown field '{unknown[0]}': CreateSpeechRequest has only {', '.join(FIELDS)}",
            path=where,
            field=f"request.{unknown[0]}",
        )
    for required in ("model", "input", "voice"):
        if required not in request:
            raise JobError(
                f'is required in a speech request (e.g. {required} = "{_EXAMPLES[required]}")',
                path=where,
                field=f"request.{required}",
            )
    if request.get("stream_format", "audio") != "audio":
        raise JobError(
            'must be "audio": the pipeline writes audio files, not event streams',
            path=where,
            field="request.stream_format",
        )


def answer_cap(chunk: str, fmt: str, speed: float) -> int:
    """The most bytes the audio of ``chunk`` can take in ``fmt`` at ``speed``."""
    seconds = len(chunk) / (SLOWEST_CHARS_PER_S * speed) + ANSWER_SLACK_S
    return int(seconds * BYTES_PER_S.get(fmt, COMPRESSED_BYTES_PER_S))


_EXAMPLES = {"model": "gpt-4o-mini-tts", "input": "{text}", "voice": "alloy"}


def _chunks(text: str) -> list[str]:
    """The requests a text needs; a whitespace-only piece (a long blank run) is silence: skipped."""
    return [chunk for chunk in split_text(text, MAX_INPUT_CHARS) if chunk.strip()]


def _compile(value: Any, where: str, field: str) -> Template:
    try:
        return compile_template(value)
    except ValueError as exc:
        raise JobError(str(exc), path=where, field=field) from None


def check_complete_audio(fmt: str, answer: Answer) -> None:
    """An answer that does not decode as whole audio is retried like a dropped connection;
    so is one that says it is JSON or text (raw PCM has no structure that would tell)."""
    content_type = next(
        (value for name, value in answer.headers.items() if name.lower() == "content-type"), ""
    ).lower()
    if content_type.startswith(NOT_AUDIO):
        raise TransientApiError(
            f"the server answered {answer.status} with {content_type.split(';')[0]}, not audio",
            http_status=answer.status,
            error_type="bad_audio",
        )
    try:
        audio.decode(answer.data, fmt)
    except audio.AudioError as error:
        raise TransientApiError(
            f"the audio answer is incomplete: {error}",
            http_status=answer.status,
            error_type="bad_audio",
        ) from None


def _text(value: Any, field: str) -> str:
    text = as_text(value)
    if text is None or not text.strip():
        raise RowError(f"{field} must be non-empty text, got {value!r}", field=field)
    return text


def _format(value: Any) -> str:
    if value not in audio.FORMATS:
        raise RowError(
            f"response_format {value!r} is not one of {', '.join(audio.FORMATS)}",
            field="response_format",
        )
    return str(value)


def _instructions(value: Any) -> str:
    instructions = _text(value, "instructions")
    if len(instructions) > MAX_INPUT_CHARS:
        raise RowError(
            f"instructions have {len(instructions):,} characters; at most {MAX_INPUT_CHARS:,}",
            field="instructions",
        )
    return instructions


def _voice(value: Any) -> Any:
    if isinstance(value, str) and value in VOICES:
        return value
    if (
        isinstance(value, dict)
        and set(value) == {"id"}
        and isinstance(value["id"], str)
        and value["id"].strip()
    ):
        return value
    raise RowError(
        f"voice {value!r} is not one of {', '.join(VOICES)} "
        '(or {id = "voice_..."} for a custom voice)',
        field="voice",
    )


def _speed(value: Any) -> float:
    low, high = SPEED_RANGE
    if isinstance(value, str):
        with suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise RowError(f"speed {value!r} is outside {low} to {high}", field="speed")
    return float(value)


KIND = Speech
