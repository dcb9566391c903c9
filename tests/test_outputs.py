"""Writing the output folder: temporaries only in .pipeline/tmp, formula-safe CSV whatever the
column type, and a failed write after sending (full disk, lost audio file) that keeps every
committed answer and exits 74."""

from __future__ import annotations

import datetime as dt
import resource
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import StartEmulator, pipeline_command, read_output, run_cli, write_job

EVIL = "=cmd|' /C calc'!A0"


def journal_states(out: Path) -> dict[str, str]:
    db = sqlite3.connect(out / ".pipeline" / "journal.sqlite")
    try:
        return dict(db.execute("SELECT key, state FROM rows"))
    finally:
        db.close()


def limited_to(size: int) -> Callable[[], None]:
    """A child-process hook: files may not grow past ``size`` bytes (writes then fail EFBIG)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return apply


class TestTemporaries:
    def test_start_up_cleans_only_its_own_temporary_folder(
        self, tmp_path: Path, emulator: StartEmulator
    ) -> None:
        server = emulator()
        data = pl.DataFrame(
            {"id": ["k1", "k2"], "name": ["a.tmp-3", "b"], "text": ["Hello there.", "Hi."]}
        )
        job = write_job(
            tmp_path,
            data,
            kind="speech",
            request={"model": "gpt-4o-mini-tts", "input": "{text}", "voice": "alloy"},
            speech={"file_name": "{name}"},
        )
        assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
        out = tmp_path / "out"
        audio = out / "audio" / "a.tmp-3.mp3"
        audio_bytes = audio.read_bytes()
        notes = out / "notes.tmp-1.txt"
        notes.write_text("mine")
        stale = out / ".pipeline" / "tmp" / "4242-7.parquet"  # what a killed run leaves
        stale.write_bytes(b"half a file")
        assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
        assert audio.read_bytes() == audio_bytes
        assert notes.read_text() == "mine"
        assert not stale.exists()
        assert list((out / ".pipeline" / "tmp").iterdir()) == []
        assert sorted(read_output(job, "results")["audio_path"]) == [
            "audio/a.tmp-3.mp3",
            "audio/b.mp3",
        ]

    def test_no_temporary_is_made_beside_the_outputs(
        self, tmp_path: Path, emulator: StartEmulator
    ) -> None:
        server = emulator()
        data = pl.DataFrame({"id": [f"r{i}" for i in range(30)], "text": ["some text"] * 30})
        job = write_job(tmp_path, data, output={"format": "csv"})
        assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
        names = sorted(p.name for p in (tmp_path / "out").iterdir())
        assert names == [".pipeline", "errors.csv", "results.csv", "summary.json"]


class TestFormatChange:
    def test_a_new_output_format_replaces_the_old_files(
        self, tmp_path: Path, emulator: StartEmulator
    ) -> None:
        """A reader of results.parquet must not see an earlier run's rows as if current once
        the job writes CSV: the old format's files go, the new ones hold every row."""
        server = emulator(engine="wordlist")
        data = pl.DataFrame({"id": ["a", "b"], "text": ["one", "two"]})
        job = write_job(tmp_path, data)
        assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
        grown = pl.DataFrame({"id": ["a", "b", "c"], "text": ["one", "two", "three"]})
        job = write_job(tmp_path, grown, output={"format": "csv"})
        assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
        out = tmp_path / "out"
        assert not (out / "results.parquet").exists() and not (out / "errors.parquet").exists()
        assert sorted(pl.read_csv(out / "results.csv")["id"]) == ["a", "b", "c"]
        assert len(server.recorded_requests()) == 3, "nothing sent twice"


class TestCsvFormulas:
    def test_every_string_like_column_and_header_is_neutralised(
        self, tmp_path: Path, emulator: StartEmulator
    ) -> None:
        server = emulator()
        table = pa.table(
            {
                "id": ["k1", "k2"],
                "dict": pa.array([EVIL, "+1"]).dictionary_encode(),  # a categorical column
                "=HYPERLINK": ["x", "y"],  # a header a spreadsheet would run
                "tags": [[EVIL], ["ok"]],
                "text": ["hello", "hi"],
            }
        )
        pq.write_table(table, tmp_path / "input.parquet")
        enum = pl.DataFrame({"id": ["k1", "k2"], "level": ["@SUM(A1)", "-2"]}).with_columns(
            pl.col("level").cast(pl.Enum(["@SUM(A1)", "-2"]))
        )
        job = write_job(
            tmp_path,
            input={"keep": ["dict", "=HYPERLINK", "tags"]},
            output={"format": "csv"},
        )
        assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
        rows = pl.read_csv(tmp_path / "out" / "results.csv", infer_schema=False).sort("id")
        assert rows["dict"].to_list() == [f"'{EVIL}", "'+1"]
        assert "'=HYPERLINK" in rows.columns
        assert rows["tags"].to_list() == [f'["{EVIL}"]', '["ok"]']  # JSON text starts with [
        enum.join(pl.DataFrame({"id": ["k1", "k2"], "text": ["a", "b"]}), on="id").write_parquet(
            tmp_path / "enum.parquet"
        )
        job = write_job(
            tmp_path,
            input={"path": "enum.parquet", "keep": ["level"]},
            output={"format": "csv", "dir": "out2"},
        )
        assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
        rows = pl.read_csv(tmp_path / "out2" / "results.csv", infer_schema=False).sort("id")
        assert rows["level"].to_list() == ["'@SUM(A1)", "'-2"]

    def test_time_and_nested_keep_values_survive_every_format(
        self, tmp_path: Path, emulator: StartEmulator
    ) -> None:
        server = emulator()
        data = pl.DataFrame(
            {
                "id": ["k1", "k2"],
                "at": [dt.time(1, 2, 3, 4), dt.time(23, 59)],
                "when": [[dt.date(2024, 1, 2)], []],
                "text": ["a", "b"],
            }
        )
        job = write_job(tmp_path, data, input={"keep": ["at", "when"]})
        assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
        rows = read_output(job, "results").sort("id")
        assert rows["at"].to_list() == data["at"].to_list()
        assert rows["when"].to_list() == data["when"].to_list()


