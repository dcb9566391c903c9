"""EmulatorConfig: every knob of the local emulator, checked when it is built."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from aiohttp import web

from pipeline.emulator.faults import check_faults

ENGINES: Final[tuple[str, ...]] = ("profanity", "wordlist")


@dataclass(frozen=True)
class EmulatorConfig:
    """How a local emulator behaves; invalid values raise ValueError when the config is built.

    ``faults`` maps a fault name (see ``faults.FAULT_NAMES``) to its probability per request;
    ``latency_ms`` and ``slow_s`` are added with asyncio.sleep, never blocking the server;
    ``fault_retry_after_ms`` is what the injected "429" fault asks clients to wait.
    """

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    burst_s: float = 60.0  # seconds of allowance a bucket holds; 1 = quantised enforcement
    ratelimit_headers: bool = True
    latency_ms: float = 0.0
    faults: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    slow_s: float = 30.0
    seed: int | None = None
    engine: str = "profanity"
    reject_substring: str | None = None
    api_key: str | None = None
    record_requests: bool = False
    fault_retry_after_ms: int = 1000  # beyond the brief: tests want fast injected 429s

    def __post_init__(self) -> None:
        check_faults(self.faults)
        # a read-only copy, so the frozen config cannot change under a running server
        object.__setattr__(self, "faults", MappingProxyType(dict(self.faults)))
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value <= 0):
                raise ValueError(f"{name} must be a positive integer or None, not {value!r}")
        if not (math.isfinite(self.burst_s) and self.burst_s > 0):
            raise ValueError(f"burst_s must be a finite number > 0, not {self.burst_s!r}")
        for name in ("latency_ms", "slow_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if isinstance(self.fault_retry_after_ms, bool) or self.fault_retry_after_ms < 0:
            raise ValueError(
                f"fault_retry_after_ms must be >= 0, not {self.fault_retry_after_ms!r}"
            )
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; known engines: {', '.join(ENGINES)}")
        if self.reject_substring == "":
            raise ValueError("reject_substring must not be empty (it would reject everything)")


CONFIG = web.AppKey("config", EmulatorConfig)
