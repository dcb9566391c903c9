"""Threads, messages and runs in memory: the Assistants API's state, with lazy run lifecycles.

There is no assistant store: any ``assistant_id`` is accepted, and a run's model, instructions
and tools come from the run request alone (model ``local/responder`` unless given). A run's
answer is made when it is created (after tool outputs, when they arrive), locally and at once,
or by the delegate in one task (``stores.Answering``); its status then follows the clock
(``lifecycle``). A thread is *settled* whenever it is touched: runs that reached their end add
their assistant message then, dated when they ended. A thread with an active run refuses new
messages and runs, like the API.

At most ``max_stored`` threads are kept (``stores.Bounded``); past it the oldest without an
active run are dropped. ``statuses`` counts runs by current status for the stats snapshot; it
may be called from any thread (the store's lock guards what the event loop inserts into).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from pipeline.emulator.checks import NOTE
from pipeline.emulator.config import EmulatorConfig, skewed_clock
from pipeline.emulator.lifecycle import ACTIVE, TERMINAL, Lifecycle, OutcomeDraw
from pipeline.emulator.records import (
    RUN_DEFAULTS,
    Run,
    Thread,
    content_parts,
    fit_prompt,
    message_text,
    not_found,
    object_id,
    tool_call,
)
from pipeline.emulator.replies import invalid_request
from pipeline.emulator.responder import MODEL, Prompt, Responder
from pipeline.emulator.stores import Answering, Bounded


class RunStore:
    """All threads of one emulator; lives on its event loop (``statuses`` excepted)."""

    def __init__(self, config: EmulatorConfig, responder: Responder) -> None:
        self.config = config
        self.clock = skewed_clock(config)
        self._threads: Bounded[Thread] = Bounded(config.max_stored)
        self._draw = OutcomeDraw(config.run_outcomes, config.seed, "runs")
        self.answering = Answering(responder, self.clock)

    # threads and messages

    def new_thread(self, body: dict[str, Any]) -> Thread:
        now = self.clock()
        thread = Thread(
            object_id("thread"), int(now), body.get("metadata") or {}, body.get("tool_resources")
        )
        for message in body.get("messages") or ():
            self.add_message(thread, message)
        self._threads.keep(thread.id, thread, lambda old: self._idle(old, now))
        return thread

    def thread(self, thread_id: str) -> Thread:
        """The thread, settled; 404 if unknown."""
        thread = self._threads.get(thread_id)
        if thread is None:
            raise not_found("thread", thread_id)
        self.settle(thread)
        return thread

    def add_message(
        self, thread: Thread, body: dict[str, Any], *, run: Run | None = None
    ) -> dict[str, Any]:
        """Append a message made from a CreateMessageRequest (or a run's answer) body."""
        now = int(self.clock())
        message = {
            "id": object_id("msg"),
            "object": "thread.message",
            "created_at": now,
            "thread_id": thread.id,
            "status": "completed",
            "incomplete_details": None,
            "completed_at": now,
            "incomplete_at": None,
            "role": body["role"],
            "content": content_parts(body["content"]),
            "assistant_id": run.assistant_id if run else None,
            "run_id": run.id if run else None,
            "attachments": body.get("attachments") or [],
            "metadata": body.get("metadata") or {},
        }
        thread.messages.append(message)
        return message

    def check_idle(self, thread: Thread, adding: str) -> None:
        """400 if a run of the thread is active (``adding`` is "messages" or "run")."""
        now = self.clock()
        for run in thread.open:
            if run.life.status(now) in ACTIVE:
                message = (
                    f"Can't add messages to {thread.id} while a run {run.id} is active."
                    if adding == "messages"
                    else f"Thread {thread.id} already has an active run {run.id}."
                )
                raise invalid_request(f"{message} {NOTE}")

    def settle(self, thread: Thread) -> None:
        """Add the answers of runs that ended (dated when they ended); drop them from ``open``."""
        now = self.clock()
        for run in list(thread.open):
            status = run.life.status(now)
            if status not in TERMINAL:
                continue
            thread.open.remove(run)
            if status in ("completed", "incomplete") and run.answer is not None:
                self._answer_message(run, status)

    def _answer_message(self, run: Run, status: str) -> None:
        assert run.answer is not None
        body = {"role": "assistant", "content": run.answer.text}
        message = self.add_message(run.thread, body, run=run)
        ended = int(run.life.end)
        message["created_at"] = ended
        if status == "incomplete":
            message.update(  # only a cut answer is incomplete (max_prompt_tokens adds none)
                status="incomplete",
                incomplete_details={"reason": "max_tokens"},
                completed_at=None,
                incomplete_at=ended,
            )
        else:
            message["completed_at"] = ended
        run.message = message

    # runs

    def new_run(self, thread: Thread, body: dict[str, Any]) -> Run:
        """Start a run from a CreateRunRequest (or CreateThreadAndRunRequest) body."""
        for extra in body.get("additional_messages") or ():
            self.add_message(thread, extra)
        instructions = "\n".join(
            part for part in (body.get("instructions"), body.get("additional_instructions")) if part
        )
        settings = {
            name: default if body.get(name) is None else body[name]
            for name, default in RUN_DEFAULTS.items()
        }
        history = [(m["role"], message_text(m)) for m in thread.messages]
        kept, tokens, fits = fit_prompt(instructions, history, settings)
        response_format = settings["response_format"]
        prompt = Prompt(
            instructions,
            kept,
            model=body.get("model") or MODEL,
            max_tokens=settings["max_completion_tokens"],
            response_format="text" if response_format == "auto" else response_format["type"],
            sampling={k: body[k] for k in ("temperature", "top_p") if body.get(k) is not None},
        )
        now = self.clock()
        config = self.config
        outcome = self._draw.draw()
        run = Run(
            object_id("run"),
            thread,
            body["assistant_id"],
            prompt.model,
            instructions,
            body.get("tools") or [],
            body.get("metadata") or {},
            settings,
            Lifecycle(now, config.run_duration_s, outcome, now + config.run_expires_s),
            prompt,
            tokens,
            int(now),
        )
        with self._threads.lock:  # statuses() reads the runs from another thread
            thread.runs[run.id] = run
        thread.open.append(run)
        if outcome in ("completed", "incomplete") and not fits:
            run.life.outcome, run.incomplete = "incomplete", "max_prompt_tokens"
        elif outcome == "failed":
            message = f"The run failed: an injected '{config.run_error_code}' outcome. {NOTE}"
            run.error = (config.run_error_code, message)
        elif outcome == "requires_action":
            run.tool_calls = [tool_call(run.tools, prompt.question)]
        elif outcome in ("completed", "incomplete"):
            self.answering.answer_later(run)
        return run

    def run(self, thread: Thread, run_id: str) -> Run:
        run = thread.runs.get(run_id)
        if run is None:
            raise not_found("run", run_id)
        return run

    def runs(self, thread: Thread) -> list[Run]:
        return list(thread.runs.values())

    def cancel(self, run: Run) -> None:
        now = self.clock()
        status = run.life.status(now)
        if status not in ("queued", "in_progress", "requires_action"):
            raise invalid_request(f"Cannot cancel run with status '{status}'. {NOTE}")
        run.life.cancel(now)
        if run.task is not None:
            run.task.cancel()

    def submit_tool_outputs(self, run: Run, outputs: list[dict[str, Any]]) -> None:
        status = run.life.status(self.clock())
        if status != "requires_action" or run.tool_calls is None:
            raise invalid_request(f'Runs in status "{status}" do not accept tool outputs. {NOTE}')
        expected = sorted(call["id"] for call in run.tool_calls)
        given = sorted(str(item.get("tool_call_id")) for item in outputs)
        if given != expected:
            raise invalid_request(
                f"Expected tool outputs for call_ids {expected}, got {given}. {NOTE}",
                param="tool_outputs",
            )
        texts = [str(item.get("output", "")) for item in outputs]
        run.prompt = replace(run.prompt, tool_outputs=texts)
        run.tool_calls = None
        run.life.restart(self.clock())
        self.answering.answer_later(run)

    def run_object(
        self, run: Run, at: float | None = None, status: str | None = None
    ) -> dict[str, Any]:
        """The RunObject at ``at`` (now), or as it was when it entered ``status``."""
        at = self.clock() if at is None else at
        status = status or run.life.status(at)
        error = run.error if status == "failed" else None
        if status == "failed" and error is None:
            error = ("server_error", f"The run failed. {NOTE}")
        return {
            "id": run.id,
            "object": "thread.run",
            "created_at": run.created_at,
            "thread_id": run.thread.id,
            "assistant_id": run.assistant_id,
            "status": status,
            "required_action": (
                {
                    "type": "submit_tool_outputs",
                    "submit_tool_outputs": {"tool_calls": run.tool_calls},
                }
                if status == "requires_action"
                else None
            ),
            "last_error": {"code": error[0], "message": error[1]} if error else None,
            **run.life.timestamps(at, status),
            "incomplete_details": {"reason": run.incomplete} if status == "incomplete" else None,
            "model": run.model,
            "instructions": run.instructions,
            "tools": run.tools,
            "metadata": run.metadata,
            "usage": run.usage() if status in ("completed", "incomplete") else None,
            **run.settings,
        }

    # bookkeeping

    def statuses(self) -> dict[str, int]:
        """Runs by current status (any thread may call this)."""
        now = self.clock()
        threads = self._threads.snapshot()
        with self._threads.lock:
            runs = [run for thread in threads for run in thread.runs.values()]
        return dict(Counter(run.life.status(now) for run in runs))

    def _idle(self, thread: Thread, now: float) -> bool:
        """Whether ``thread`` (settled first) has no active run: it may be forgotten."""
        self.settle(thread)
        return not any(run.life.status(now) in ACTIVE for run in thread.open)
