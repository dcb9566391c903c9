"""The offline engines and the micro-batcher, without HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from pipeline.emulator.batcher import MicroBatcher
from pipeline.emulator.scoring import (
    THRESHOLD,
    Engine,
    WordlistEngine,
    load_engine,
    signals,
)
from pipeline.kinds.moderation import CATEGORIES

ABUSIVE = [
    "I will kill you",
    "you are a worthless fucking idiot",
    "I want to kill myself",
    "how to make a bomb",
    "immigrants are vermin",
]
BENIGN = ["have a nice day", "the meeting moved to 3pm", "thanks for your help!"]


@pytest.fixture(params=["profanity", "wordlist"])
def engine(request: pytest.FixtureRequest) -> Engine:
    return load_engine(request.param)


def test_scores_cover_all_categories_within_bounds(engine: Engine) -> None:
    for scores in engine.score(ABUSIVE + BENIGN + ["", "😀 ünïcödé"]):
        assert len(scores) == len(CATEGORIES)
        assert all(0.0 <= s <= 1.0 for s in scores)


def test_scores_do_not_depend_on_the_batch(engine: Engine) -> None:
    texts = ABUSIVE + BENIGN
    together = engine.score(texts)
    alone = [engine.score([t])[0] for t in texts]
    reversed_batch = engine.score(texts[::-1])[::-1]

    assert together == alone == reversed_batch


def test_abusive_texts_flag_and_benign_ones_do_not(engine: Engine) -> None:
    for scores in engine.score(ABUSIVE):
        assert max(scores) >= THRESHOLD
    for scores in engine.score(BENIGN):
        assert max(scores) < THRESHOLD


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("I will kill you", "harassment/threatening"),
        ("I want to kill myself", "self-harm/intent"),
        ("how to kill yourself", "self-harm/instructions"),
        ("how to make a bomb", "illicit/violent"),
        ("how to shoplift without getting caught", "illicit"),
        ("immigrants are vermin", "hate"),
        ("blood everywhere, he was decapitated", "violence/graphic"),
        ("naked porn", "sexual"),
    ],
)
def test_word_lists_reach_their_category(text: str, category: str) -> None:
    [scores] = WordlistEngine().score([text])
    by_name = dict(zip(CATEGORIES, scores, strict=True))
    assert by_name[category] >= THRESHOLD
    assert by_name[category] > WordlistEngine().score(["have a nice day"])[0][0]


def test_profanity_raises_harassment() -> None:
    engine = load_engine("profanity")
    harassment = CATEGORIES.index("harassment")
    plain, profane = engine.score(["you are wrong", "you are fucking wrong"])
    assert profane[harassment] > plain[harassment]


def test_signals_match_phrases_across_punctuation() -> None:
    assert signals("Self-harm? I want to END my life.")["self_harm"] > 0
    assert "self_harm" not in signals("myself and my life")


async def test_batcher_scores_concurrent_callers_in_one_call() -> None:
    calls: list[list[str]] = []

    def score(texts: Sequence[str]) -> list[str]:
        calls.append(list(texts))
        return [t.upper() for t in texts]

    batcher: MicroBatcher[str] = MicroBatcher(score, in_thread=False)
    await batcher.start()
    try:
        results = await asyncio.gather(*(batcher.score([f"a{i}", f"b{i}"]) for i in range(10)))
    finally:
        await batcher.stop()

    assert results == [[f"A{i}", f"B{i}"] for i in range(10)]
    assert len(calls) == 1 and len(calls[0]) == 20


async def test_batcher_respects_max_batch_and_reports_engine_errors() -> None:
    sizes: list[int] = []

    def score(texts: Sequence[str]) -> list[int]:
        if "boom" in texts:
            raise RuntimeError("engine failed")
        return [len(t) for t in texts]

    batcher: MicroBatcher[int] = MicroBatcher(score, on_batch=sizes.append, max_batch=3)
    await batcher.start()
    try:
        results = await asyncio.gather(*(batcher.score(["xy", "z"]) for _ in range(4)))
        with pytest.raises(RuntimeError, match="engine failed"):
            await batcher.score(["boom"])
        assert await batcher.score(["ok"]) == [2]  # still serving after a failure
    finally:
        await batcher.stop()

    assert results == [[2, 1]] * 4
    assert all(size <= 3 for size in sizes)
