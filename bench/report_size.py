"""python -m bench.report_size [ROWS]: how long ``pipeline report`` takes, and its peak memory,
on a moderation output folder of ROWS results (default 1,000,000) in parts of 250,000.

The folder is made from one real run of the sample job (on the embedded emulator) whose results
are repeated with new keys, so the report reads what a large run leaves. Prints the figures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
PART_ROWS = 250_000


def make_folder(out: Path, rows: int) -> None:
    """A sample run's folder whose results.parquet/ is ``rows`` rows in parts."""
    job = REPO / "jobs" / "moderate_comments.toml"
    command = [sys.executable, "-m", "pipeline", "run", str(job), "--output", str(out), "--quiet"]
    subprocess.run(command, check=False, capture_output=True)
    seed = pl.read_parquet(out / "results.parquet")
    for old in (out / "results.parquet").glob("*.parquet"):
        old.unlink()
    for part, start in enumerate(range(0, rows, PART_ROWS), start=1):
        size = min(PART_ROWS, rows - start)
        index = pl.int_range(start, start + size, eager=True)
        frame = seed.sample(size, with_replacement=True, seed=part).with_columns(
            ("k" + index.cast(pl.String)).alias("comment_id")
        )
        frame.write_parquet(out / "results.parquet" / f"part-{part:05d}.parquet")


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        make_folder(out, rows)
        started = time.monotonic()
        child = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "report", str(out), "--by", "author"],
            stdout=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.monotonic() - started
        size = (out / "report.html").stat().st_size if status == 0 else 0
    print(f"rows: {rows:,}")
    print(f"pipeline report: {elapsed:.1f} s, peak RSS {usage.ru_maxrss / 1024:.0f} MB")
    print(f"report.html: {size / 1e6:.2f} MB, exit status {status}")


if __name__ == "__main__":
    main()
