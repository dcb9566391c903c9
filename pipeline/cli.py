"""The command line: parses arguments, calls one function, and is the only place with exit codes."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from pipeline.cli_options import engine_options
from pipeline.cli_values import duration
from pipeline.errors import JobError, LockedError, StorageError
from pipeline.serve_flags import batch_flags, batch_settings, parse_pairs

EXIT_OK, EXIT_ROWS_FAILED, EXIT_UNUSABLE, EXIT_FATAL_API, EXIT_INTERRUPTED = 0, 1, 2, 3, 4
EXIT_INTERNAL, EXIT_STORAGE, EXIT_LOCKED = 70, 74, 75
OUTCOME_EXIT = {
    "completed": EXIT_OK,
    "completed_with_errors": EXIT_ROWS_FAILED,
    "stopped_fatal": EXIT_FATAL_API,
    "interrupted": EXIT_INTERRUPTED,
}
F = TypeVar("F", bound=Callable[..., Any])


def _exits(func: F) -> F:
    """Turn the pipeline's errors into the contract's exit codes and one clear line (a JSON
    object with ``exit_code`` under ``--log-format json``, for whatever reads the log)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (JobError, LockedError, StorageError) as error:
            code = next(code for kind, code in _EXIT_FOR if isinstance(error, kind))
            _fail(f"error: {error}", code, kwargs.get("log_format"))
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own: usage errors (exit 2) and --help
        except Exception as error:  # a bug, not the data: one line here, the traceback in a file
            _fail(_internal_error(error), EXIT_INTERNAL, kwargs.get("log_format"))

    return wrapper  # type: ignore[return-value]


_EXIT_FOR = ((JobError, EXIT_UNUSABLE), (LockedError, EXIT_LOCKED), (StorageError, EXIT_STORAGE))


def _fail(line: str, code: int, log_format: str | None) -> NoReturn:
    if log_format == "json":  # the run set up JSON logging before anything could fail
        logging.getLogger("pipeline.cli").error(line, extra={"exit_code": code})
    else:
        click.echo(line, err=True)
    sys.exit(code)


def _internal_error(error: Exception) -> str:
    """The one line for an unexpected error; its traceback goes to a file and the debug log."""
    from pipeline.logs import redact, save_traceback

    logging.getLogger(__name__).debug("internal error", exc_info=error)
    saved = save_traceback(error)
    where = f"with {saved}, which holds the traceback" if saved else "with the log (debug level)"
    what = " ".join(f"{type(error).__name__}: {error}".split())[:300]
    return redact(
        f"error: internal error: {what}. The journal is consistent: rerun the same command to "
        f"resume. This is a bug in pipeline: please report it {where}"
    )


@click.group()
@click.version_option(package_name="pipeline")
def main() -> None:
    """Datasets to OpenAI API requests, and the answers back to datasets."""


