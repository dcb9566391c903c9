"""Notifications: ``[notify] webhook`` gets the run's summary.json when the run exits non-zero
(or always, if asked), from a real run against the emulator to a receiver on 127.0.0.1; a
receiver that fails or is not there changes nothing about the run; the key is never sent."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from aiohttp import web

from pipeline.emulator import RunningEmulator
from pipeline.notify import NOTIFY_ATTEMPTS, NotifySpec, post_summary
from tests.conftest import FAKE_KEY, StartEmulator, run_cli, write_job
from tests.loopback import LoopbackServer


class Receiver(LoopbackServer):
    """A webhook on a loopback port, in its own thread; answers ``status`` and keeps every
    request's headers and body. Serving from the start: ``close()`` it."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[tuple[dict[str, str], bytes]] = []
        app = web.Application()
        app.router.add_post("/hooks/{token}", self._take)
        super().__init__(app)
        self.open()
        self.url = f"http://127.0.0.1:{self.port}/hooks/SECRET-TOKEN"

    async def _take(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=self.status, text="ok")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver()
    yield started
    started.close()


def job_with(folder: Path, notify: dict[str, Any], texts: list[str]) -> Path:
    data = pl.DataFrame({"id": list(range(len(texts))), "text": texts})
    return write_job(folder, data, notify=notify)


def run(job: Path, server: RunningEmulator) -> int:
    return run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code


def summary_of(job: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((job.parent / "out" / "summary.json").read_text())
    return data


def test_a_failed_run_posts_its_summary_without_the_key(
    tmp_path: Path, emulator: StartEmulator, receiver: Receiver
) -> None:
    server = emulator()
    job = job_with(tmp_path, {"webhook": receiver.url}, ["hello", "", "fine"])  # "" fails
    assert run(job, server) == 1
    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    assert json.loads(body) == summary_of(job)
    assert json.loads(body)["outcome"] == "completed_with_errors"
    assert headers["Content-Type"] == "application/json"
    assert "Authorization" not in headers
    assert FAKE_KEY.encode() not in body and FAKE_KEY not in json.dumps(headers)


def test_a_completed_run_posts_only_when_asked_always(
    tmp_path: Path, emulator: StartEmulator, receiver: Receiver
) -> None:
    server = emulator()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    quiet = job_with(tmp_path / "a", {"webhook": receiver.url}, ["hello", "fine"])
    assert run(quiet, server) == 0
    assert receiver.received == []  # on = "failure" by default: exit 0 posts nothing
    always = job_with(tmp_path / "b", {"webhook": receiver.url, "on": "always"}, ["hello"])
    assert run(always, server) == 0
    assert [json.loads(body)["outcome"] for _, body in receiver.received] == ["completed"]


def test_an_interrupted_run_posts_its_summary(
    tmp_path: Path, emulator: StartEmulator, receiver: Receiver
) -> None:
    server = emulator()
    job = job_with(tmp_path, {"webhook": receiver.url}, ["a", "b", "c"])
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--limit", "1")
    assert result.exit_code == 4
    (_, body), *_ = receiver.received
    assert json.loads(body)["stopped_by"] == "limit"


def test_a_receiver_answering_500_is_retried_and_changes_nothing(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    failing = Receiver(status=500)
    try:
        job = job_with(tmp_path, {"webhook": failing.url}, ["hello", ""])
        result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
        assert result.exit_code == 1  # the exit code of the run, not of the receiver
        assert len(failing.received) == NOTIFY_ATTEMPTS
    finally:
        failing.close()
    rows = summary_of(job)["rows"]
    assert (rows["done"], rows["failed"]) == (1, 1)
    warnings = [line for line in result.stderr.splitlines() if "notify:" in line]
    assert len(warnings) == 1 and "HTTP 500" in warnings[0]
    assert "SECRET-TOKEN" not in result.output  # a webhook's path may be its secret


def test_a_receiver_not_listening_changes_nothing(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator()
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    job = job_with(tmp_path, {"webhook": f"http://127.0.0.1:{port}/hook"}, ["hello", ""])
    assert run(job, server) == 1
    assert summary_of(job)["outcome"] == "completed_with_errors"


@pytest.mark.parametrize(
    ("notify", "field"),
    [
        ({}, "notify.webhook"),
        ({"webhook": "ftp://example.com/hook"}, "notify.webhook"),
        ({"webhook": "example.com/hook"}, "notify.webhook"),
        ({"webhook": 3}, "notify.webhook"),
        ({"on": "always"}, "notify.webhook"),
        ({"webhook": "https://example.com/hook", "on": "sometimes"}, "notify.on"),
        ({"webhook": "https://example.com/hook", "url": "x"}, "notify.url"),
    ],
)
def test_a_bad_notify_table_is_exit_2_naming_the_field(
    tmp_path: Path, notify: dict[str, Any], field: str
) -> None:
    job = job_with(tmp_path, notify, ["hello"])
    for command in ("validate", "run"):
        result = run_cli(command, job)
        assert result.exit_code == 2
        assert f"{job}: {field}: " in result.output


async def test_a_summary_that_would_carry_the_key_is_not_sent(receiver: Receiver) -> None:
    spec = NotifySpec(receiver.url, "always")
    leaky = {"outcome": "completed", "note": f"Bearer {FAKE_KEY}"}
    assert await post_summary(spec, leaky, failed=False, secret=FAKE_KEY) is False
    assert receiver.received == []
    assert await post_summary(spec, {"outcome": "completed"}, failed=False, secret=FAKE_KEY)
    assert [json.loads(body) for _, body in receiver.received] == [{"outcome": "completed"}]
