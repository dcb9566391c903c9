"""Hostile inputs to realtime speech, provider mode and audiobooks, over real sockets to the
emulator: each test names the hole it closed."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tests.conftest import StartEmulator, read_output
from tests.kinds.test_speech_realtime import realtime_job, run


def test_a_number_too_big_to_spell_is_checked_digit_by_digit_not_an_internal_error(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """num2words overflows past 10**306 (and int() past 4,300 digits): the row failed as an
    internal OverflowError although its audio was whole."""
    server = emulator()
    data = pl.DataFrame({"id": ["big"], "text": [f"Count {'1' * 320} and {'2' * 4400}th now."]})
    job = realtime_job(tmp_path, data, api={"max_attempts": 1})
    assert run(job, server.base_url) == 0
    (row,) = read_output(job, "results").iter_rows(named=True)
    assert row["word_error_rate"] == 0.0 and row["duration_s"] > 10
