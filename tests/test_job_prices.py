"""A job's ``[prices."model"]`` over the packaged price table: what validate and summary.json
charge, after real runs on the emulator; its fields checked as the data file's are (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.conftest import StartEmulator, run_cli, write_job

TEXTS = ["The parcel arrived two days late.", "Where is my refund?", "Thanks, it works fine."]


def four_chars_a_token(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def test_a_job_price_charges_a_free_model_in_validate_and_summary(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    data = pl.DataFrame({"id": list(range(len(TEXTS))), "text": TEXTS})
    per_1m = 250_000.0  # dollars a million tokens: enough for figures that print
    prices = {"omni-moderation-latest": {"input_per_1m_tokens": per_1m}}
    job = write_job(tmp_path, data, prices=prices)
    tokens = sum(map(four_chars_a_token, TEXTS))
    sync = tokens * per_1m / 1e6
    shown = run_cli("validate", job)
    assert shown.exit_code == 0, shown.output
    assert "the job's [prices] for omni-moderation-latest" in shown.output
    # batch = true stays from the packaged entry: the batch price is the discounted one
    assert f"sync ${sync:,.2f}, batch ${sync / 2:,.2f}" in shown.output
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 0, result.output
    cost = json.loads((tmp_path / "out" / "summary.json").read_text())["cost_usd"]
    assert cost["actual"] == pytest.approx(sync) and cost["estimated"] == pytest.approx(sync)
    assert cost["prices"].endswith("; the job's [prices] for omni-moderation-latest")
    assert "as of 2025-08" in cost["prices"]


def test_a_job_price_for_a_model_the_table_lacks(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator()
    data = pl.DataFrame({"id": ["a", "b"], "text": TEXTS[:2]})
    job = write_job(
        tmp_path,
        data,
        kind="speech",
        request={"model": "my-own-tts", "input": "{text}", "voice": "alloy"},
        prices={"my-own-tts": {"per_1m_characters": 1000.0}},
    )
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    chars = sum(len(text) for text in TEXTS[:2])
    assert summary["cost_usd"]["no_price_for"] == []
    assert summary["cost_usd"]["actual"] == pytest.approx(chars * 1000.0 / 1e6)


@pytest.mark.parametrize(
    ("prices", "field"),
    [
        ({"gpt-5": {"input_per_1m_token": 1.0}}, "prices.gpt-5.input_per_1m_token"),
        ({"gpt-5": {"output_per_1m_tokens": -1.0}}, "prices.gpt-5.output_per_1m_tokens"),
        ({"gpt-5": {"batch": "yes"}}, "prices.gpt-5.batch"),
        ({"gpt-5": 3}, "prices.gpt-5"),
    ],
)
def test_a_bad_job_price_is_exit_2_naming_the_field(
    tmp_path: Path, prices: dict[str, Any], field: str
) -> None:
    data = pl.DataFrame({"id": [1], "text": ["hello"]})
    job = write_job(tmp_path, data, prices=prices)
    for command in ("validate", "run"):
        result = run_cli(command, job)
        assert result.exit_code == 2
        assert f"{job}: {field}: " in result.output
