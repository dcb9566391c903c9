"""What a kind asks of an executor: the steps of a flow, as data.

A kind never sends anything. For the rows of one request (or one workflow) it writes a *flow*:
a generator that yields steps and receives what each step gave back, and whose return value is
one ``Outcome`` per row, in order::

    def flow(rows):
        answer = yield Request("POST", "/moderations", body, tokens=...)
        return outcomes_from(answer)

- ``Request``: one HTTP request; the executor sends it (rate limits, retries) and sends back its
  ``Answer``. When the API refuses it, or retries run out, the ``ApiError`` is thrown into the
  flow at the ``yield``: a flow that catches it may split a pack or cancel a run; one that does
  not fails its rows with it. A fatal answer (401, quota) or a stop closes the flow.
- ``Note``: progress a workflow must find again after a crash (thread and run ids); the executor
  commits it to the journal before the flow goes on. A flow started again gets it back.
- ``Pause``: a wait between polls, cut short when the run stops.
- ``Speak``: one response of the Realtime API (a text read aloud in a voice); the executor sends
  it over a realtime session under the same rate limits and retries as a ``Request``, and sends
  back a ``Spoken`` (the PCM and its transcript), or throws the ``ApiError`` into the flow.
- ``Save``: a file beside the results (speech audio); the executor claims its name and writes it
  atomically, and sends back the path relative to the output folder.

Because a flow is data in, data out, any executor can carry it: the asyncio pool sends each
request at once; a batch executor can gather the first ``Request`` of many flows into one Batch
API file and send each flow its line of the output; a distributed one can run flows elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.errors import RejectedApiError
from pipeline.http import DEFAULT_MAX_ANSWER_BYTES, Answer
from pipeline.limits import OVER_TOKEN_LIMIT
from pipeline.outcomes import Failure, Outcome

SPLIT_STATUSES = frozenset({400, 413})  # a pack whose content was refused: halve it


@dataclass(slots=True)  # not frozen: made for every request, and frozen costs 0.8 us each
class Request:
    """One HTTP request, as any executor can send it or write it to a file."""

    method: str
    path: str  # under the base URL: "/moderations"
    body: Any = None  # JSON-able
    tokens: int = 1  # estimated, charged against the tokens-per-minute limit
    characters: int = 0  # characters of text it sends (speech: what --max-characters counts)
    expect: Literal["json", "bytes"] = "json"
    headers: Mapping[str, str] | None = None
    max_bytes: int = DEFAULT_MAX_ANSWER_BYTES  # the largest answer this request can honestly get
    # inspects a successful answer inside the attempt: a TransientApiError it raises (a truncated
    # body) is retried like a dropped connection. A module-level function (or a partial of one),
    # so the request pickles for another process.
    check: Callable[[Answer], None] | None = None


@dataclass(slots=True)
class Speak:
    """One realtime response: ``text`` read aloud in ``voice``, as any executor can send it."""

    model: str  # the session's model: {base_url}/realtime?model=...
    voice: Any  # a voice name or {"id": "voice_..."}
    text: str
    instructions: str = ""  # the job's own, sent after the read-it-word-for-word ones
    speed: float = 1.0
    tokens: int = 1  # estimated, charged against the tokens-per-minute limit
    characters: int = 0  # characters of text it sends (what --max-characters counts)
    max_bytes: int = DEFAULT_MAX_ANSWER_BYTES  # the most PCM its text can honestly need
    # inspects the answer inside the attempt (the verbatim check): a TransientApiError it
    # raises is retried; a module-level function or a partial of one, so the step pickles
    check: Callable[[Spoken], None] | None = None

    def session_key(self) -> tuple[str, str, float]:
        """What a realtime session is opened for: responses with the same key may share one."""
        voice = self.voice if isinstance(self.voice, str) else f"id:{self.voice.get('id')}"
        return self.model, voice, self.speed


@dataclass(slots=True)
class Spoken:
    """The answer to a ``Speak``: 24 kHz mono PCM16 and the transcript of what was said."""

    pcm: bytes = field(repr=False)
    transcript: str
    response_id: str = ""
    usage: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Note:
    """Progress of a workflow for one row, committed before the flow goes on."""

    key: Any
    progress: Any  # JSON-able


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait this long (between polls); the run stopping ends the flow instead."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Save:
    """A file for one row beside the results; answered with its path relative to the folder."""

    folder: str
    stem: str  # from data: made safe and unique by the executor
    suffix: str
    key: Any
    data: bytes = field(repr=False)


Step = Request | Speak | Note | Pause | Save
Flow = Generator[Step, Any, list[Outcome]]


def packed(
    rows: Sequence[Any],
    request_for: Callable[[Sequence[Any]], Request],
    outcomes_for: Callable[[Sequence[Any], Answer], list[Outcome]],
) -> Flow:
    """The flow of a packed kind: one request for the rows; a pack the API refuses for its
    content (400, 413, or over the token limit that fell after the pack was made) is halved
    until the bad row stands alone, so one bad row never fails its neighbours."""
    try:
        answer = yield request_for(rows)
    except RejectedApiError as error:
        refused = error.http_status in SPLIT_STATUSES or error.error_type == OVER_TOKEN_LIMIT
        if len(rows) > 1 and refused:
            half = len(rows) // 2
            first = yield from packed(rows[:half], request_for, outcomes_for)
            return first + (yield from packed(rows[half:], request_for, outcomes_for))
        return [Failure.from_api(error)] * len(rows)
    return outcomes_for(rows, answer)


def one_request(request: Request, outcome_for: Callable[[Answer], Outcome]) -> Flow:
    """The flow of a kind that sends one request for one row."""
    try:
        answer = yield request
    except RejectedApiError as error:
        return [Failure.from_api(error)]
    return [outcome_for(answer)]