@main.command()
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option("--limit", type=click.IntRange(min=0), help="Send only the first N new rows.")
@click.option("--base-url", help='API base URL, or "local" for the embedded emulator.')
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (default: the job's [output] dir).",
)
@click.option(
    "--quiet", is_flag=True, help="No progress display and no closing lines; the log stays."
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    help="json: one JSON object per line on stderr.",
)
@click.option(
    "--stop-grace",
    metavar="DURATION",
    default="30s",
    show_default=True,
    help="After SIGINT/SIGTERM or a bound, how long requests in flight may finish.",
)
@click.option("--retry-failed", is_flag=True, help="Send the keys in errors again (only those).")
@click.option(
    "--redo-changed",
    is_flag=True,
    help="Send again the done keys whose request changed since, and replace their results.",
)
@click.option(
    "--rebuild-journal",
    is_flag=True,
    help="The output folder lost its journal: adopt its results and errors, send only the rest.",
)
@click.option(
    "--max-requests",
    type=click.IntRange(min=1),
    help="Stop cleanly (exit 4, resumable) before sending more requests than this.",
)
@click.option(
    "--max-runtime",
    metavar="DURATION",
    help="Stop cleanly (exit 4, resumable) after this long: 90s, 50m, 1h30m.",
)
@click.option(
    "--max-characters",
    type=click.IntRange(min=1),
    help="Speech: stop cleanly (exit 4) once this many characters have been sent.",
)
@click.option("--report", "with_report", is_flag=True, help="Write report.html at the end.")
@_exits
@engine_options  # --engine, --ray-address, --ray-actors: one `ray` argument (inside _exits)
def run(
    job_file: str,
    limit: int | None,
    base_url: str | None,
    output: Path | None,
    quiet: bool,
    log_format: str,
    stop_grace: str,
    retry_failed: bool,
    redo_changed: bool,
    rebuild_journal: bool,
    max_requests: int | None,
    max_runtime: str | None,
    max_characters: int | None,
    ray: Any,
    with_report: bool,
) -> None:
    """Run a job; resume where an earlier run of it stopped."""
    from pipeline.logs import setup_logging
    from pipeline.progress import choose_mode
    from pipeline.report import report_after_run
    from pipeline.runner import RunOptions
    from pipeline.runner import run as run_job
    from pipeline.stopping import Bounds

    setup_logging(log_format)
    options = RunOptions(
        limit=limit,
        base_url=base_url,
        output=output,
        progress=choose_mode(quiet, log_format),
        bounds=Bounds(max_requests=max_requests, max_characters=max_characters),
        max_runtime_s=None if max_runtime is None else duration(max_runtime),
        retry_failed=retry_failed,
        redo_changed=redo_changed,
        rebuild_journal=rebuild_journal,
        stop_grace_s=duration(stop_grace, "--stop-grace"),
        ray=ray,
    )
    result = run_job(job_file, options)
    if log_format == "json":  # the last line for machines: the run's summary
        log = logging.getLogger("pipeline.summary")
        log.info("run finished", extra={"summary": result.summary})
    if not quiet:
        rows = result.summary["rows"]
        outputs = result.summary["outputs"]
        click.echo(f"results: {result.output_dir / outputs['results']} ({rows['done']} rows)")
        click.echo(f"errors:  {result.output_dir / outputs['errors']} ({rows['failed']} rows)")
        click.echo(f"summary: {result.output_dir / 'summary.json'} ({result.summary['outcome']})")
        if rows["unread"]:
            click.echo(f"unread:  {rows['unread']} input rows; run again to go on")
    if with_report and (page := report_after_run(result.output_dir)) and not quiet:
        click.echo(f"report:  {page}")
    sys.exit(OUTCOME_EXIT[result.outcome])


@main.command()
@click.argument("job_file", type=click.Path(dir_okay=False))
@_exits
def validate(job_file: str) -> None:
    """Read the job and every row, build every request; send nothing."""
    from pipeline.cost import job_prices, validate_lines
    from pipeline.plan import make_plan
    from pipeline.preview import preview, shortened

    plan = make_plan(job_file)
    job = plan.job
    if job.api.mode == "batch":
        from pipeline.batch import check_batch_mode

        check_batch_mode(plan)
    found = preview(plan)
    click.echo(f"job {job.name} ({job.kind}): {plan.kind.describe()}")
    for warning in plan.warnings:
        click.echo(f"warning: {warning}")
    if job.api.mode == "batch":
        click.echo("mode: batch (the Batch API: files of up to 50,000 requests, answers in 24 h)")
    click.echo(f"input: {len(plan.input.files)} file(s), {found.rows} rows")
    click.echo(f"valid rows: {found.valid}; rows that would be error rows: {found.invalid}")
    click.echo(
        f"requests: {found.requests}; characters: {found.characters}; "
        f"estimated tokens: {found.tokens}"
    )
    for reason, count in found.reasons.most_common():
        click.echo(f"  {count} x {reason}")
    for key, message in found.problems:
        click.echo(f"  row {key!r}: {message}")
    for line in validate_lines(found.cost, plan.kind.batchable, job_prices(job.prices)):
        click.echo(line)
    if found.first_payload is not None:
        shown = json.dumps(shortened(found.first_payload), ensure_ascii=False)
        click.echo(f"first row's part of a request: {shown}")
    click.echo(f"output: {job.output.dir} ({job.output.format})")


@main.command()
@click.argument("output_dir", type=click.Path(file_okay=False, path_type=Path))
@_exits
def status(output_dir: Path) -> None:
    """What an output folder holds; safe while a run is going."""
    from pipeline.status import read_status

    click.echo(read_status(output_dir))


@main.command()
@click.argument("output_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--by", metavar="COLUMN", help="Moderation: the flagged rate over this keep column.")
@_exits
def report(output_dir: Path, by: str | None) -> None:
    """Write OUTPUT_DIR/report.html: charts and tables of a run, one offline file."""
    from pipeline.report import write_report

    click.echo(f"report: {write_report(output_dir, by)}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--rpm", type=click.IntRange(min=1), help="Requests per minute to enforce.")
