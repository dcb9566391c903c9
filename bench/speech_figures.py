"""speech: the figures of its two parts, the grids it prints and its rows in the bench table;
``bench/speech.py``'s docstring defines each figure."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from bench.common import BenchError, Measured, Table, figure_line, range_line, render_grid

ROWS = 200
ALONE_REPEATS = 2  # each case's figures are its fastest repeat (the others show as a range)


@dataclass
class EmulatorCase:
    fmt: str
    concurrency: int
    client: Measured
    result: dict[str, Any]
    audio_s: float  # the emulator's audio_ms_spoken over the case
    emulator_cpu_s: float


@dataclass
class PipelineCase:
    concurrency: int
    measured: Measured
    summary: dict[str, Any]
    emulator_cpu_s: float
    emulator_audio_s: float
    audio_mb: float


def spoken_s(stats: dict[str, Any]) -> float:
    return float(stats.get("audio_ms_spoken", 0)) / 1000


def report(
    table: Table,
    body_chars: list[int],
    alone: list[EmulatorCase],
    startup: Measured,
    runs: list[PipelineCase],
    emulator_life: dict[str, Any],
) -> dict[str, Any]:
    """Print both parts' grids, add the table rows; the figures as JSON."""
    figures = _alone_figures(alone)
    _print_alone(figures, body_chars)
    per_run = _pipeline_figures(runs, figures, startup)
    _print_pipeline(per_run, startup, emulator_life, figures)
    _add_rows(table, figures, per_run)
    return {
        "rows": ROWS,
        "body_chars": body_chars,
        "emulator_alone": figures,
        "pipeline": per_run,
        "pipeline_startup": {
            "cpu_s": startup.cpu_s,
            "wall_s": startup.wall_s,
            "maxrss_mb": startup.maxrss_mb,
        },
        "emulator": emulator_life,
    }


def _alone_figures(alone: list[EmulatorCase]) -> list[dict[str, Any]]:
    """One dict a case: its fastest repeat, with the range over the repeats."""
    every: list[dict[str, Any]] = []
    for case in alone:
        r = case.result
        elapsed = r["elapsed_s"]
        every.append(
            {
                "case": f"{case.fmt} c={case.concurrency}",
                "format": case.fmt,
                "concurrency": case.concurrency,
                "requests": r["requests"],
                "elapsed_s": elapsed,
                "requests_per_s": r["requests"] / elapsed,
                "mean_latency_ms": r["mean_latency_ms"],
                "audio_s": case.audio_s,
                "audio_s_per_request": case.audio_s / r["requests"],
                "audio_s_per_wall_s": case.audio_s / elapsed,
                "client_audio_s": r["audio_s"],
                "answer_kb": r["answer_bytes"] / r["requests"] / 1000,
                "emulator_cpu_s": case.emulator_cpu_s,
                "emulator_cpu_s_per_audio_s": case.emulator_cpu_s / case.audio_s,
                "emulator_cores": case.emulator_cpu_s / case.client.wall_s,
                "client_cpu_s": case.client.cpu_s,
                "deterministic": r["same_size_per_body"],
            }
        )
    figures: list[dict[str, Any]] = []
    for label in dict.fromkeys(f["case"] for f in every):
        reps = [f for f in every if f["case"] == label]
        fastest = dict(max(reps, key=lambda f: f["audio_s_per_wall_s"]))
        fastest["repeats"] = len(reps)
        fastest["audio_s_per_wall_s_range"] = (
            min(f["audio_s_per_wall_s"] for f in reps),
            max(f["audio_s_per_wall_s"] for f in reps),
        )
        figures.append(fastest)
    return figures


