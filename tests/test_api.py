"""The Python API: its public names, ``run`` and ``validate`` on job files and dicts, and the
DataFrame helpers on polars and pandas frames against the emulator (joined back on the key,
error rows kept, a rerun sends nothing)."""

from __future__ import annotations

import _thread
import json
import signal
import threading
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

import pipeline
from tests.conftest import StartEmulator, write_job

PUBLIC = [
    "JobError",
    "LockedError",
    "PipelineError",
    "RunStopped",
    "StorageError",
    "Summary",
    "Validation",
    "moderate",
    "run",
    "speak",
    "validate",
]
VIOLENT = "I will kill you and burn your house down"
CALM = ["The parcel arrived two days late.", "Thanks, the replacement works fine.", "Lovely day"]


def test_the_public_names_are_these_sorted_and_documented() -> None:
    assert pipeline.__all__ == PUBLIC == sorted(PUBLIC)
    for name in PUBLIC:
        value = getattr(pipeline, name)
        assert value.__doc__, name
        assert not value.__module__.split(".")[-1].startswith("_")
    assert set(PUBLIC) <= set(dir(pipeline))
    with pytest.raises(AttributeError):
        _ = pipeline.Runner


def comments() -> pl.DataFrame:
    """Keys out of order, an empty text (an error row) and one violent text."""
    return pl.DataFrame(
        {
            "id": [30, 10, 20, 40, 50],
            "text": [CALM[0], VIOLENT, "", CALM[1], CALM[2]],
            "author": ["ann", "bob", "cy", "dee", "eve"],
        }
    )


def check_joined(frame: pl.DataFrame, result: pl.DataFrame, key: str = "id") -> None:
    """One row per frame row, in its order, its own columns unchanged; the violent text is the
    only one flagged for violence; the empty one is an error row saying so."""
    assert result.select(frame.columns).equals(frame)
    by_text = {row["text"]: row for row in result.iter_rows(named=True)}
    assert by_text[VIOLENT]["flagged"] is True and by_text[VIOLENT]["flag_violence"] is True
    assert by_text[VIOLENT]["error_type"] is None
    for text in CALM:
        assert by_text[text]["flag_violence"] is False and by_text[text]["error_type"] is None
        assert 0.0 <= by_text[text]["score_violence"] < by_text[VIOLENT]["score_violence"]
    empty = by_text[""]
    assert empty["flagged"] is None and empty["score_violence"] is None
    assert (empty["error_type"], empty["error_message"]) == ("invalid_row", "input is empty")
    assert result[key].to_list() == frame[key].to_list()


