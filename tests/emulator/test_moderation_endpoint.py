"""POST /v1/moderations over real HTTP: shapes against the OpenAI schemas, validation, scores."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator

from pipeline.emulator import RunningEmulator
from pipeline.emulator.scoring import IMAGE_CATEGORIES
from pipeline.kinds.moderation import CATEGORIES
from tests.emulator.conftest import StartEmulator
from tests.emulator.helpers import post

IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}


def flagged(result: dict[str, Any]) -> set[str]:
    return {c for c, hit in result["categories"].items() if hit}


async def test_string_input_gets_one_schema_valid_result(
    emulator: RunningEmulator, http: aiohttp.ClientSession, moderation_schema: Draft202012Validator
) -> None:
    answer = await post(http, emulator, {"model": "omni-moderation-latest", "input": "hello"})

    assert answer.status == 200
    moderation_schema.validate(answer.body)
    assert answer.body["id"].startswith("modr-")
    assert answer.body["model"] == "local/alt-profanity-check"
    [result] = answer.body["results"]
    assert list(result["categories"]) == list(CATEGORIES)
    assert all(0.0 <= s <= 1.0 for s in result["category_scores"].values())
    assert result["category_applied_input_types"] == {c: ["text"] for c in CATEGORIES}
    assert answer.headers["x-request-id"].startswith("req_")


async def test_array_input_gets_one_result_per_string_in_order(
    emulator: RunningEmulator, http: aiohttp.ClientSession, moderation_schema: Draft202012Validator
) -> None:
    texts = ["have a nice day", "I will kill you", "", "you are a fucking idiot", "thanks!"]

    answer = await post(http, emulator, {"input": texts})
    singles = [(await post(http, emulator, {"input": t})).body["results"][0] for t in texts]

    moderation_schema.validate(answer.body)
    assert answer.body["results"] == singles  # order kept, and batching does not change scores


async def test_same_text_always_gets_the_same_scores(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    body = {"input": ["I will kill you", "lovely weather", "go to hell you idiot"]}
    first = await post(http, start(), body)
    second = await post(http, start(), body)  # a fresh emulator: nothing cached

    assert first.body["results"] == second.body["results"]


async def test_abusive_texts_score_above_benign_ones(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    texts = ["have a nice day", "I will kill you", "you are a fucking idiot"]
    nice, threat, insult = (await post(http, emulator, {"input": texts})).body["results"]

    assert not nice["flagged"] and flagged(nice) == set()
    assert {"violence", "harassment/threatening"} <= flagged(threat)
    assert "harassment" in flagged(insult)
    for category in ("violence", "harassment/threatening"):
        assert threat["category_scores"][category] > nice["category_scores"][category]
    assert insult["category_scores"]["harassment"] > nice["category_scores"]["harassment"]


async def test_wordlist_engine_is_labelled_and_agrees_on_the_obvious(
    start: StartEmulator, http: aiohttp.ClientSession, moderation_schema: Draft202012Validator
) -> None:
    answer = await post(
        http, start(engine="wordlist"), {"input": ["have a nice day", "I will kill you"]}
    )

    moderation_schema.validate(answer.body)
    assert answer.body["model"] == "local/wordlist"
    nice, threat = answer.body["results"]
    assert flagged(nice) == set()
    assert {"violence", "harassment/threatening"} <= flagged(threat)


async def test_multimodal_array_gets_one_result_scored_from_its_text(
    emulator: RunningEmulator, http: aiohttp.ClientSession, moderation_schema: Draft202012Validator
) -> None:
    items = [{"type": "text", "text": "I will kill"}, IMAGE, {"type": "text", "text": "you"}]

    answer = await post(http, emulator, {"input": items})
    text_only = await post(http, emulator, {"input": "I will kill\nyou"})

    moderation_schema.validate(answer.body)
    [result] = answer.body["results"]
    assert result["category_scores"] == text_only.body["results"][0]["category_scores"]
    for category, types in result["category_applied_input_types"].items():
        assert types == (["text", "image"] if category in IMAGE_CATEGORIES else ["text"])
    assert "not scored" in answer.headers["x-emulator-note"]


async def test_image_only_input_is_valid_and_says_images_are_not_scored(
    emulator: RunningEmulator, http: aiohttp.ClientSession, moderation_schema: Draft202012Validator
) -> None:
    answer = await post(http, emulator, {"input": [IMAGE]})

    moderation_schema.validate(answer.body)
    [result] = answer.body["results"]
    assert not result["flagged"]
    for category, types in result["category_applied_input_types"].items():
        assert types == (["image"] if category in IMAGE_CATEGORIES else [])
    assert "x-emulator-note" in answer.headers


async def test_concurrent_requests_each_get_their_own_results(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    bodies = [{"input": [f"text {i}", "I will kill you"][: 1 + i % 2]} for i in range(40)]
    solo = [(await post(http, emulator, b)).body["results"] for b in bodies]

    together = await asyncio.gather(*(post(http, emulator, b) for b in bodies))

    assert [a.body["results"] for a in together] == solo
    assert emulator.stats()["inputs_scored"] == 2 * sum(len(b["input"]) for b in bodies)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "input"),
        ({"input": 3}, "input"),
        ({"input": None}, "input"),
        ({"input": []}, "input"),
        ({"input": ["fine", 2]}, "input"),
        ({"input": [{"type": "text"}]}, "input"),
        ({"input": [{"type": "text", "text": 1}]}, "input"),
        ({"input": [{"type": "audio", "audio": "x"}]}, "input"),
        ({"input": [{"type": "image_url", "image_url": "https://x/y.png"}]}, "input"),
        ({"input": [{"type": "text", "text": "a"}, "b"]}, "input"),
        ({"input": "x", "model": 5}, "model"),
        ({"input": "x", "temperature": 1}, "temperature"),
        (["not", "an", "object"], None),
    ],
)
async def test_invalid_bodies_get_400_with_an_openai_error(
    emulator: RunningEmulator,
    http: aiohttp.ClientSession,
    error_schema: Draft202012Validator,
    body: Any,
    param: str | None,
) -> None:
    answer = await post(http, emulator, body)

    assert answer.status == 400
    error_schema.validate(answer.body)
    assert answer.body["error"]["type"] == "invalid_request_error"
    assert answer.body["error"]["param"] == param
    assert emulator.stats()["inputs_scored"] == 0


async def test_malformed_json_gets_400(
    emulator: RunningEmulator, http: aiohttp.ClientSession, error_schema: Draft202012Validator
) -> None:
    answer = await post(http, emulator, data=b'{"input": "unterminated')

    assert answer.status == 400
    error_schema.validate(answer.body)
    assert "JSON" in answer.body["error"]["message"]


async def test_unknown_url_and_wrong_method_answer_like_the_api(
    emulator: RunningEmulator, http: aiohttp.ClientSession, error_schema: Draft202012Validator
) -> None:
    missing = await post(http, emulator, {"input": "x"}, path="/moderation")
    async with http.get(emulator.base_url + "/moderations") as response:
        wrong_method = (response.status, await response.json())

    assert missing.status == 404
    error_schema.validate(missing.body)
    assert wrong_method[0] == 405
    error_schema.validate(wrong_method[1])


async def test_reject_substring_answers_400_naming_the_input_index(
    start: StartEmulator, http: aiohttp.ClientSession, error_schema: Draft202012Validator
) -> None:
    emulator = start(reject_substring="POISON")

    answer = await post(http, emulator, {"input": ["ok", "fine", "has POISON in it", "ok"]})
    clean = await post(http, emulator, {"input": ["ok", "fine"]})

    assert answer.status == 400
    error_schema.validate(answer.body)
    assert "input[2]" in answer.body["error"]["message"]
    assert clean.status == 200
