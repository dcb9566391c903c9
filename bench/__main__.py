"""python -m bench {throughput,ratelimit,latency,packing,memory,resume,incremental,speech,
                  realtime,httpclients,batch,ray,all} [--json PATH] [--keep]

Prints each scenario's own table as it finishes, then one summary table (scenario, figure,
value, target, ok/MISS, and the bare-aiohttp reference measured in the same run where one
applies). Progress goes to stderr. Exit code 1 if a scenario failed to run or missed a
target, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import (
    batch,
    httpclients,
    incremental,
    latency,
    memory,
    packing,
    ratelimit,
    ray,
    realtime,
    resume,
    speech,
    throughput,
)
from bench.common import BenchError, Table, log, own_peak_mb

SCENARIOS = {  # in the order of the targets
    "throughput": throughput.run,
    "ratelimit": ratelimit.run,
    "latency": latency.run,
    "memory": memory.run,
    "resume": resume.run,
    "incremental": incremental.run,
    "packing": packing.run,
    "speech": speech.run,
    "realtime": realtime.run,
    "httpclients": httpclients.run,
    "batch": batch.run,
    "ray": ray.run,  # the Ray executor next to the single-process one (the `ray` extra)
}


def machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as info:
            model = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                "",
            )
    except OSError:
        pass
    with open("/proc/meminfo") as info:
        mem_kib = int(info.readline().split()[1])
    return (
        f"{os.cpu_count()} CPU(s) {model}, {mem_kib / 2**20:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds every finally: emulators stopped


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"])
    parser.add_argument("--json", type=Path, help="Also write the raw figures here.")
    parser.add_argument("--keep", action="store_true", help="Keep the temp folders (logs, data).")
    args = parser.parse_args()
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]

    print(f"machine: {machine()}; {load()} before")
    table = Table()
    raw: dict[str, Any] = {"machine": machine()}
    failed = False
    started = time.perf_counter()
    for name in names:
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        t0 = time.perf_counter()
        try:
            raw[name] = SCENARIOS[name](tmp, table)
        except (BenchError, OSError, ValueError, KeyError) as error:
            failed = True
            table.add(name, "FAILED", str(error).splitlines()[0][:100], ok=False)
            detail = error if isinstance(error, BenchError) else traceback.format_exc()
            log(f"{name} failed:\n{detail}")
        finally:
            if args.keep:
                log(f"{name}: kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        raw.setdefault("seconds", {})[name] = round(time.perf_counter() - t0, 1)
        log(f"{name}: {time.perf_counter() - t0:.0f}s")
    table.notes.append(
        f"bench process peak RSS {own_peak_mb():.0f} MB (a floor under every child's peak RSS); "
        f"total {time.perf_counter() - started:.0f}s"
    )
    print()
    print(table.render())
    raw["table"] = table.as_json()
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2) + "\n")
    missed = any(row.ok is False for row in table.rows)
    return 1 if failed or missed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: children stopped, temp folders removed")
        sys.exit(130)
