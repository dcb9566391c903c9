"""The offline moderation engines: texts in, scores for all 13 categories out, deterministically.

Two engines share one formula. Word lists (``wordlists.py``) give signals such as "a violent
word", "addressed to you", "how to"; an offensiveness probability comes from alt-profanity-check
(engine ``profanity``, the ``local`` extra) or, for the cheap ``wordlist`` engine, from the
profane and insulting words alone. Each category score is a fixed function of these, in [0, 1];
a category is flagged at ``THRESHOLD``. It is a keyword heuristic, not OpenAI's model: it does
not understand negation, context or images, and says so by labelling its answers as local.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from pipeline.emulator.errors import EmulatorError
from pipeline.emulator.wordlists import SIGNALS

# the categories whose category_applied_input_types may contain "image" (per the schema)
IMAGE_CATEGORIES: Final[frozenset[str]] = frozenset(
    {
        "self-harm",
        "self-harm/intent",
        "self-harm/instructions",
        "sexual",
        "violence",
        "violence/graphic",
    }
)
THRESHOLD: Final[float] = 0.5
MISSING_EXTRA: Final[str] = (
    "the local emulator needs the `local` extra: pip install 'pipeline[local]'"
)

Scores = tuple[float, ...]  # one score per category, in CATEGORIES order

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SIGNAL_CAP = 3.0


def _index() -> tuple[dict[str, tuple[tuple[str, float], ...]], frozenset[str], int]:
    index: dict[str, list[tuple[str, float]]] = {}
    for signal, terms in SIGNALS.items():
        for term, weight in terms.items():
            index.setdefault(term, []).append((signal, weight))
    starts = frozenset(term.split(" ", 1)[0] for term in index if " " in term)
    longest = max(term.count(" ") + 1 for term in index)
    return {t: tuple(hits) for t, hits in index.items()}, starts, longest


_INDEX, _PHRASE_STARTS, _LONGEST = _index()


def signals(text: str) -> dict[str, float]:
    """The word-list signals found in ``text``: signal name -> summed weight (capped)."""
    tokens = _TOKEN.findall(text.lower().replace("\u2019", "'"))
    found: dict[str, float] = {}
    count = len(tokens)
    for i, token in enumerate(tokens):
        for signal, weight in _INDEX.get(token, ()):
            found[signal] = found.get(signal, 0.0) + weight
        if token in _PHRASE_STARTS:
            for n in range(2, min(_LONGEST, count - i) + 1):
                for signal, weight in _INDEX.get(" ".join(tokens[i : i + n]), ()):
                    found[signal] = found.get(signal, 0.0) + weight
    return {signal: min(value, _SIGNAL_CAP) for signal, value in found.items()}


def _sq(value: float) -> float:
    """Squash a non-negative evidence sum into [0, 1)."""
    return 1.0 - math.exp(-value)


def _any(*probabilities: float) -> float:
    """Noisy-or: the chance that at least one piece of evidence holds."""
    miss = 1.0
    for p in probabilities:
        miss *= 1.0 - p
    return 1.0 - miss


def category_scores(found: dict[str, float], offensive: float) -> Scores:
    """All 13 scores from word-list signals and an offensiveness probability in [0, 1]."""
    s = found.get
    target = min(1.0, s("target", 0.0))
    first_person = min(1.0, s("first_person", 0.0))
    how_to = min(1.0, s("instructions", 0.0))
    group = min(1.0, s("identity", 0.0))
    # "kill myself" is self-harm, not violence against someone
    violent = max(0.0, s("violence", 0.0) - s("self_harm", 0.0))
    threat = s("threat", 0.0) + min(1.0, violent) * min(1.0, s("intent", 0.0))
    dehumanize = s("dehumanize", 0.0)

    hate = _any(
        _sq(1.4 * dehumanize * group + 0.3 * dehumanize),
        0.75 * group * offensive,
        0.8 * group * _sq(0.8 * s("insult", 0.0)),
    )
    harassment = _any(
        offensive * (0.35 + 0.55 * target),
        _sq(0.9 * s("insult", 0.0) * (0.4 + 0.6 * target)),
        _sq(1.2 * threat * target),
    )
    self_harm = _sq(1.3 * s("self_harm", 0.0))
    sexual = _any(_sq(s("sexual", 0.0)), 0.2 * offensive)
    weapon = s("weapon", 0.0)
    floor = 1e-4 + 0.02 * offensive  # real scores are never exactly zero
    scores = (
        hate,
        hate * _sq(1.5 * threat + 0.5 * violent * group),
        harassment,
        _sq(1.6 * threat * target),
        _sq(0.8 * s("illicit", 0.0) * (0.5 + how_to) + 0.5 * weapon * how_to),
        _sq(1.2 * weapon * (0.3 + how_to)),
        self_harm,
        self_harm * _sq(1.5 * min(1.0, s("intent", 0.0)) + 0.5 * first_person),
        self_harm * _sq(2.0 * how_to),
        sexual,
        min(sexual, _sq(1.5 * s("sexual", 0.0) * s("minor", 0.0))),
        _sq(0.6 * violent + 0.6 * s("gore", 0.0) + 0.9 * threat),
        _sq(1.1 * s("gore", 0.0)),
    )
    return tuple(_any(score, floor) for score in scores)


class Engine(Protocol):
    """Scores a batch of texts; the same text always gets the same scores."""

    model: str
    in_thread: bool  # score in a worker thread (True when the work is mostly native code)

    def score(self, texts: Sequence[str]) -> list[Scores]: ...


class WordlistEngine:
    """Word lists only: cheap, for benchmarks; offensiveness from profane and insulting words."""

    model = "local/wordlist"
    in_thread = False

    def score(self, texts: Sequence[str]) -> list[Scores]:
        out: list[Scores] = []
        for text in texts:
            found = signals(text)
            offensive = _sq(1.2 * found.get("profane", 0.0) + 0.5 * found.get("insult", 0.0))
            out.append(category_scores(found, offensive))
        return out


class ProfanityEngine:
    """alt-profanity-check's offensiveness model (scored a batch at a time) plus word lists."""

    model = "local/alt-profanity-check"
    in_thread = True

    def __init__(self, predict_prob: Callable[[list[str]], Any]) -> None:
        self._predict_prob = predict_prob

    def score(self, texts: Sequence[str]) -> list[Scores]:
        if not texts:
            return []
        probabilities = self._predict_prob(list(texts)).tolist()
        return [
            category_scores(signals(text), min(1.0, max(0.0, float(p))))
            for text, p in zip(texts, probabilities, strict=True)
        ]


def load_engine(name: str) -> Engine:
    """The engine called ``name``; EmulatorError when the profanity engine is not installed."""
    if name == "wordlist":
        return WordlistEngine()
    if name == "profanity":
        try:
            from profanity_check import predict_prob
        except ImportError as exc:
            raise EmulatorError(MISSING_EXTRA) from exc
        return ProfanityEngine(predict_prob)
    raise ValueError(f"unknown moderation engine {name!r}")
