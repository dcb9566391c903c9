"""speech: how fast the emulator narrates, and the pipeline's speech job against it.

One emulator (``pipeline serve``, no latency, no limits) serves both parts. Inputs come from
sample_data/chapters.parquet (``bench/speech_data.py``: paragraphs as a stream of sentences,
packed at sentence ends).

1. The emulator alone. The bare client (``bench/speech_client.py``: aiohttp, decodes nothing while
   its clock runs) posts /v1/audio/speech with 8 distinct ~500-character inputs, cycled, as mp3
   and as wav, one request at a time (c=1) and 8 at once (c=8). Audio seconds are the emulator's
   own ``audio_ms_spoken`` (GET /_emulator/stats before and after); the client's
   ``pipeline.audio.duration_s`` of the answers, measured after its clock stops, is the
   cross-check. audio s per wall s = audio seconds / the client's elapsed time (first request to
   last answer). Emulator CPU is /proc/PID/stat utime+stime before and after; CPU s per audio s
   is that over the audio seconds. Each case runs ALONE_REPEATS times, interleaved; its figures
   are from the fastest repeat (the machine is shared: a busy moment only slows a run down), and
   the range over the repeats is printed.
2. The pipeline. A 200-row speech job (``id``, ``text`` of 300-600 characters, the paragraph's
   ``voice``; mp3; the instructions of jobs/narrate_corpus.toml) runs at concurrency 4 and 8,
   each into a fresh output folder. rows/s, requests/s and audio s per wall s use summary.json's
   ``duration_s`` (the run's own clock); audio seconds written are summary.json's
   ``audio_seconds`` (the pipeline measures each file it writes). Pipeline CPU and peak RSS come
   from os.wait4; a ``--limit 0`` run of the same job gives the start-up cost (nothing sent).

Every child has a hard timeout, and all of them together fit in BUDGET_S (a child gets at most
what is left of it).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    BenchError,
    Emulator,
    Measured,
    Table,
    child_env,
    log,
    render_grid,
    run_measured,
    run_pipeline,
    run_python,
)

ROWS = 200
BODIES = 8
CONCURRENCIES = (4, 8)
# (format, concurrency, requests): ~2-4 s each on 2 cores
EMULATOR_CASES = (("mp3", 1, 24), ("mp3", 8, 48), ("wav", 1, 64), ("wav", 8, 96))
ALONE_REPEATS = 2  # each case's figures are its fastest repeat (the others show as a range)
BUDGET_S = 170.0  # every child together; the scenario normally takes ~75 s
CLIENT_TIMEOUT_S = 45.0
RUN_TIMEOUT_S = 75.0
INSTRUCTIONS = "Read like an audiobook narrator: calm, warm, unhurried."


class Budget:
    """What is left of BUDGET_S: each child's hard timeout is min(its own, what is left)."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds

    def timeout(self, own: float) -> float:
        left = self.deadline - time.monotonic()
        if left < 1:
            raise BenchError(f"speech: out of its {self.seconds:.0f} s budget")
        return min(own, left)


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


def write_speech_job(path: Path, *, input_path: str, concurrency: int) -> Path:
    """A speech job like jobs/narrate_corpus.toml over ``input_path`` (id, text, voice)."""
    path.write_text(
        "\n".join(
            [
                'kind = "speech"',
                f"name = {json.dumps(path.stem)}",
                "[input]",
                f"path = {json.dumps(input_path)}",
                'key = "id"',
                "[request]",
                'model = "gpt-4o-mini-tts"',
                'input = "{text}"',
                'voice = "{voice}"',
                f"instructions = {json.dumps(INSTRUCTIONS)}",
                'response_format = "mp3"',
                "speed = 1.0",
                "[speech]",
                "split_long_input = true",
                'file_name = "{key}"',
                "[output]",
                'dir = "unused"',
                'format = "parquet"',
                "[api]",
                f"concurrency = {concurrency}",
                "timeout_s = 60",
                "max_attempts = 3",
            ]
        )
        + "\n"
    )
    return path


def _spoken_s(stats: dict[str, Any]) -> float:
    return float(stats.get("audio_ms_spoken", 0)) / 1000


def _client(
    emulator: Emulator,
    bodies: Path,
    fmt: str,
    concurrency: int,
    requests: int,
    *,
    tmp: Path,
    name: str,
    budget: Budget,
) -> EmulatorCase:
    stats, cpu = emulator.stats(), emulator.cpu_s()
    measured = run_measured(
        [
            sys.executable,
            "-m",
            "bench.speech_client",
            emulator.base_url,
            str(bodies),
            fmt,
            str(concurrency),
            str(requests),
        ],
        timeout_s=budget.timeout(CLIENT_TIMEOUT_S),
        cwd=REPO,
        env=child_env(),
        log_dir=tmp,
        name=name,
    )
    cpu = emulator.cpu_s() - cpu
    audio_s = _spoken_s(emulator.stats()) - _spoken_s(stats)
    result = json.loads(measured.stdout.strip().splitlines()[-1])
    if result["statuses"] != {"200": requests}:
        raise BenchError(f"{name}: statuses {result['statuses']}, wanted {requests} x 200")
    return EmulatorCase(fmt, concurrency, measured, result, audio_s, cpu)


