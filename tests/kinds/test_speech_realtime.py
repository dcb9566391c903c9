"""Speech over the Realtime API end to end: real WebSockets to the emulator (eSpeak), every file
decoded and measured against the PCM it was made of; faults retried; rewording never passes."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline import audio
from pipeline.emulator import RunningEmulator
from pipeline.errors import TransientApiError
from pipeline.realtime_speech import speak_chunks
from pipeline.steps import Speak, Spoken
from pipeline.textsplit import split_text
from tests.conftest import (
    StartEmulator,
    pipeline_command,
    read_output,
    run_cli,
    schema_validator,
    write_job,
)
from tests.emulator.realtime_client import CLIENT_SCHEMAS, MODEL, SERVER_SCHEMAS
from tests.kinds.realtime_proxy import RecordingRelay

SENTENCE = "The quick brown fox jumps over the lazy dog, and then it rests a while. "


def realtime_job(folder: Path, data: pl.DataFrame, **sections: Any) -> Path:
    request = {"model": MODEL, "input": "{text}", "voice": "alloy"}
    request.update(sections.pop("request", {}))
    api = {"concurrency": 4, "max_attempts": 6, "timeout_s": 30, **sections.pop("api", {})}
    return write_job(folder, data, kind="speech", request=request, api=api, **sections)


def texts(n: int, prefix: str = "Line") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [f"r{i:02d}" for i in range(n)],
            "text": [f"{prefix} {i}. {SENTENCE}" for i in range(n)],
        }
    )


def run(job: Path, base_url: str) -> int:
    return run_cli("run", job, "--base-url", base_url, "--quiet").exit_code


def summary(job: Path) -> dict[str, Any]:
    return json.loads((job.parent / "out" / "summary.json").read_text())  # type: ignore[no-any-return]


def test_every_format_decodes_to_the_pcm_received_and_every_event_validates(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    formats = list(audio.FORMATS)
    data = pl.DataFrame({"id": formats, "text": [SENTENCE] * len(formats), "fmt": formats})
    job = realtime_job(
        tmp_path, data, request={"response_format": "{fmt}", "instructions": "Calm and slow."}
    )
    with RecordingRelay(server) as relay:
        assert run(job, relay.base_url) == 0
    rows = {row["id"]: row for row in read_output(job, "results").iter_rows(named=True)}
    pcm = (tmp_path / "out" / rows["pcm"]["audio_path"]).read_bytes()
    received = len(pcm) / 2 / audio.SAMPLE_RATE  # the pcm file is the PCM received, as is
    assert received > 2.0
    assert server.stats()["realtime_audio_ms"] == pytest.approx(6000 * received, abs=6)
    for fmt, row in rows.items():
        data_bytes = (tmp_path / "out" / row["audio_path"]).read_bytes()
        assert row["format"] == fmt and row["bytes"] == len(data_bytes)
        seconds = audio.duration_s(data_bytes, fmt)  # decodes, whole
        assert seconds == pytest.approx(received, abs=0.08)  # codecs pad by a frame at most
        assert row["duration_s"] == pytest.approx(seconds, abs=0.01)
        assert row["word_error_rate"] == 0.0 and row["chunks"] == 1 and row["model"] == MODEL
    sent = [event["type"] for event in relay.sent]
    assert sent.count("response.create") == 6 and sent.count("session.update") == relay.sockets
    for event in relay.sent:
        schema_validator(CLIENT_SCHEMAS[event["type"]]).validate(event)
        if event["type"] == "response.create":
            response = event["response"]
            assert response["conversation"] == "none"
            assert response["input"][0]["content"][0]["text"] == SENTENCE
            assert response["instructions"].endswith("Calm and slow.")
            assert "word for word" in response["instructions"]
        else:
            output = event["session"]["audio"]["output"]
            assert output == {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"}
    assert {"response.output_audio.delta", "response.done"} <= {e["type"] for e in relay.received}
    for event in relay.received:  # what the pipeline read: the official events
        schema_validator(SERVER_SCHEMAS[event["type"]]).validate(event)


def test_a_long_text_is_split_spoken_and_joined(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator()
    long_text = (SENTENCE * 140)[:10_000]
    chunks = split_text(long_text, 4096)
    assert len(chunks) == 3
    data = pl.DataFrame({"id": ["long", "c0", "c1", "c2"], "text": [long_text, *chunks]})
    job = realtime_job(tmp_path, data, request={"response_format": "wav"})
    assert run(job, server.base_url) == 0
    rows = {row["id"]: row for row in read_output(job, "results").iter_rows(named=True)}
    assert rows["long"]["chunks"] == 3 and rows["long"]["chars"] == 10_000
    whole = audio.duration_s((tmp_path / "out" / rows["long"]["audio_path"]).read_bytes(), "wav")
    assert whole == pytest.approx(sum(rows[c]["duration_s"] for c in ("c0", "c1", "c2")), abs=0.01)
    assert server.stats()["realtime_responses_done"] == 6


def test_a_chunk_that_keeps_rewording_fails_its_row_and_none_passes_silently(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(faults={"realtime_reword": 0.5}, seed=3)
    job = realtime_job(tmp_path, texts(16), api={"max_attempts": 2})
    assert run(job, server.base_url) == 1
    results, errors = read_output(job, "results"), read_output(job, "errors")
    assert results.height + errors.height == 16 and errors.height > 0 and results.height > 0
    assert results["word_error_rate"].max() == 0.0  # what passed was read word for word
    for error in errors.iter_rows(named=True):
        assert error["error_type"] == "reworded" and error["attempts"] == 2
        assert "reworded" in error["message"] and "max_word_error_rate = 0.1" in error["message"]
    assert not {f"{key}.mp3" for key in errors["id"]} & {
        path.name for path in (tmp_path / "out" / "audio").iterdir()
    }
    assert server.stats()["faults"]["realtime_reword"] >= 2 * errors.height
    # a looser bound lets the same rewordings through, each with its rate in the manifest
    (tmp_path / "looser").mkdir()
    looser = realtime_job(
        tmp_path / "looser", texts(16), api={"max_attempts": 2}, speech={"max_word_error_rate": 0.5}
    )
    assert run(looser, server.base_url) == 0
    rates = read_output(looser, "results")["word_error_rate"]
    assert rates.max() > 0.1 and rates.max() <= 0.5  # type: ignore[operator]


def test_dropped_sockets_and_error_events_are_retried_to_the_same_audio(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    clean, faulty = (
        emulator(),
        emulator(faults={"realtime_drop": 0.2, "realtime_error": 0.2}, seed=1),
    )
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    first = realtime_job(tmp_path / "a", texts(6), request={"response_format": "flac"})
    second = realtime_job(
        tmp_path / "b", texts(6), request={"response_format": "flac"}, api={"max_attempts": 10}
    )
    assert run(first, clean.base_url) == 0 and run(second, faulty.base_url) == 0
    want = read_output(first, "results").sort("id")
    got = read_output(second, "results").sort("id")
    assert got["duration_s"].to_list() == want["duration_s"].to_list()
    for row in got.iter_rows(named=True):
        data = (tmp_path / "b" / "out" / row["audio_path"]).read_bytes()
        assert audio.decode(data, "flac") == audio.decode(
            (tmp_path / "a" / "out" / row["audio_path"]).read_bytes(), "flac"
        )
    faults = faulty.stats()["faults"]
    assert faults["realtime_drop"] > 0 and faults["realtime_error"] > 0
    assert (
        summary(second)["requests"]["retries"] == faults["realtime_drop"] + faults["realtime_error"]
    )


def test_rate_limit_events_pause_and_are_counted_as_429s(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(faults={"realtime_rate_limit": 0.4}, seed=7, fault_retry_after_ms=20)
    job = realtime_job(tmp_path, texts(10), api={"max_attempts": 10})
    assert run(job, server.base_url) == 0
    limited = server.stats()["faults"]["realtime_rate_limit"]
    requests = summary(job)["requests"]
    assert limited > 0 and requests["rate_limited"] == limited == requests["retries"]
    assert requests["by_status"]["429"] == limited


def test_the_server_s_rate_limits_lower_the_client_s(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """``rate_limits.updated`` steers the limiter as x-ratelimit headers do: with a server limit
    of 2 requests a second held to 1 s of burst, the run is refused less than once a row."""
    server = emulator(requests_per_minute=120, burst_s=1.0, fault_retry_after_ms=20)
    job = realtime_job(tmp_path, texts(8), api={"concurrency": 4, "max_attempts": 10})
    assert run(job, server.base_url) == 0
    assert read_output(job, "results").height == 8
    assert summary(job)["requests"]["rate_limited"] < 8


def wait_for_responses(server: RunningEmulator, count: int, timeout: float) -> bool:
    """Block until the emulator has finished ``count`` realtime responses (False on timeout)."""
    done = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if server.stats().get("realtime_responses_done", 0) >= count:
            return True
        done.wait(0.02)  # the emulator's counters have no condition to wait on
    return False


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_leaves_one_whole_file_per_row(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(latency_ms=20)
    data = texts(24, "Paragraph")
    job = realtime_job(tmp_path, data, request={"response_format": "aac"}, api={"concurrency": 3})
    command = pipeline_command(job, server)
    child = subprocess.Popen(command, env=os.environ.copy())
    try:
        assert wait_for_responses(server, 8, timeout=120), "the run got going"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait(timeout=30)
    assert subprocess.run(command, env=os.environ.copy(), timeout=300).returncode == 0
    manifest = read_output(job, "results")
    assert sorted(manifest["id"]) == data["id"].to_list()  # each key once
    files = sorted(path.name for path in (tmp_path / "out" / "audio").iterdir())
    assert files == sorted(f"{key}.aac" for key in data["id"])
    for row in manifest.iter_rows(named=True):
        seconds = audio.duration_s((tmp_path / "out" / row["audio_path"]).read_bytes(), "aac")
        assert seconds == pytest.approx(row["duration_s"], abs=0.01) and seconds > 2
    resent = summary(job)["sent_again_after_crash"]["all_runs"]["rows"]
    assert resent <= 3  # at most what was in flight: one row per worker


def test_both_protocols_give_the_same_columns(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator()
    frames = {}
    for protocol, model in (("speech", "gpt-4o-mini-tts"), ("realtime", MODEL)):
        (tmp_path / protocol).mkdir()
        bad = pl.DataFrame({"id": ["empty"], "text": [" "]})
        job = realtime_job(
            tmp_path / protocol,
            pl.concat([texts(2), bad]),
            request={"model": model},
            speech={"protocol": protocol},
        )
        assert run(job, server.base_url) == 1
        frames[protocol] = (read_output(job, "results"), read_output(job, "errors"))
    (speech, speech_errors), (realtime, realtime_errors) = frames["speech"], frames["realtime"]
    assert speech.schema == realtime.schema and speech_errors.schema == realtime_errors.schema
    assert speech["word_error_rate"].null_count() == 2 and realtime[
        "word_error_rate"
    ].to_list() == [0.0, 0.0]


def test_the_protocol_follows_the_model_and_the_options_are_checked(tmp_path: Path) -> None:
    data = pl.DataFrame({"id": ["a", "b"], "text": ["Hello.", "Hi."], "voice": ["alloy", "fable"]})
    job = realtime_job(tmp_path, data, request={"voice": "{voice}"})
    result = run_cli("validate", job)
    assert "Realtime API" in result.output and "fable" in result.output  # not a realtime voice
    cases: list[tuple[dict[str, Any], str]] = [
        ({"speech": {"protocol": "ws"}}, "speech.protocol"),
        ({"speech": {"max_word_error_rate": 1.5}}, "speech.max_word_error_rate"),
        ({"request": {"voice": "nova"}}, "request.voice"),  # a constant: the job, not each row
        ({"request": {"speed": 2.0}}, "request.speed"),
    ]
    for sections, field in cases:
        result = run_cli("validate", realtime_job(tmp_path, data, **sections))
        assert result.exit_code == 2 and field in result.output
    speech = realtime_job(tmp_path, data, request={"voice": "nova"}, speech={"protocol": "speech"})
    assert run_cli("validate", speech).exit_code == 0


def test_a_speak_step_pickles_with_its_verbatim_check() -> None:
    body = {"model": MODEL, "voice": "ash", "input": "Hi there, 2 cats.", "response_format": "wav"}
    step = next(speak_chunks(body, ["Hi there, 2 cats."], 0.1))
    assert isinstance(step, Speak)
    again = pickle.loads(pickle.dumps(step))
    assert again.text == "Hi there, 2 cats." and again.session_key() == (MODEL, "ash", 1.0)
    assert again.check is not None
    again.check(Spoken(b"\0\0", "Hi there - two cats!"))  # the same words: passes
    with pytest.raises(TransientApiError) as caught:
        again.check(Spoken(b"\0\0", "Hello there, two cats."))
    assert caught.value.error_type == "reworded"