class TestFullDisk:
    def test_full_disk_mid_run_exits_74_keeps_answers_and_resumes(
        self, tmp_path: Path, emulator: StartEmulator
    ) -> None:
        server = emulator()
        n = 3000
        data = pl.DataFrame(
            {
                "id": [f"r{i:05d}" for i in range(n)],
                "text": [f"comment {i} " + "x" * 200 for i in range(n)],
            }
        )
        job = write_job(tmp_path, data, input={"keep": ["text"]})
        out = tmp_path / "out"
        child = subprocess.run(
            pipeline_command(job, server), preexec_fn=limited_to(2_500_000), capture_output=True
        )
        assert child.returncode == 74, child.stderr
        states = journal_states(out)
        done = {key for key, state in states.items() if state == "done"}
        assert done, "some answers were committed before the disk filled"
        assert "failed" not in states.values(), "a full disk fails no row"
        assert b"journal.sqlite" in child.stderr and b"rerun" in child.stderr
        sent_before = len(server.recorded_requests())
        assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
        again = {body["input"] for _, body in server.recorded_requests()[sent_before:]}
        assert not set(data.filter(pl.col("id").is_in(done))["text"]) & again, "not paid twice"
        results = read_output(job, "results")
        assert sorted(results["id"]) == data["id"].to_list()
        assert set(journal_states(out).values()) == {"done"}

    def test_a_journal_that_cannot_be_created_is_exit_74_before_sending(
        self, tmp_path: Path, emulator: StartEmulator
    ) -> None:
        server = emulator()
        data = pl.DataFrame({"id": ["a", "b"], "text": ["one", "two"]})
        job = write_job(tmp_path, data)
        child = subprocess.run(
            pipeline_command(job, server), preexec_fn=limited_to(20_000), capture_output=True
        )
        assert child.returncode == 74, child.stderr
        assert b"journal.sqlite" in child.stderr
        assert server.recorded_requests() == []
        assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
        assert sorted(read_output(job, "results")["id"]) == ["a", "b"]

    def test_results_that_cannot_be_written_at_the_end_exit_74(
        self, tmp_path: Path, emulator: StartEmulator
    ) -> None:
        server = emulator()
        n = 8000  # journal ~4.4 MB, results.jsonl ~7.8 MB: only the results pass the limit
        data = pl.DataFrame({"id": [f"r{i:05d}" for i in range(n)], "text": ["words"] * n})
        job = write_job(
            tmp_path, data, output={"format": "jsonl"}, moderation={"rows_per_request": 100}
        )
        out = tmp_path / "out"
        child = subprocess.run(
            pipeline_command(job, server), preexec_fn=limited_to(6_000_000), capture_output=True
        )
        assert child.returncode == 74, child.stderr
        assert b"results.jsonl" in child.stderr
        assert set(journal_states(out).values()) == {"done"}
        assert not (out / "results.jsonl").exists()
        assert list((out / ".pipeline" / "tmp").iterdir()) == [], "the half file is removed"
        sent_before = len(server.recorded_requests())
        assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
        assert len(server.recorded_requests()) == sent_before, "nothing is sent again"
        results = pl.read_ndjson(out / "results.jsonl")
        assert sorted(results["id"]) == data["id"].to_list()

    def test_an_audio_file_that_cannot_be_written_stops_the_run(
        self, tmp_path: Path, emulator: StartEmulator
    ) -> None:
        server = emulator()
        long = "The quick brown fox jumps over the lazy dog, and then it rests a while. " * 25
        data = pl.DataFrame({"id": [f"k{i}" for i in range(6)], "text": [long] * 6})
        job = write_job(
            tmp_path,
            data,
            kind="speech",
            request={
                "model": "gpt-4o-mini-tts",
                "input": "{text}",
                "voice": "alloy",
                "response_format": "wav",
            },
            api={"concurrency": 2},
        )
        out = tmp_path / "out"
        child = subprocess.run(
            pipeline_command(job, server), preexec_fn=limited_to(1_000_000), capture_output=True
        )
        assert child.returncode == 74, child.stderr
        assert b"audio" in child.stderr
        states = journal_states(out)
        assert "failed" not in states.values(), "no row becomes an internal_error row"
        assert not (out / "errors.parquet").exists() or read_output(job, "errors").height == 0
        assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
        results = read_output(job, "results")
        assert sorted(results["id"]) == data["id"].to_list()
        for path in results["audio_path"]:
            assert (out / path).stat().st_size > 1_000_000
        assert list((out / ".pipeline" / "tmp").iterdir()) == []
