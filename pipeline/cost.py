"""Cost: the price table (``data/prices.toml``, the one place a price lives), what a usage costs
in sync or batch mode, and the per-model tallies that ``validate`` and summary.json price.

Prices are the OpenAI pricing page as typed into the data file on its ``as_of`` date; every
dollar figure is an estimate from them, and a model the table lacks has no price (``None``),
never a guess. Estimates use the pipeline's own token estimate (``tokens.py``) of a row's input;
a run's output tokens are not known before its answer, so its estimate is the input's price.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cache
from importlib import resources
from typing import Any, Literal

from pipeline.errors import JobError
from pipeline.outcomes import Success
from pipeline.rows import Row

Mode = Literal["sync", "batch"]
SPEECH_CHARS_PER_SECOND = 15.0  # about 150 words a minute: an estimate's audio length
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")  # gpt-4.1-mini-2025-04-14 -> gpt-4.1-mini


@dataclass(frozen=True)
class Price:
    """One model's prices (dollars), as the data file gives them."""

    input_per_1m_tokens: float = 0.0
    output_per_1m_tokens: float = 0.0
    per_1m_characters: float = 0.0
    audio_per_minute: float = 0.0
    free: bool = False
    batch: bool = False  # offered by the Batch API


@dataclass(frozen=True)
class PriceTable:
    models: dict[str, Price]
    source: str
    as_of: str
    batch_discount: float
    from_job: tuple[str, ...] = ()  # the models whose prices a job's [prices] set

    @property
    def origin(self) -> str:
        """Where the prices come from, in words, with their date."""
        job = f"; the job's [prices] for {', '.join(self.from_job)}" if self.from_job else ""
        return f"{self.source}, as of {self.as_of} (pipeline/data/prices.toml){job}"

    def find(self, model: str | None) -> Price | None:
        """The price of ``model`` or of the model a dated snapshot of it names; None if unknown."""
        if model is None:
            return None
        return self.models.get(model) or self.models.get(_SNAPSHOT.sub("", model))


@cache
def load_prices() -> PriceTable:
    """The packaged price table (``pipeline/data/prices.toml``); JobError naming the field if
    an edit broke it (checked when a job is planned, before anything is sent)."""
    file = resources.files("pipeline").joinpath("data/prices.toml")
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise JobError(f"not valid TOML: {error}", path=str(file)) from None
    return parse_prices(data, str(file))


def parse_prices(data: dict[str, Any], path: str) -> PriceTable:
    """A price table from the data file's TOML; JobError for a field a price cannot come from
    (a typo must not price a model at zero)."""
    models = data.get("models")
    if not isinstance(models, dict):
        raise JobError("missing: the [models.<name>] tables of prices", path=path, field="models")
    table = {name: Price(**entry) for name, entry in check_price_entries(models, path).items()}
    source, as_of = data.get("source"), data.get("as_of")
    if not isinstance(source, str) or not isinstance(as_of, str):
        message = "must say where the prices come from, and when"
        raise JobError(message, path=path, field="source / as_of")
    return PriceTable(
        table, source, as_of, _amount(data.get("batch_discount"), path, "batch_discount")
    )


def check_price_entries(
    models: dict[str, Any], path: str, prefix: str = "models"
) -> dict[str, dict[str, Any]]:
    """Per model, a table of ``Price`` fields (the data file's ``[models."x"]``, a job's
    ``[prices."x"]``), each checked; JobError naming the field otherwise."""
    types = {f.name: f.type for f in fields(Price)}
    entries = {}
    for name, entry in models.items():
        if not isinstance(entry, dict):
            raise JobError("must be a table of prices", path=path, field=f"{prefix}.{name}")
        for key, value in entry.items():
            where = f"{prefix}.{name}.{key}"
            if key not in types:
                raise JobError(f"unknown field; known: {', '.join(types)}", path=path, field=where)
            if types[key] == "bool" and not isinstance(value, bool):
                raise JobError(f"must be true or false, got {value!r}", path=path, field=where)
            if types[key] == "float":
                _amount(value, path, where)
        entries[name] = dict(entry)
    return entries


