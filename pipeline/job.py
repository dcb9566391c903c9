"""Job file (TOML) -> a validated, frozen JobSpec; every complaint names the file, field and fix."""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pipeline.cost import check_price_entries
from pipeline.errors import JobError
from pipeline.notify import NotifySpec, notify_spec

OutputFormat = Literal["parquet", "csv", "jsonl"]
ApiMode = Literal["sync", "batch"]
API_MODES: tuple[ApiMode, ...] = ("sync", "batch")
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("parquet", "csv", "jsonl")
DEFAULT_BASE_URL = "https://api.openai.com/v1"
LOCAL = "local"


@dataclass(frozen=True)
class InputSpec:
    path: str
    key: str
    keep: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutputSpec:
    dir: Path
    format: OutputFormat = "parquet"


@dataclass(frozen=True)
class ApiSpec:
    base_url: str | None = None
    concurrency: int = 16
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_attempts: int = 6
    timeout_s: float = 60.0
    mode: ApiMode = "sync"  # batch: the Batch API (pipeline/batch)
    batch_poll_interval_s: float = 5.0  # the first wait between polls of the batches in flight
    batch_poll_max_interval_s: float = 300.0  # the waits grow to this


@dataclass(frozen=True)
class JobSpec:
    """A job file, checked: what to read, what to send, where to write."""

    path: Path
    kind: str
    name: str
    input: InputSpec
    request: Mapping[str, Any]
    output: OutputSpec
    api: ApiSpec
    sections: Mapping[str, Any] = field(default_factory=dict)  # the kind's own tables
    prices: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # [prices."model"]
    notify: NotifySpec | None = None

    @property
    def base_dir(self) -> Path:
        return self.path.parent


JobSource = str | Path | Mapping[str, Any] | JobSpec  # a job file, its TOML as a dict, or checked
DICT_JOB = "<job dict>"  # a dict job's stand-in file name: its relative paths start in the cwd


def read_job(source: JobSource, kind_sections: Mapping[str, tuple[str, ...]]) -> JobSpec:
    """A job file (``load_job``), a dict of its TOML tables (the Python API), or a JobSpec."""
    if isinstance(source, JobSpec):
        return source
    if isinstance(source, Mapping):
        doc = dict(source)
        output = doc.get("output")
        folder = output.get("dir") if isinstance(output, Mapping) else None
        if "name" not in doc and isinstance(folder, str) and Path(folder).name:
            doc["name"] = Path(folder).name  # a dict has no file name to default to
        return job_from_document(doc, Path.cwd() / DICT_JOB, kind_sections)
    return load_job(source, kind_sections)


