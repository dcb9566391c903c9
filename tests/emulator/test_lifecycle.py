"""The run lifecycle as a function of the clock, outcome draws, the run config fields, and the
local responder: no server, no sleeping."""

from __future__ import annotations

from collections import Counter

import pytest

from pipeline.emulator import EmulatorConfig
from pipeline.emulator.lifecycle import Lifecycle, OutcomeDraw, check_outcomes
from pipeline.emulator.responder import Prompt, Responder, cut, local_text


def test_a_completed_run_is_queued_then_in_progress_then_done() -> None:
    life = Lifecycle(1000.0, 2.0, "completed", 1600.0)

    assert [life.status(t) for t in (1000.0, 1000.9, 1001.0, 1001.9, 1002.0, 5000.0)] == [
        "queued",
        "queued",
        "in_progress",
        "in_progress",
        "completed",
        "completed",
    ]
    assert life.timestamps(1000.5) == {
        "started_at": None,
        "completed_at": None,
        "failed_at": None,
        "cancelled_at": None,
        "expires_at": 1600,
    }
    assert life.timestamps(1003.0) == {
        "started_at": 1001,
        "completed_at": 1002,
        "failed_at": None,
        "cancelled_at": None,
        "expires_at": None,
    }


@pytest.mark.parametrize("outcome", ["failed", "incomplete", "expired"])
def test_terminal_outcomes_arrive_at_the_end(outcome: str) -> None:
    life = Lifecycle(0.0, 1.0, outcome, 600.0)

    assert life.status(0.99) == "in_progress"
    assert life.status(1.0) == outcome
    assert life.timestamps(2.0)["failed_at"] == (1 if outcome == "failed" else None)


def test_requires_action_waits_then_expires_at_expires_at() -> None:
    life = Lifecycle(0.0, 1.0, "requires_action", 10.0)

    assert life.status(1.0) == "requires_action"
    assert life.status(9.99) == "requires_action"
    assert life.status(10.0) == "expired"
    assert life.since("expired") == 10.0


def test_tool_outputs_restart_a_requires_action_run() -> None:
    life = Lifecycle(0.0, 1.0, "requires_action", 10.0)

    life.restart(5.0)

    assert [life.status(t) for t in (5.0, 5.5, 6.0, 20.0)] == [
        "queued",
        "in_progress",
        "completed",
        "completed",
    ]


def test_stuck_runs_stay_in_progress_until_cancelled() -> None:
    life = Lifecycle(0.0, 1.0, "stuck", 10.0)

    assert life.status(1e9) == "in_progress"
    life.cancel(50.0)
    assert life.status(49.0) == "in_progress"
    assert life.status(50.0) == "cancelled"
    assert life.timestamps(60.0)["cancelled_at"] == 50
    assert life.timestamps(60.0, "cancelling")["expires_at"] == 10


def test_a_run_cancelled_while_queued_never_started() -> None:
    life = Lifecycle(0.0, 10.0, "completed", 600.0)

    life.cancel(1.0)

    assert life.status(100.0) == "cancelled"
    assert not life.started(100.0)
    assert life.timestamps(100.0)["started_at"] is None


def test_a_pending_delegated_answer_holds_the_run_in_progress() -> None:
    life = Lifecycle(0.0, 1.0, "completed", 600.0)
    life.ready = None

    assert life.status(100.0) == "in_progress"
    life.ready = 150.0
    assert life.status(149.0) == "in_progress"
    assert life.status(150.0) == "completed"


def test_zero_duration_ends_at_once() -> None:
    life = Lifecycle(7.0, 0.0, "completed", 600.0)

    assert life.status(7.0) == "completed"
    assert life.timestamps(7.0, "queued")["started_at"] is None


def test_outcome_draws_are_seeded_and_follow_the_probabilities() -> None:
    outcomes = {"failed": 0.2, "stuck": 0.1}
    first = [OutcomeDraw(outcomes, 3, "runs").draw() for _ in range(1)]
    draw_a, draw_b = OutcomeDraw(outcomes, 3, "runs"), OutcomeDraw(outcomes, 3, "runs")

    seq_a = [draw_a.draw() for _ in range(2000)]
    seq_b = [draw_b.draw() for _ in range(2000)]

    assert seq_a == seq_b
    assert first == seq_a[:1]
    counts = Counter(seq_a)
    assert set(counts) == {"completed", "failed", "stuck"}
    assert 300 < counts["failed"] < 500
    assert 120 < counts["stuck"] < 280
    assert OutcomeDraw({}, 1, "runs").draw() == "completed"
    assert {OutcomeDraw({"expired": 1.0}, None, "runs").draw() for _ in range(5)} == {"expired"}


@pytest.mark.parametrize(
    "outcomes", [{"exploded": 0.1}, {"failed": 1.5}, {"failed": 0.6, "expired": 0.6}]
)
def test_bad_outcomes_are_refused(outcomes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        check_outcomes(outcomes)
    with pytest.raises(ValueError):
        EmulatorConfig(run_outcomes=outcomes)


@pytest.mark.parametrize(
    "fields",
    [
        {"run_duration_s": -1},
        {"run_duration_s": float("nan")},
        {"run_expires_s": 0},
        {"run_error_code": "oops"},
        {"chat_completions_url": "ftp://x"},
        {"max_stored": 0},
    ],
)
def test_bad_run_fields_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        EmulatorConfig(**fields)  # type: ignore[arg-type]


def test_run_outcomes_are_frozen_in_the_config() -> None:
    outcomes = {"failed": 0.5}
    config = EmulatorConfig(run_outcomes=outcomes)
    outcomes["failed"] = 1.0

    assert config.run_outcomes == {"failed": 0.5}
    with pytest.raises(TypeError):
        config.run_outcomes["failed"] = 0.1  # type: ignore[index]


def test_the_local_answer_is_deterministic_labelled_and_cut() -> None:
    prompt = Prompt("Be brief.", [("user", "first"), ("assistant", "a"), ("user", "Why?")])

    text = local_text(prompt)

    assert text == local_text(prompt)
    assert text.startswith('(local emulator) You asked: "Why?"')
    assert "Be brief." in text
    assert cut("x" * 1100, 256).text == "x" * 1024
    assert cut("x" * 1100, 256).truncated
    assert not cut("x" * 1024, 256).truncated
    assert Responder().local(Prompt("", [], max_tokens=None)).text.count("no user message") == 1


def test_json_formats_get_a_json_answer() -> None:
    text = local_text(Prompt("", [("user", "q")], response_format="json_object"))

    assert text.startswith('{"local_emulator":true')