def job_prices(overrides: Mapping[str, Mapping[str, Any]]) -> PriceTable:
    """The packaged table with a job's ``[prices."model"]`` over it: a field the job names
    replaces the packaged one, the others stay (a model the file lacks starts from zero); an
    entry naming a price and not ``free`` makes the model not free."""
    table = load_prices()
    if not overrides:
        return table
    models = dict(table.models)
    for name, entry in overrides.items():
        fields_ = {k: _number(k, v) for k, v in entry.items()}
        if "free" not in fields_ and set(fields_) - {"batch"}:
            fields_["free"] = False  # a job pricing a free model means to charge it
        models[name] = replace(table.find(name) or Price(), **fields_)
    return replace(table, models=models, from_job=tuple(sorted(overrides)))


def _number(name: str, value: Any) -> Any:
    """An int price (``free = 0`` aside) as the float the dataclass says it is."""
    return value if isinstance(value, bool) or name in ("free", "batch") else float(value)


def _amount(value: Any, path: str, where: str) -> float:
    """A price (or the batch factor): a finite number, 0 or more."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise JobError(f"must be a finite number, 0 or more, got {value!r}", path=path, field=where)
    return float(value)


@dataclass
class Usage:
    """What some rows of one model used (or are estimated to use)."""

    rows: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    characters: int = 0
    audio_seconds: float = 0.0
    reported: int = 0  # rows whose answers reported their token usage

    def count(
        self,
        input_tokens: int,
        output_tokens: int = 0,
        characters: int = 0,
        audio_seconds: float = 0.0,
        reported: int = 0,
    ) -> None:
        """One more row that used this (counted once a row: no Usage is made for it)."""
        self.rows += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.characters += characters
        self.audio_seconds += audio_seconds
        self.reported += reported


def price_for(
    model: str | None, mode: Mode, usage: Usage, table: PriceTable | None = None
) -> float | None:
    """Dollars for ``usage`` of ``model`` in ``mode``; None when no price is known (a model the
    table lacks, or batch mode for a model the Batch API does not offer)."""
    table = table or load_prices()
    price = table.find(model)
    if price is None or (mode == "batch" and not price.batch):
        return None
    if price.free:
        return 0.0
    dollars = (
        usage.input_tokens * price.input_per_1m_tokens
        + usage.output_tokens * price.output_per_1m_tokens
        + usage.characters * price.per_1m_characters
    ) / 1e6 + usage.audio_seconds / 60.0 * price.audio_per_minute
    return dollars * (table.batch_discount if mode == "batch" else 1.0)


def count_estimate(usage: Usage, row: Row, characters: int | None = None) -> None:
    """A built row's estimated usage: its estimated input tokens, its characters, and the audio
    they would make at ``SPEECH_CHARS_PER_SECOND`` (priced only for a per-minute model)."""
    characters = row.characters if characters is None else characters
    usage.count(
        row.tokens, characters=characters, audio_seconds=characters / SPEECH_CHARS_PER_SECOND
    )


def count_actual(usage: Usage, row: Row, outcome: Success, characters: int) -> None:
    """A done row's usage from its answer: the tokens it reports (a run's), the audio seconds
    decoded and the characters narrated (speech). Where the answer reports no tokens
    (moderation, speech) the input tokens are the estimate, and ``reported`` stays 0."""
    counts = outcome.counts
    reported = "prompt_tokens" in counts
    usage.count(
        int(counts["prompt_tokens"]) if reported else row.tokens,
        int(counts.get("completion_tokens", 0)),
        characters,
        float(counts.get("audio_seconds", 0.0)),
        int(reported),
    )


def _characters(row: Row, outcome: Success) -> int:
    """Speech's ``chars`` column: a row carried again from the journal has no ``characters``."""
    chars = outcome.columns.get("chars")
    return chars if isinstance(chars, int) else row.characters


@dataclass
class CostTally:
    """Usage per model: estimated (from the built rows) and actual (from their answers)."""

    estimated: defaultdict[str | None, Usage] = field(default_factory=lambda: defaultdict(Usage))
    actual: defaultdict[str | None, Usage] = field(default_factory=lambda: defaultdict(Usage))

    def add_estimate(self, model: str | None, row: Row) -> None:
        count_estimate(self.estimated[model], row)

    def add_done(self, model: str | None, row: Row, outcome: Success) -> None:
        """A row that succeeded; ``model`` is the one its request named, else the answer's."""
        model = model or _answer_model(outcome)
        characters = _characters(row, outcome)
        count_estimate(self.estimated[model], row, characters)
        count_actual(self.actual[model], row, outcome, characters)


def _answer_model(outcome: Success) -> str | None:
    model = outcome.columns.get("model")
    return model if isinstance(model, str) and model else None


