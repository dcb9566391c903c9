"""Seeded draws over named probabilities (faults, run outcomes): checked once, drawn per request."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence


def check_probabilities(table: Mapping[str, float], known: Sequence[str], what: str) -> None:
    """Raise ValueError for an unknown name, a probability outside [0, 1] or a sum over 1.

    ``what`` names the things in messages ("fault", "run outcome").
    """
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ValueError(
            f"unknown {what}(s) {', '.join(map(repr, unknown))}; known {what}s: {', '.join(known)}"
        )
    for name, probability in table.items():
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"{what} {name!r}: probability {probability} is not within [0, 1]")
    if sum(table.values()) > 1.0 + 1e-9:
        raise ValueError(f"{what} probabilities add up to more than 1 (at most one a draw)")


class WeightedDraw:
    """At most one name per draw, each with its probability, in ``known`` order; None otherwise."""

    def __init__(
        self, table: Mapping[str, float], known: Sequence[str], rng: random.Random, what: str
    ) -> None:
        check_probabilities(table, known, what)
        self._rng = rng
        self._table = [(name, table[name]) for name in known if table.get(name, 0.0) > 0]

    def draw(self) -> str | None:
        if not self._table:
            return None
        point = self._rng.random()
        for name, probability in self._table:
            if point < probability:
                return name
            point -= probability
        return None
