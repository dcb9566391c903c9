"""The lock of an output folder: one run at a time, released by the kernel when its holder dies."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from pipeline.errors import LockedError

STATE_DIR = ".pipeline"
LOCK_FILE = "lock"


class OutputLock:
    """An exclusive flock on ``.pipeline/lock``: released by the kernel when the holder dies."""

    def __init__(self, output_dir: Path) -> None:
        self.path = output_dir / STATE_DIR / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock at once or raise LockedError naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            pid = holder.get("pid")
            since = holder.get("started")
            who = f"pid {pid}, started {since}" if pid else "another process"
            raise LockedError(
                f"another run ({who}) is using {self.path.parent.parent}; wait for it to finish "
                "or stop it",
                pid=pid if isinstance(pid, int) else None,
            ) from None
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        os.write(
            fd,
            json.dumps(
                {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
            ).encode(),
        )
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        holder = json.loads(data) if data else {}
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}
