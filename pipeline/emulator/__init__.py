"""The local OpenAI-compatible emulator: real HTTP on loopback, offline engines, labelled local.

It is the test oracle, so it stands alone: it imports no client module and keeps its own copy
of the API facts it serves (``facts``: categories, speech formats, the token estimate).

Modules: ``config`` (EmulatorConfig), ``errors`` (EmulatorError: it cannot start), ``app`` (the
aiohttp app and the middleware every route shares), ``limits`` (RPM/TPM buckets and headers),
``faults`` (fault injection), ``replies`` (error bodies, JSON), ``stats`` (counters), ``server``
(thread and blocking runners), and one module per endpoint: ``moderation`` (with ``scoring``,
``wordlists`` and ``batcher``), ``speech`` (with ``tts``, eSpeak NG, and ``encoder``, the six
audio formats), ``threads`` (the Assistants API: threads, messages, runs, with ``runs`` and
``records`` for the state, ``run_requests`` for the bodies, ``run_stream`` for server-sent
events), ``responses`` (POST /v1/responses, with ``response_requests``) and ``realtime`` (the
Realtime API's WebSocket, with ``realtime_session`` serving a socket, ``realtime_requests`` and
``realtime_events`` for the client and server events, ``realtime_audio`` for the deltas and
``realtime_reword`` for its fault).
Runs and responses share ``lifecycle`` (status as a function of the clock, injected outcomes),
``stores`` (records kept up to ``max_stored``, answers made at once or delegated in a task),
``responder`` (the deterministic local answer, or a chat-completions delegate) and ``checks``
(request checks with OpenAI error bodies). ``files`` (uploads streamed to disk) and ``batches``
(the Batch API, with ``batches_life`` for the status as a function of the clock,
``batches_lines`` for the file's validation, ``batches_engines`` for the moderation and
responses engines called as functions, ``batches_work`` for the answers and the output and
error files, ``batches_objects`` for the record and its Batch object).
"""

from __future__ import annotations

from pipeline.emulator.app import create_app
from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.server import RunningEmulator, serve, start_emulator

__all__ = ["EmulatorConfig", "RunningEmulator", "create_app", "serve", "start_emulator"]
