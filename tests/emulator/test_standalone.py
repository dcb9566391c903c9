"""The emulator stands alone: it imports no client module, and its own facts agree with the
client's (tested here, never shared), so the oracle can catch the client's mistakes."""

from __future__ import annotations

import ast
import math
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline.emulator
from pipeline import audio, tokens
from pipeline.emulator import encoder, facts, speech, tts
from pipeline.kinds import moderation as client_moderation
from pipeline.kinds import speech as client_speech
from tests.conftest import run_cli, write_job

EMULATOR = Path(pipeline.emulator.__file__).parent


def _imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports, relative imports resolved from ``pipeline.emulator``."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            package = ["pipeline", "emulator"]
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            # ``from pipeline import audio`` imports pipeline.audio: name each imported module
            names += [f"{module}.{alias.name}" for alias in node.names]
    return names


def _is_client(module: str) -> bool:
    inside = module == "pipeline.emulator" or module.startswith("pipeline.emulator.")
    return (module == "pipeline" or module.startswith("pipeline.")) and not inside


def test_no_emulator_module_imports_client_code() -> None:
    modules = sorted(EMULATOR.glob("*.py"))
    assert len(modules) > 20  # the walk found the package

    imports = {path.name: [m for m in _imported_modules(path) if _is_client(m)] for path in modules}

    assert {name: found for name, found in imports.items() if found} == {}


def test_a_running_emulator_loads_no_client_module() -> None:
    script = (
        "import sys\n"
        "from pipeline.emulator import EmulatorConfig, start_emulator\n"
        "with start_emulator(EmulatorConfig(engine='wordlist')) as emulator:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pipeline'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )

    loaded = ast.literal_eval(done.stdout.strip())
    assert [m for m in loaded if _is_client(m) and m != "pipeline"] == []  # the parent package
    assert "pipeline.emulator.speech" in loaded  # the whole app was built


def test_the_import_check_catches_every_spelling(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        "import pipeline.tokens\n"
        "from pipeline import audio\n"
        "from pipeline.kinds.moderation import CATEGORIES\n"
        "from .. import errors\n"
        "from . import facts\n"
        "from pipeline.emulator.replies import json_response\n"
        "import aiohttp\n"
    )

    found = [m for m in _imported_modules(source) if _is_client(m)]

    assert found == [
        "pipeline.tokens",
        "pipeline.audio",
        "pipeline.kinds.moderation.CATEGORIES",
        "pipeline.errors",
    ]


def test_the_emulator_facts_agree_with_the_client() -> None:
    assert facts.CATEGORIES == client_moderation.CATEGORIES
    assert facts.SPEECH_FORMATS == audio.FORMATS
    assert facts.SPEECH_SAMPLE_RATE == audio.SAMPLE_RATE
    assert tuple(tts.VOICES) == client_speech.VOICES
    assert speech.MAX_CHARS == client_speech.MAX_INPUT_CHARS
    assert (speech.MIN_SPEED, speech.MAX_SPEED) == client_speech.SPEED_RANGE
    assert set(speech.CONTENT_TYPES) == set(audio.FORMATS)


@pytest.mark.parametrize(
    "text", ["", "a", "abc", "abcd", "abcde", "x" * 4096, "héllo wörld", "日本語", "🙂" * 7]
)
def test_both_sides_charge_the_same_tokens(text: str) -> None:
    # the client's limiter waits for what the emulator's bucket will charge
    assert facts.estimate_tokens(text) == tokens.estimate_tokens(text)


def _tone(seconds: float, rate: int) -> bytes:
    count = round(seconds * rate)
    return b"".join(struct.pack("<h", round(8000 * math.sin(i / 9))) for i in range(count))


@pytest.mark.parametrize("fmt", facts.SPEECH_FORMATS)
def test_the_client_decodes_every_format_the_emulator_encodes(fmt: str) -> None:
    pcm = _tone(1.5, 22_050)  # eSpeak's own rate: the encoder resamples to 24 kHz

    encoded = encoder.encode(pcm, fmt, sample_rate=22_050)

    decoded = audio.decode(encoded, fmt)
    samples = 36_000  # 1.5 s at 24 kHz
    if fmt == "aac":  # ADTS cannot say how much priming it carries: 1024 plus frame padding
        assert samples + 1024 <= len(decoded) // 2 <= samples + 2048
    else:  # the LAME tag, Opus pre-skip and the lossless formats give back every sample
        assert len(decoded) // 2 == samples
    assert encoder.encode(pcm, fmt, sample_rate=22_050) == encoded  # deterministic


def test_mp3_carries_a_xing_tag_and_no_id3_tag() -> None:
    encoded = encoder.encode(_tone(1.0, 24_000), "mp3")

    assert encoded[:3] != b"ID3"
    assert b"Info" in encoded[:200] or b"Xing" in encoded[:200]
    with pytest.raises(audio.AudioError, match="Xing header declares"):
        audio.decode(encoded[: len(encoded) // 2], "mp3")


@pytest.mark.parametrize(
    ("pcm", "fmt", "message"),
    [
        (b"\x00\x00", "ogg", "answers mp3"),
        (b"\x00", "wav", "whole number"),
        (b"", "flac", "cannot hold no samples"),
    ],
)
def test_the_encoder_refuses_what_the_api_never_sends(pcm: bytes, fmt: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encoder.encode(pcm, fmt)
    assert encoder.encode(b"", "pcm") == b""  # pcm can hold nothing


def test_local_base_url_without_the_extra_is_exit_2_before_any_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import polars as pl

    data = pl.DataFrame({"id": [1], "text": ["hello"]})
    job = write_job(tmp_path, data, api={"base_url": "local"})
    monkeypatch.setitem(sys.modules, "profanity_check", None)  # makes the import fail

    result = run_cli("run", job, "--quiet")

    assert result.exit_code == 2
    assert "pip install 'pipeline[local]'" in result.output
    assert not (tmp_path / "out" / "results.parquet").exists()


def test_serve_without_the_extra_is_exit_2_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "profanity_check", None)

    result = run_cli("serve", "--port", "0")

    assert result.exit_code == 2
    assert "pip install 'pipeline[local]'" in result.output
