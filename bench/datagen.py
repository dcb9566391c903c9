"""Input data for the scenarios, written by a subprocess (polars stays out of the bench process).

    python -m bench.datagen PARQUET ROWS --chars short|100 [--bodies BODIES.jsonl]

Columns ``id`` (unique string key) and ``text``. ``short``: 3-12 common words, like a comment;
``100``: ~100 characters. Deterministic (seeded). ``--bodies`` also writes the moderation request
bodies the pipeline will send for rows_per_request = 1 (one JSON object a line), for the bare
aiohttp reference client.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

_VOCABULARY = (
    "the a to and of I you it is that this was for on with not my have but be so just like "
    "what great really think love people good time know would post video thanks why more "
    "stupid terrible amazing agree never always someone please here there about again"
)
WORDS = _VOCABULARY.split()
MODEL = "omni-moderation-latest"


def texts(rows: int, chars: str, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    if chars == "short":
        vocabulary = [" ".join(rng.choices(WORDS, k=rng.randint(3, 12))) for _ in range(20_000)]
    else:
        width = int(chars)
        vocabulary = [" ".join(rng.choices(WORDS, k=width // 3))[:width] for _ in range(50_000)]
    size = len(vocabulary)
    return [f"{vocabulary[rng.randrange(size)]} #{i}" for i in range(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("parquet", type=Path)
    parser.add_argument("rows", type=int)
    parser.add_argument("--chars", default="short")
    parser.add_argument("--bodies", type=Path)
    args = parser.parse_args()

    import orjson
    import polars as pl

    column = texts(args.rows, args.chars)
    frame = pl.DataFrame({"id": [f"r{i:09d}" for i in range(args.rows)], "text": column})
    frame.write_parquet(args.parquet, row_group_size=100_000)
    if args.bodies is not None:
        with open(args.bodies, "wb") as out:
            for text in column:
                out.write(orjson.dumps({"model": MODEL, "input": text}) + b"\n")


if __name__ == "__main__":
    main()
