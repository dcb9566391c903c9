"""Speech on any /v1/audio/speech provider: its own models and voices, its refusals as error rows;
OpenAI's checks kept for OpenAI; the sample self-hosted job on the embedded emulator."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline import audio
from pipeline.http_errors import error_for
from tests.conftest import REPO, StartEmulator, read_output, run_cli, write_job

TEXT = "The rabbit looked at its watch and hurried down the hole. "


def provider_job(folder: Path, data: pl.DataFrame, **sections: Any) -> Path:
    request = {"model": "kokoro", "input": "{text}", "voice": "{voice}", "response_format": "wav"}
    request.update(sections.pop("request", {}))
    return write_job(folder, data, kind="speech", request=request, **sections)


def test_a_provider_takes_its_own_model_and_voices_and_its_refusal_is_an_error_row(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(speech_voices="any", refuse_voices={"zz_missing"})
    data = pl.DataFrame(
        {
            "id": ["bella", "bella_again", "adam", "refused"],
            "text": [TEXT, TEXT, TEXT, TEXT],
            "voice": ["af_bella", "af_bella", "am_adam", "zz_missing"],
        }
    )
    instructions = "Speak slowly. " * 400  # 5,600 characters: OpenAI's 4,096 is not the rule here
    job = provider_job(tmp_path, data, request={"instructions": instructions})
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 1, result.output
    rows = {row["id"]: row for row in read_output(job, "results").iter_rows(named=True)}
    assert set(rows) == {"bella", "bella_again", "adam"}
    assert {rows[k]["voice"] for k in rows} == {"af_bella", "am_adam"}
    assert {rows[k]["model"] for k in rows} == {"kokoro"}
    files = {k: (tmp_path / "out" / rows[k]["audio_path"]).read_bytes() for k in rows}
    assert all(audio.duration_s(data, "wav") > 1.0 for data in files.values())
    # the same voice name is always the same eSpeak voice; another name may be another
    assert files["bella"] == files["bella_again"]
    (error,) = read_output(job, "errors").iter_rows(named=True)
    assert error["id"] == "refused" and error["http_status"] == 400
    assert error["message"].startswith("Voice 'zz_missing' not found. Available voices:")
    assert error["stage"] == "request" and error["attempts"] == 1  # a refusal is not retried
    sent = [body for _, body in server.recorded_requests()]
    assert len(sent) == 4
    assert {body["voice"] for body in sent} == {"af_bella", "am_adam", "zz_missing"}
    assert all(body["model"] == "kokoro" and body["instructions"] == instructions for body in sent)


def test_validate_names_the_mode_and_checks_openai_voices_only_for_openai(
    tmp_path: Path,
) -> None:
    data = pl.DataFrame({"id": ["a", "b"], "text": [TEXT, TEXT], "voice": ["af_bella", "nova"]})
    job = provider_job(tmp_path, data, api={"base_url": "http://127.0.0.1:8880/v1"})
    result = run_cli("validate", job)
    assert result.exit_code == 0, result.output
    assert "provider mode: the server's own models and voices" in result.output
    assert "rows that would be error rows: 0" in result.output
    openai = provider_job(tmp_path, data, api={"base_url": "https://api.openai.com/v1"})
    result = run_cli("validate", openai)
    assert result.exit_code == 0, result.output
    assert "OpenAI's voices and limits checked before sending" in result.output
    assert "rows that would be error rows: 1" in result.output
    assert "voice 'af_bella' is not one of alloy, ash" in result.output
    # a gateway in front of OpenAI can ask for OpenAI's checks; a constant is checked once
    gateway = provider_job(
        tmp_path,
        data,
        request={"voice": "af_bella"},
        api={"base_url": "https://gateway.example/v1"},
        speech={"provider": "openai"},
    )
    result = run_cli("validate", gateway)
    assert result.exit_code == 2 and "request.voice" in result.output
    bad = provider_job(tmp_path, data, speech={"provider": "kokoro"})
    result = run_cli("validate", bad)
    assert result.exit_code == 2 and "speech.provider" in result.output


@pytest.mark.parametrize("voice", ["", "   "])
def test_an_empty_provider_voice_is_an_error_row_before_sending(
    tmp_path: Path, emulator: StartEmulator, voice: str
) -> None:
    server = emulator(speech_voices="any")
    data = pl.DataFrame({"id": ["ok", "empty"], "text": [TEXT, TEXT], "voice": ["x1", voice]})
    job = provider_job(tmp_path, data)
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 1
    (error,) = read_output(job, "errors").iter_rows(named=True)
    assert error["id"] == "empty" and error["stage"] == "build"
    assert "voice must be a non-empty voice name" in error["message"]
    assert [body["voice"] for _, body in server.recorded_requests()] == ["x1"]


def test_openais_emulator_refuses_a_provider_voice_with_its_own_message(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()  # OpenAI's rules: the job's provider mode lets the voice through
    data = pl.DataFrame({"id": ["a"], "text": [TEXT], "voice": ["af_bella"]})
    job = provider_job(tmp_path, data)
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 1
    (error,) = read_output(job, "errors").iter_rows(named=True)
    assert error["message"].startswith("Invalid value: 'af_bella'. Supported values are:")
    assert error["http_status"] == 400 and error["error_code"] == "invalid_value"


def test_the_sample_self_hosted_job_runs_on_the_embedded_emulator_in_provider_mode(
    tmp_path: Path,
) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    shutil.copy(REPO / "jobs" / "narrate_self_hosted.toml", jobs)
    shutil.copytree(REPO / "sample_data", tmp_path / "sample_data")
    job = jobs / "narrate_self_hosted.toml"
    result = run_cli("run", job, "--limit", "2", "--quiet")
    assert result.exit_code == 4, result.output  # a trial of 2 rows: the rest left for later
    manifest = pl.read_parquet(tmp_path / "out" / "narrate_self_hosted" / "results.parquet")
    assert manifest.height == 2
    assert set(manifest["voice"]) == {"af_bella"} and set(manifest["model"]) == {"kokoro"}
    for row in manifest.iter_rows(named=True):
        path = tmp_path / "out" / "narrate_self_hosted" / row["audio_path"]
        assert audio.duration_s(path.read_bytes(), "mp3") == pytest.approx(
            row["duration_s"], abs=0.001
        )


def _speak(base_url: str, voice: str) -> tuple[int, bytes]:
    body = {"model": "kokoro", "input": "Hello there.", "voice": voice, "response_format": "wav"}
    request = urllib.request.Request(
        base_url + "/audio/speech",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_serve_in_provider_mode_speaks_any_voice_and_refuses_the_named_one() -> None:
    command = [sys.executable, "-m", "pipeline", "serve", "--port", "0", "--speech-voices", "any"]
    with subprocess.Popen(
        [*command, "--refuse-voice", "zz_gone"], stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().split(" on ", 1)[1].strip()
            status, wav = _speak(base_url, "af_bella")
            assert status == 200 and audio.duration_s(wav, "wav") > 0.3
            status, refused = _speak(base_url, "zz_gone")
            assert status == 400
            assert json.loads(refused) == {
                "detail": {
                    "error": "validation_error",
                    "message": "Voice 'zz_gone' not found. Available voices: any other name "
                    "(local emulator, provider mode)",
                    "type": "invalid_request_error",
                }
            }
        finally:
            process.terminate()
    assert process.returncode == 0


@pytest.mark.parametrize(
    ("body", "message", "code"),
    [
        (
            b'{"detail": {"error": "validation_error", "message": "Voice \'x\' not found", '
            b'"type": "invalid_request_error"}}',
            "Voice 'x' not found",
            "validation_error",
        ),
        (b'{"detail": "Unsupported model: tts-9"}', "Unsupported model: tts-9", None),
        (
            b'{"detail": [{"loc": ["body", "speed"], "msg": "Input should be <= 4", "type": "x"}]}',
            "body.speed: Input should be <= 4",
            None,
        ),
        (b'{"error": "voice not found"}', "voice not found", None),
        (b'{"message": "model not loaded"}', "model not loaded", None),
        (b"Bad Request: unknown voice\n", "Bad Request: unknown voice", None),
        (b"", "HTTP 400", None),
    ],
)
def test_a_providers_error_body_gives_its_message(
    body: bytes, message: str, code: str | None
) -> None:
    error = error_for(400, {}, body)
    assert error.message == message and error.error_code == code and error.http_status == 400