def total(
    usages: dict[str | None, Usage], mode: Mode, table: PriceTable | None = None
) -> float | None:
    """Dollars for every model's usage; None if any model with rows has no price."""
    prices = [price_for(model, mode, usage, table) for model, usage in usages.items() if usage.rows]
    return None if None in prices else sum(p for p in prices if p is not None)


def summary_part(tally: CostTally, mode: Mode, table: PriceTable | None = None) -> dict[str, Any]:
    """summary.json's ``tokens`` and ``cost_usd``, over the rows done in this run (in ``mode``),
    at ``table``'s prices (the packaged table by default; ``job_prices`` for a job's)."""
    table = table or load_prices()
    actual = [u for u in tally.actual.values() if u.rows]
    reported = bool(actual) and all(u.reported == u.rows for u in actual)
    estimated, spent = total(tally.estimated, mode, table), total(tally.actual, mode, table)
    return {
        "tokens": {
            "estimated": {"input": sum(u.input_tokens for u in tally.estimated.values())},
            "actual": {
                "input": sum(u.input_tokens for u in actual) if reported else None,
                "output": sum(u.output_tokens for u in actual) if reported else None,
            },
        },
        "cost_usd": {
            "mode": mode,
            "estimated": _rounded(estimated),
            "actual": _rounded(spent),
            "by_model": {
                str(model): {
                    "rows": usage.rows,
                    "estimated": _rounded(price_for(model, mode, tally.estimated[model], table)),
                    "actual": _rounded(price_for(model, mode, usage, table)),
                }
                for model, usage in sorted(tally.actual.items(), key=lambda m: str(m[0]))
            },
            "no_price_for": sorted(
                str(m) for m, u in tally.actual.items() if price_for(m, mode, u, table) is None
            ),
            "prices": table.origin,
        },
    }


def _rounded(dollars: float | None) -> float | None:
    return None if dollars is None else round(dollars, 6)


def validate_lines(tally: CostTally, batchable: bool, table: PriceTable | None = None) -> list[str]:
    """``pipeline validate``'s cost part: per model, the estimated usage and its dollars in sync
    mode and, when the job's requests can go through the Batch API (``batchable``), in batch."""
    table = table or load_prices()
    lines = [f"cost, estimated at the prices of the {table.origin}:"]
    for model, usage in sorted(tally.estimated.items(), key=lambda m: str(m[0])):
        price = table.find(model)
        amounts = f"{usage.rows:,} rows, ~{usage.input_tokens:,} input tokens"
        if model is None:
            lines.append(
                f"  (no model named): {amounts}: no price known, the run's model is the "
                "assistant's (name it in [request] model to price it)"
            )
            continue
        if price is None:
            lines.append(f"  {model}: {amounts}: no price known for model {model}")
            continue
        if price.per_1m_characters or price.audio_per_minute:
            amounts += f", {usage.characters:,} characters"
        if price.audio_per_minute:
            amounts += (
                f", ~{usage.audio_seconds / 60:,.1f} audio minutes (at "
                f"{SPEECH_CHARS_PER_SECOND:g} characters a second)"
            )
        lines.append(f"  {model}: {amounts}")
        lines.append(f"    {_columns(model, usage, price, table, batchable)}")
    return lines


def _columns(model: str, usage: Usage, price: Price, table: PriceTable, batchable: bool) -> str:
    """The sync and batch dollars of one model's estimate, side by side."""
    if price.free:
        return "sync: free, batch: free (moderation is free)" if batchable else "free"
    sync = price_for(model, "sync", usage, table)
    batch = price_for(model, "batch", usage, table) if batchable else None
    if batch is not None:
        text = f"sync {_dollars(sync)}, batch {_dollars(batch)}"
    elif batchable:
        text = f"sync {_dollars(sync)}, batch: no batch price known for {model}"
    else:
        text = f"sync {_dollars(sync)}, batch: not offered (the Batch API does not take these)"
    if price.output_per_1m_tokens:  # a run's answer length is not known before it is given
        output = price.output_per_1m_tokens
        text += f"; plus output tokens (not known before the answers) at ${output:.2f} per 1M"
        if batch is not None:
            text += f", batch ${output * table.batch_discount:.2f}"
    return text


def _dollars(amount: float | None) -> str:
    if amount is None:
        return "unknown"
    return (
        f"${amount:,.2f}"
        if amount >= 1
        else f"${amount:.4f}"
        if amount >= 0.01
        else (f"${amount:.6f}")
    )
