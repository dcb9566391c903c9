"""POST /v1/moderations: validates the body like the API, scores offline, answers in its shape.

A string gives one result; an array of strings one result per string, in order; an array of
multimodal items one result for the whole array, scored from its text parts (joined by a
newline). Images cannot be scored offline: their scores come from the text alone, and the
answer carries an ``x-emulator-note`` header saying so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from pipeline.emulator import checks
from pipeline.emulator.batcher import MicroBatcher
from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.facts import CATEGORIES, estimate_tokens
from pipeline.emulator.limits import admit
from pipeline.emulator.replies import invalid_request, json_response, json_type, new_id
from pipeline.emulator.replies import read_json_object as read_body
from pipeline.emulator.scoring import IMAGE_CATEGORIES, THRESHOLD, Scores, load_engine
from pipeline.emulator.stats import STATS

PATH: Final[str] = "/v1/moderations"
_KNOWN_KEYS: Final[frozenset[str]] = frozenset({"input", "model"})
_IMAGE_NOTE: Final[str] = "images are not scored offline; scores come from the text parts only"
_NOTE = checks.NOTE

_TEXT_ONLY: Final[dict[str, list[str]]] = {c: ["text"] for c in CATEGORIES}
_TEXT_AND_IMAGE: Final[dict[str, list[str]]] = {
    c: ["text", "image"] if c in IMAGE_CATEGORIES else ["text"] for c in CATEGORIES
}
_IMAGE_ONLY: Final[dict[str, list[str]]] = {
    c: ["image"] if c in IMAGE_CATEGORIES else [] for c in CATEGORIES
}


class ModerationInput:
    """A validated ``input``: the texts to score (one per result) and what they were made of."""

    __slots__ = ("has_image", "has_text", "parts", "texts")

    def __init__(
        self, texts: list[str], parts: list[str], *, has_text: bool, has_image: bool
    ) -> None:
        self.texts = texts  # one per result
        self.parts = parts  # every text as sent (rate-limit cost; reject_substring)
        self.has_text = has_text
        self.has_image = has_image

    def applied_input_types(self) -> dict[str, list[str]]:
        if not self.has_image:
            return _TEXT_ONLY
        return _TEXT_AND_IMAGE if self.has_text else _IMAGE_ONLY


def parse_input(body: dict[str, Any]) -> ModerationInput:
    """Validate a CreateModerationRequest body; raises ApiReply (400) naming what is wrong."""
    checks.known(body, _KNOWN_KEYS)
    if "model" in body and not isinstance(body["model"], str):
        raise invalid_request(
            f"Invalid type for 'model': expected a string, but got {json_type(body['model'])} "
            f"instead. {_NOTE}",
            param="model",
        )
    checks.present(body, ("input",))
    value = body["input"]
    if isinstance(value, str):
        return ModerationInput([value], [value], has_text=True, has_image=False)
    if not isinstance(value, list):
        raise invalid_request(
            "Invalid type for 'input': expected a string, an array of strings or an array of "
            f"text and image_url objects, but got {json_type(value)} instead. {_NOTE}",
            param="input",
        )
    if not value:
        raise invalid_request(
            "Invalid 'input': empty array. Expected an array with minimum length 1, but got an "
            f"empty array instead. {_NOTE}",
            param="input",
        )
    if isinstance(value[0], str):
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise invalid_request(
                    f"Invalid type for 'input[{index}]': expected a string like the other "
                    f"items, but got {json_type(item)} instead. {_NOTE}",
                    param="input",
                )
        return ModerationInput(list(value), list(value), has_text=True, has_image=False)
    parts: list[str] = []
    has_image = False
    for index, item in enumerate(value):
        kind = _multimodal_item(index, item)
        if kind == "image_url":
            has_image = True
        else:
            parts.append(item["text"])
    return ModerationInput(["\n".join(parts)], parts, has_text=bool(parts), has_image=has_image)


def _multimodal_item(index: int, item: Any) -> str:
    """Check one multimodal item; returns its type ("text" or "image_url")."""
    where = f"input[{index}]"
    if not isinstance(item, dict):
        raise invalid_request(
            f"Invalid type for '{where}': expected an object with a 'type' of 'text' or "
            f"'image_url', but got {json_type(item)} instead. {_NOTE}",
            param="input",
        )
    kind = item.get("type")
    if kind == "text":
        if not isinstance(item.get("text"), str):
            raise invalid_request(
                f"Invalid '{where}.text': a text item needs a string 'text'. {_NOTE}",
                param="input",
            )
        return "text"
    if kind == "image_url":
        image = item.get("image_url")
        if not isinstance(image, dict) or not isinstance(image.get("url"), str):
            raise invalid_request(
                f"Invalid '{where}.image_url': expected an object with a string 'url'. {_NOTE}",
                param="input",
            )
        return "image_url"
    raise invalid_request(
        f"Invalid value for '{where}.type': expected 'text' or 'image_url'. {_NOTE}",
        param="input",
    )


def check_rejected(parsed: ModerationInput, body: dict[str, Any], needle: str | None) -> None:
    """The reject_substring test hook: a 400 naming the first input index containing it."""
    if needle is None or not any(needle in part for part in parsed.parts):
        return
    items = body["input"] if isinstance(body["input"], list) else [body["input"]]
    for index, item in enumerate(items):
        text = item if isinstance(item, str) else item.get("text")
        if isinstance(text, str) and needle in text:
            raise invalid_request(
                f"input[{index}] was rejected: it contains the reject_substring {_NOTE}",
                param="input",
            )


def moderation_result(scores: Scores, applied: dict[str, list[str]]) -> dict[str, Any]:
    """One entry of ``results``, with all 13 categories."""
    categories = {c: score >= THRESHOLD for c, score in zip(CATEGORIES, scores, strict=True)}
    return {
        "flagged": any(categories.values()),
        "categories": categories,
        "category_scores": dict(zip(CATEGORIES, scores, strict=True)),
        "category_applied_input_types": applied,
    }


@dataclass(frozen=True)
class Scorer:
    """The engine's model name and its micro-batcher: what the route and batches share."""

    model: str
    batcher: MicroBatcher[Scores]

    async def answer(self, parsed: ModerationInput) -> dict[str, Any]:
        """The CreateModerationResponse for a validated input."""
        scores = await self.batcher.score(parsed.texts)
        applied = parsed.applied_input_types()
        return {
            "id": new_id("modr"),
            "model": self.model,
            "results": [moderation_result(s, applied) for s in scores],
        }


SCORER = web.AppKey("moderation_scorer", Scorer)


def register(app: web.Application, config: EmulatorConfig) -> None:
    """Add POST /v1/moderations and its scorer to ``app``; EmulatorError if its engine is not
    installed."""
    engine = load_engine(config.engine)
    stats = app[STATS]
    batcher: MicroBatcher[Scores] = MicroBatcher(
        engine.score, on_batch=stats.scored, in_thread=engine.in_thread
    )
    shared = app[SCORER] = Scorer(engine.model, batcher)

    async def scorer(_: web.Application) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    async def moderate(request: web.Request) -> web.StreamResponse:
        body = await read_body(request)
        parsed = parse_input(body)
        check_rejected(parsed, body, config.reject_substring)
        admit(request, sum(estimate_tokens(part) for part in parsed.parts))
        answer = await shared.answer(parsed)
        headers = {"x-emulator-note": _IMAGE_NOTE} if parsed.has_image else None
        return json_response(answer, headers=headers)

    app.cleanup_ctx.append(scorer)
    app.router.add_post(PATH, moderate)
