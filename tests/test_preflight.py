"""Pre-flight: everything that would make the outputs fail stops the job (exit 2) before the
first request is paid for; an input that breaks mid-run keeps the answers so far (exit 2)."""

from __future__ import annotations

import datetime as dt
import decimal
import os
import subprocess
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from pipeline.emulator import RunningEmulator
from tests.conftest import StartEmulator, pipeline_command, read_output, run_cli, write_job

DATA = pl.DataFrame(
    {
        "id": [f"r{i:04d}" for i in range(1000)],
        "text": [f"comment number {i}" for i in range(1000)],
        "author": [f"a{i % 7}" for i in range(1000)],
    }
)


def refused(job: Path, server: RunningEmulator, *extra: str) -> str:
    """Run the job; assert it stopped with exit 2 before any request; return its message."""
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet", *extra)
    assert result.exit_code == 2, result.output
    assert server.recorded_requests() == [], "nothing was sent"
    assert not (job.parent / "out" / "results.parquet").exists()
    return result.output


def corrupt_middle(path: Path, column: str) -> None:
    """Overwrite the page header of ``column`` in the middle row group of a Parquet file."""
    metadata = pq.ParquetFile(path).metadata
    group = metadata.row_group(metadata.num_row_groups // 2)
    index = next(i for i in range(group.num_columns) if group.column(i).path_in_schema == column)
    offset = group.column(index).data_page_offset + 20
    data = bytearray(path.read_bytes())
    data[offset : offset + 40] = b"\xff" * 40
    path.write_bytes(bytes(data))


class TestKeepNames:
    @pytest.mark.parametrize(
        ("keep", "named"),
        [
            (["id"], "the key"),
            (["author", "flagged"], "a result column"),
            (["error_type"], "errors file"),
            (["author", "author"], "twice"),
        ],
    )
    def test_a_keep_column_that_would_collide_is_exit_2(
        self, tmp_path: Path, emulator: StartEmulator, keep: list[str], named: str
    ) -> None:
        server = emulator()
        data = DATA.with_columns(flagged=pl.lit(True), error_type=pl.lit("x"))
        job = write_job(tmp_path, data, input={"keep": keep})
        message = refused(job, server)
        assert named in message and "input.keep" in message

    def test_keep_columns_a_csv_header_neutralises_stay_two_columns(
        self, tmp_path: Path, emulator: StartEmulator
    ) -> None:
        """``=x`` and ``'=x`` are written ``'=x`` and ``''=x``: neutralising never makes two
        header names one, so each value stays under its own column."""
        server = emulator()
        data = DATA.with_columns(pl.lit("a").alias("=x"), pl.lit("b").alias("'=x"))
        job = write_job(tmp_path, data, input={"keep": ["=x", "'=x"]}, output={"format": "csv"})
        result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
        assert result.exit_code == 0, result.output
        written = pl.read_csv(tmp_path / "out" / "results.csv")
        assert written.columns[1:3] == ["'=x", "''=x"]
        assert set(written["'=x"]) == {"a"} and set(written["''=x"]) == {"b"}


class TestKeepTypes:
    @pytest.mark.parametrize(
        ("column", "fmt"),
        [
            (pl.Series("kept", [decimal.Decimal("1.25")] * 3), "parquet"),
            (pl.Series("kept", [dt.timedelta(seconds=3)] * 3), "csv"),
            (pl.Series("kept", [b"\x00\x01"] * 3), "jsonl"),
            (pl.Series("kept", [{"at": dt.datetime(2024, 1, 1)}] * 3), "parquet"),
            (pl.Series("kept", [None, 1_000_000_001, 1]).cast(pl.Datetime("ns")), "parquet"),
        ],
    )
    def test_a_type_the_outputs_cannot_hold_is_exit_2(
        self, tmp_path: Path, emulator: StartEmulator, column: pl.Series, fmt: str
    ) -> None:
        server = emulator()
        data = pl.DataFrame({"id": ["a", "b", "c"], "text": ["x", "y", "z"]}).with_columns(column)
        job = write_job(tmp_path, data, input={"keep": ["kept"]}, output={"format": fmt})
        message = refused(job, server)
        assert "'kept'" in message and str(column.dtype) in message
        assert "cast it in the input" in message


class TestValidate:
    def test_validate_runs_the_same_checks_and_writes_nothing(self, tmp_path: Path) -> None:
        job = write_job(tmp_path, DATA, input={"keep": ["id"]})
        result = run_cli("validate", job)
        assert result.exit_code == 2, result.output
        assert "the key" in result.output
        job = write_job(tmp_path, DATA, input={"keep": ["author"]})
        assert run_cli("validate", job).exit_code == 0
        assert not (tmp_path / "out").exists(), "validate creates no output folder"


class TestOutputFolder:
    def test_an_output_path_that_is_a_file_is_exit_2(
        self, tmp_path: Path, emulator: StartEmulator
    ) -> None:
        server = emulator()
        (tmp_path / "out").write_text("not a folder")
        job = write_job(tmp_path, DATA)
        assert "is a file" in refused(job, server)
        assert (tmp_path / "out").read_text() == "not a folder"

    @pytest.mark.parametrize("ran_before", [False, True])
    def test_a_read_only_output_folder_is_exit_2_before_sending(
        self, tmp_path: Path, emulator: StartEmulator, ran_before: bool
    ) -> None:
        """A folder the run cannot write (read-only media, lost permissions): one line, exit 2,
        nothing sent, whether a run wrote there before or not."""
        server = emulator()
        job = write_job(tmp_path, DATA)
        out = tmp_path / "out"
        if ran_before:
            assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
        out.mkdir(exist_ok=True)
        sent = len(server.recorded_requests())
        folders = [out, *(p for p in out.rglob("*") if p.is_dir())]
        for folder in folders:
            folder.chmod(0o555)
        command = pipeline_command(job, server)
        if os.geteuid() == 0:  # root writes anywhere: without its capabilities, it cannot here
            command = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", *command]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        finally:
            for folder in folders:
                folder.chmod(0o755)
        assert done.returncode == 2, done.stderr
        assert "cannot write the output folder" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, "one line, no traceback"
        assert len(server.recorded_requests()) == sent, "nothing sent"

    def test_an_output_file_name_taken_by_a_folder_is_exit_2(
        self, tmp_path: Path, emulator: StartEmulator
    ) -> None:
        server = emulator()
        (tmp_path / "out" / "errors.parquet").mkdir(parents=True)
        job = write_job(tmp_path, DATA)
        assert "is a folder" in refused(job, server)

    def test_an_output_folder_that_cannot_be_created_is_exit_2(
        self, tmp_path: Path, emulator: StartEmulator
    ) -> None:
        server = emulator()
        job = write_job(tmp_path, DATA, output={"dir": "input.parquet/out"})
        result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
        assert result.exit_code == 2, result.output
        assert "cannot write the output folder" in result.output
        assert server.recorded_requests() == []

    @pytest.mark.parametrize(
        ("path", "out"),
        [("data", "data"), ("data", "data/out"), ("data/**/*.parquet", "data/sub/out")],
    )
    def test_outputs_the_input_would_read_back_are_exit_2(
        self, tmp_path: Path, emulator: StartEmulator, path: str, out: str
    ) -> None:
        server = emulator()
        (tmp_path / "data").mkdir()
        DATA.write_parquet(tmp_path / "data" / "part.parquet")
        job = write_job(tmp_path, input={"path": path}, output={"dir": out})
        result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
        assert result.exit_code == 2, result.output
        assert "outside the input" in result.output
        assert server.recorded_requests() == []

    @pytest.mark.parametrize("name", ["results.parquet", "errors.parquet", "audio/a.parquet"])
    def test_an_input_file_where_outputs_are_written_is_exit_2(
        self, tmp_path: Path, emulator: StartEmulator, name: str
    ) -> None:
        server = emulator()
        (tmp_path / "out" / "audio").mkdir(parents=True)
        DATA.write_parquet(tmp_path / "out" / name)
        job = write_job(tmp_path, input={"path": f"out/{name}"})
        result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
        assert result.exit_code == 2, result.output
        assert "where the pipeline writes its outputs" in result.output
        assert server.recorded_requests() == []
        assert pl.read_parquet(tmp_path / "out" / name).equals(DATA), "left as it was"

    def test_a_data_file_kept_beside_the_outputs_runs(
        self, tmp_path: Path, emulator: StartEmulator
    ) -> None:
        server = emulator()
        (tmp_path / "out").mkdir()
        DATA.write_parquet(tmp_path / "out" / "part.parquet")
        job = write_job(tmp_path, input={"path": "out/part.parquet"})
        result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
        assert result.exit_code == 0, result.output
        assert read_output(job, "results").height == DATA.height
        again = run_cli("run", job, "--base-url", server.base_url, "--quiet")
        assert again.exit_code == 0 and read_output(job, "results").height == DATA.height

    def test_a_glob_that_cannot_reach_the_outputs_runs(
        self, tmp_path: Path, emulator: StartEmulator
    ) -> None:
        server = emulator()
        (tmp_path / "data").mkdir()
        DATA.write_parquet(tmp_path / "data" / "part.parquet")
        job = write_job(tmp_path, input={"path": "data/*.parquet"}, output={"dir": "data/out"})
        result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
        assert result.exit_code == 0, result.output
        assert pl.read_parquet(tmp_path / "data" / "out" / "results.parquet").height == 1000


class TestCorruptInput:
    def test_a_parquet_corrupt_in_the_middle_is_exit_2_before_sending(
        self, tmp_path: Path, emulator: StartEmulator
    ) -> None:
        server = emulator()
        job = write_job(tmp_path)
        rows = pl.DataFrame({"id": range(40_000), "text": ["some words"] * 40_000})
        rows.write_parquet(tmp_path / "input.parquet", row_group_size=5_000)
        corrupt_middle(tmp_path / "input.parquet", "text")  # rows 20,000 to 24,999
        message = refused(job, server)
        assert "input.parquet" in message and "input.path" in message
        # --limit reads only the batches it needs (10,000 rows): those are sound
        result = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--limit", "50")
        assert result.exit_code == 4, result.output  # rows left unread: resumable
        assert read_output(job, "results").height == 50

    def test_a_file_that_breaks_mid_run_keeps_the_answers_and_resumes(
        self, tmp_path: Path, emulator: StartEmulator
    ) -> None:
        server = emulator(latency_ms=100)
        first = pl.DataFrame(
            {"id": [f"a{i:05d}" for i in range(20_000)], "text": ["some words"] * 20_000}
        )
        second = pl.DataFrame({"id": ["b1", "b2"], "text": ["more", "words"]})
        (tmp_path / "data").mkdir()
        first.write_parquet(tmp_path / "data" / "1.parquet")
        second.write_parquet(tmp_path / "data" / "2.parquet")
        job = write_job(
            tmp_path,
            input={"path": "data"},
            moderation={"rows_per_request": 1000},
            api={"concurrency": 1},
        )
        child = subprocess.Popen(pipeline_command(job, server), stderr=subprocess.PIPE)
        try:
            # the reader reaches 2.parquet only after ~18 of the 20 requests for 1.parquet
            assert server.wait_for_requests(2, timeout=60)
            (tmp_path / "data" / "2.parquet").write_bytes(b"not parquet any more")
            _, stderr = child.communicate(timeout=120)
        finally:
            child.kill()
        assert child.returncode == 2, stderr
        assert b"2.parquet" in stderr and b"rerun" in stderr
        done = read_output(job, "results")
        assert 0 < done.height <= 20_000
        assert done["id"].is_unique().all()
        sent_before = len(server.recorded_requests())
        second.write_parquet(tmp_path / "data" / "2.parquet")
        result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
        assert result.exit_code == 0, result.output
        results = read_output(job, "results")
        assert sorted(results["id"]) == sorted([*first["id"], *second["id"]])
        resent = [
            row for _, body in server.recorded_requests()[sent_before:] for row in body["input"]
        ]
        assert len(resent) == 20_002 - done.height, "the answers kept are not paid for again"