def _print_alone(figures: list[dict[str, Any]], body_chars: list[int]) -> None:
    grid: list[list[str]] = []

    def row(label: str, key: str, fmt: str) -> None:
        grid.append(figure_line(label, figures, key, fmt))

    row("requests", "requests", "d")
    row("client wall s (first request to last answer)", "elapsed_s", ".2f")
    row("requests/s", "requests_per_s", ".1f")
    row("mean latency ms", "mean_latency_ms", ".0f")
    row("audio s spoken (emulator stats)", "audio_s", ".1f")
    row("  audio s per request", "audio_s_per_request", ".1f")
    row("  client check: audio.duration_s, after the clock", "client_audio_s", ".1f")
    row("audio s per wall s", "audio_s_per_wall_s", ",.0f")
    grid.append(range_line("  min-max over repeats", figures, "audio_s_per_wall_s_range", ",.0f"))
    row("emulator CPU s", "emulator_cpu_s", ".2f")
    row("emulator CPU s per audio s", "emulator_cpu_s_per_audio_s", ".4f")
    row("emulator cores busy (CPU s / wall s)", "emulator_cores", ".2f")
    row("answer KB (mean)", "answer_kb", ",.0f")
    row("bare client CPU s (whole process)", "client_cpu_s", ".2f")
    mean_chars = sum(body_chars) / len(body_chars)
    print(
        f"\nspeech 1, the emulator alone: bare aiohttp client, {len(body_chars)} inputs of "
        f"{min(body_chars)}-{max(body_chars)} characters (mean {mean_chars:.0f}), cycled; "
        f"no latency, no limits; each case's fastest of {ALONE_REPEATS} repeats"
    )
    print(render_grid(["figure", *(f["case"] for f in figures)], grid))
    if not all(f["deterministic"] for f in figures):
        print("  note: the same body did not always give the same number of bytes")


def _mp3_ceiling(figures: list[dict[str, Any]]) -> dict[str, Any]:
    """The emulator's fastest mp3 case alone: what the pipeline's audio rate is measured against."""
    return max((f for f in figures if f["format"] == "mp3"), key=lambda f: f["audio_s_per_wall_s"])


def _pipeline_figures(
    runs: list[PipelineCase], figures: list[dict[str, Any]], startup: Measured
) -> list[dict[str, Any]]:
    """One dict a pipeline run; BenchError for a run that did not answer every row with 200."""
    mp3_ceiling = _mp3_ceiling(figures)
    per_run: list[dict[str, Any]] = []
    for run_case in runs:
        s = run_case.summary
        done = s["rows"]["done_this_run"]
        requests = s["requests"]["sent"]
        ok = s["requests"]["by_status"].get("200", 0)
        if done != ROWS or s["rows"]["failed_this_run"] or ok != requests:
            raise BenchError(
                f"pipeline c={run_case.concurrency}: {done} rows done, "
                f"{s['rows']['failed_this_run']} failed, statuses {s['requests']['by_status']}"
            )
        duration = s["duration_s"]
        audio_s = float(s.get("audio_seconds", 0.0))
        cpu = run_case.measured.cpu_s
        per_run.append(
            {
                "concurrency": run_case.concurrency,
                "rows": done,
                "requests": requests,
                "retries": s["requests"]["retries"],
                "duration_s": duration,
                "wall_s": run_case.measured.wall_s,
                "rows_per_s": done / duration,
                "requests_per_s": requests / duration,
                "audio_s": audio_s,
                "emulator_audio_s": run_case.emulator_audio_s,
                "audio_s_per_wall_s": audio_s / duration,
                "audio_s_per_wall_s_incl_start": audio_s / run_case.measured.wall_s,
                "pct_of_emulator_alone": 100
                * (audio_s / duration)
                / mp3_ceiling["audio_s_per_wall_s"],
                "cpu_s": cpu,
                "cpu_ms_per_audio_s_net": 1000 * (cpu - startup.cpu_s) / audio_s,
                "emulator_cpu_s": run_case.emulator_cpu_s,
                "emulator_cpu_ms_per_audio_s": 1000 * run_case.emulator_cpu_s / audio_s,
                "cores_busy": (cpu + run_case.emulator_cpu_s) / run_case.measured.wall_s,
                "maxrss_mb": run_case.measured.maxrss_mb,
                "audio_mb": run_case.audio_mb,
                "characters_sent": s.get("characters_sent", 0),
            }
        )
    return per_run


