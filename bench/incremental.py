"""incremental: a 1,000,000-row job, then 1,000 rows appended; the rerun against a fresh job.

The nightly case of issue 11: a job ran to the end over 1,000,000 rows; its input then grew by
1,000 rows and the job runs again into the same folder. Two inputs, each its own job and output
folder, against one emulator (wordlist engine, a fixed 20 ms latency, no limits); moderation,
rows_per_request = 100, concurrency 32, ~100-char texts (bench/datagen.py, prefix-stable):

  csv) one CSV file that grows by 1,000 lines (appended to the same file);
  parquet) an input folder holding part-0.parquet (1,000,000 rows); part-1.parquet (1,000 rows)
     is added beside it.

Each case also runs a fresh job over the same 1,000 new rows alone (same format, fresh output
folder), in the same bench run. Figures: the rerun's wall time (process start to exit, so
interpreter start, imports, input inspection, journal, feed, sending, outputs and summary) and
its ratio to the fresh job's (target <= 3x); the journal's bytes (journal.sqlite and its -wal)
per done row after the rerun (target <= 150); and where the rerun's wall time went, from its
JSON log lines' timestamps (``--log-format json``): start-up and plan (until the feed's first
line), the feed's pass over the input, the comparison of done rows with the input, and the rest
(the last answers, the output files, summary.json) until the "run finished" line, then exit.

    python -m bench incremental         # ~5 min: two 1,000,000-row first runs
    python -m bench.incremental prepare FULL.parquet DIR ROWS   # (the data step, run as a child)
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Emulator,
    Measured,
    Table,
    log,
    render_grid,
    run_pipeline,
    run_python,
    write_job,
)

ROWS = 1_000_000
NEW = 1_000
ROWS_PER_REQUEST = 100
CONCURRENCY = 32
LATENCY_MS = 20
TARGET_RATIO = 3.0
TARGET_JOURNAL_BYTES = 150
RUN_TIMEOUT_S = 900.0
JSON_LOG = ("--log-format", "json")
# The feed's log lines (pipeline/feed.py) that mark the phases of a run.
FEED_STARTED = "feeding: "
INPUT_READ = "input read: "
COMPARED = "compared the rows done earlier"
FINISHED = "run finished"


@dataclass
class Case:
    label: str
    fresh: Measured
    first: Measured
    again: Measured
    again_summary: dict[str, Any]
    journal_bytes: int
    phases: dict[str, float]

    @property
    def ratio(self) -> float:
        return self.again.wall_s / self.fresh.wall_s

    @property
    def bytes_per_row(self) -> float:
        done: int = self.again_summary["rows"]["done"]
        return self.journal_bytes / max(done, 1)


def prepare(full: Path, folder: Path, rows: int) -> None:
    """The inputs, from the first ``rows`` + NEW rows of ``full`` (run in a child: polars)."""
    import polars as pl

    data = pl.read_parquet(full)
    old, new = data.head(rows), data.slice(rows, NEW)
    old.write_csv(folder / "grows.csv")
    (folder / "append.csv").write_bytes(new.write_csv(include_header=False).encode())
    new.write_csv(folder / "fresh.csv")
    (folder / "parts").mkdir()
    old.write_parquet(folder / "parts" / "part-0.parquet", row_group_size=100_000)
    new.write_parquet(folder / "part-1.parquet")
    (folder / "fresh-parts").mkdir()
    new.write_parquet(folder / "fresh-parts" / "part-1.parquet")


def journal_bytes(output: Path) -> int:
    state = output / ".pipeline"
    return sum(path.stat().st_size for path in state.glob("journal.sqlite*"))


def _log_times(measured: Measured) -> list[tuple[float, str]]:
    """(epoch seconds, event) of the run's JSON log lines."""
    lines = []
    for line in measured.stderr.splitlines():
        try:
            record = json.loads(line)
            when = datetime.strptime(record["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
        except (ValueError, KeyError, TypeError):
            continue
        epoch = (when - datetime(1970, 1, 1)).total_seconds()
        lines.append((epoch, str(record.get("event", ""))))
    return lines


def phases(measured: Measured, launched: float) -> dict[str, float]:
    """Seconds from one marked log line to the next (see the module docstring)."""
    lines = _log_times(measured)

    def at(prefix: str) -> float | None:
        return next((t for t, event in lines if event.startswith(prefix)), None)

    marks = [("start-up, plan, journal", at(FEED_STARTED))]
    marks += [("feed: pass over the input", at(INPUT_READ))]
    marks += [("feed: done rows compared", at(COMPARED))]
    marks += [("answers, outputs, summary", at(FINISHED))]
    found: dict[str, float] = {}
    last = launched
    for name, when in marks:
        if when is not None:
            found[name] = max(when - last, 0.0)
            last = when
    found["exit"] = max(launched + measured.wall_s - last, 0.0)
    return found


def _case(
    emulator: Emulator, tmp: Path, label: str, grown_input: str, fresh_input: str, grow: Any
) -> Case:
    def job(name: str, input_path: str) -> Path:
        return write_job(
            tmp / f"{name}.toml",
            input_path=input_path,
            output_dir="unused",
            concurrency=CONCURRENCY,
            rows_per_request=ROWS_PER_REQUEST,
            name=name,
        )

    def run(path: Path, name: str, output: str) -> tuple[Measured, dict[str, Any], float]:
        launched = time.time()
        measured, summary = run_pipeline(
            path,
            emulator.base_url,
            timeout_s=RUN_TIMEOUT_S,
            log_dir=tmp,
            name=name,
            extra=JSON_LOG,
            output=tmp / output,
        )
        return measured, summary, launched

    log(f"incremental {label}: a fresh {NEW:,}-row job")
    fresh, _, _ = run(job(f"{label}-fresh", fresh_input), f"{label}-fresh", f"{label}-fresh.out")
    grown_job = job(f"{label}-grows", grown_input)
    log(f"incremental {label}: the {ROWS:,}-row first run")
    first, first_summary, _ = run(grown_job, f"{label}-first", f"{label}.out")
    grow()
    log(f"incremental {label}: {NEW:,} rows appended, the rerun")
    again, again_summary, launched = run(grown_job, f"{label}-again", f"{label}.out")
    if first_summary["rows"]["done"] != ROWS or again_summary["rows"]["done_this_run"] != NEW:
        raise BenchError(f"{label}: {first_summary['rows']} then {again_summary['rows']}")
    return Case(
        label,
        fresh,
        first,
        again,
        again_summary,
        journal_bytes(tmp / f"{label}.out"),
        phases(again, launched),
    )


def run(tmp: Path, table: Table) -> dict[str, Any]:
    full = tmp / "full.parquet"
    log(f"incremental: generating {ROWS + NEW:,} rows of ~100-char text")
    run_python(
        ["-m", "bench.datagen", str(full), str(ROWS + NEW), "--chars", "100"],
        timeout_s=300,
        log_dir=tmp,
        name="datagen",
    )
    run_python(
        ["-m", "bench.incremental", "prepare", str(full), str(tmp), str(ROWS)],
        timeout_s=300,
        log_dir=tmp,
        name="prepare",
    )

    def append_csv() -> None:
        with open(tmp / "grows.csv", "ab") as grows:
            grows.write((tmp / "append.csv").read_bytes())

    def add_part() -> None:
        shutil.copyfile(tmp / "part-1.parquet", tmp / "parts" / "part-1.parquet")

    with Emulator(("--latency-ms", str(LATENCY_MS)), log_dir=tmp) as emulator:
        cases = [
            _case(emulator, tmp, "csv", "grows.csv", "fresh.csv", append_csv),
            _case(emulator, tmp, "parquet", "parts", "fresh-parts", add_part),
        ]
    _print(cases)
    for c in cases:
        table.add(
            "incremental",
            f"{c.label}: rerun wall / fresh {NEW:,}-row wall",
            f"{c.ratio:.2f}x ({c.again.wall_s:.2f} s / {c.fresh.wall_s:.2f} s)",
            f"<= {TARGET_RATIO:.0f}x",
            c.ratio <= TARGET_RATIO,
        )
        table.add(
            "incremental",
            f"{c.label}: journal bytes per done row",
            f"{c.bytes_per_row:.0f} B",
            f"<= {TARGET_JOURNAL_BYTES}",
            c.bytes_per_row <= TARGET_JOURNAL_BYTES,
        )
    return {
        c.label: {
            "fresh_wall_s": c.fresh.wall_s,
            "first_wall_s": c.first.wall_s,
            "again_wall_s": c.again.wall_s,
            "again_cpu_s": c.again.cpu_s,
            "again_maxrss_mb": c.again.maxrss_mb,
            "ratio": c.ratio,
            "journal_bytes": c.journal_bytes,
            "journal_bytes_per_done_row": c.bytes_per_row,
            "phases_s": c.phases,
        }
        for c in cases
    }


def _print(cases: list[Case]) -> None:
    header = [
        "case",
        f"fresh {NEW:,}-row wall s",
        f"{ROWS:,}-row 1st run s",
        "rerun wall s",
        "rerun CPU s",
        "rerun RSS MB",
        "ratio",
        "journal B/row",
    ]
    grid = [
        [
            c.label,
            f"{c.fresh.wall_s:.2f}",
            f"{c.first.wall_s:.1f}",
            f"{c.again.wall_s:.2f}",
            f"{c.again.cpu_s:.2f}",
            f"{c.again.maxrss_mb:.0f}",
            f"{c.ratio:.2f}x",
            f"{c.bytes_per_row:.0f}",
        ]
        for c in cases
    ]
    print(
        f"\nincremental: {ROWS:,} rows done, {NEW:,} appended; rows_per_request "
        f"{ROWS_PER_REQUEST}, concurrency {CONCURRENCY}, {LATENCY_MS} ms latency, no limits"
    )
    print(render_grid(header, grid))
    names = list(dict.fromkeys(name for c in cases for name in c.phases))
    print("\nwhere the rerun's wall time went (s, from its log lines):")
    print(
        render_grid(
            ["phase", *(c.label for c in cases)],
            [[name, *(f"{c.phases.get(name, 0.0):.2f}" for c in cases)] for name in names],
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.incremental")
    parser.add_argument("step", choices=["prepare"])
    parser.add_argument("full", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("rows", type=int)
    args = parser.parse_args()
    prepare(args.full, args.folder, args.rows)


if __name__ == "__main__":
    main()
