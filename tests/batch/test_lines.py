"""Batch input files: custom_id is safe and reversible, a file stays within the API's limits."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
from hypothesis import given
from hypothesis import strategies as st

from pipeline.batch.lines import MAX_BYTES, MAX_LINES, FileWriter, custom_id, key_of


@given(st.text(min_size=1))
def test_custom_id_is_safe_and_gives_the_key_back(key: str) -> None:
    line_id = custom_id(key)
    assert re.fullmatch(r"[A-Za-z0-9\-_.~%]+", line_id)
    assert key_of(line_id) == key


def test_a_file_holds_at_most_50000_lines_and_200_mb(tmp_path: Path) -> None:
    writer = FileWriter(tmp_path / "input-1.jsonl", "/v1/moderations")
    line = FileWriter.encode("k", "/v1/moderations", {"model": "m", "input": "x"})
    for index in range(MAX_LINES):
        assert writer.fits(line)
        writer.add(line, f"k{index}", [f"k{index}"], b"0" * 12)
    assert not writer.fits(line)  # the 50,001st line starts the next file
    writer.seal()
    lines = (tmp_path / "input-1.jsonl").read_bytes().splitlines()
    assert len(lines) == MAX_LINES
    assert orjson.loads(lines[0]) == {
        "custom_id": "k",
        "method": "POST",
        "url": "/v1/moderations",
        "body": {"model": "m", "input": "x"},
    }
    big = FileWriter(tmp_path / "input-2.jsonl", "/v1/moderations")
    big.size = MAX_BYTES - len(line) + 1
    assert not big.fits(line)  # one byte over 200 MB
    big.size -= 1
    assert big.fits(line)
    big.discard()
