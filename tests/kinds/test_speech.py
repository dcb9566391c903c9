"""Speech jobs end to end: real audio from the emulator, decoded and measured; safe file names."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline import audio
from pipeline.textsplit import split_text
from tests.conftest import (
    StartEmulator,
    kill_mid_run,
    read_output,
    run_cli,
    schema_validator,
    write_job,
)

SENTENCE = "The quick brown fox jumps over the lazy dog, and then it rests a while. "


def speech_job(folder: Path, data: pl.DataFrame, **sections: Any) -> Path:
    request = {"model": "gpt-4o-mini-tts", "input": "{text}", "voice": "alloy"}
    request.update(sections.pop("request", {}))
    # the emulator stands for OpenAI here: OpenAI's checks, though its URL is not OpenAI's
    sections["speech"] = {"provider": "openai", **sections.get("speech", {})}
    return write_job(folder, data, kind="speech", request=request, **sections)


def decoded_seconds(path: Path, fmt: str) -> float:
    return audio.duration_s(path.read_bytes(), fmt)


def test_every_format_decodes_and_matches_its_manifest(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    formats = list(audio.FORMATS)
    data = pl.DataFrame(
        {"id": formats, "text": [f"Format {f}. {SENTENCE}" for f in formats], "fmt": formats}
    )
    job = speech_job(tmp_path, data, request={"response_format": "{fmt}"})
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 0, result.output
    manifest = read_output(job, "results")
    assert sorted(manifest["id"]) == sorted(formats)
    for row in manifest.iter_rows(named=True):
        path = tmp_path / "out" / row["audio_path"]
        assert path.suffix == f".{row['format']}" and row["format"] == row["id"]
        assert path.stat().st_size == row["bytes"]
        seconds = decoded_seconds(path, row["format"])
        assert seconds > 1.0
        assert abs(seconds - row["duration_s"]) < 0.01
        assert row["chunks"] == 1 and row["voice"] == "alloy" and row["model"] == "gpt-4o-mini-tts"
    for _, body in server.recorded_requests():
        schema_validator("CreateSpeechRequest").validate(body)


def test_a_10000_character_row_is_one_file_as_long_as_its_chunks(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    long_text = (SENTENCE * 140)[:10_000]
    chunks = split_text(long_text, 4096)
    assert len(chunks) == 3
    data = pl.DataFrame({"id": ["long", "c0", "c1", "c2"], "text": [long_text, *chunks]})
    job = speech_job(tmp_path, data, request={"response_format": "wav"}, api={"concurrency": 4})
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    manifest = read_output(job, "results")
    by_id = {row["id"]: row for row in manifest.iter_rows(named=True)}
    assert by_id["long"]["chunks"] == 3 and by_id["long"]["chars"] == 10_000
    whole = decoded_seconds(tmp_path / "out" / by_id["long"]["audio_path"], "wav")
    parts = sum(by_id[c]["duration_s"] for c in ("c0", "c1", "c2"))
    assert whole == pytest.approx(parts, rel=0.01)
    assert len(list((tmp_path / "out" / "audio").iterdir())) == 4
    sent = [body for _, body in server.recorded_requests()]
    assert all(len(body["input"]) <= 4096 for body in sent)
    for body in sent:
        schema_validator("CreateSpeechRequest").validate(body)


def test_bad_values_become_error_rows_naming_field_and_allowed_values(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    data = pl.DataFrame(
        {
            "id": ["ok", "voice", "speed", "long", "empty", "fmt"],
            "text": ["Hello there.", "Hi.", "Hi.", "word " * 1000, "  ", "Hi."],
            "voice": ["nova", "darth", "nova", "nova", "nova", "nova"],
            "speed": ["1.5", "1", "9", "1", "1", "1"],
            "fmt": ["mp3", "mp3", "mp3", "mp3", "mp3", "ogg"],
        }
    )
    job = speech_job(
        tmp_path,
        data,
        request={"voice": "{voice}", "speed": "{speed}", "response_format": "{fmt}"},
        speech={"split_long_input": False},
    )
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 1
    errors = {row["id"]: row["message"] for row in read_output(job, "errors").iter_rows(named=True)}
    assert set(errors) == {"voice", "speed", "long", "empty", "fmt"}
    assert "voice 'darth' is not one of alloy, ash" in errors["voice"]
    assert "speed 9.0 is outside 0.25 to 4.0" in errors["speed"]
    assert "5,000 characters" in errors["long"] and "split_long_input" in errors["long"]
    assert "response_format 'ogg' is not one of mp3, opus, aac, flac, wav, pcm" in errors["fmt"]
    assert read_output(job, "results")["id"].to_list() == ["ok"]
    assert len(server.recorded_requests()) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("speed", 9), ("voice", "darth"), ("response_format", "ogg"), ("model", "")],
)
def test_a_bad_constant_in_request_stops_the_job_before_any_row(
    tmp_path: Path, emulator: StartEmulator, field: str, value: int | str
) -> None:
    server = emulator()
    data = pl.DataFrame({"id": ["a", "b"], "text": ["Hello there.", "Hi."]})
    job = speech_job(tmp_path, data, request={field: value})
    commands: list[list[str | Path]] = [
        ["validate", job],
        ["run", job, "--base-url", server.base_url, "--quiet"],
    ]
    for args in commands:
        result = run_cli(*args)
        assert result.exit_code == 2, result.output
        assert f"request.{field}" in result.output
    assert server.recorded_requests() == []
    assert not (tmp_path / "out" / "errors.parquet").exists(), "no error row per row"


def test_validate_prints_the_whole_first_request_as_json_with_long_texts_shortened(
    tmp_path: Path,
) -> None:
    data = pl.DataFrame({"id": ["a"], "text": ["word " * 800]})  # 4,000 characters
    job = speech_job(
        tmp_path, data, request={"instructions": "Speak slowly.", "stream_format": "audio"}
    )
    result = run_cli("validate", job)
    assert result.exit_code == 0, result.output
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("first row's")]
    shown = json.loads(line.split(": ", 1)[1])
    assert shown["body"]["input"] == ("word " * 800)[:200] + "…(3,800 more characters)"
    assert shown["body"]["instructions"] == "Speak slowly." and shown["stem"] == "a"


def test_hostile_file_names_stay_inside_audio_and_never_collide(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    names = ["../../x", "/etc/passwd", "a/b", "a_b", "CON", "n" * 300, "same", "same", ".."]
    data = pl.DataFrame(
        {
            "id": [f"r{i}" for i in range(len(names))],
            "name": names,
            "text": [f"Row number {i}." for i in range(len(names))],
        }
    )
    job = speech_job(
        tmp_path, data, speech={"file_name": "{name}"}, request={"response_format": "pcm"}
    )
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    folder = (tmp_path / "out" / "audio").resolve()
    manifest = read_output(job, "results")
    paths = [(tmp_path / "out" / p).resolve() for p in manifest["audio_path"]]
    assert len(set(paths)) == len(names), "no two rows share a file"
    assert all(path.parent == folder for path in paths), "every file directly inside audio/"
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths)
    assert all(len(p.name.encode()) <= 130 for p in paths)
    assert not (tmp_path / "x.pcm").exists() and not Path("/etc/passwd.pcm").exists()
    by_id = dict(zip(manifest["id"], manifest["audio_path"], strict=True))
    assert by_id["r4"] == "audio/_CON.pcm"
    # every row edited and redone: each key keeps its file (the journal remembers who owns
    # which name), so no file is added or lost
    data.with_columns(pl.col("text") + " Again.").write_parquet(tmp_path / "input.parquet")
    redo = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--redo-changed")
    assert redo.exit_code == 0
    again = read_output(job, "results")
    assert dict(zip(again["id"], again["audio_path"], strict=True)) == by_id
    assert len(list(folder.iterdir())) == len(names)


@pytest.mark.slow
def test_truncated_audio_and_sigkill_leave_one_complete_file_per_row(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(faults={"truncate": 0.2}, seed=11, latency_ms=30)
    n = 60
    data = pl.DataFrame(
        {
            "id": [f"p{i:03d}" for i in range(n)],
            "text": [f"Paragraph {i}. {SENTENCE}" for i in range(n)],
        }
    )
    job = speech_job(
        tmp_path,
        data,
        request={"response_format": "flac"},
        api={"concurrency": 4, "max_attempts": 10},
    )
    command = kill_mid_run(job, server, after_requests=25)
    assert subprocess.run(command, env=os.environ.copy(), timeout=300).returncode == 0
    manifest = read_output(job, "results")
    assert sorted(manifest["id"]) == data["id"].to_list()
    folder = tmp_path / "out" / "audio"
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == sorted(f"{k}.flac" for k in data["id"])
    for row in manifest.iter_rows(named=True):
        assert decoded_seconds(tmp_path / "out" / row["audio_path"], "flac") == pytest.approx(
            row["duration_s"], abs=0.01
        )
    assert server.stats()["faults"].get("truncate", 0) > 0


def test_a_file_nobody_claimed_is_never_overwritten(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """A user's own file in audio/ with the name a row would get: the row takes the next name."""
    server = emulator()
    sections = {"request": {"response_format": "wav"}, "speech": {"file_name": "{title}"}}
    first = pl.DataFrame({"id": ["k0"], "text": [SENTENCE], "title": ["prologue"]})
    job = speech_job(tmp_path, first, **sections)
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    mine = tmp_path / "out" / "audio" / "intro.wav"
    mine.write_bytes(b"the user's own recording")
    grown = first.vstack(pl.DataFrame({"id": ["k1"], "text": [SENTENCE], "title": ["intro"]}))
    job = speech_job(tmp_path, grown, **sections)
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    assert mine.read_bytes() == b"the user's own recording"
    paths = dict(read_output(job, "results").select("id", "audio_path").iter_rows())
    assert paths == {"k0": "audio/prologue.wav", "k1": "audio/intro~2.wav"}


