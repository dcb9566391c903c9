"""audiobook: what joining a narrated job into one book costs, per format.

    .venv/bin/pipeline run jobs/audiobook.toml     # narrates the sample chapters (~1 minute)
    .venv/bin/python -m bench.audiobook [OUTPUT_DIR]  # default out/audiobook

Takes the rows of a finished speech job's output folder (its results and audio files), in
chapter and paragraph order, and writes them as one book with ``pipeline.audiobook_audio``,
once as m4b and once as mp3, into a temporary folder. Prints the audio seconds, the wall time,
the process CPU time (time.process_time: this process alone, so a busy machine does not inflate
it) and the CPU milliseconds per second of audio. mp3 decodes each row twice (its ID3 chapters
are written before the audio), m4b once.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from bench.common import REPO
from pipeline.audiobook_audio import Chapter, Source, write_book
from pipeline.audiobook_options import BOOK_FORMATS


def main(output_dir: Path) -> None:
    results = pl.read_parquet(output_dir / "results.parquet").sort("chapter", "paragraph")
    sources = [
        Source(output_dir / path, fmt) for path, fmt in results["audio_path", "format"].rows()
    ]
    firsts = results.with_row_index().unique("chapter", keep="first", maintain_order=True)
    chapters = [Chapter(str(n), int(i)) for i, n in firsts["index", "chapter"].rows()]
    seconds = float(results["duration_s"].sum())
    print(f"{len(sources)} rows, {len(chapters)} chapters, {seconds:.0f} s of audio")
    with tempfile.TemporaryDirectory() as folder:
        for fmt in BOOK_FORMATS:
            path = Path(folder) / f"book.{fmt}"
            wall, cpu = time.perf_counter(), time.process_time()
            write_book(path, fmt, sources, chapters, {"title": "bench"})
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(
                f"{fmt}: {wall:.1f} s wall ({seconds / wall:.0f}x real time), {cpu:.1f} s CPU "
                f"= {cpu / seconds * 1000:.1f} ms CPU per audio second, "
                f"{path.stat().st_size / 1e6:.1f} MB"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "out" / "audiobook")
