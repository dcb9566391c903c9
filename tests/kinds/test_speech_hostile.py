"""Hostile inputs to realtime speech, provider mode and audiobooks, over real sockets to the
emulator: each test names the hole it closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.conftest import StartEmulator, read_output, run_cli, write_job
from tests.kinds.lying_realtime import TONE, LyingRealtime, delta, done, spoken
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


def test_audio_of_another_response_never_enters_a_file(tmp_path: Path) -> None:
    """Deltas (and a response.done) a server sends for another response, before or after this
    one's response.created, were joined into the row's audio while its id was unknown."""

    def script(number: int, text: str) -> list[dict[str, Any]]:
        ours = f"resp_{number}"
        stale = [delta("resp_old", b"\x01\x00" * 24000), done("resp_old")]
        return [*stale, *spoken(ours, text)[:2], delta("resp_other"), *spoken(ours, text)[2:]]

    data = pl.DataFrame({"id": ["a", "b"], "text": ["One line here.", "Another line."]})
    job = realtime_job(tmp_path, data, request={"response_format": "pcm"}, api={"concurrency": 1})
    with LyingRealtime(script) as server:
        assert run(job, server.base_url) == 0
    for row in read_output(job, "results").iter_rows(named=True):
        assert (tmp_path / "out" / row["audio_path"]).read_bytes() == TONE


def test_a_short_key_a_server_echoes_in_a_failed_response_is_not_in_the_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key too short to redact in bodies is redacted in error fields: an error event's were,
    a failed response.done's status, reason and error type were written to errors as sent."""
    key = "k3y9"
    monkeypatch.setenv("OPENAI_API_KEY", key)

    def script(number: int, text: str) -> list[dict[str, Any]]:
        ours = f"resp_{number}"
        error = {"type": f"server_{key}", "code": key}
        return [*spoken(ours, text)[:-1], done(ours, f"failed {key}", reason=key, error=error)]

    data = pl.DataFrame({"id": ["a"], "text": ["One line here."]})
    job = realtime_job(tmp_path, data, api={"max_attempts": 2})
    with LyingRealtime(script) as server:
        assert run(job, server.base_url) == 1
        assert server.responses == 2
    (error,) = read_output(job, "errors").to_dicts()
    assert "the realtime response ended failed" in error["message"]
    assert key not in str(error) and key not in (tmp_path / "out" / "summary.json").read_text()


def book_job(folder: Path, **assemble: Any) -> Path:
    data = pl.DataFrame(
        {"id": ["a", "b", "c"], "text": ["One.", "Two.", "Three."], "book": ["X", "X", "../Y"]}
    )
    return write_job(
        folder,
        data,
        kind="speech",
        request={"model": "gpt-4o-mini-tts", "input": "{text}", "voice": "alloy"},
        speech={"assemble": {"group": "book", **assemble}},
    )


def books(job: Path) -> list[str]:
    return sorted(path.name for path in (job.parent / "out" / "books").iterdir())


def test_a_rerun_in_another_book_format_replaces_the_books_not_adds_renamed_ones(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """m4b -> mp3 -> m4b left every earlier file in books/ and named the new ones X~2.m4b."""
    server = emulator()
    for fmt, want in (("m4b", ["X.m4b", "_Y.m4b"]), ("mp3", ["X.mp3", "_Y.mp3"])) * 2:
        job = book_job(tmp_path, format=fmt)
        assert run(job, server.base_url) == 0
        assert books(job) == want
        manifest = pl.read_parquet(tmp_path / "out" / "books.parquet")
        assert sorted(set(manifest["book_path"])) == [f"books/{name}" for name in want]


def test_an_edited_books_manifest_never_leads_a_book_out_of_the_books_folder(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """With the journal rebuilt, the manifest's book_path was taken as the book's own file:
    "../escape.m4b" wrote the book next to the job, outside the output folder."""
    server = emulator()
    job = book_job(tmp_path)
    assert run(job, server.base_url) == 0
    out = tmp_path / "out"
    manifest = pl.read_parquet(out / "books.parquet")
    manifest.with_columns(book_path=pl.lit("../escape.m4b")).write_parquet(out / "books.parquet")
    for journal in (out / ".pipeline").glob("journal*"):
        journal.unlink()
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--rebuild-journal")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "escape.m4b").exists()
    # the files the manifest no longer names are kept as files of yours: the books go beside
    assert books(job) == ["X.m4b", "X~2.m4b", "_Y.m4b", "_Y~2.m4b"]
    paths = set(pl.read_parquet(out / "books.parquet")["book_path"])
    assert paths == {"books/X~2.m4b", "books/_Y~2.m4b"}


def test_a_provider_s_200_json_error_is_not_saved_as_pcm_audio(tmp_path: Path) -> None:
    """Raw PCM has no structure to check: a provider answering 200 with a JSON error of an even
    length was written to the row's .pcm file as its audio."""
    body = b'{"detail": "voice af_nobody is not found"}'
    assert len(body) % 2 == 0
    data = pl.DataFrame({"id": ["a"], "text": ["One line here."]})
    request = {"model": "kokoro", "voice": "af_nobody", "response_format": "pcm"}
    job = realtime_job(tmp_path, data, request=request, api={"max_attempts": 2})
    with LyingRealtime(lambda *_: [], speech=("application/json", body)) as server:
        assert run(job, server.base_url) == 1
        assert server.responses == 2
    (error,) = read_output(job, "errors").to_dicts()
    assert error["error_type"] == "bad_audio" and "application/json" in error["message"]
    assert not list((tmp_path / "out" / "audio").glob("*"))


@pytest.mark.parametrize(
    ("output", "said"),
    [
        ({"format": {"type": "audio/pcmu"}, "voice": "ash"}, "audio/pcm at 24000 Hz"),
        ({"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"}, "the voice 'ash'"),
    ],
)
def test_a_session_that_did_not_take_the_format_or_voice_fails_the_row_before_speaking(
    tmp_path: Path, output: dict[str, Any], said: str
) -> None:
    """session.updated was awaited but not read: G.711 audio was saved as 24 kHz PCM, and a
    row asked in ash and spoken in alloy said voice = ash in the manifest."""
    data = pl.DataFrame({"id": ["a"], "text": ["One line here."]})
    job = realtime_job(tmp_path, data, request={"voice": "ash"})

    def script(number: int, text: str) -> list[dict[str, Any]]:
        return spoken(f"resp_{number}", text)

    with LyingRealtime(script, session={"audio": {"output": output}}) as server:
        assert run(job, server.base_url) == 1
        assert server.responses == 0
    (error,) = read_output(job, "errors").to_dicts()
    assert error["error_type"] == "session_mismatch" and said in error["message"]
