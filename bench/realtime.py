"""realtime: the same narration job over ``protocol = "speech"`` and ``"realtime"``, one emulator.

One emulator (``pipeline serve``, no latency, no limits, eSpeak) serves every run. The input is
ROWS rows of 300-600 characters from sample_data/chapters.parquet (``bench/speech_data.py``), all
in voice ``alloy`` (fable, nova and onyx are not Realtime voices: one voice keeps the two
protocols' audio alike) as mp3, with the instructions of jobs/narrate_corpus.toml. Each protocol
runs at concurrency 4 and 8 (a realtime worker holds one socket: c = the sockets open), REPEATS
times, interleaved (the machine is shared: a busy moment only slows a run down), each into a
fresh output folder; the figures are from each case's fastest repeat.

- audio s per wall s: summary.json ``audio_seconds`` (the pipeline measures each file it writes)
  over its ``duration_s`` (the run's own clock).
- client CPU s per audio s: the pipeline process's user+sys (os.wait4) over those audio seconds;
  it includes start-up, the same for both protocols.
- emulator CPU s per audio s: /proc/PID/stat of the emulator before and after the run.
- realtime sessions: the emulator's ``realtime_sessions`` counter over the run (sockets opened).

Then the verbatim check's default: the 64 sample paragraphs as they are (``text``, pcm, one
attempt each) on that emulator, and on a second one with ``--fault realtime_reword=1.0`` under
``max_word_error_rate = 1`` (every chunk reworded, every rate kept): the spread of the manifest's
``word_error_rate`` over the rows of each.

Every child has a hard timeout; all of them together fit in BUDGET_S.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import REPO, Emulator, Table, log, run_pipeline, run_python
from bench.speech import INSTRUCTIONS, Budget

ROWS = 24
REPEATS = 2
CONCURRENCIES = (4, 8)
MODELS = {"speech": "gpt-4o-mini-tts", "realtime": "gpt-realtime-2.1-mini"}
BUDGET_S = 420.0  # the scenario takes ~3 min on 2 busy cores
RUN_TIMEOUT_S = 120.0


def write_job(
    path: Path,
    *,
    input_path: str,
    protocol: str,
    concurrency: int,
    key: str = "id",
    fmt: str = "mp3",
    max_word_error_rate: float = 0.1,
) -> Path:
    """A narration job over ``input_path`` (key, text) in one voice, by ``protocol``."""
    lines = [
        'kind = "speech"',
        f"name = {json.dumps(path.stem)}",
        "[input]",
        f"path = {json.dumps(input_path)}",
        f"key = {json.dumps(key)}",
        "[request]",
        f"model = {json.dumps(MODELS[protocol])}",
        'input = "{text}"',
        'voice = "alloy"',
        f"instructions = {json.dumps(INSTRUCTIONS)}",
        f"response_format = {json.dumps(fmt)}",
        "[speech]",
        f"protocol = {json.dumps(protocol)}",
        f"max_word_error_rate = {max_word_error_rate}",
        "[output]",
        'dir = "unused"',
        'format = "parquet"',
        "[api]",
        f"concurrency = {concurrency}",
        "timeout_s = 60",
        "max_attempts = 3",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _one(
    emulator: Emulator,
    rows: Path,
    tmp: Path,
    protocol: str,
    concurrency: int,
    name: str,
    budget: Budget,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    job = write_job(
        tmp / f"{name}.toml", input_path=rows.name, protocol=protocol, concurrency=concurrency
    )
    before, cpu = emulator.stats(), emulator.cpu_s()
    measured, summary = run_pipeline(
        job,
        emulator.base_url,
        timeout_s=budget.timeout(RUN_TIMEOUT_S),
        log_dir=tmp,
        name=name,
        extra=extra,
    )
    emulator_cpu = emulator.cpu_s() - cpu
    after = emulator.stats()
    audio_s = float(summary.get("audio_seconds", 0.0))
    wall = float(summary["duration_s"])
    return {
        "protocol": protocol,
        "concurrency": concurrency,
        "rows_done": summary["rows"]["done"],
        "audio_s": round(audio_s, 1),
        "duration_s": wall,
        "audio_s_per_wall_s": round(audio_s / wall, 1),
        "client_cpu_s": round(measured.cpu_s, 2),
        "client_cpu_s_per_audio_s": round(measured.cpu_s / audio_s, 5),
        "emulator_cpu_s_per_audio_s": round(emulator_cpu / audio_s, 5),
        "maxrss_mb": round(measured.maxrss_mb),
        "realtime_sessions": after.get("realtime_sessions", 0) - before.get("realtime_sessions", 0),
    }


def run(tmp: Path, table: Table) -> dict[str, Any]:
    budget = Budget(BUDGET_S)
    rows, bodies = tmp / "rows.parquet", tmp / "bodies.jsonl"
    run_python(
        [
            "-m",
            "bench.speech_data",
            str(REPO / "sample_data" / "chapters.parquet"),
            str(rows),
            str(ROWS),
            str(bodies),
            "1",
        ],
        timeout_s=budget.timeout(60),
        log_dir=tmp,
        name="realtime-data",
    )
    runs: list[dict[str, Any]] = []
    with Emulator(log_dir=tmp) as emulator:
        log(f"realtime: emulator {emulator.base_url} (pid {emulator.pid})")
        _one(emulator, rows, tmp, "realtime", 2, "warmup", budget, ("--limit", "4"))  # loads eSpeak
        for rep in range(REPEATS):
            for concurrency in CONCURRENCIES:
                for protocol in MODELS:
                    name = f"{protocol}-c{concurrency}-r{rep + 1}"
                    log(f"realtime: {ROWS} rows, {name}")
                    runs.append(_one(emulator, rows, tmp, protocol, concurrency, name, budget))
        verbatim = {"as written": _rates(emulator, tmp, "verbatim-clean", 0.1, budget)}
    with Emulator(["--fault", "realtime_reword=1.0", "--seed", "1"], log_dir=tmp) as reworder:
        verbatim["reworded"] = _rates(reworder, tmp, "verbatim-reworded", 1.0, budget)
    best = _best(runs)
    _print(best, runs)
    for case in best:
        label = f"{case['protocol']} c={case['concurrency']}"
        table.add("realtime", f"audio s/wall s ({label})", f"{case['audio_s_per_wall_s']:,.1f}")
        table.add(
            "realtime",
            f"client CPU s per audio s ({label})",
            f"{case['client_cpu_s_per_audio_s']:.4f}",
        )
    for label, rates in verbatim.items():
        print(f"word_error_rate of the 64 sample paragraphs, {label}: {rates}")
        table.add("realtime", f"word error rate, {label} (min/median/max)", rates)
    return {"rows": ROWS, "best": best, "runs": runs, "verbatim": verbatim}


def _rates(emulator: Emulator, tmp: Path, name: str, bound: float, budget: Budget) -> str:
    """min / median / max of ``word_error_rate`` over the sample paragraphs on ``emulator``."""
    job = write_job(
        tmp / f"{name}.toml",
        input_path=str(REPO / "sample_data" / "chapters.parquet"),
        protocol="realtime",
        concurrency=4,
        key="paragraph_id",
        fmt="pcm",
        max_word_error_rate=bound,
    )
    run_pipeline(
        job, emulator.base_url, timeout_s=budget.timeout(RUN_TIMEOUT_S), log_dir=tmp, name=name
    )
    measured = run_python(
        [
            "-c",
            "import polars as pl, sys; r = pl.read_parquet(sys.argv[1])['word_error_rate']; "
            "print(f'{r.min():.3f} / {r.median():.3f} / {r.max():.3f} ({r.len()} rows)')",
            str(tmp / f"{name}.out" / "results.parquet"),
        ],
        timeout_s=budget.timeout(60),
        log_dir=tmp,
        name=f"{name}-rates",
    )
    return measured.stdout.strip().splitlines()[-1]


def _best(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cases: dict[tuple[str, int], dict[str, Any]] = {}
    for case in runs:
        key = (case["protocol"], case["concurrency"])
        if key not in cases or case["audio_s_per_wall_s"] > cases[key]["audio_s_per_wall_s"]:
            cases[key] = case
    return [cases[key] for key in sorted(cases)]


def _print(best: list[dict[str, Any]], runs: list[dict[str, Any]]) -> None:
    figures = (
        "rows_done",
        "audio_s",
        "duration_s",
        "audio_s_per_wall_s",
        "client_cpu_s",
        "client_cpu_s_per_audio_s",
        "emulator_cpu_s_per_audio_s",
        "maxrss_mb",
        "realtime_sessions",
    )
    head = ["figure (fastest of each case)"] + [
        f"{case['protocol']} c={case['concurrency']}" for case in best
    ]
    lines = [head] + [[name] + [str(case[name]) for case in best] for name in figures]
    spreads = ["audio s/wall s, every repeat"] + [
        " / ".join(
            str(run["audio_s_per_wall_s"])
            for run in runs
            if (run["protocol"], run["concurrency"]) == (case["protocol"], case["concurrency"])
        )
        for case in best
    ]
    lines.append(spreads)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