def _dir_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def run(tmp: Path, table: Table) -> dict[str, Any]:
    budget = Budget(BUDGET_S)
    rows_file, bodies = tmp / "rows.parquet", tmp / "bodies.jsonl"
    log(f"speech: {ROWS} rows and {BODIES} ~500-character bodies from sample_data/chapters.parquet")
    run_python(
        [
            "-m",
            "bench.speech_data",
            str(REPO / "sample_data" / "chapters.parquet"),
            str(rows_file),
            str(ROWS),
            str(bodies),
            str(BODIES),
        ],
        timeout_s=budget.timeout(60),
        log_dir=tmp,
        name="speech-data",
    )
    body_chars = [len(json.loads(line)["input"]) for line in bodies.read_text().splitlines()]
    with Emulator(log_dir=tmp) as emulator:
        log(f"speech: emulator {emulator.base_url} (pid {emulator.pid})")
        for fmt in ("mp3", "wav"):  # first requests load eSpeak and the codecs
            _client(emulator, bodies, fmt, 2, 4, tmp=tmp, name=f"warmup-{fmt}", budget=budget)
        alone: list[EmulatorCase] = []
        for rep in range(ALONE_REPEATS):  # interleaved, so a busy moment does not hit one case
            for fmt, concurrency, requests in EMULATOR_CASES:
                log(
                    f"speech: emulator alone, {fmt}, concurrency {concurrency}, "
                    f"{requests} requests, repeat {rep + 1}/{ALONE_REPEATS}"
                )
                alone.append(
                    _client(
                        emulator,
                        bodies,
                        fmt,
                        concurrency,
                        requests,
                        tmp=tmp,
                        name=f"alone-{fmt}-c{concurrency}-r{rep + 1}",
                        budget=budget,
                    )
                )
        log("speech: pipeline start-up run (--limit 0)")
        startup_job = write_speech_job(
            tmp / "startup.toml", input_path=rows_file.name, concurrency=4
        )
        startup, _ = run_pipeline(
            startup_job,
            emulator.base_url,
            timeout_s=budget.timeout(RUN_TIMEOUT_S),
            log_dir=tmp,
            name="startup",
            extra=("--limit", "0"),
        )
        runs: list[PipelineCase] = []
        for concurrency in CONCURRENCIES:
            log(f"speech: pipeline, {ROWS} rows, mp3, concurrency {concurrency}")
            job = write_speech_job(
                tmp / f"speech-c{concurrency}.toml",
                input_path=rows_file.name,
                concurrency=concurrency,
            )
            stats, cpu = emulator.stats(), emulator.cpu_s()
            measured, summary = run_pipeline(
                job,
                emulator.base_url,
                timeout_s=budget.timeout(RUN_TIMEOUT_S),
                log_dir=tmp,
                name=f"pipeline-c{concurrency}",
            )
            cpu = emulator.cpu_s() - cpu
            spoken = _spoken_s(emulator.stats()) - _spoken_s(stats)
            audio_dir = tmp / f"pipeline-c{concurrency}.out" / "audio"
            runs.append(
                PipelineCase(concurrency, measured, summary, cpu, spoken, _dir_mb(audio_dir))
            )
        stats = emulator.stats()
    usage = emulator.usage
    assert usage is not None
    emulator_life = {"cpu_s": usage.cpu_s, "maxrss_mb": usage.maxrss_mb, "stats": stats}
    return _report(table, body_chars, alone, startup, runs, emulator_life)


def _report(
    table: Table,
    body_chars: list[int],
    alone: list[EmulatorCase],
    startup: Measured,
    runs: list[PipelineCase],
    emulator_life: dict[str, Any],
) -> dict[str, Any]:
    # -- 1. the emulator alone
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
    grid: list[list[str]] = []

    def row(label: str, key: str, fmt: str) -> None:
        grid.append([label, *(format(f[key], fmt) for f in figures)])

    row("requests", "requests", "d")
    row("client wall s (first request to last answer)", "elapsed_s", ".2f")
    row("requests/s", "requests_per_s", ".1f")
    row("mean latency ms", "mean_latency_ms", ".0f")
    row("audio s spoken (emulator stats)", "audio_s", ".1f")
    row("  audio s per request", "audio_s_per_request", ".1f")
    row("  client check: audio.duration_s, after the clock", "client_audio_s", ".1f")
    row("audio s per wall s", "audio_s_per_wall_s", ",.0f")
    grid.append(
        [
            "  min-max over repeats",
            *(
                f"{f['audio_s_per_wall_s_range'][0]:,.0f}-{f['audio_s_per_wall_s_range'][1]:,.0f}"
                for f in figures
            ),
        ]
    )
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

    # -- 2. the pipeline
    mp3_ceiling = max(
        (f for f in figures if f["format"] == "mp3"), key=lambda f: f["audio_s_per_wall_s"]
    )
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
    grid = []

    def prow(label: str, key: str, fmt: str) -> None:
        grid.append([label, *(format(d[key], fmt) for d in per_run)])

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
        f"{_spoken_s(emulator_life['stats']):,.0f} s of audio, "
        f"peak RSS {emulator_life['maxrss_mb']:.0f} MB"
    )
    one, five, _ = os.getloadavg()
    print(f"load average after: {one:.2f} (1 min), {five:.2f} (5 min)")

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
