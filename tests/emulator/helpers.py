"""Helpers for the emulator tests: the OpenAI schemas and a JSON POST over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator

from pipeline.emulator import RunningEmulator

# the repository's own copy of OpenAI's schemas: see tests/schemas/README.md
SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def load_validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


class FakeClock:
    """A monotonic clock that moves only when a test says so (``limits_clock=``)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Answer:
    """What a request got back: status, headers and the parsed JSON body."""

    def __init__(self, status: int, headers: dict[str, str], body: Any) -> None:
        self.status = status
        self.headers = headers
        self.body = body


async def post(
    http: aiohttp.ClientSession,
    emulator: RunningEmulator,
    body: Any = None,
    *,
    data: bytes | None = None,
    path: str = "/moderations",
    headers: dict[str, str] | None = None,
) -> Answer:
    """POST ``body`` as JSON (or raw ``data``) and read the JSON answer."""
    kwargs: dict[str, Any] = {"data": data} if data is not None else {"json": body}
    async with http.post(emulator.base_url + path, headers=headers, **kwargs) as response:
        payload = await response.json(content_type=None)
        return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, payload)