@click.option("--tpm", type=click.IntRange(min=1), help="Tokens per minute to enforce.")
@click.option(
    "--burst-s",
    type=click.FloatRange(min=0.001),
    default=60.0,
    show_default=True,
    help="Seconds of allowance a limit's bucket holds (1 = enforced per second).",
)
@click.option("--no-ratelimit-headers", is_flag=True, help="Do not send x-ratelimit-* headers.")
@click.option("--latency-ms", type=float, default=0.0, help="Added to every answer.")
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="NAME=P",
    help="Inject a fault with probability P: 429 quota 401 500 502 503 drop "
    "drop_body truncate slow malformed echo_key echo_key_401 huge_body huge_chunked; "
    "per realtime response: realtime_reword realtime_drop realtime_error "
    "realtime_rate_limit. Repeatable.",
)
@click.option(
    "--slow-s", type=float, default=30.0, show_default=True, help="How long the slow fault waits."
)
@click.option("--seed", type=int, help="Seed for fault injection and run outcomes.")
@click.option(
    "--run-duration-s",
    type=click.FloatRange(min=0),
    default=0.2,
    show_default=True,
    help="How long an emulated run (or response) takes.",
)
@click.option(
    "--run-outcome",
    "run_outcomes",
    multiple=True,
    metavar="NAME=P",
    help="End runs otherwise than completed with probability P: failed incomplete "
    "expired requires_action stuck. Repeatable.",
)
@click.option("--chat-completions-url", help="Answer runs by delegating to this endpoint.")
@click.option(
    "--huge-body-bytes",
    type=click.IntRange(min=1),
    default=2**31,
    show_default=True,
    help="What the huge_body and huge_chunked faults send.",
)
@click.option(
    "--clock-skew-s",
    type=float,
    default=0.0,
    help="Report timestamps (created_at...) this many seconds off the real clock.",
)
@click.option(
    "--realtime-session-s",
    type=click.FloatRange(min=0.001),
    default=3600.0,
    show_default=True,
    help="End a realtime WebSocket session after this long (session_expired), as the API does.",
)
@click.option(
    "--engine",
    type=click.Choice(["profanity", "wordlist"]),
    default="profanity",
    show_default=True,
    help="Moderation engine (wordlist: cheap, for benchmarks).",
)
@click.option(
    "--speech-voices",
    type=click.Choice(["openai", "any"]),
    default="openai",
    show_default=True,
    help="any: /v1/audio/speech as a provider's, any model and voice name.",
)
@click.option(
    "--refuse-voice",
    "refuse_voices",
    multiple=True,
    metavar="NAME",
    help="Refuse this voice with a provider's 400 (as Kokoro-FastAPI does). Repeatable.",
)
@batch_flags
@click.option("--allow-remote", is_flag=True, help="Allow a host other than loopback.")
@_exits
def serve(
    host: str,
    port: int,
    rpm: int | None,
    tpm: int | None,
    burst_s: float,
    no_ratelimit_headers: bool,
    latency_ms: float,
    faults: tuple[str, ...],
    slow_s: float,
    seed: int | None,
    engine: str,
    run_duration_s: float,
    run_outcomes: tuple[str, ...],
    chat_completions_url: str | None,
    huge_body_bytes: int,
    clock_skew_s: float,
    speech_voices: str,
    refuse_voices: tuple[str, ...],
    realtime_session_s: float,
    allow_remote: bool,
    **batch: Any,
) -> None:
    """Serve the local OpenAI-compatible emulator (loopback only unless --allow-remote)."""
    import pipeline.emulator as emulator
    from pipeline.emulator.errors import EmulatorError

    try:
        config = emulator.EmulatorConfig(
            requests_per_minute=rpm,
            tokens_per_minute=tpm,
            burst_s=burst_s,
            ratelimit_headers=not no_ratelimit_headers,
            latency_ms=latency_ms,
            faults=parse_pairs(faults),
            slow_s=slow_s,
            seed=seed,
            engine=engine,
            run_duration_s=run_duration_s,
            run_outcomes=parse_pairs(run_outcomes, "--run-outcome"),
            chat_completions_url=chat_completions_url,
            huge_body_bytes=huge_body_bytes,
            clock_skew_s=clock_skew_s,
            speech_voices=speech_voices,
            refuse_voices=frozenset(refuse_voices),
            realtime_session_s=realtime_session_s,
            **batch_settings(batch),
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    try:
        emulator.serve(config, host=host, port=port, allow_remote=allow_remote)
    except EmulatorError as error:  # a missing extra or a remote host: the user's to fix
        raise JobError(error.message) from None
    except OSError as error:  # the port is taken or not ours: the user's to fix, not a bug
        raise JobError(
            f"cannot listen on {host}:{port} ({error.strerror or error}); "
            "choose another --port (0 picks a free one)",
            field="--port",
        ) from None
