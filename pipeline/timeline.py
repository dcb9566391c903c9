"""The run's time series for ``pipeline report``: one sample a second (coarser for long runs) of
requests, 429s, retries, rows and request latency, in ``.pipeline/timeline.jsonl``.

The file's first line describes the run (start, latency bucket edges); each next line is one
sample: what happened in the ``s`` seconds that end ``t`` seconds after the start. Appended as
the run goes, so a killed run keeps its samples; past ``MAX_SAMPLES`` neighbours are merged in
pairs (the file rewritten, the interval doubled), so a week-long run stays under ~150 kB.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from pipeline.errors import StorageError
from pipeline.journal import STATE_DIR
from pipeline.writers import storing

if TYPE_CHECKING:
    from pipeline.stats import RunStats

log = logging.getLogger(__name__)
TIMELINE_FILE = "timeline.jsonl"
SAMPLE_EVERY_S = 1.0
MAX_SAMPLES = 1000
# request latency buckets: bucket i holds answers under LATENCY_EDGES_MS[i], the last the rest
LATENCY_EDGES_MS = (5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000)
COUNTERS = ("requests", "rate_limited", "retries", "done", "failed")


@dataclass
class LatencyHistogram:
    """Every answered attempt's latency, counted in LATENCY_EDGES_MS buckets."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_EDGES_MS) + 1))

    def add(self, seconds: float) -> None:
        self.counts[bisect.bisect_right(LATENCY_EDGES_MS, seconds * 1000)] += 1


def timeline_path(output_dir: Path) -> Path:
    return output_dir / STATE_DIR / TIMELINE_FILE


def _totals(stats: RunStats) -> dict[str, Any]:
    return {
        "requests": stats.requests,
        "rate_limited": stats.rate_limited,
        "retries": stats.retries,
        "done": stats.rows_done,
        "failed": stats.rows_failed,
        "latency": list(stats.latency.counts),
    }


def merge_pairs(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Neighbouring samples summed two by two (an odd last one stays as it is)."""
    merged = []
    for first, second in zip(samples[::2], samples[1::2], strict=False):
        both = {name: first[name] + second[name] for name in COUNTERS}
        both["latency"] = [a + b for a, b in zip(first["latency"], second["latency"], strict=True)]
        merged.append({"t": second["t"], "s": round(first["s"] + second["s"], 3), **both})
    if len(samples) % 2:
        merged.append(samples[-1])
    return merged


class Timeline:
    """The samples of one run, kept in memory (at most MAX_SAMPLES) and in the file."""

    def __init__(self, output_dir: Path, stats: RunStats, max_samples: int = MAX_SAMPLES):
        self.path = timeline_path(output_dir)
        self.stats = stats
        self.max_samples = max_samples
        self.samples: list[dict[str, Any]] = []
        self.header = {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "latency_edges_ms": list(LATENCY_EDGES_MS),
        }
        self._last = _totals(stats)
        self._last_t = 0.0
        self._rewrite()

    def sample(self, now: float) -> None:
        """Record what happened since the last sample; ``now``: seconds since the run began."""
        totals = _totals(self.stats)
        delta: dict[str, Any] = {name: totals[name] - self._last[name] for name in COUNTERS}
        delta["latency"] = [
            a - b for a, b in zip(totals["latency"], self._last["latency"], strict=True)
        ]
        sample = {"t": round(now, 3), "s": round(now - self._last_t, 3), **delta}
        self._last, self._last_t = totals, now
        self.samples.append(sample)
        if len(self.samples) >= self.max_samples:
            self.samples = merge_pairs(self.samples)
            self._rewrite()
        else:
            with self.path.open("ab") as out:
                out.write(orjson.dumps(sample) + b"\n")

    def _rewrite(self) -> None:
        lines = [orjson.dumps(line) + b"\n" for line in (self.header, *self.samples)]
        with storing(self.path, self.path.parent.parent) as tmp:
            tmp.write_bytes(b"".join(lines))


async def record(output_dir: Path, stats: RunStats, stop: asyncio.Event) -> None:
    """Sample ``stats`` every SAMPLE_EVERY_S (and once more when ``stop`` is set) into the
    timeline; a folder that cannot be written loses the timeline, never the run."""
    try:
        timeline = Timeline(output_dir, stats)
        interval, started = SAMPLE_EVERY_S, time.monotonic()
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            timeline.sample(time.monotonic() - started)
            if stop.is_set():
                return
            # merged samples are coarser: sample at their interval from now on
            interval = max(SAMPLE_EVERY_S, timeline.samples[0]["s"] if timeline.samples else 0)
    except (OSError, StorageError) as error:
        log.warning("the run's timeline could not be written (%s): pipeline report lacks it", error)


def read_timeline(output_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The last run's header and samples; ({}, []) when the folder has none."""
    path = timeline_path(output_dir)
    if not path.is_file():
        return {}, []
    header: dict[str, Any] = {}
    samples: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_bytes().splitlines()):
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a line cut by kill -9
        if number == 0:
            header = value
        elif isinstance(value, dict) and set(COUNTERS) <= value.keys():
            samples.append(value)
    return header, samples
