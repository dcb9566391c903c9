"""Audiobooks ([speech.assemble]) end to end on the emulator: books read back with PyAV."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import av
import polars as pl
import pytest

from pipeline import audio
from tests.conftest import REPO, StartEmulator, pipeline_command, run_cli, write_job

ASSEMBLE = {
    "group": "book",
    "order": ["chapter", "paragraph"],
    "chapter": "chapter",
    "chapter_title": "Chapter {chapter}: {chapter_title}",
    "title": "{book}",
    "author": "Lewis Carroll",
}


def chapters_input(per_chapter: int = 2) -> pl.DataFrame:
    """The sample chapters, shortened: chapters 1-3 are the book Alice, chapter 4 Sampler; each
    paragraph cut to its first sentence so that the emulator speaks a few seconds of each."""
    data = pl.read_parquet(REPO / "sample_data" / "chapters.parquet")
    chapters = data.filter(pl.col("chapter") <= 4).group_by("chapter", maintain_order=True)
    first_sentence = pl.col("text").map_elements(
        lambda text: re.split(r"(?<=[.!?\u2019])\s", text)[0][:120], return_dtype=pl.String
    )
    return (
        chapters.head(per_chapter)
        .with_columns(
            first_sentence,
            pl.when(pl.col("chapter") <= 3).then(pl.lit("Alice")).otherwise(pl.lit("Sampler")),
        )
        .rename({"literal": "book"})
        .sample(fraction=1.0, shuffle=True, seed=7)  # the order column, not the input, orders
    )


def book_job(folder: Path, data: pl.DataFrame, **assemble: Any) -> Path:
    output = {"format": assemble.pop("output_format", "parquet")}
    speech: dict[str, Any] = {"file_name": "{paragraph_id}"}
    if assemble.get("format") != "off":
        speech["assemble"] = {**ASSEMBLE, **assemble}
    return write_job(
        folder,
        data,
        kind="speech",
        input={"key": "paragraph_id"},
        request={
            "model": "gpt-4o-mini-tts",
            "input": "{text}",
            "voice": "{voice}",
            "response_format": "mp3",
        },
        speech=speech,
        output=output,
        api={"concurrency": 4},
    )


def run(job: Path, server: Any) -> dict[str, Any]:
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code in (0, 1), result.output
    summary: dict[str, Any] = json.loads((job.parent / "out" / "summary.json").read_text())
    return summary


def row_seconds(out: Path, data: pl.DataFrame) -> dict[str, float]:
    """Each row's decoded audio length, from its own file (the oracle for chapter times)."""
    results = pl.read_parquet(out / "results.parquet")
    return {
        row["paragraph_id"]: len(audio.decode((out / row["audio_path"]).read_bytes(), "mp3"))
        / 2
        / audio.SAMPLE_RATE
        for row in results.iter_rows(named=True)
        if row["paragraph_id"] in set(data["paragraph_id"])
    }


def read_book(path: Path) -> tuple[dict[str, str], list[tuple[float, str]], float]:
    """(tags, [(chapter start s, title)], decoded seconds) of a book file, with PyAV."""
    with av.open(str(path)) as book:
        tags = dict(book.metadata)
        marks = [
            (float(ch["start"] * ch["time_base"]), ch["metadata"]["title"])
            for ch in book.chapters()
            if ch["time_base"] is not None
        ]
        stream = book.streams.audio[0]
        seconds = sum(frame.samples for frame in book.decode(stream)) / stream.rate
    return tags, marks, seconds


def expected_starts(data: pl.DataFrame, seconds: dict[str, float]) -> list[float]:
    """Chapter starts = the summed durations of the rows before each chapter's first row."""
    ordered = data.sort("chapter", "paragraph")
    starts, total, last = [], 0.0, None
    for row in ordered.iter_rows(named=True):
        if row["chapter"] != last:
            starts.append(total)
            last = row["chapter"]
        total += seconds[row["paragraph_id"]]
    return starts


