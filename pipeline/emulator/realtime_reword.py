"""The ``realtime_reword`` fault's text: what a voice model says when it does not read word for
word, a few words of the input substituted or dropped, the same for the same seed and text."""

from __future__ import annotations

import math
import random
from typing import Final

SHARE: Final[float] = 0.2  # a fifth of the words (at least one) change: clearly not verbatim
# what a chatty model puts in: plausible words, none of which a test text is likely to hold
_SUBSTITUTES: Final[tuple[str, ...]] = (
    "basically",
    "actually",
    "perhaps",
    "certainly",
    "roughly",
    "indeed",
    "simply",
    "really",
)


def reword(text: str, seed: int | None) -> str:
    """``text`` with about ``SHARE`` of its words substituted or dropped; never ``text`` itself.

    Deterministic per (seed, text), across processes (``random.Random`` seeds a str by its
    SHA-512). A text of one word gets that word substituted.
    """
    words = text.split()
    if not words:
        return _SUBSTITUTES[0]
    rng = random.Random(f"{seed}\x00{text}")
    changes = max(1, math.ceil(len(words) * SHARE))
    chosen = set(rng.sample(range(len(words)), min(changes, len(words))))
    out: list[str] = []
    for index, word in enumerate(words):
        if index not in chosen:
            out.append(word)
        elif len(words) > 1 and rng.random() < 0.5:
            continue  # dropped
        else:
            choices = [s for s in _SUBSTITUTES if s != word.lower()]
            out.append(rng.choice(choices))
    if not out:  # every word dropped: say one substitute instead
        out.append(rng.choice(_SUBSTITUTES))
    return " ".join(out)
