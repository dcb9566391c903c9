"""The emulator as a measured process (``pipeline serve`` on 127.0.0.1), and a poller of its
counters while a run goes.

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
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.processes import (
    BenchError,
    child_env,
    pipeline_command,
    proc_cpu_s,
    reap_with_rusage,
)

URL_LINE = re.compile(r"pipeline emulator listening on (http://127\.0\.0\.1:(\d+)/v1)\s*$")


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
            line = self._read_url_line()
            match = URL_LINE.match(line)
            if match is None:
                raise BenchError(f"emulator said {line!r}, not its URL line")
            self.base_url = match.group(1)
        except BaseException:
            self.stop()
            raise

    def _read_url_line(self) -> str:
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
        code, usage, _ = reap_with_rusage(proc, 15.0)
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
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def __enter__(self) -> StatsPoller:
        self.baseline = self._sample()
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        if self.final and exc_type is None:
            self.samples.append(self._sample())

    def _sample(self) -> tuple[float, dict[str, Any]]:
        before = time.monotonic()
        stats = self.emulator.stats()
        return (before + time.monotonic()) / 2, stats

    def _sample_until_stopped(self) -> None:
        until = self.until
        while not self._stop.is_set():
            try:
                self.samples.append(self._sample())
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