def test_rebuild_journal_keeps_the_adopted_rows_audio_files(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """After --rebuild-journal, a new row whose name collides with an adopted row's file gets
    another name; the adopted file keeps its bytes and its row."""
    server = emulator()
    first = pl.DataFrame({"id": ["k1"], "text": [SENTENCE], "title": ["chapter"]})
    sections = {"request": {"response_format": "wav"}, "speech": {"file_name": "{title}"}}
    job = speech_job(tmp_path, first, **sections)
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    adopted = tmp_path / "out" / "audio" / "chapter.wav"
    before = adopted.read_bytes()
    for path in sorted((tmp_path / "out" / ".pipeline").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (tmp_path / "out" / ".pipeline").rmdir()
    grown = pl.DataFrame(
        {"id": ["k1", "k2"], "text": [SENTENCE, "Another text."], "title": ["chapter"] * 2}
    )
    job = speech_job(tmp_path, grown, **sections)
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--rebuild-journal")
    assert result.exit_code == 0, result.output
    assert adopted.read_bytes() == before
    paths = dict(read_output(job, "results").select("id", "audio_path").iter_rows())
    assert paths == {"k1": "audio/chapter.wav", "k2": "audio/chapter~2.wav"}


def test_audio_left_without_journal_or_results_is_exit_2_unless_rebuilt(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """Only audio/ survived: a run would narrate (and pay for) every row again; it says so
    first. With --rebuild-journal it goes on, and the old files are kept under their names."""
    server = emulator()
    data = pl.DataFrame({"id": ["k1"], "text": [SENTENCE]})
    job = speech_job(tmp_path, data, request={"response_format": "wav"})
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    out = tmp_path / "out"
    old = (out / "audio" / "k1.wav").read_bytes()
    shutil.rmtree(out / "results.parquet")  # a folder of parts
    for name in ("errors.parquet", "summary.json"):
        (out / name).unlink()
    for path in sorted((out / ".pipeline").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (out / ".pipeline").rmdir()
    refused = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert refused.exit_code == 2 and "--rebuild-journal" in refused.output
    assert len(server.recorded_requests()) == 1, "nothing sent"
    again = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--rebuild-journal")
    assert again.exit_code == 0, again.output
    assert (out / "audio" / "k1.wav").read_bytes() == old
    assert read_output(job, "results")["audio_path"].to_list() == ["audio/k1~2.wav"]
