"""What every scenario shares: measured subprocesses, the emulator process and a poller of its
counters, job files, tables.

Standard library only (see bench/__init__.py for why the bench process must stay small).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FAKE_KEY = "sk-bench-fake"
CLK_TCK = os.sysconf("SC_CLK_TCK")
URL_LINE = re.compile(r"pipeline emulator listening on (http://127\.0\.0\.1:(\d+)/v1)\s*$")


class BenchError(RuntimeError):
    """A scenario could not be measured (a child failed, timed out or said something odd)."""


def pipeline_command() -> list[str]:
    """The ``pipeline`` console script next to this interpreter, else ``python -m pipeline``."""
    script = Path(sys.executable).with_name("pipeline")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipeline"]


def child_env() -> dict[str, str]:
    """The environment for pipeline children: a fake key, none of the OpenAI routing variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID")
        and not k.lower().endswith("_proxy")
    }
    env["OPENAI_API_KEY"] = FAKE_KEY
    env["PYTHONUNBUFFERED"] = "1"
    return env


def own_peak_mb() -> float:
    """This (bench) process's peak RSS: a floor under every child's ru_maxrss."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- measured children ----------------------------------------------------------------------


@dataclass
class Measured:
    """One finished child: exit code, wall time, CPU (user+sys) and peak RSS from wait4."""

    cmd: list[str]
    exit_code: int
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_mb: float
    stdout: str = ""
    stderr: str = ""

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # the child leads its own session: pgid == pid


def _wait4(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[int, Any, bool]:
    """Reap ``proc`` with os.wait4 (its own rusage); SIGKILL its group after ``timeout_s``.

    Waits on a pidfd in the main thread, waking at least every 0.2 s, so Ctrl-C and SIGTERM
    (see __main__) interrupt the bench promptly; the child's group is then killed and reaped.
    """
    deadline = time.monotonic() + timeout_s
    expired = False
    pidfd = os.pidfd_open(proc.pid)
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            left = deadline - time.monotonic()
            if left <= 0 and not expired:
                expired = True
                _kill_group(proc.pid)
            select.select([pidfd], [], [], min(max(left, 0.05), 0.2))
    except BaseException:  # interrupted: never leave the child behind
        _kill_group(proc.pid)
        os.wait4(proc.pid, 0)
        proc.returncode = -9
        raise
    finally:
        os.close(pidfd)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage, expired


def run_measured(
    cmd: Sequence[str],
    *,
    timeout_s: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    log_dir: Path | None = None,
    name: str = "child",
    check: bool = True,
    ok_codes: tuple[int, ...] = (0,),
) -> Measured:
    """Run ``cmd`` to the end in its own session; hard timeout; rusage of that child only.

    stdout/stderr go to files in ``log_dir`` (never to pipes that could fill) and are returned.
    """
    log_dir = log_dir or Path(cwd or ".")
    out_path, err_path = log_dir / f"{name}.stdout", log_dir / f"{name}.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        code, usage, expired = _wait4(proc, timeout_s)
        wall = time.perf_counter() - start
    measured = Measured(
        list(cmd),
        code,
        wall,
        usage.ru_utime,
        usage.ru_stime,
        usage.ru_maxrss / 1024,  # Linux: KiB
        out_path.read_text(errors="replace"),
        err_path.read_text(errors="replace"),
    )
    if expired:
        raise BenchError(f"{name} timed out after {timeout_s:.0f}s: {' '.join(cmd)}")
    if check and code not in ok_codes:
        tail = measured.stderr.strip().splitlines()[-15:]
        raise BenchError(
            f"{name} exited {code}: {' '.join(cmd)}\n" + "\n".join("  " + line for line in tail)
        )
    return measured


def run_python(args: Sequence[str], *, timeout_s: float, log_dir: Path, name: str) -> Measured:
    """Run this interpreter on ``args`` from the repo root (for helpers such as datagen)."""
    return run_measured(
        [sys.executable, *args], timeout_s=timeout_s, cwd=REPO, log_dir=log_dir, name=name
    )


# -- the emulator ---------------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    """user+sys CPU seconds of a live process so far, from /proc/PID/stat (10 ms resolution)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


@dataclass
class EmulatorUsage:
    """The emulator's whole life, from wait4 when it was stopped."""

    cpu_s: float
    maxrss_mb: float
    exit_code: int