def check_alice_m4b(out: Path, data: pl.DataFrame) -> None:
    """Alice.m4b: its tags, 3 chapters at the summed durations of the rows before, the whole
    audio; and its manifest rows."""
    alice = data.filter(pl.col("book") == "Alice")
    seconds = row_seconds(out, data)
    tags, marks, decoded = read_book(out / "books" / "Alice.m4b")
    assert tags["title"] == "Alice" and tags["album"] == "Alice"
    assert tags["artist"] == "Lewis Carroll"
    voices = set(alice["voice"])
    assert set(tags["composer"].split(", ")) == voices and tags["genre"] == "Audiobook"
    assert [title for _, title in marks] == [
        f"Chapter {n}: {t}"
        for n, t in alice.sort("chapter")
        .unique("chapter", keep="first")
        .select("chapter", "chapter_title")
        .iter_rows()
    ]
    starts = expected_starts(alice, seconds)
    assert len(marks) == 3
    for (start, _), want in zip(marks, starts, strict=True):
        assert start == pytest.approx(want, abs=0.0015)
    total = sum(seconds[key] for key in alice["paragraph_id"])
    assert total <= decoded <= total + 2048 / audio.SAMPLE_RATE  # AAC pads its last frame

    manifest = pl.read_parquet(out / "books.parquet").filter(pl.col("book") == "Alice")
    assert manifest["start_s"].to_list() == pytest.approx(starts, abs=0.001)
    assert manifest["rows"].to_list() == [2, 2, 2]
    assert manifest["first_key"].to_list() == ["ch01-p001", "ch02-p001", "ch03-p001"]
    assert set(manifest["book_path"]) == {"books/Alice.m4b"}


def test_m4b_has_chapters_at_summed_durations_tags_and_is_rebuilt_only_when_its_rows_change(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    data = chapters_input()
    job = book_job(tmp_path, data, format="m4b")
    summary = run(job, server)
    out = tmp_path / "out"
    assert sorted(summary["books"]["assembled"]) == ["Alice", "Sampler"]
    check_alice_m4b(out, data)
    assert len(list((out / "audio").iterdir())) == len(data), "each row's own file stays"

    before = {name: (out / "books" / name).stat() for name in ("Alice.m4b", "Sampler.m4b")}
    again = run(job, server)
    assert again["books"]["assembled"] == []
    assert sorted(again["books"]["unchanged"]) == ["Alice", "Sampler"]
    for name, stat in before.items():
        now = (out / "books" / name).stat()
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)

    extra = data.filter(pl.col("book") == "Sampler").head(1)
    extra = extra.with_columns(
        paragraph_id=pl.lit("ch04-p099"), paragraph=pl.lit(99, dtype=pl.Int64)
    )
    book_job(tmp_path, pl.concat([data, extra]), format="m4b")
    third = run(job, server)
    assert third["books"]["assembled"] == ["Sampler"]
    assert third["books"]["unchanged"] == ["Alice"]
    alice_now = (out / "books" / "Alice.m4b").stat()
    assert alice_now.st_mtime_ns == before["Alice.m4b"].st_mtime_ns
    assert (out / "books" / "Sampler.m4b").stat().st_mtime_ns != before["Sampler.m4b"].st_mtime_ns
    manifest = pl.read_parquet(out / "books.parquet")
    assert manifest.filter(pl.col("book") == "Sampler")["rows"].to_list() == [3]

    shutil.rmtree(out / ".pipeline")  # a lost journal: the books are rebuilt in place, no ~2
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--rebuild-journal")
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in (out / "books").iterdir()) == ["Alice.m4b", "Sampler.m4b"]
    assert len(pl.read_parquet(out / "books.parquet")) == 4


