"""Measured child processes: run one to the end in its own session, reap it with its own
rusage (wait4), never leave it behind; and the environment every pipeline child gets.

Standard library only (see bench/__init__.py for why the bench process must stay small).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FAKE_KEY = "sk-bench-fake"
CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def reap_with_rusage(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[int, Any, bool]:
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
        code, usage, expired = reap_with_rusage(proc, timeout_s)
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


def proc_cpu_s(pid: int) -> float:
    """user+sys CPU seconds of a live process so far, from /proc/PID/stat (10 ms resolution)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)