def load_job(path: str | Path, kind_sections: Mapping[str, tuple[str, ...]]) -> JobSpec:
    """Read and check a job file; JobError says what is wrong and how to fix it.

    ``kind_sections`` maps each known kind to the top-level tables it owns.
    """
    job_path = Path(path).resolve()
    where = str(path)
    try:
        doc = tomllib.loads(job_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JobError("no such job file", path=where) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobError(f"cannot read the job file ({exc})", path=where) from None
    except tomllib.TOMLDecodeError as exc:
        raise JobError(f"not valid TOML: {exc}", path=where) from None
    return job_from_document(doc, job_path, kind_sections, where)


def job_from_document(
    doc: dict[str, Any],
    job_path: Path,
    kind_sections: Mapping[str, tuple[str, ...]],
    where: str | None = None,
) -> JobSpec:
    """Check a job's TOML tables; ``job_path`` anchors its relative paths and names it."""
    check = _Checker(where or str(job_path))
    check.finite(doc, "")

    kind = check.choice(doc, "kind", tuple(kind_sections), required=True)
    allowed = (
        "kind",
        "name",
        "input",
        "request",
        "output",
        "api",
        "prices",
        "notify",
        *kind_sections[kind],
    )
    check.known(doc, "", allowed)
    name = check.string(doc, "name") or job_path.stem

    return JobSpec(
        path=job_path,
        kind=kind,
        name=name,
        input=_input_spec(check, doc),
        request=check.table(doc, "request"),
        output=_output_spec(check, doc, job_path.parent),
        api=_api_spec(check, doc),
        sections={key: doc[key] for key in kind_sections[kind] if key in doc},
        prices=_prices(check, doc),
        notify=notify_spec(check.table(doc, "notify"), check.path) if "notify" in doc else None,
    )


def _prices(check: _Checker, doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``[prices."model"]``: the fields of a prices.toml entry, checked as that file is."""
    return check_price_entries(check.table(doc, "prices"), check.path, "prices")


def _input_spec(check: _Checker, doc: dict[str, Any]) -> InputSpec:
    raw_input = check.table(doc, "input", required=True)
    check.known(raw_input, "input", ("path", "key", "keep"))
    keep = check.get(raw_input, "input.keep", list, "a list of column names", default=[])
    if not all(isinstance(col, str) for col in keep):
        raise check.error("input.keep", "must be a list of column names (strings)")
    return InputSpec(
        path=check.string(raw_input, "input.path", required=True),
        key=check.string(raw_input, "input.key", required=True),
        keep=tuple(keep),
    )


def _output_spec(check: _Checker, doc: dict[str, Any], job_dir: Path) -> OutputSpec:
    """``output.dir`` relative to the job file's folder, resolved."""
    raw_output = check.table(doc, "output", required=True)
    check.known(raw_output, "output", ("dir", "format"))
    output_dir = Path(check.string(raw_output, "output.dir", required=True))
    return OutputSpec(
        dir=output_dir if output_dir.is_absolute() else (job_dir / output_dir).resolve(),
        format=check.choice(raw_output, "output.format", OUTPUT_FORMATS, default="parquet"),
    )


def _api_spec(check: _Checker, doc: dict[str, Any]) -> ApiSpec:
    raw_api = check.table(doc, "api")
    check.known(raw_api, "api", tuple(ApiSpec.__dataclass_fields__))
    return ApiSpec(
        base_url=check.string(raw_api, "api.base_url") or None,
        concurrency=check.integer(raw_api, "api.concurrency", 16, low=1, high=4096),
        requests_per_minute=check.optional_integer(raw_api, "api.requests_per_minute"),
        tokens_per_minute=check.optional_integer(raw_api, "api.tokens_per_minute"),
        max_attempts=check.integer(raw_api, "api.max_attempts", 6, low=1, high=100),
        timeout_s=check.number(raw_api, "api.timeout_s", 60.0),
        mode=check.choice(raw_api, "api.mode", API_MODES, default="sync"),
        batch_poll_interval_s=check.number(raw_api, "api.batch_poll_interval_s", 5.0),
        batch_poll_max_interval_s=check.number(raw_api, "api.batch_poll_max_interval_s", 300.0),
    )


def resolve_base_url(job: JobSpec, flag: str | None) -> str:
    """--base-url, else the job's base_url, else OPENAI_BASE_URL, else api.openai.com."""
    url = flag or job.api.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    return url if url == LOCAL else url.rstrip("/")


def is_openai_url(base_url: str) -> bool:
    """Whether ``base_url`` is OpenAI's own API (api.openai.com), not a provider or the emulator."""
    return base_url != LOCAL and urlsplit(base_url).hostname == "api.openai.com"


def resolve_api_key(base_url: str, job_path: Path) -> str | None:
    """The key from OPENAI_API_KEY; only the local emulator does without one."""
    key = os.environ.get("OPENAI_API_KEY") or None
    if key is None and base_url != LOCAL:
        raise JobError(
            f"OPENAI_API_KEY is not set, and {base_url} needs it; export OPENAI_API_KEY=... "
            'or set base_url = "local" in [api] to use the local emulator',
            path=str(job_path),
        )
    bad = next((i for i, char in enumerate(key or "") if not "!" <= char <= "~"), None)
    if bad is not None:  # never echoed: the message says where, not what
        raise JobError(
            f"OPENAI_API_KEY holds a space, a control character or a non-ASCII character at "
            f"position {bad + 1} of {len(key or '')} (a line end from a Windows env file?); an "
            "HTTP header cannot carry it: set the key again without it",
            path=str(job_path),
        )
    return key


class _Checker:
    """Typed reads of TOML tables, each failure a JobError naming the field and the fix."""

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, field_name: str, message: str) -> JobError:
        return JobError(message, path=self.path, field=field_name)

    def known(self, table: Mapping[str, Any], prefix: str, allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(allowed)}"
                name = f"{prefix}.{key}" if prefix else key
                raise self.error(name, f"unknown key; {hint}")

    def get(
        self,
        table: Mapping[str, Any],
        name: str,
        kind: type | tuple[type, ...],
        what: str,
        *,
        default: Any = None,
        required: bool = False,
    ) -> Any:
        key = name.rsplit(".", 1)[-1]
        if key not in table:
            if required:
                raise self.error(name, f"is required: add {what}")
            return default
        value = table[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.error(name, f"must be {what}, got {value!r} ({type(value).__name__})")
        return value

    def table(self, doc: Mapping[str, Any], name: str, *, required: bool = False) -> dict[str, Any]:
        what = f"a [{name}] table"
        return dict(self.get(doc, name, dict, what, default={}, required=required))

    def string(self, table: Mapping[str, Any], name: str, *, required: bool = False) -> str:
        value: str = self.get(table, name, str, "a string", default="", required=required)
        if required and not value.strip():
            raise self.error(name, "must not be empty")
        return value

    def choice(
        self,
        table: Mapping[str, Any],
        name: str,
        options: tuple[Any, ...],
        *,
        default: Any = None,
        required: bool = False,
    ) -> Any:
        what = "one of " + ", ".join(repr(o) for o in options)
        value = self.get(table, name, str, what, default=default, required=required)
        if value not in options:
            raise self.error(name, f"must be {what}, got {value!r}")
        return value

    def integer(
        self, table: Mapping[str, Any], name: str, default: int, *, low: int = 1, high: int = 2**62
    ) -> int:
        value: int = self.get(table, name, int, "a whole number", default=default)
        return _bounded(value, low, high, lambda msg: self.error(name, msg))

    def optional_integer(self, table: Mapping[str, Any], name: str) -> int | None:
        value: int | None = self.get(table, name, int, "a whole number (omit it for no limit)")
        return None if value is None else _bounded(value, 1, 2**62, lambda m: self.error(name, m))

    def number(self, table: Mapping[str, Any], name: str, default: float) -> float:
        value = float(self.get(table, name, (int, float), "a number", default=default))
        if not (value > 0 and math.isfinite(value)):
            raise self.error(name, f"must be a finite number more than 0, got {value}")
        return value

    def finite(self, value: Any, name: str) -> None:
        """Refuse inf and nan anywhere in the file (no setting or request field means them), and
        integers beyond TOML's 64 bits (which tomllib reads, but no request can carry)."""
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(
                name, f"must be a finite number, got {value}; write a number such as 60"
            )
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise self.error(name, f"must fit in 64 bits (TOML integers do), got {value}")
        if isinstance(value, dict):
            for key, item in value.items():
                self.finite(item, f"{name}.{key}" if name else key)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.finite(item, f"{name}[{index}]")


def _bounded(value: int, low: int, high: int, error: Callable[[str], JobError]) -> int:
    if not low <= value <= high:
        raise error(f"must be between {low} and {high}, got {value}")
    return value