def _print_pipeline(
    per_run: list[dict[str, Any]],
    startup: Measured,
    emulator_life: dict[str, Any],
    figures: list[dict[str, Any]],
) -> None:
    mp3_ceiling = _mp3_ceiling(figures)
    grid: list[list[str]] = []

    def prow(label: str, key: str, fmt: str) -> None:
        grid.append(figure_line(label, per_run, key, fmt))

    prow("rows done", "rows", ",d")
    prow("requests (all 200)", "requests", ",d")
    prow("retries", "retries", "d")
    prow("duration s (summary.json)", "duration_s", ".2f")
    prow("wall s (process)", "wall_s", ".2f")
    prow("rows/s", "rows_per_s", ".2f")
    prow("requests/s", "requests_per_s", ".2f")
    prow("audio s written (summary audio_seconds)", "audio_s", ",.1f")
    prow("  audio s spoken (emulator stats)", "emulator_audio_s", ",.1f")
    prow("audio s written per wall s (duration s)", "audio_s_per_wall_s", ",.0f")
    prow("  per wall s incl. process start-up", "audio_s_per_wall_s_incl_start", ",.0f")
    prow(f"  % of the emulator alone ({mp3_ceiling['case']})", "pct_of_emulator_alone", ".0f")
    prow("pipeline CPU s (user+sys)", "cpu_s", ".2f")
    prow("  pipeline CPU ms per audio s, net of start-up", "cpu_ms_per_audio_s_net", ".2f")
    prow("emulator CPU s", "emulator_cpu_s", ".2f")
    prow("  emulator CPU ms per audio s", "emulator_cpu_ms_per_audio_s", ".2f")
    prow("cores busy, both (CPU s / wall s)", "cores_busy", ".2f")
    prow("pipeline peak RSS MB", "maxrss_mb", ".0f")
    prow("audio files MB", "audio_mb", ".1f")
    chars = [d["characters_sent"] for d in per_run]
    print(
        f"\nspeech 2, the pipeline: {ROWS} rows of 300-600 characters ({chars[0]:,.0f} in all), "
        "mp3, no latency, no limits"
    )
    print(render_grid(["figure", *(f"c={d['concurrency']}" for d in per_run)], grid))
    print(
        f"pipeline start-up (--limit 0): {startup.cpu_s:.2f} s CPU, {startup.wall_s:.2f} s wall, "
        f"peak RSS {startup.maxrss_mb:.0f} MB"
    )
    print(
        f"emulator, whole life: {emulator_life['cpu_s']:.1f} s CPU for "
        f"{emulator_life['stats']['requests']:,} requests, "
        f"{spoken_s(emulator_life['stats']):,.0f} s of audio, "
        f"peak RSS {emulator_life['maxrss_mb']:.0f} MB"
    )
    one, five, _ = os.getloadavg()
    print(f"load average after: {one:.2f} (1 min), {five:.2f} (5 min)")


def _add_rows(table: Table, figures: list[dict[str, Any]], per_run: list[dict[str, Any]]) -> None:
    by_case = {f["case"]: f for f in figures}
    for label in ("mp3 c=1", "mp3 c=8", "wav c=1", "wav c=8"):
        if label in by_case:
            table.add(
                "speech",
                f"emulator audio s/wall s ({label})",
                f"{by_case[label]['audio_s_per_wall_s']:,.0f}",
            )
    for label in ("mp3 c=8", "wav c=8"):
        if label in by_case:
            table.add(
                "speech",
                f"emulator CPU s per audio s ({label})",
                f"{by_case[label]['emulator_cpu_s_per_audio_s']:.4f}",
            )
    best = max(per_run, key=lambda d: d["audio_s_per_wall_s"])
    c = best["concurrency"]
    table.add("speech", f"pipeline rows/s (best: c={c})", f"{best['rows_per_s']:.2f}")
    table.add(
        "speech",
        f"pipeline audio s/wall s (c={c})",
        f"{best['audio_s_per_wall_s']:,.0f} ({best['pct_of_emulator_alone']:.0f} % of emulator)",
    )
    table.add(
        "speech",
        f"pipeline / emulator CPU s (c={c})",
        f"{best['cpu_s']:.1f} / {best['emulator_cpu_s']:.1f}",
    )
    table.add("speech", f"pipeline peak RSS MB (c={c})", f"{best['maxrss_mb']:.0f}")
