"""EmulatorConfig: every knob of the local emulator, checked when it is built."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from aiohttp import web

from pipeline.emulator.batches_life import DEFAULT_PHASE_S, check_batch_settings
from pipeline.emulator.faults import check_faults
from pipeline.emulator.lifecycle import ERROR_CODES, check_outcomes

ENGINES: Final[tuple[str, ...]] = ("profanity", "wordlist")
SPEECH_VOICES: Final[tuple[str, ...]] = ("openai", "any")


@dataclass(frozen=True)
class EmulatorConfig:
    """How a local emulator behaves; invalid values raise ValueError when the config is built.

    ``faults`` maps a fault name (see ``faults.FAULT_NAMES``) to its probability per request;
    ``latency_ms`` and ``slow_s`` are added with asyncio.sleep, never blocking the server;
    ``fault_retry_after_ms`` is what the injected "429" fault asks clients to wait.

    Runs and responses (see ``lifecycle``): a run is queued for ``run_duration_s``/2, in progress
    until ``run_duration_s``, then ends as drawn from ``run_outcomes`` (probabilities of "failed",
    "incomplete", "expired", "requires_action", "stuck"; the rest complete; seeded by ``seed``).
    A failed run's ``last_error.code`` is ``run_error_code``; a requires_action run expires
    ``run_expires_s`` after it was created. ``chat_completions_url`` delegates answers to a
    chat-completions endpoint (as ``chat_completions_model``, else the request's model).
    ``max_stored`` threads and stored responses are kept; past it the oldest finished are dropped.
    ``speech_voices`` ``"any"`` is the provider mode of ``/v1/audio/speech`` (any model and
    voice, unknown voices spoken by an eSpeak voice chosen by a hash of the name);
    ``refuse_voices`` are answered with the 400 a provider (Kokoro-FastAPI) gives a voice it
    does not have. ``limits_clock`` (monotonic seconds) is what the rate-limit buckets read,
    ``runs_clock`` (epoch seconds) what the runs' lifecycle and timestamps read; tests pass fakes.

    Batches (see ``batches``, ``batches_life``): ``batch_phase_s`` (seconds of ``validating``,
    ``in_progress``, ``finalizing``, ``cancelling``; unnamed phases keep their defaults),
    ``batch_faults`` (``line_expired``, ``line_500``, ``line_dropped`` per line;
    ``batch_failed``, ``batch_all_failed``, ``batch_lies`` per batch), ``batch_queue_tokens``
    (enqueued-token limit, None: none),
    ``batch_read_wait_s`` (how long a read waits for work that is behind the clock);
    ``batches_clock`` (epoch seconds) is what their lifecycle and timestamps read.
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
    run_duration_s: float = 0.2
    run_outcomes: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    run_error_code: str = "server_error"
    run_expires_s: float = 600.0
    chat_completions_url: str | None = None
    chat_completions_model: str | None = None
    max_stored: int = 100_000
    limits_clock: Callable[[], float] = field(default=time.monotonic, compare=False)
    runs_clock: Callable[[], float] = field(default=time.time, compare=False)
    huge_body_bytes: int = 2**31  # what the huge_body / huge_chunked faults send
    clock_skew_s: float = 0.0  # the emulator's clock (every timestamp it reports) runs this far off
    speech_voices: str = "openai"  # "any": a provider's /v1/audio/speech (any model and voice)
    refuse_voices: frozenset[str] = frozenset()  # voices refused with a provider's 400
    realtime_session_s: float = 3600.0  # a realtime socket is ended after this (the API: 60 min)
    batch_phase_s: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType(dict(DEFAULT_PHASE_S)), hash=False
    )
    batch_faults: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    batch_queue_tokens: int | None = None
    batch_read_wait_s: float = 10.0  # the longest a read waits for a batch's work to catch up
    batches_clock: Callable[[], float] = field(default=time.time, compare=False)

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
        if isinstance(self.huge_body_bytes, bool) or self.huge_body_bytes < 1:
            raise ValueError(f"huge_body_bytes must be >= 1, not {self.huge_body_bytes!r}")
        if not (math.isfinite(self.realtime_session_s) and self.realtime_session_s > 0):
            raise ValueError(
                f"realtime_session_s must be a finite number > 0, not {self.realtime_session_s!r}"
            )
        if not math.isfinite(self.clock_skew_s):
            raise ValueError(f"clock_skew_s must be a finite number, not {self.clock_skew_s!r}")
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
        if self.speech_voices not in SPEECH_VOICES:
            raise ValueError(
                f"speech_voices must be one of {', '.join(SPEECH_VOICES)}, "
                f"not {self.speech_voices!r}"
            )
        object.__setattr__(self, "refuse_voices", frozenset(self.refuse_voices))
        if self.reject_substring == "":
            raise ValueError("reject_substring must not be empty (it would reject everything)")
        self._check_runs()
        phases = check_batch_settings(self.batch_phase_s, self.batch_faults)
        object.__setattr__(self, "batch_phase_s", MappingProxyType(phases))
        object.__setattr__(self, "batch_faults", MappingProxyType(dict(self.batch_faults)))
        if not (math.isfinite(self.batch_read_wait_s) and self.batch_read_wait_s >= 0):
            raise ValueError(f"batch_read_wait_s must be >= 0, not {self.batch_read_wait_s!r}")
        tokens = self.batch_queue_tokens
        if tokens is not None and (isinstance(tokens, bool) or tokens < 1):
            raise ValueError(
                f"batch_queue_tokens must be a positive integer or None, not {tokens!r}"
            )

    def _check_runs(self) -> None:
        check_outcomes(self.run_outcomes)
        object.__setattr__(self, "run_outcomes", MappingProxyType(dict(self.run_outcomes)))
        if not (math.isfinite(self.run_duration_s) and self.run_duration_s >= 0):
            raise ValueError(
                f"run_duration_s must be a finite number >= 0, not {self.run_duration_s!r}"
            )
        if not (math.isfinite(self.run_expires_s) and self.run_expires_s > 0):
            raise ValueError(
                f"run_expires_s must be a finite number > 0, not {self.run_expires_s!r}"
            )
        if self.run_error_code not in ERROR_CODES:
            raise ValueError(
                f"run_error_code must be one of {', '.join(ERROR_CODES)}, "
                f"not {self.run_error_code!r}"
            )
        url = self.chat_completions_url
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"chat_completions_url must be an http(s) URL, not {url!r}")
        if isinstance(self.max_stored, bool) or self.max_stored < 1:
            raise ValueError(f"max_stored must be a positive integer, not {self.max_stored!r}")


CONFIG = web.AppKey("config", EmulatorConfig)


def skewed_clock(config: EmulatorConfig) -> Callable[[], float]:
    """The clock run and response timestamps read: ``runs_clock``, ``clock_skew_s`` seconds
    ahead (negative: behind)."""
    clock, skew_s = config.runs_clock, config.clock_skew_s
    if not skew_s:
        return clock
    return lambda: clock() + skew_s


def batches_clock(config: EmulatorConfig) -> Callable[[], float]:
    """The clock batches and their timestamps read: ``batches_clock``, skewed like the runs'."""
    clock, skew_s = config.batches_clock, config.clock_skew_s
    return clock if not skew_s else lambda: clock() + skew_s
