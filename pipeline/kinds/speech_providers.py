"""Whose ``/v1/audio/speech`` a speech job speaks to, and the voice and instructions checks of each.

``[speech] provider``: ``"openai"`` checks OpenAI's voices and limits before anything is sent;
``"any"`` (any OpenAI-compatible server: Kokoro-FastAPI, openedai-speech, a hosted provider)
sends the provider's own model and voice names (any non-empty text, or ``{id = ...}``) and the
instructions as they are, and what the provider refuses comes back as an error row with its
message. The default follows the base URL: ``"openai"`` for api.openai.com and for the embedded
emulator (``"local"``, which emulates OpenAI), ``"any"`` for every other URL. With
``base_url = "local"`` and ``provider = "any"`` the embedded emulator starts in its provider mode.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import JobError, RowError
from pipeline.job import LOCAL, JobSpec, is_openai_url, resolve_base_url
from pipeline.templates import as_text

PROVIDERS = ("openai", "any")


def default_provider(base_url: str) -> str:
    """``"openai"`` for OpenAI's URL and the embedded emulator, ``"any"`` for the rest."""
    return "openai" if base_url == LOCAL or is_openai_url(base_url) else "any"


def pop_provider(options: dict[str, Any], job: JobSpec) -> str:
    """``[speech] provider`` taken out of ``options``; by default the one of the base URL."""
    provider = options.pop("provider", default_provider(resolve_base_url(job, None)))
    if provider not in PROVIDERS:
        raise JobError(
            'must be "openai" (OpenAI\'s voices and limits, checked before sending) or '
            '"any" (any /v1/audio/speech server: its own models and voices)',
            path=str(job.path),
            field="speech.provider",
        )
    return str(provider)


def describe(provider: str) -> str:
    """What ``validate`` says of the mode."""
    if provider == "openai":
        return "OpenAI's voices and limits checked before sending"
    return "provider mode: the server's own models and voices, checked by the server"


def any_voice(value: Any) -> Any:
    """A provider's voice: any non-empty name, or ``{id = ...}``."""
    if isinstance(value, dict):
        if set(value) == {"id"} and isinstance(value["id"], str) and value["id"].strip():
            return value
    else:
        name = as_text(value)
        if name is not None and name.strip():
            return name
    raise RowError(
        f'voice must be a non-empty voice name or {{id = "..."}}, got {value!r}', field="voice"
    )


def any_instructions(value: Any) -> str:
    """A provider's instructions: any text, sent as it is (a provider may ignore them)."""
    text = as_text(value)
    if text is None:
        raise RowError(f"instructions must be text, got {value!r}", field="instructions")
    return text
