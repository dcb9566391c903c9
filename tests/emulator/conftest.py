"""Fixtures for the emulator tests: emulators on loopback, an HTTP session, the OpenAI schemas."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator

from pipeline.emulator import EmulatorConfig, RunningEmulator, start_emulator
from tests.conftest import StartEmulator as StartEmulator  # re-exported for the emulator tests
from tests.emulator.helpers import load_validator


@pytest.fixture(scope="session")
def moderation_schema() -> Draft202012Validator:
    return load_validator("CreateModerationResponse")


@pytest.fixture(scope="session")
def request_schema() -> Draft202012Validator:
    return load_validator("CreateModerationRequest")


@pytest.fixture(scope="session")
def error_schema() -> Draft202012Validator:
    return load_validator("ErrorResponse")


@pytest.fixture
def start() -> Iterator[StartEmulator]:
    """start(**config fields) -> a running emulator, closed at the end of the test."""
    running: list[RunningEmulator] = []

    def _start(**fields: Any) -> RunningEmulator:
        emulator = start_emulator(EmulatorConfig(**fields))
        running.append(emulator)
        return emulator

    yield _start
    for emulator in running:
        emulator.close()


@pytest.fixture
def emulator(start: StartEmulator) -> RunningEmulator:
    """The default emulator: profanity engine, no limits, no faults."""
    return start()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
