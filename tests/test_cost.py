"""Cost: summary.json's tokens and dollars after real runs on the emulator, and validate's cost
part, checked against the price file (read here on its own) and the tokens the answers gave."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.cost import Usage, parse_prices, price_for
from pipeline.errors import JobError
from tests.conftest import REPO, StartEmulator, read_output, run_cli, write_job

PRICES = tomllib.loads((REPO / "pipeline" / "data" / "prices.toml").read_text())["models"]
TEXTS = [
    "The parcel arrived two days late.",
    "Where is my refund?",
    "Thanks, the replacement works fine.",
    "Can I change the delivery address after ordering?",
]


def per_1m(model: str, name: str) -> float:
    return float(PRICES[model].get(name, 0.0)) / 1e6


def four_chars_a_token(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def summary_of(job: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((job.parent / "out" / "summary.json").read_text())
    return data


def run_job(job: Path, base_url: str) -> dict[str, Any]:
    result = run_cli("run", job, "--base-url", base_url, "--quiet")
    assert result.exit_code == 0, result.output
    return summary_of(job)


def run_job_file(folder: Path, protocol: str, model: str | None, texts: list[str] = TEXTS) -> Path:
    data = pl.DataFrame({"id": [f"q{i}" for i in range(len(texts))], "question": texts})
    assistants: dict[str, Any] = {"assistants": {"asst_support": {"model": model}}} if model else {}
    return write_job(
        folder,
        data,
        kind="run",
        messages=[{"role": "user", "content": "{question}"}],
        request={"assistant_id": "asst_support"},
        run={"protocol": protocol, "timeout_s": 30, "poll_interval_s": 0.05},
        **assistants,
    )


def test_a_responses_run_prices_the_tokens_its_answers_reported(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    job = run_job_file(tmp_path, "responses", "gpt-4.1-mini-2025-04-14")  # a dated snapshot
    summary = run_job(job, server.base_url)
    results = read_output(job, "results")
    reported_in, reported_out = (
        int(results["prompt_tokens"].sum()),
        int(results["completion_tokens"].sum()),
    )
    assert reported_in > 0 and reported_out > 0
    estimated = sum(map(four_chars_a_token, TEXTS))
    assert summary["tokens"] == {
        "estimated": {"input": estimated},
        "actual": {"input": reported_in, "output": reported_out},
    }
    price_in, price_out = (
        per_1m("gpt-4.1-mini", "input_per_1m_tokens"),
        per_1m("gpt-4.1-mini", "output_per_1m_tokens"),
    )
    actual = reported_in * price_in + reported_out * price_out
    cost = summary["cost_usd"]
    assert cost["mode"] == "sync" and cost["no_price_for"] == []
    assert cost["actual"] == pytest.approx(actual, abs=1e-6)
    assert cost["estimated"] == pytest.approx(estimated * price_in, abs=1e-6)
    assert cost["by_model"] == {
        "gpt-4.1-mini-2025-04-14": {
            "rows": len(TEXTS),
            "estimated": cost["estimated"],
            "actual": cost["actual"],
        }
    }
    assert summary["prompt_tokens"] == reported_in, "the existing totals are kept"


def test_an_assistants_run_without_a_model_has_tokens_but_no_price(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(run_duration_s=0.05)
    job = run_job_file(tmp_path, "assistants", None)
    summary = run_job(job, server.base_url)
    results = read_output(job, "results")
    models = set(results["model"])
    assert summary["tokens"]["actual"] == {
        "input": int(results["prompt_tokens"].sum()),
        "output": int(results["completion_tokens"].sum()),
    }
    cost = summary["cost_usd"]
    assert cost["actual"] is None and cost["estimated"] is None
    assert cost["no_price_for"] == sorted(models)  # the emulator's own model, priced nowhere
    shown = run_cli("validate", job).output
    assert "no price known, the run's model is the assistant's" in shown


def test_moderation_is_free_and_reports_no_tokens(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator()
    data = pl.DataFrame({"id": list(range(len(TEXTS))), "text": TEXTS})
    job = write_job(tmp_path, data, moderation={"rows_per_request": 2})
    summary = run_job(job, server.base_url)
    assert summary["tokens"] == {
        "estimated": {"input": sum(map(four_chars_a_token, TEXTS))},
        "actual": {"input": None, "output": None},
    }
    assert summary["cost_usd"]["estimated"] == 0.0 and summary["cost_usd"]["actual"] == 0.0
    assert summary["cost_usd"]["by_model"]["omni-moderation-latest"]["rows"] == len(TEXTS)
    shown = run_cli("validate", job).output
    assert "sync: free, batch: free (moderation is free)" in shown


def test_speech_prices_characters_and_measured_audio_per_model(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    models = ["tts-1", "gpt-4o-mini-tts", "tts-1-hd", "my-own-tts"]
    data = pl.DataFrame({"id": models, "text": TEXTS, "model": models})
    job = write_job(
        tmp_path,
        data,
        kind="speech",
        request={"model": "{model}", "input": "{text}", "voice": "alloy"},
    )
    summary = run_job(job, server.base_url)
    manifest = {row["id"]: row for row in read_output(job, "results").iter_rows(named=True)}
    by_model = summary["cost_usd"]["by_model"]
    for model in ("tts-1", "tts-1-hd"):  # per character, exactly as validate estimated
        expected = manifest[model]["chars"] * per_1m(model, "per_1m_characters")
        assert by_model[model]["actual"] == pytest.approx(expected, abs=1e-6)
        assert by_model[model]["estimated"] == by_model[model]["actual"]
    # gpt-4o-mini-tts: its text tokens (estimated: the answer reports none) and its minutes
    text, seconds = TEXTS[1], manifest["gpt-4o-mini-tts"]["duration_s"]
    assert seconds > 0.5
    expected = four_chars_a_token(text) * per_1m("gpt-4o-mini-tts", "input_per_1m_tokens") + (
        seconds / 60 * PRICES["gpt-4o-mini-tts"]["audio_per_minute"]
    )
    assert by_model["gpt-4o-mini-tts"]["actual"] == pytest.approx(expected, abs=2e-6)
    assert by_model["my-own-tts"] == {"rows": 1, "estimated": None, "actual": None}
    assert summary["cost_usd"]["no_price_for"] == ["my-own-tts"]
    assert summary["cost_usd"]["actual"] is None, "a partial sum is not the job's cost"
    shown = run_cli("validate", job).output
    assert "no price known for model my-own-tts" in shown
    assert shown.count("batch: not offered (the Batch API does not take these)") == 3


def test_validate_shows_sync_and_batch_dollars_side_by_side(tmp_path: Path) -> None:
    texts = [text * 40 for text in TEXTS]  # enough tokens for dollars that print
    job = run_job_file(tmp_path, "responses", "gpt-4.1", texts)
    result = run_cli("validate", job)
    assert result.exit_code == 0, result.output
    tokens = sum(map(four_chars_a_token, texts))
    assert f"gpt-4.1: {len(texts)} rows, ~{tokens:,} input tokens" in result.output
    found = re.search(r"sync \$([\d.]+), batch \$([\d.]+)", result.output)
    assert found is not None, result.output
    sync, batch = map(float, found.groups())
    assert sync == pytest.approx(tokens * per_1m("gpt-4.1", "input_per_1m_tokens"), rel=1e-3)
    assert batch == pytest.approx(sync / 2, rel=1e-3)
    assert "output tokens (not known before the answers) at $8.00 per 1M, batch $4.00" in (
        result.output
    )


def dollars(model: str, tokens_in: int = 0, tokens_out: int = 0, chars: int = 0) -> float:
    return (
        tokens_in * per_1m(model, "input_per_1m_tokens")
        + tokens_out * per_1m(model, "output_per_1m_tokens")
        + chars * per_1m(model, "per_1m_characters")
    )


MILLION = 1_000_000


@pytest.mark.parametrize(
    ("model", "mode", "usage", "expected"),
    [
        (
            "gpt-4o-mini",
            "sync",
            Usage(1, MILLION, MILLION),
            dollars("gpt-4o-mini", MILLION, MILLION),
        ),
        (  # a dated snapshot is its model; batch is half
            "gpt-4o-mini-2024-07-18",
            "batch",
            Usage(1, MILLION, MILLION),
            dollars("gpt-4o-mini", MILLION, MILLION) / 2,
        ),
        ("tts-1", "sync", Usage(1, characters=2 * MILLION), dollars("tts-1", chars=2 * MILLION)),
        ("tts-1", "batch", Usage(1, characters=2 * MILLION), None),  # no Batch API for speech
        (
            "gpt-4o-mini-tts",
            "sync",
            Usage(1, MILLION, audio_seconds=600.0),
            dollars("gpt-4o-mini-tts", MILLION)
            + 10 * PRICES["gpt-4o-mini-tts"]["audio_per_minute"],
        ),
        ("omni-moderation-latest", "batch", Usage(1, 5 * MILLION), 0.0),
        ("gpt-4.1-mini-preview", "sync", Usage(1, 10), None),  # only a date suffix is a snapshot
        (None, "sync", Usage(1, 10), None),
    ],
)
def test_price_for_each_unit_and_mode(
    model: str | None, mode: Any, usage: Usage, expected: float | None
) -> None:
    assert expected != 0.0 or PRICES[str(model)]["free"]
    price = price_for(model, mode, usage)
    assert price == (None if expected is None else pytest.approx(expected))
    assert expected is None or expected >= 0.0


def test_a_resumed_speech_job_prices_every_row_once_across_its_runs(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    texts = [f"Row {i}. {text}" for i, text in enumerate(TEXTS * 2)]
    data = pl.DataFrame({"id": list(range(len(texts))), "text": texts})
    request = {"model": "tts-1", "input": "{text}", "voice": "alloy"}
    job = write_job(tmp_path, data, kind="speech", request=request, api={"concurrency": 1})
    first = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--max-requests", "3")
    assert first.exit_code == 4, first.output
    stopped = summary_of(job)["cost_usd"]["by_model"]["tts-1"]
    resumed = run_job(job, server.base_url)["cost_usd"]["by_model"]["tts-1"]  # rows left pending
    assert stopped["rows"] + resumed["rows"] == len(texts) and resumed["rows"] > 0
    every_char = sum(map(len, texts)) * per_1m("tts-1", "per_1m_characters")
    assert stopped["actual"] + resumed["actual"] == pytest.approx(every_char, abs=2e-6)
    assert resumed["estimated"] == resumed["actual"], "tts-1 is priced by what is known before"


def test_every_packaged_model_is_free_or_has_a_price() -> None:
    for model, entry in PRICES.items():
        amounts = [v for k, v in entry.items() if k not in ("free", "batch")]
        assert entry.get("free") or any(amount > 0 for amount in amounts), model


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"input_per_1m_token": 0.4}, "models.m.input_per_1m_token"),  # a typo: not a zero price
        ({"input_per_1m_tokens": "0.40"}, "models.m.input_per_1m_tokens"),
        ({"output_per_1m_tokens": -1.0}, "models.m.output_per_1m_tokens"),
        ({"audio_per_minute": float("nan")}, "models.m.audio_per_minute"),
        ({"batch": "yes"}, "models.m.batch"),
    ],
)
def test_a_broken_price_entry_is_refused_naming_its_field(
    entry: dict[str, Any], field: str
) -> None:
    data = {"source": "page", "as_of": "2025-08", "batch_discount": 0.5, "models": {"m": entry}}
    with pytest.raises(JobError) as raised:
        parse_prices(data, "prices.toml")
    assert raised.value.field == field and raised.value.path == "prices.toml"
    good = parse_prices({**data, "models": {"m": {"input_per_1m_tokens": 0.4}}}, "prices.toml")
    assert good.find("m-2025-01-31") == good.models["m"]
