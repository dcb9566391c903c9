"""The key contract (pipeline/keys.py) through the real CLI: which key types run, which are exit 2
before anything is sent, how keys are stored (canonical text), and how a key type change between
runs (CSV then Parquet, integers then text) is matched or refused."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import sqlite3
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import Result

from pipeline.emulator import RunningEmulator
from pipeline.journal import JOURNAL_FILE, SCHEMA_VERSION, STATE_DIR
from tests.conftest import PolarsType, StartEmulator, read_output, run_cli, write_job
from tests.oldversions import as_version_2


def sent(server: RunningEmulator) -> list[str]:
    return [body["input"] for _, body in server.recorded_requests()]


def run(job: Path, server: RunningEmulator, *extra: str) -> Result:
    return run_cli("run", job, "--base-url", server.base_url, "--quiet", *extra)


def journal_keys(folder: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(folder / "out" / STATE_DIR / JOURNAL_FILE)
    try:
        return db.execute("SELECT key, typeof(key) FROM rows ORDER BY seq").fetchall()
    finally:
        db.close()


TEXTS = ["one", "two", "three"]


@pytest.mark.parametrize(
    ("values", "dtype", "shown"),
    [
        ([1.0, float("nan"), 3.0], pl.Float64, "Float64"),
        ([decimal.Decimal("1.5"), decimal.Decimal("2"), None], pl.Decimal(5, 2), "Decimal"),
        (
            [dt.datetime(2024, 1, 1, 9), dt.datetime(2024, 1, 2), None],
            pl.Datetime("us"),
            "Datetime",
        ),
        ([dt.time(9), dt.time(10), dt.time(11)], pl.Time, "Time"),
        ([True, False, None], pl.Boolean, "Boolean"),
        ([[1], [2], [3]], pl.List(pl.Int64), "List"),
        ([b"a", b"b", b"c"], pl.Binary, "Binary"),
        ([None, None, None], pl.Null, "Null"),
    ],
)
def test_a_key_column_of_a_refused_type_is_exit_2_before_anything_is_sent(
    tmp_path: Path, emulator: StartEmulator, values: list[Any], dtype: PolarsType, shown: str
) -> None:
    server = emulator(engine="wordlist")
    data = pl.DataFrame({"id": pl.Series(values, dtype=dtype), "text": TEXTS})
    job = write_job(tmp_path, data)
    result = run(job, server)
    assert result.exit_code == 2, result.output
    assert "input.key" in result.output and "'id'" in result.output and shown in result.output
    assert "cast it to text or integer" in result.output
    assert sent(server) == []
    assert not (tmp_path / "out" / "results.parquet").exists()


@pytest.mark.parametrize(
    ("values", "dtype", "stored"),
    [
        ([dt.date(2024, 1, 5), dt.date(2024, 1, 6), dt.date(1999, 12, 31)], pl.Date, "2024-01-05"),
        ([2**64 - 1, 0, 7], pl.UInt64, str(2**64 - 1)),
        ([-5, 0, 7], pl.Int8, "-5"),
        (["a", "b", "c"], pl.Categorical, "a"),
        (["a", "b", "c"], pl.Enum(["a", "b", "c", "d"]), "a"),
    ],
)
def test_accepted_key_types_resume_and_results_keep_the_input_type(
    tmp_path: Path, emulator: StartEmulator, values: list[Any], dtype: PolarsType, stored: str
) -> None:
    """Date keys used to crash every resumed run, uint64 ones to end in a traceback."""
    server = emulator(engine="wordlist")
    data = pl.DataFrame({"id": pl.Series(values, dtype=dtype), "text": TEXTS})
    job = write_job(tmp_path, data)
    assert run(job, server, "--limit", "2").exit_code == 4  # rows left unread
    assert run(job, server).exit_code == 0, "the resumed run matches the stored keys"
    assert run(job, server).exit_code == 0
    assert sorted(sent(server)) == sorted(TEXTS), "each row sent once over three runs"
    results = read_output(job, "results")
    assert results.schema["id"] == data.schema["id"]
    assert sorted(results["id"].cast(pl.String).to_list()) == sorted(
        data["id"].cast(pl.String).to_list()
    )
    assert journal_keys(tmp_path)[0] == (stored, "text")


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        ("", "empty"),
        (" k2", "whitespace"),
        ("k2\r", "whitespace"),
        ("k\x002", "control character"),
        ("k\x1b2", "control character"),
        ("k" * 513, "longer than 512"),
    ],
)
def test_a_malformed_key_value_is_exit_2_naming_the_row(
    tmp_path: Path, emulator: StartEmulator, bad: str, what: str
) -> None:
    server = emulator(engine="wordlist")
    data = pl.DataFrame({"id": ["k1", bad, "k3"], "text": TEXTS})
    job = write_job(tmp_path, data)
    result = run(job, server)
    assert result.exit_code == 2, result.output
    assert "input.key" in result.output and what in result.output
    assert "data row 2" in result.output and "input.parquet" in result.output
    assert sent(server) == []


@pytest.mark.parametrize(
    ("name", "content", "shown"),
    [  # a CRLF file converted to CRLF again; a JSONL key with its line end inside
        ("input.csv", b"text,id\r\nhello,a\r\r\nworld,b\r\r\n", "'a\\r'"),
        ("input.jsonl", b'{"text": "hello", "id": "a\\n"}\n{"text": "x", "id": "b"}\n', "'a\\n'"),
    ],
)
def test_a_key_with_a_line_end_in_it_is_exit_2_not_error_rows(
    tmp_path: Path, emulator: StartEmulator, name: str, content: bytes, shown: str
) -> None:
    """Issue 10 item 10: such keys used to make every row an internal_error error row."""
    server = emulator(engine="wordlist")
    (tmp_path / name).write_bytes(content)
    job = write_job(tmp_path, input_name=name)
    result = run(job, server)
    assert result.exit_code == 2, result.output
    assert "whitespace" in result.output and shown in result.output and name in result.output
    assert sent(server) == []


def test_a_key_of_512_characters_with_inner_spaces_is_a_key(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    long = "k " * 255 + "k2"
    data = pl.DataFrame({"id": ["k1", long], "text": TEXTS[:2]})
    job = write_job(tmp_path, data)
    assert run(job, server).exit_code == 0
    assert sorted(read_output(job, "results")["id"]) == sorted(["k1", long])


# --- key type drift between runs -------------------------------------------------------------


def test_csv_then_parquet_on_one_folder_sends_nothing_twice(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """The int 7 of a Parquet file and the "7" of a CSV are one key."""
    server = emulator(engine="wordlist")
    data = pl.DataFrame({"id": [1, 2, 3, 4], "text": ["a", "b", "c", "d"]})
    data.head(2).write_csv(tmp_path / "input.csv")
    csv_job = write_job(tmp_path, input_name="input.csv")
    assert run(csv_job, server).exit_code == 0
    data.write_parquet(tmp_path / "input.parquet")
    parquet_job = write_job(tmp_path, input_name="input.parquet")
    assert run(parquet_job, server).exit_code == 0
    assert sorted(sent(server)) == ["a", "b", "c", "d"], "each row once"
    results = read_output(parquet_job, "results")
    assert results.schema["id"] == pl.Int64, "every key is an integer now: the input's type"
    assert sorted(results["id"].to_list()) == [1, 2, 3, 4]


def test_parquet_then_csv_on_one_folder_sends_nothing_twice(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    data = pl.DataFrame({"id": [1, 2, 3, 4], "text": ["a", "b", "c", "d"]})
    data.head(2).write_parquet(tmp_path / "input.parquet")
    job = write_job(tmp_path, input_name="input.parquet")
    assert run(job, server).exit_code == 0
    data.write_csv(tmp_path / "input.csv")
    csv_job = write_job(tmp_path, input_name="input.csv")
    assert run(csv_job, server).exit_code == 0
    assert sorted(sent(server)) == ["a", "b", "c", "d"]
    results = read_output(csv_job, "results")
    assert results.schema["id"] == pl.String, "the input's type (CSV: text)"
    assert sorted(results["id"].to_list()) == ["1", "2", "3", "4"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows"]["done"] == 4


def test_one_text_key_appended_to_integer_keys_is_a_new_key(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    pl.DataFrame({"id": [1, 2], "text": ["a", "b"]}).write_parquet(tmp_path / "input.parquet")
    job = write_job(tmp_path)
    assert run(job, server).exit_code == 0
    grown = pl.DataFrame({"id": ["1", "2", "x9"], "text": ["a", "b", "c"]})
    grown.write_parquet(tmp_path / "input.parquet")
    assert run(job, server).exit_code == 0
    assert sorted(sent(server)) == ["a", "b", "c"], "the old rows are not sent again"
    assert sorted(read_output(job, "results")["id"].to_list()) == ["1", "2", "x9"]


@pytest.mark.parametrize("ambiguous", ["007", "+7", "-0", "7.0", "7e0"])
def test_text_keys_that_would_read_as_another_integer_are_exit_2(
    tmp_path: Path, emulator: StartEmulator, ambiguous: str
) -> None:
    server = emulator(engine="wordlist")
    pl.DataFrame({"id": [7, 8], "text": ["a", "b"]}).write_parquet(tmp_path / "input.parquet")
    job = write_job(tmp_path)
    assert run(job, server).exit_code == 0
    pl.DataFrame({"id": ["8", ambiguous], "text": ["b", "c"]}).write_parquet(
        tmp_path / "input.parquet"
    )
    result = run(job, server)
    assert result.exit_code == 2, result.output
    assert "integer" in result.output and "text" in result.output
    assert repr(ambiguous) in result.output and "input.key" in result.output
    assert sent(server) == ["a", "b"]


def test_integer_keys_against_a_journal_of_zero_padded_text_keys_are_exit_2(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    pl.DataFrame({"id": ["007", "008"], "text": ["a", "b"]}).write_parquet(
        tmp_path / "input.parquet"
    )
    job = write_job(tmp_path)
    assert run(job, server).exit_code == 0
    pl.DataFrame({"id": [7, 8], "text": ["a", "b"]}).write_parquet(tmp_path / "input.parquet")
    result = run(job, server)
    assert result.exit_code == 2, result.output
    assert "'007'" in result.output and "journal" in result.output
    assert sent(server) == ["a", "b"]
    assert sorted(read_output(job, "results")["id"].to_list()) == ["007", "008"]


def test_integer_keys_then_date_keys_is_exit_2(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator(engine="wordlist")
    pl.DataFrame({"id": [1, 2], "text": ["a", "b"]}).write_parquet(tmp_path / "input.parquet")
    job = write_job(tmp_path)
    assert run(job, server).exit_code == 0
    dates = pl.DataFrame({"id": [dt.date(2024, 1, 1), dt.date(2024, 1, 2)], "text": ["a", "b"]})
    dates.write_parquet(tmp_path / "input.parquet")
    result = run(job, server)
    assert result.exit_code == 2 and "date" in result.output
    assert sent(server) == ["a", "b"]


# --- journals of an earlier version -----------------------------------------------------------

_V1_ROWS = """CREATE TABLE rows_v1 (key PRIMARY KEY, seq INTEGER NOT NULL, state TEXT NOT NULL,
    payload BLOB, tokens INTEGER NOT NULL DEFAULT 1, request_hash TEXT NOT NULL, keep BLOB,
    result BLOB, error BLOB, attempts INTEGER NOT NULL DEFAULT 0,
    sends INTEGER NOT NULL DEFAULT 0, inflight INTEGER, resent INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL, progress BLOB)"""


def make_v1(journal: Path, *, text_twin: int | None = None) -> None:
    """Turn a journal into the first version's: untyped keys, integers stored as integers, and
    a NaN key stored as NULL, never settled."""
    as_version_2(journal.parent.parent)
    db = sqlite3.connect(journal, isolation_level=None)
    db.execute(_V1_ROWS)
    db.execute(
        "INSERT INTO rows_v1 SELECT CAST(key AS INTEGER), seq, state, payload, tokens, "
        "request_hash, keep, result, error, attempts, sends, inflight, resent, "
        "updated_at, progress FROM rows"
    )
    db.execute(
        "INSERT INTO rows_v1 (key, seq, state, payload, request_hash, updated_at) "
        "VALUES (NULL, 99, 'pending', '\"x\"', 'h', 0)"
    )
    if text_twin is not None:  # what the old type drift left: the int and its text, twice
        db.execute(
            "INSERT INTO rows_v1 (key, seq, state, payload, request_hash, updated_at) "
            "VALUES (?, 100, 'pending', '\"x\"', 'h', 1e12)",
            (str(text_twin),),
        )
    db.execute("DROP TABLE rows")
    db.execute("ALTER TABLE rows_v1 RENAME TO rows")
    db.execute("CREATE INDEX rows_by_state ON rows (state, seq)")
    db.execute("DELETE FROM meta WHERE name IN ('schema_version', 'key_family', 'job')")
    assert db.execute("SELECT typeof(key) FROM rows WHERE seq = 1").fetchone() == ("integer",)
    db.close()


def test_a_journal_with_integer_keys_is_migrated_once_and_nothing_is_sent_again(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    data = pl.DataFrame({"id": [1, 2, 3], "text": TEXTS})
    job = write_job(tmp_path, data)
    assert run(job, server, "--limit", "2").exit_code == 4  # rows left unread
    journal = tmp_path / "out" / STATE_DIR / JOURNAL_FILE
    make_v1(journal)
    assert run(job, server).exit_code == 0
    assert sorted(sent(server)) == sorted(TEXTS), "only the new row was sent"
    assert journal_keys(tmp_path) == [("1", "text"), ("2", "text"), ("3", "text")]
    db = sqlite3.connect(journal)
    version = db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    family = db.execute("SELECT value FROM meta WHERE name = 'key_family'").fetchone()
    db.close()
    assert json.loads(version[0]) == SCHEMA_VERSION and json.loads(family[0]) == "integer"
    results = read_output(job, "results")
    assert results.schema["id"] == pl.Int64 and sorted(results["id"]) == [1, 2, 3]


def test_keys_held_from_an_earlier_input_that_do_not_fit_its_type_are_still_written(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """Int64 keys then an Int8 input, Enum keys then an Enum without one of them: the earlier
    keys stay in the results (the output writes a type that holds them all)."""
    server = emulator(engine="wordlist")
    pl.DataFrame({"id": [300, 1], "text": ["a", "b"]}).write_parquet(tmp_path / "input.parquet")
    job = write_job(tmp_path)
    assert run(job, server).exit_code == 0
    narrow = pl.DataFrame({"id": pl.Series([1, 2], dtype=pl.Int8), "text": ["b", "c"]})
    narrow.write_parquet(tmp_path / "input.parquet")
    assert run(job, server).exit_code == 0
    results = read_output(job, "results")
    assert results.schema["id"] == pl.Int64 and sorted(results["id"]) == [1, 2, 300]
    other = tmp_path / "enum"
    other.mkdir()
    enum = pl.Enum(["x", "y", "z"])
    pl.DataFrame({"id": pl.Series(["x", "y"], dtype=enum), "text": ["a", "b"]}).write_parquet(
        other / "input.parquet"
    )
    job = write_job(other)
    assert run(job, server).exit_code == 0
    smaller = pl.Enum(["y", "z"])
    pl.DataFrame({"id": pl.Series(["y", "z"], dtype=smaller), "text": ["b", "c"]}).write_parquet(
        other / "input.parquet"
    )
    assert run(job, server).exit_code == 0
    results = pl.read_parquet(other / "out" / "results.parquet")
    assert sorted(results["id"].cast(pl.String)) == ["x", "y", "z"]
    assert sorted(sent(server)) == ["a", "a", "b", "b", "c", "c"]


def test_a_journal_holding_an_int_key_and_its_text_twice_is_migrated_to_one_key(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    data = pl.DataFrame({"id": [1, 2], "text": TEXTS[:2]})
    job = write_job(tmp_path, data)
    assert run(job, server).exit_code == 0
    make_v1(tmp_path / "out" / STATE_DIR / JOURNAL_FILE, text_twin=2)
    assert run(job, server).exit_code == 0
    assert sorted(sent(server)) == sorted(TEXTS[:2]), "the done row won: nothing sent again"
    assert journal_keys(tmp_path) == [("1", "text"), ("2", "text")]
    assert sorted(read_output(job, "results")["id"]) == [1, 2]
