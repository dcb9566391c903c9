"""What every scenario shares: job files, pipeline runs, reference clients, tables; and, from
``bench.processes`` and ``bench.emulator_process``, measured children and the emulator.

Standard library only (see bench/__init__.py for why the bench process must stay small).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.emulator_process import (
    URL_LINE,
    Count,
    Emulator,
    EmulatorUsage,
    StatsPoller,
    count_answered,
    count_requests,
)
from bench.processes import (
    CLK_TCK,
    FAKE_KEY,
    REPO,
    BenchError,
    Measured,
    child_env,
    own_peak_mb,
    pipeline_command,
    proc_cpu_s,
    run_measured,
    run_python,
)

__all__ = [
    "CLK_TCK",
    "FAKE_KEY",
    "REPO",
    "URL_LINE",
    "BenchError",
    "Count",
    "Emulator",
    "EmulatorUsage",
    "Measured",
    "Row",
    "StatsPoller",
    "Table",
    "child_env",
    "count_answered",
    "count_requests",
    "figure_line",
    "log",
    "own_peak_mb",
    "pipeline_command",
    "proc_cpu_s",
    "range_line",
    "render_grid",
    "run_bare",
    "run_measured",
    "run_pipeline",
    "run_python",
    "run_script",
    "write_job",
]


# -- job files and summaries ----------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)  # strings, ints, floats: valid TOML as JSON writes them


def write_job(
    path: Path,
    *,
    input_path: str,
    output_dir: str,
    concurrency: int,
    rows_per_request: int = 1,
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
    timeout_s: float = 30,
    max_attempts: int = 6,
    name: str | None = None,
) -> Path:
    """A moderation job over ``input_path`` (key ``id``, text in ``text``), named ``name`` (by
    default the file's stem: an output folder holds one job, so jobs sharing one name it)."""
    api: dict[str, Any] = {
        "concurrency": concurrency,
        "max_attempts": max_attempts,
        "timeout_s": timeout_s,
    }
    if requests_per_minute is not None:
        api["requests_per_minute"] = requests_per_minute
    if tokens_per_minute is not None:
        api["tokens_per_minute"] = tokens_per_minute
    doc: dict[str, dict[str, Any]] = {
        "input": {"path": input_path, "key": "id"},
        "request": {"model": "omni-moderation-latest", "input": "{text}"},
        "output": {"dir": output_dir, "format": "parquet"},
        "api": api,
        "moderation": {"rows_per_request": rows_per_request},
    }
    lines = ['kind = "moderation"', f"name = {_toml_value(name or path.stem)}"]
    for section, table in doc.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_pipeline(
    job: Path,
    base_url: str,
    *,
    timeout_s: float,
    log_dir: Path,
    name: str,
    extra: Sequence[str] = (),
    output: Path | None = None,
    ok_codes: tuple[int, ...] = (0,),
) -> tuple[Measured, dict[str, Any]]:
    """``pipeline run JOB --base-url URL --quiet`` measured; returns it and its summary.json
    (BenchError when the run wrote none).

    Its output folder is ``output``, by default a fresh ``NAME.out`` in ``log_dir``."""
    if not base_url.startswith("http://127.0.0.1:"):
        raise BenchError(f"refusing to run against {base_url}: the bench targets 127.0.0.1 only")
    output = output or log_dir / f"{name}.out"
    if "--limit" in extra:  # a limit that leaves input rows unread ends interrupted: exit 4
        ok_codes = (*ok_codes, 4)
    measured = run_measured(
        [
            *pipeline_command(),
            "run",
            str(job),
            "--base-url",
            base_url,
            "--output",
            str(output),
            "--quiet",
            *extra,
        ],
        timeout_s=timeout_s,
        cwd=job.parent,
        env=child_env(),
        log_dir=log_dir,
        name=name,
        ok_codes=ok_codes,
    )
    summary_path = output / "summary.json"
    if not summary_path.exists():
        raise BenchError(f"{name}: no summary.json (exit {measured.exit_code})")
    return measured, json.loads(summary_path.read_text())


def run_script(
    script: str, *args: str, timeout_s: float, log_dir: Path, name: str
) -> tuple[Measured, dict[str, Any]]:
    """bench/``script`` with ``args`` as a measured child; returns it and the JSON object it
    printed last (the reference clients print one line of results)."""
    measured = run_measured(
        [sys.executable, str(REPO / "bench" / script), *args],
        timeout_s=timeout_s,
        cwd=log_dir,
        log_dir=log_dir,
        name=name,
    )
    result: dict[str, Any] = json.loads(measured.stdout.strip().splitlines()[-1])
    return measured, result


def run_bare(
    base_url: str,
    bodies: Path,
    concurrency: int,
    *options: str,
    timeout_s: float,
    log_dir: Path,
    name: str,
) -> tuple[Measured, dict[str, Any]]:
    """bench/bare_client.py posting ``bodies`` to ``base_url``, measured; returns it and the
    JSON line it printed (requests, statuses, elapsed_s)."""
    args = (base_url, str(bodies), str(concurrency), *options)
    return run_script("bare_client.py", *args, timeout_s=timeout_s, log_dir=log_dir, name=name)


# -- output -----------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    figure: str
    value: str
    target: str = ""
    ok: bool | None = None  # None: informative, no target
    reference: str = ""  # the bare-aiohttp figure measured in the same run, where one applies


@dataclass
class Table:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(
        self,
        scenario: str,
        figure: str,
        value: str,
        target: str = "",
        ok: bool | None = None,
        reference: str = "",
    ) -> None:
        self.rows.append(Row(scenario, figure, value, target, ok, reference))

    def render(self) -> str:
        head = ("scenario", "figure", "value", "target", "", "bare aiohttp")
        cells = [
            (
                r.scenario,
                r.figure,
                r.value,
                r.target,
                {None: "", True: "ok", False: "MISS"}[r.ok],
                r.reference,
            )
            for r in self.rows
        ]
        widths = [
            max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
            for i, h in enumerate(head)
        ]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(x.ljust(w) for x, w in zip(cells, widths, strict=True)).rstrip()

        out = [line(head), "  ".join("-" * w for w in widths).rstrip()]
        out += [line(c) for c in cells]
        out += [f"  * {note}" for note in self.notes]
        return "\n".join(out)

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": [r.__dict__ for r in self.rows],
            "notes": list(self.notes),
        }


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the tables."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def figure_line(label: str, columns: Sequence[dict[str, Any]], key: str, fmt: str) -> list[str]:
    """A grid line: ``label``, then each column's ``key`` in ``fmt``."""
    return [label, *(format(column[key], fmt) for column in columns)]


def range_line(label: str, columns: Sequence[dict[str, Any]], key: str, fmt: str) -> list[str]:
    """A grid line: ``label``, then each column's (low, high) ``key`` as ``low-high`` in ``fmt``."""
    return [label, *(f"{format(c[key][0], fmt)}-{format(c[key][1], fmt)}" for c in columns)]


def render_grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain fixed-width table (first column left-aligned, the rest right-aligned)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])
