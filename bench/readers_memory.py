"""Peak memory of readers.inspect + readers.iter_batches over large CSV, Parquet and JSONL inputs.

Usage: python bench/readers_memory.py [ROWS]   (default 1,000,000 rows; each ~100-char text)

Each format is measured in a fresh process, so ru_maxrss is that reader's own peak; the
baseline line is the same process after importing polars/pyarrow and before reading.
"""

from __future__ import annotations

import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = (
    "the a to and of I you it is that this was for on with not my have but be so just like "
    "what great really think love people good time know would post video thanks why more "
    "stupid terrible amazing agree never always someone please here there about again"
)


def generate(folder: Path, rows: int) -> None:
    import polars as pl

    rng = random.Random(7)
    vocabulary = [" ".join(rng.choices(WORDS.split(), k=20))[:100] for _ in range(50_000)]
    texts = [vocabulary[rng.randrange(50_000)] + f" #{i}" for i in range(rows)]
    frame = pl.DataFrame({"comment_id": [f"c{i:08d}" for i in range(rows)], "text": texts})
    frame.write_parquet(folder / "big.parquet")
    frame.write_csv(folder / "big.csv")
    frame.write_ndjson(folder / "big.jsonl")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(path: Path) -> None:
    import polars  # noqa: F401  (baseline includes the libraries)
    import pyarrow  # noqa: F401

    from pipeline import readers

    baseline = peak_mb()
    start = time.perf_counter()
    files = readers.find_files(str(path), path.parent)
    info = readers.inspect(files, "comment_id")
    after_inspect = time.perf_counter()
    peak_inspect = peak_mb()
    batches = chars = 0
    for batch in readers.iter_batches(files, ["comment_id", "text"], batch_size=10_000):
        batches += 1
        chars += int(batch.get_column("text").str.len_chars().sum())
    done = time.perf_counter()
    print(
        f"{path.suffix[1:]:8} {path.stat().st_size / 2**20:7.0f} MB  rows={info.rows:,} "
        f"batches={batches} baseline={baseline:.0f} MB peak after inspect={peak_inspect:.0f} MB "
        f"after iterate={peak_mb():.0f} MB "
        f"inspect={after_inspect - start:.2f}s iterate={done - after_inspect:.2f}s"
    )


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        measure(Path(sys.argv[2]))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--generate":
        generate(Path(sys.argv[2]), int(sys.argv[3]))
        return
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        # Children inherit the parent's ru_maxrss at fork, so this process stays small.
        subprocess.run([sys.executable, __file__, "--generate", tmp, str(rows)], check=True)
        print(f"{rows:,} rows; peak RSS per format (fresh process each)")
        for name in ("big.parquet", "big.csv", "big.jsonl"):
            path = Path(tmp) / name
            subprocess.run([sys.executable, __file__, "--measure", str(path)], check=True)


if __name__ == "__main__":
    main()
