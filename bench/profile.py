"""Optional: where the pipeline's client CPU goes, sampled with py-spy (not needed by the suite).

    pip install -e '.[bench]'   # py-spy, into the same venv; the scenarios do not need it
    python -m bench.profile throughput [--out stacks.txt]   # 50,000 rows, 1 row/request, c=64
    python -m bench.profile memory [--out stacks.txt]       # 100,000 rows, 100 rows/request, c=32

Runs one job like the scenario's against a fresh emulator process, under ``py-spy record
--format raw`` (200 Hz; samples only while the pipeline's threads run, not while idle), and
prints: the top functions by own time, and the share of samples per area (a sample counts for
every area found in its stack, so shares overlap). ``--out`` keeps the collapsed stacks (feed
them to flamegraph.pl or speedscope).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import (
    Emulator,
    child_env,
    pipeline_command,
    run_python,
    write_job,
)

SHAPES: dict[str, dict[str, Any]] = {
    "throughput": {"rows": 50_000, "chars": "short", "rows_per_request": 1, "concurrency": 64},
    "memory": {"rows": 100_000, "chars": "100", "rows_per_request": 100, "concurrency": 32},
}
AREAS = {
    "journal (SQLite)": ("pipeline/journal.py",),
    "Http.request (aiohttp + orjson)": ("Http.request (",),
    "aiohttp (anywhere)": ("aiohttp/",),
    "tenacity (retry wrapper)": ("tenacity/",),
    "moderation answer -> columns": ("_shape (", "_columns ("),
    "feed (read, build, journal.add)": ("pipeline/feed.py",),
    "write_outputs": ("pipeline/writers.py",),
    "imports": ("importlib",),
}


def find_py_spy() -> str | None:
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


def _frame_label(frame: str) -> str:
    match = re.match(r"(.*?) \((.*?)(?::\d+)?\)$", frame)
    if match is None:
        return frame
    name, path = match.groups()
    path = re.sub(r".*/site-packages/", "", path)
    path = re.sub(r".*/lib/python3\.\d+/", "", path)
    path = re.sub(r".*?/pipeline/", "pipeline/", path)
    return f"{name} ({path})"


def summarize(stacks: Path, top: int = 25) -> str:
    own: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    total = 0
    for line in stacks.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[_frame_label(frames[-1])] += samples
        for area, needles in AREAS.items():
            if any(n in frame for frame in frames for n in needles):
                areas[area] += samples
    if not total:
        return "no samples"
    out = [f"{total} samples", "share by area (overlapping):"]
    out += [f"  {100 * n / total:5.1f}%  {area}" for area, n in areas.most_common()]
    out.append("top functions by own time:")
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(out)


def _record(py_spy: str, shape: dict[str, Any], tmp: Path, stacks: Path) -> None:
    """The shape's job run under ``py-spy record`` against a fresh emulator, into ``stacks``."""
    run_python(
        [
            "-m",
            "bench.datagen",
            str(tmp / "input.parquet"),
            str(shape["rows"]),
            "--chars",
            str(shape["chars"]),
        ],
        timeout_s=300,
        log_dir=tmp,
        name="datagen",
    )
    job = write_job(
        tmp / "job.toml",
        input_path="input.parquet",
        output_dir="out",
        concurrency=int(shape["concurrency"]),
        rows_per_request=int(shape["rows_per_request"]),
    )
    with Emulator(log_dir=tmp) as emulator:
        subprocess.run(
            [
                py_spy,
                "record",
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(stacks),
                "--",
                *pipeline_command(),
                "run",
                str(job),
                "--base-url",
                emulator.base_url,
                "--quiet",
            ],
            env=child_env(),
            cwd=tmp,
            timeout=600,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("shape", choices=list(SHAPES))
    parser.add_argument("--out", type=Path, help="Keep the collapsed stacks here.")
    args = parser.parse_args()
    py_spy = find_py_spy()
    if py_spy is None:
        print("py-spy is not installed: pip install py-spy (optional tool)", file=sys.stderr)
        return 2
    shape = SHAPES[args.shape]
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as name:
        tmp = Path(name)
        stacks = args.out or tmp / "stacks.txt"
        _record(py_spy, shape, tmp, stacks)
        print(f"profile of the {args.shape} shape: {shape}")
        print(summarize(stacks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