class Emulator:
    """``pipeline serve`` on 127.0.0.1 in its own process; ready when it prints its URL line.

    Use as a context manager: the process is always stopped (SIGTERM, then SIGKILL).
    """

    def __init__(
        self,
        options: Sequence[str] = (),
        *,
        log_dir: Path,
        engine: str = "wordlist",
        ready_timeout_s: float = 60.0,
    ) -> None:
        self.cmd = [
            *pipeline_command(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--engine",
            engine,
            *options,
        ]
        self.log_dir = log_dir
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self.usage: EmulatorUsage | None = None
        self._stderr_path = log_dir / "emulator.stderr"

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        with open(self._stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.log_dir,
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        try:
            line = self._read_line()
            match = URL_LINE.match(line)
            if match is None:
                raise BenchError(f"emulator said {line!r}, not its URL line")
            self.base_url = match.group(1)
        except BaseException:
            self.stop()
            raise

    def _read_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + self.ready_timeout_s
        data = b""
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"emulator not ready after {self.ready_timeout_s:.0f}s")
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                err = self._stderr_path.read_text(errors="replace").strip()[-2000:]
                raise BenchError(f"emulator exited before it was ready:\n{err}")
            data += chunk
        return data.split(b"\n", 1)[0].decode(errors="replace")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_s(self) -> float:
        return proc_cpu_s(self.pid)

    def stats(self) -> dict[str, Any]:
        """GET /_emulator/stats (counters; not itself counted as a request)."""
        with urllib.request.urlopen(self.base_url + "/_emulator/stats", timeout=10) as answer:
            return dict(json.load(answer))

    def stop(self) -> EmulatorUsage | None:
        """SIGTERM, reap with wait4 (SIGKILL after 15 s); safe to call twice."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return self.usage
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        code, usage, _ = _wait4(proc, 15.0)
        if proc.stdout is not None:
            proc.stdout.close()
        self.usage = EmulatorUsage(usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, code)
        return self.usage


# -- the emulator's counters while a run goes -------------------------------------------------

Count = Callable[[dict[str, Any]], int]  # one counter read from a GET /_emulator/stats snapshot


def count_requests(stats: dict[str, Any]) -> int:
    """Requests that have arrived (the stats route itself is not counted)."""
    return int(stats["requests"])


def count_answered(stats: dict[str, Any]) -> int:
    """Requests answered, whatever the status."""
    return sum(int(n) for n in stats["status"].values())


class StatsPoller:
    """Samples GET /_emulator/stats from a daemon thread while a run goes: [(t, stats)].

    On enter it takes ``baseline``, one sample before the measured run starts; then the thread
    samples every ``interval_s`` until exit (a GET that fails is skipped: the next one follows).
    ``t`` is time.monotonic at the midpoint of the GET (the snapshot is taken somewhere inside
    it). ``final``: one more sample at a clean exit, the counts once the run is over. ``until``:
    the thread stops at the first sample where that counter exceeds its baseline (a watch for one
    moment, which then costs the run nothing more).
    """

    def __init__(
        self,
        emulator: Emulator,
        interval_s: float,
        *,
        final: bool = False,
        until: Count | None = None,
    ) -> None:
        self.emulator = emulator
        self.interval_s = interval_s
        self.final = final
        self.until = until
        self.baseline: tuple[float, dict[str, Any]] = (0.0, {})  # set on enter
        self.samples: list[tuple[float, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StatsPoller:
        self.baseline = self._read()
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        if self.final and exc_type is None:
            self.samples.append(self._read())

    def _read(self) -> tuple[float, dict[str, Any]]:
        before = time.monotonic()
        stats = self.emulator.stats()
        return (before + time.monotonic()) / 2, stats

    def _run(self) -> None:
        until = self.until
        while not self._stop.is_set():
            try:
                self.samples.append(self._read())
            except OSError:
                pass
            else:
                if until is not None and until(self.samples[-1][1]) > until(self.baseline[1]):
                    return
            self._stop.wait(self.interval_s)

    def series(self, count: Count) -> list[tuple[float, int]]:
        """[(t, the counter less its baseline)], one a sample."""
        base = count(self.baseline[1])
        return [(t, count(stats) - base) for t, stats in self.samples]

    def first_growth(self, count: Count) -> float | None:
        """``t`` of the first sample where the counter exceeds its baseline; None if none did."""
        base = count(self.baseline[1])
        return next((t for t, stats in self.samples if count(stats) > base), None)


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
