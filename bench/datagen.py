"""Input data for the scenarios, written by a subprocess (polars stays out of the bench process).

    python -m bench.datagen PARQUET ROWS --chars short|100 [--bodies BODIES.jsonl]

Columns ``id`` (unique string key) and ``text``. ``short``: 3-12 common words, like a comment;
``100``: ~100 characters. Deterministic (seeded), and a shorter file is a prefix of a longer one.
Written one 100,000-row row group at a time, so any size fits in memory. ``--bodies`` also writes
the moderation request bodies the pipeline will send for rows_per_request = 1 (one JSON object a
line), for the bare aiohttp reference client.
"""

from __future__ import annotations

import argparse
import itertools
import random
from collections.abc import Iterator
from pathlib import Path

_VOCABULARY = (
    "the a to and of I you it is that this was for on with not my have but be so just like "
    "what great really think love people good time know would post video thanks why more "
    "stupid terrible amazing agree never always someone please here there about again"
)
WORDS = _VOCABULARY.split()
MODEL = "omni-moderation-latest"
ROW_GROUP = 100_000  # rows a Parquet row group (and a write) holds


def texts(rows: int, chars: str, seed: int = 7) -> Iterator[str]:
    """The ``text`` column, row by row (the first N rows of any longer run are the same)."""
    rng = random.Random(seed)
    if chars == "short":
        vocabulary = [" ".join(rng.choices(WORDS, k=rng.randint(3, 12))) for _ in range(20_000)]
    else:
        width = int(chars)
        vocabulary = [" ".join(rng.choices(WORDS, k=width // 3))[:width] for _ in range(50_000)]
    size = len(vocabulary)
    return (f"{vocabulary[rng.randrange(size)]} #{i}" for i in range(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("parquet", type=Path)
    parser.add_argument("rows", type=int)
    parser.add_argument("--chars", default="short")
    parser.add_argument("--bodies", type=Path)
    args = parser.parse_args()

    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq

    column = texts(args.rows, args.chars)
    bodies = open(args.bodies, "wb") if args.bodies is not None else None  # noqa: SIM115
    schema = pa.schema([("id", pa.large_string()), ("text", pa.large_string())])
    try:
        with pq.ParquetWriter(args.parquet, schema) as writer:  # one row group at a time
            for start in range(0, max(args.rows, 1), ROW_GROUP):
                count = min(ROW_GROUP, args.rows - start)
                chunk = list(itertools.islice(column, count))
                ids = [f"r{i:09d}" for i in range(start, start + count)]
                writer.write_table(pa.table({"id": ids, "text": chunk}, schema=schema))
                if bodies is not None:
                    bodies.writelines(
                        orjson.dumps({"model": MODEL, "input": text}) + b"\n" for text in chunk
                    )
    finally:
        if bodies is not None:
            bodies.close()


if __name__ == "__main__":
    main()