def test_mp3_book_has_id3_tags_and_chapters_mixed_formats_and_says_what_it_left_out(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    data = chapters_input()
    formats = ["mp3", "wav", "opus", "flac", "aac", "pcm"]
    data = data.with_columns(fmt=pl.Series([formats[i % 6] for i in range(len(data))]))
    broken = (
        data.filter(pl.col("book") == "Sampler")
        .head(1)
        .with_columns(
            paragraph_id=pl.lit("ch04-p098"),
            paragraph=pl.lit(98, dtype=pl.Int64),
            text=pl.lit("   "),
        )
    )
    loose = data.head(1).with_columns(
        paragraph_id=pl.lit("loose"), book=pl.lit(None, dtype=pl.String)
    )
    job = book_job(tmp_path, pl.concat([data, broken, loose]), format="mp3", output_format="csv")
    text = job.read_text().replace('response_format = "mp3"', 'response_format = "{fmt}"')
    job.write_text(text)
    summary = run(job, server)
    books = summary["books"]
    assert books["assembled"] == ["Alice"]
    assert books["incomplete"] == {"Sampler": {"rows": 3, "missing": 1, "failed": 1, "pending": 0}}
    assert books["rows_without_book"] == 1
    out = tmp_path / "out"
    assert not (out / "books" / "Sampler.mp3").exists()
    path = out / "books" / "Alice.mp3"
    head = path.read_bytes()[:4096]
    assert head[:3] == b"ID3" and b"CHAP" in head and b"TIT2" in head
    tags, marks, _ = read_book(path)
    assert tags["title"] == "Alice" and tags["artist"] == "Lewis Carroll"
    assert "comment" in tags and tags["comment"].startswith("Narrated by ")
    assert len(marks) == 3 and marks[0] == (0.0, "Chapter 1: Down the Rabbit-Hole")
    manifest = pl.read_csv(out / "books.csv")
    assert manifest["book"].to_list() == ["Alice"] * 3
    assert [start for start, _ in marks] == pytest.approx(manifest["start_s"].to_list(), abs=0.001)


def test_kill_9_during_assembly_leaves_no_half_book_and_the_rerun_completes_it(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    data = chapters_input(per_chapter=3)
    job = book_job(tmp_path, data, format="off")
    assert run(job, server)["outcome"] == "completed"
    book_job(tmp_path, data, format="m4b")  # the same rows, now with books: only assembling
    out = tmp_path / "out"
    tmp = out / ".pipeline" / "tmp"
    child = subprocess.Popen(pipeline_command(job, server), env=os.environ.copy())
    try:
        deadline = time.monotonic() + 60
        while not any(p.suffix == ".m4b" for p in tmp.glob("*")) and child.poll() is None:
            assert time.monotonic() < deadline, "the assembly began"
            time.sleep(0.001)  # waiting for the temporary book to exist, not for time to pass
        child.send_signal(signal.SIGKILL)
        code = child.wait(timeout=60)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert code == -signal.SIGKILL, "killed while assembling"
    for book in (out / "books").glob("*"):  # whatever is in place is whole
        tags, marks, _ = read_book(book)
        assert tags["title"] in ("Alice", "Sampler") and marks
    summary = run(job, server)
    assert summary["outcome"] == "completed"
    assert set(summary["books"]["assembled"]) | set(summary["books"]["unchanged"]) == {
        "Alice",
        "Sampler",
    }
    assert summary["books"]["assembled"], "the book killed half-way was built"
    _, marks, _ = read_book(out / "books" / "Alice.m4b")
    assert len(marks) == 3
    assert list(tmp.glob("*.m4b")) == []


@pytest.mark.parametrize(
    ("assemble", "field", "says"),
    [
        ({"gruop": "book"}, "speech.assemble.gruop", "did you mean 'group'"),
        ({"group": "volume"}, "speech.assemble.group", "names column 'volume'"),
        ({"order": ["chapter", "line"]}, "speech.assemble.order", "names column 'line'"),
        ({"title": "{series}"}, "speech.assemble.title", "names column 'series'"),
        ({"format": "m4a"}, "speech.assemble.format", 'must be "m4b" or "mp3"'),
    ],
)
def test_a_bad_assemble_table_is_exit_2_naming_the_field(
    tmp_path: Path, assemble: dict[str, Any], field: str, says: str
) -> None:
    job = book_job(tmp_path, chapters_input(1), **assemble)
    result = run_cli("validate", job)
    assert result.exit_code == 2
    assert field in result.output and says in result.output