def test_moderate_a_polars_frame_joins_back_and_a_rerun_sends_nothing(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    frame = comments()
    out = tmp_path / "out"
    result = pipeline.moderate(frame, output_dir=out, base_url=server.base_url, concurrency=2)
    check_joined(frame, result)
    sent = server.stats()["requests"]
    assert sent == 4  # the empty text is never sent
    assert sorted(body["input"] for _, body in server.recorded_requests()) == sorted(
        [*CALM, VIOLENT]
    )
    again = pipeline.moderate(frame, output_dir=out, base_url=server.base_url)
    assert server.stats()["requests"] == sent  # resumed from the journal: nothing new
    assert again.equals(result)
    more = pl.concat([frame, pl.DataFrame({"id": [60], "text": [VIOLENT], "author": ["fay"]})])
    grown = pipeline.moderate(more, output_dir=out, base_url=server.base_url)
    assert server.stats()["requests"] == sent + 1  # only the new row
    assert grown.head(5).equals(result) and grown["flagged"][5] is True
    assert json.loads((out / "summary.json").read_text())["rows"]["done"] == 5


def test_moderate_a_pandas_frame_keyed_by_its_index(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    texts = [CALM[0], VIOLENT, "", CALM[1], CALM[2]]
    frame = pd.DataFrame(
        {"body": texts}, index=pd.Index(["c3", "c1", "c2", "c4", "c5"], name="comment_id")
    )
    result = pipeline.moderate(
        frame, output_dir=tmp_path / "out", text="body", key="comment_id", base_url=server.base_url
    )
    assert isinstance(result, pl.DataFrame)
    expected = pl.from_pandas(frame, include_index=True).rename({"body": "text"})
    check_joined(expected, result.rename({"body": "text"}), key="comment_id")


def test_moderate_a_pandas_frame_with_packed_requests(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    frame = comments().to_pandas()
    result = pipeline.moderate(
        frame, output_dir=tmp_path / "out", rows_per_request=8, base_url=server.base_url
    )
    check_joined(pl.from_pandas(frame), result)
    assert server.stats()["requests"] == 1  # the four texts in one request, mapped back


async def test_moderate_inside_a_running_event_loop(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    frame = comments()
    result = pipeline.moderate(frame, output_dir=tmp_path / "out", base_url=server.base_url)
    check_joined(frame, result)


def test_bad_arguments_are_job_errors_not_exits(tmp_path: Path) -> None:
    frame = comments()
    with pytest.raises(pipeline.JobError) as missing:
        pipeline.moderate(frame, output_dir=tmp_path / "a", text="body", base_url="local")
    assert missing.value.field == "text" and "'body'" in str(missing.value)
    twice = pl.concat([frame, frame.head(1)])
    with pytest.raises(pipeline.JobError) as duplicate:
        pipeline.moderate(twice, output_dir=tmp_path / "b", base_url="local")
    assert str(duplicate.value).startswith("input.key: the key column 'id' has 1 value(s) used")
    with pytest.raises(pipeline.JobError) as setting:
        pipeline.moderate(frame, output_dir=tmp_path / "c", base_url="local", concurrency=0)
    assert setting.value.field == "api.concurrency"
    with pytest.raises(pipeline.JobError, match="polars or pandas"):
        pipeline.moderate(42, output_dir=tmp_path / "d", base_url="local")
    mixed = pd.DataFrame({"id": [1, 2], "text": ["a", "b"], "odd": [object(), 3]})
    with pytest.raises(pipeline.JobError, match="cannot read the pandas frame through pyarrow"):
        pipeline.moderate(mixed, output_dir=tmp_path / "e", base_url="local")


def test_a_run_stopped_by_the_api_raises_with_its_summary(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(faults={"401": 1.0})
    out = tmp_path / "out"
    with pytest.raises(pipeline.RunStopped) as stopped:
        pipeline.moderate(comments(), output_dir=out, base_url=server.base_url)
    summary = stopped.value.summary
    assert (summary.outcome, summary.exit_code) == ("stopped_fatal", 3)
    assert summary.rows["done"] == 0 and summary.data["fatal_error"]["http_status"] == 401


def test_run_and_validate_a_job_file_with_overrides(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    job = write_job(tmp_path, comments())
    found = pipeline.validate(job)
    assert (found.rows, found.valid, found.invalid, found.requests) == (5, 4, 1, 4)
    assert found.problems == ((20, "input is empty"),)
    assert (found.cost_sync_usd, found.cost_batch_usd) == (0.0, 0.0)  # moderation is free
    assert found.cost_lines[0].startswith("cost, estimated at the prices of the OpenAI")
    elsewhere = tmp_path / "elsewhere"
    first = pipeline.run(job, base_url=server.base_url, output_dir=elsewhere, limit=2)
    assert (first.outcome, first.exit_code, first.ok) == ("interrupted", 4, False)
    assert first.output_dir == elsewhere and first.rows["done"] == 2
    rest = pipeline.run(str(job), base_url=server.base_url, output_dir=elsewhere)
    assert (rest.outcome, rest.exit_code) == ("completed_with_errors", 1)
    assert rest.data == json.loads((elsewhere / "summary.json").read_text())
    assert (rest.rows["done"], rest.rows["failed"], rest.rows["done_this_run"]) == (4, 1, 2)
    assert pl.read_parquet(rest.results)["id"].sort().to_list() == [10, 30, 40, 50]
    assert pl.read_parquet(rest.errors)["id"].to_list() == [20]
    assert rest.cost_usd == 0.0
    assert server.stats()["requests"] == 4


def test_run_a_dict_job_with_path_values(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator()
    source = tmp_path / "in.parquet"
    comments().filter(pl.col("text") != "").write_parquet(source)
    job = {
        "kind": "moderation",
        "name": "from-a-dict",
        "input": {"path": source, "key": "id", "keep": ["author"]},
        "request": {"model": "omni-moderation-latest", "input": "{text}"},
        "output": {"dir": tmp_path / "out"},
    }
    summary = pipeline.run(job, base_url=server.base_url)
    assert (summary.outcome, summary.data["job"]) == ("completed", "from-a-dict")
    results = pl.read_parquet(summary.results).sort("id")
    assert results["author"].to_list() == ["bob", "ann", "dee", "eve"]
    with pytest.raises(pipeline.JobError) as bad:
        pipeline.run({**job, "output": {"dir": 3}})
    assert bad.value.field == "output.dir"
    unnamed = {name: value for name, value in job.items() if name != "name"}
    assert pipeline.validate(unnamed, output_dir=tmp_path / "trial").job == "out"


def test_speak_a_frame_with_a_voice_per_row(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator()
    frame = pl.DataFrame(
        {"id": ["p2", "p1", "p3"], "text": ["Hello there.", "", "A second line."]}
    ).with_columns(who=pl.Series(["echo", "alloy", "nova"]))
    out = tmp_path / "out"
    result = pipeline.speak(
        frame, output_dir=out, voice="{who}", request={"speed": 1.25}, base_url=server.base_url
    )
    assert result.select(frame.columns).equals(frame)
    done = result.filter(pl.col("error_type").is_null())
    assert done["voice"].to_list() == ["echo", "nova"] == done["who"].to_list()
    for row in done.iter_rows(named=True):
        audio = (out / row["audio_path"]).read_bytes()
        assert len(audio) == row["bytes"] > 0 and row["duration_s"] > 0
    sent = [body for _, body in server.recorded_requests()]
    assert sorted((b["input"], b["voice"], b["speed"]) for b in sent) == [
        ("A second line.", "nova", 1.25),
        ("Hello there.", "echo", 1.25),
    ]
    assert result.filter(pl.col("id") == "p1")["error_message"].to_list() == ["input is empty"]


async def test_an_interrupt_inside_an_event_loop_stops_the_run_resumably(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(latency_ms=100)  # answers slow enough that the run is going when hit
    rows = 30
    frame = pl.DataFrame({"id": list(range(rows)), "text": [f"comment {i}" for i in range(rows)]})
    out = tmp_path / "out"

    def interrupt_once_started() -> None:
        if server.wait_for_requests(3, timeout=60):
            _thread.interrupt_main()  # what a notebook's "interrupt kernel" sends

    hitter = threading.Thread(target=interrupt_once_started)
    # a notebook's kernel raises KeyboardInterrupt in the cell (asyncio.Runner would cancel)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        hitter.start()
        with pytest.raises(KeyboardInterrupt):
            pipeline.moderate(frame, output_dir=out, base_url=server.base_url, concurrency=1)
    finally:
        signal.signal(signal.SIGINT, before)
        hitter.join()
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["outcome"], summary["stopped_by"]) == ("interrupted", "SIGINT")
    assert 0 < summary["rows"]["done"] < rows
    result = pipeline.moderate(frame, output_dir=out, base_url=server.base_url, concurrency=8)
    assert result["error_type"].null_count() == rows  # every row done, none failed
    assert server.stats()["requests"] == rows  # nothing sent twice
